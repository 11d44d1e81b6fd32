"""Hugging Face tokenizers read from a directory of their files, without `transformers`.

A converted GPT-2, BERT or T5 run keeps the checkpoint's tokenizer files in RUN/tokenizer;
`load` picks the tokenizer by the files there and makes of text what transformers' tokenizers
make of it (tests/data/test_hf_tokenizers.py checks the ids and the decoded text against them):

- spiece.model: T5's sentencepiece model (pad 0, eos 1, unk 2, no bos) with
  tokenizer_config.json's extra_ids (default 100) sentinels appended as T5Tokenizer numbers
  them: <extra_id_0> is the last id, counting down (32099 .. 32000 for t5-small's 32100). With
  another tokenizer_class (ALBERT's, or the PreTrainedTokenizerFast of a roots_jax export,
  whose spiece.model is the run's own model) it has no sentinels.
- tokenizer.model: Llama's sentencepiece model (unk 0, bos 1, eos 2, no pad), read as spiece.model
  without sentinels: the ids sentencepiece itself gives, as the model was trained with.
- vocab.json + merges.txt: GPT-2's byte-level BPE (Radford et al. 2019): GPT-2's pattern cuts
  the text into words, a word's UTF-8 bytes become printable characters (bytes_to_unicode) and
  merge by rank. Every string has a spelling (unk_id is -1) and decode restores it exactly.
  <|endoftext|> is bos and eos, and pad, as HF pads GPT-2 with it.
- vocab.txt: BERT's WordPiece: HF's BasicTokenizer (clean-up, CJK characters apart, lower case
  and accents stripped when uncased, punctuation apart), then greedy longest-match-first pieces
  with "##" continuations; a word without a spelling, or over 100 characters, is [UNK]. BERT
  has no bos or eos: eos is [SEP], which is what the objectives end a sequence with.

Special tokens come from tokenizer_config.json, special_tokens_map.json and added_tokens.json,
with each class's HF defaults. Unlike HF, and like the sentencepiece tokenizer, the text of a
special token in the input stays text rather than becoming its id, so a corpus cannot inject an
eos or a [SEP]; non-special added tokens are not matched in text either. decode drops special
ids, as HF's skip_special_tokens=True, and ids beyond the tokenizer's (a padded model's).
"""

import functools
import json
import os
import shutil
import tempfile
import unicodedata
from typing import Any, Sequence

import regex

from roots_jax.data.sentencepiece import SentencePieceIds, processor
from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.errors import DataError

CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
KNOWN_FILES = ("vocab.json", "merges.txt", "vocab.txt", "spiece.model", "tokenizer.model",
               "tokenizer.json",
               *CONFIG_FILES)
# The special-token roles of HF's SpecialTokensMixin.
ROLES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
         "mask_token")
# Words (GPT-2) or words' pieces (BERT) remembered per tokenizer, as HF's BPE cache; cleared
# when full so that a long run over varied text keeps a bounded memory.
_CACHE_SIZE = 1 << 17


def load(path: str) -> "HFTokenizer":
  """The tokenizer of the Hugging Face files in directory `path` (see the module docstring)."""
  files = {}
  for name in KNOWN_FILES:
    file = os.path.join(path, name)
    if os.path.isfile(file):
      try:
        with open(file, "rb") as f:
          files[name] = f.read()
      except OSError as e:
        raise DataError(f"cannot read tokenizer file {file}: {e.strerror or e}") from e
  if "spiece.model" in files:
    return T5Tokenizer(files, path)
  if "tokenizer.model" in files:
    return LlamaTokenizer(files, path)
  if "vocab.json" in files or "merges.txt" in files:
    return ByteLevelBPETokenizer(files, path)
  if "vocab.txt" in files:
    return WordPieceTokenizer(files, path)
  alone = (" (tokenizer.json alone is not read: save the tokenizer with its vocabulary files, "
           "e.g. from its slow class)") if "tokenizer.json" in files else ""
  raise DataError(f"tokenizer directory {path} has none of vocab.json + merges.txt (GPT-2), "
                  f"vocab.txt (BERT), spiece.model (T5) or tokenizer.model (Llama){alone}; copy "
                  "the checkpoint's tokenizer files there or fix tokenizer.path")


class HFTokenizer(BaseTokenizer):
  """What the three share: the files (also the pickled state), the vocabulary as piece -> id
  with added tokens, and the special tokens of the config files."""

  FILES: tuple[str, ...] = ()       # the vocabulary files a kind reads, all required
  DEFAULTS: dict[str, str] = {}     # the HF class's default special tokens

  def __init__(self, files: dict[str, bytes], path: str = ""):
    self.path = path
    missing = [name for name in self.FILES if name not in files]
    if missing:
      present = " and ".join(name for name in self.FILES if name in files)
      raise DataError(f"tokenizer directory {path} has {present} but not {' and '.join(missing)}; "
                      "copy the checkpoint's tokenizer files there")
    self._files = {n: files[n] for n in self.FILES + CONFIG_FILES if n in files}
    self.config = {**self._json("tokenizer_config.json"), **self._json("special_tokens_map.json")}
    self._vocab = self._read_vocab()
    special_added = self._add_tokens()
    self._size = max(self._vocab.values(), default=-1) + 1
    self._pieces: list[str | None] = [None] * self._size
    for piece, i in self._vocab.items():
      self._pieces[i] = piece
    named = [self._token(role) for role in ROLES] + self._additional_special_tokens()
    self._special = ({self._vocab[t] for t in named if t in self._vocab} | special_added
                     | self._model_special_ids())
    self._eos = self._find_eos()
    if self._eos < 0:
      raise DataError(f"tokenizer {path} has no end-of-sequence token in its vocabulary; name "
                      "one as eos_token in special_tokens_map.json")

  # Reading the files.

  def _text(self, name: str) -> str:
    try:
      return self._files[name].decode("utf-8")
    except UnicodeDecodeError as e:
      raise DataError(f"{self._file(name)} is not UTF-8 text ({e}); copy the checkpoint's "
                      "file again") from e

  def _file(self, name: str) -> str:
    return os.path.join(self.path, name) if self.path else name

  def _json(self, name: str) -> dict[str, Any]:
    """A JSON object file's contents ({} when absent); DataError if malformed."""
    if name not in self._files:
      return {}
    try:
      value = json.loads(self._text(name))
    except json.JSONDecodeError as e:
      raise DataError(f"{self._file(name)} is not valid JSON ({e}); copy the checkpoint's file "
                      "again") from e
    if not isinstance(value, dict):
      raise DataError(f"{self._file(name)} holds a {type(value).__name__}, not a JSON object; "
                      "copy the checkpoint's file again")
    return value

  def _read_vocab(self) -> dict[str, int]:
    raise NotImplementedError

  def _add_tokens(self) -> set[int]:
    """Adds added_tokens.json's and tokenizer_config.json's added_tokens_decoder's tokens to the
    vocabulary (where it lacks them); returns the ids of those marked special."""
    added = dict(self._json("added_tokens.json"))
    special = set()
    decoder = self.config.get("added_tokens_decoder") or {}
    try:
      for i, token in decoder.items():
        added[token["content"]] = int(i)
        if token.get("special"):
          special.add(int(i))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
      raise DataError(f"{self._file('tokenizer_config.json')}: added_tokens_decoder is not "
                      f"{{id: {{\"content\": ...}}}} ({e!r}); copy the checkpoint's file "
                      "again") from e
    for content, i in added.items():
      if not isinstance(i, int) or isinstance(i, bool) or i < 0:
        raise DataError(f"added token {content!r} of {self.path} has id {i!r}, not a "
                        "non-negative integer; copy the checkpoint's files again")
      self._vocab.setdefault(content, i)
    return special

  def _token(self, role: str) -> str | None:
    """The text of a special-token role (e.g. "eos_token"): the config's, else HF's default."""
    value = self.config.get(role, self.DEFAULTS.get(role))
    return value.get("content") if isinstance(value, dict) else value

  def _additional_special_tokens(self) -> list[str]:
    tokens = []
    for key in ("additional_special_tokens", "extra_special_tokens"):
      value = self.config.get(key) or []
      for token in value.values() if isinstance(value, dict) else value:
        tokens.append(token.get("content") if isinstance(token, dict) else token)
    return tokens

  def _model_special_ids(self) -> set[int]:
    return set()

  def _find_eos(self) -> int:
    """The eos token's id, else [SEP]'s (BERT has no eos; its sequences end with [SEP])."""
    eos = self._role_id("eos_token")
    return eos if eos >= 0 else self._role_id("sep_token")

  def _role_id(self, role: str) -> int:
    return self._vocab.get(self._token(role), -1)

  # The interface.

  @property
  def vocab_size(self) -> int:
    return self._size

  @property
  def pad_id(self) -> int:
    """The pad token's id; eos's where there is none (GPT-2), as HF pads GPT-2."""
    pad = self._role_id("pad_token")
    return pad if pad >= 0 else self.eos_id

  @property
  def unk_id(self) -> int:
    return self._role_id("unk_token")

  @property
  def bos_id(self) -> int:
    return self._role_id("bos_token")

  @property
  def eos_id(self) -> int:
    return self._eos

  def piece_id(self, piece: str) -> int:
    if piece not in self._vocab:
      raise DataError(f"tokenizer {self.path} has no token {piece!r}")
    return self._vocab[piece]

  def id_to_piece(self, i: int) -> str:
    if not 0 <= i < self._size:
      raise IndexError(f"id {i} is out of range for {self._size} pieces")
    return self._pieces[i] or ""

  def is_special(self, i: int) -> bool:
    """Special tokens, and ids that spell nothing (holes, ids past the tokenizer's)."""
    return i in self._special or not 0 <= i < self._size or self._pieces[i] is None

  def decode(self, ids: Sequence[int]) -> str:
    return self._decode([int(i) for i in ids if not self.is_special(int(i))])

  def _decode(self, ids: list[int]) -> str:
    raise NotImplementedError

  def fits_model_vocab(self, vocab_size: int) -> bool:
    """A converted model's vocabulary may be padded past the tokenizer's (T5's 32128 rows for
    32100 pieces): ids beyond the tokenizer's are never made from text."""
    return vocab_size >= self.vocab_size

  def save(self, path: str) -> None:
    """Writes the files into a new directory `path`, renamed into place when complete."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-")
    try:
      for name, data in self._files.items():
        with open(os.path.join(tmp, name), "wb") as f:
          f.write(data)
      os.replace(tmp, path)
    except BaseException:
      shutil.rmtree(tmp, ignore_errors=True)
      raise

  def contents(self) -> dict[str, bytes]:
    return dict(self._files)

  def __getstate__(self):  # grain workers receive the files themselves, not a path.
    return {"files": self._files, "path": self.path}

  def __setstate__(self, state):
    self.__init__(state["files"], state["path"])


class _Cache(dict):
  """A dict cleared when it holds _CACHE_SIZE entries."""

  def put(self, key, value):
    if len(self) >= _CACHE_SIZE:
      self.clear()
    self[key] = value
    return value


# GPT-2's pre-tokenizer (openai/gpt-2 encoder.py): contractions, then runs of letters, of digits
# and of other symbols, each with at most one leading space, then whitespace (a run before a word
# leaves its last space to the word). \p{L} and \p{N} need the `regex` module: `re` has no exact
# equivalent, and the reference (transformers' slow GPT2Tokenizer) uses `regex` too.
GPT2_PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
  """GPT-2's byte -> character table: printable Latin-1 bytes are themselves, the other 68
  (space, controls) are 256 + k, so no piece holds whitespace ("Ġ" is a space, "Ċ" a newline)."""
  printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
               *range(ord("®"), ord("ÿ") + 1)]
  table, extra = {b: chr(b) for b in printable}, 0
  for b in range(256):
    if b not in table:
      table[b] = chr(256 + extra)
      extra += 1
  return dict(sorted(table.items()))


class ByteLevelBPETokenizer(HFTokenizer):
  """GPT-2's byte-level BPE (vocab.json + merges.txt); see the module docstring."""

  FILES = ("vocab.json", "merges.txt")
  DEFAULTS = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
              "unk_token": "<|endoftext|>"}

  def __init__(self, files: dict[str, bytes], path: str = ""):
    super().__init__(files, path)
    self._errors = self.config.get("errors", "replace")
    self._prefix_space = bool(self.config.get("add_prefix_space", False))
    self._cache = _Cache()
    decoder = {c: b for b, c in bytes_to_unicode().items()}
    # Each id's bytes, or its text for a token that is not byte-level (an added token).
    self._bytes: list[bytes | str] = []
    for piece in self._pieces:
      if piece is None or not all(c in decoder for c in piece):
        self._bytes.append(piece or "")
      else:
        self._bytes.append(bytes(decoder[c] for c in piece))

  def _read_vocab(self) -> dict[str, int]:
    vocab = self._json("vocab.json")
    bad = [(k, v) for k, v in vocab.items()
           if not isinstance(v, int) or isinstance(v, bool) or v < 0]
    if bad:
      raise DataError(f"{self._file('vocab.json')} maps {bad[0][0]!r} to {bad[0][1]!r}; it must "
                      "map each token to a non-negative integer id (GPT-2's vocab.json)")
    missing = [c for c in bytes_to_unicode().values() if c not in vocab]
    if missing:
      raise DataError(f"{self._file('vocab.json')} lacks {len(missing)} of the 256 byte tokens "
                      f"(e.g. {missing[0]!r}): it is not a byte-level BPE vocabulary (GPT-2's); "
                      "copy the checkpoint's vocab.json")
    self._ranks = {}
    for n, line in enumerate(self._text("merges.txt").split("\n"), 1):
      line = line.rstrip("\r")
      if not line or (n == 1 and line.startswith("#version")):
        continue
      pair = tuple(line.split())
      if len(pair) != 2:
        raise DataError(f"{self._file('merges.txt')} line {n} is {line!r}, not two tokens "
                        "separated by a space; copy the checkpoint's merges.txt")
      unknown = [t for t in (*pair, "".join(pair)) if t not in vocab]
      if unknown:
        raise DataError(f"{self._file('merges.txt')} line {n} merges {line!r}, but vocab.json "
                        f"has no {unknown[0]!r}: the two files do not belong together")
      self._ranks[pair] = n  # a repeated merge takes its last rank, as HF's slow tokenizer
    return dict(vocab)

  @property
  def unk_id(self) -> int:
    return -1  # every byte has a token: nothing is unknown

  def _bpe(self, word: str) -> tuple[str, ...]:
    """The pieces of one pre-tokenized word: the lowest-ranked adjacent pair merges, every
    occurrence left to right, until no pair has a rank."""
    pieces = self._cache.get(word)
    if pieces is not None:
      return pieces
    parts = list(word)
    while len(parts) > 1:
      best = min(zip(parts, parts[1:]), key=lambda p: self._ranks.get(p, float("inf")))
      if best not in self._ranks:
        break
      merged, i = [], 0
      while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
          merged.append(parts[i] + parts[i + 1])
          i += 2
        else:
          merged.append(parts[i])
          i += 1
      parts = merged
    return self._cache.put(word, tuple(parts))

  def encode(self, text: str) -> list[int]:
    if self._prefix_space:
      text = " " + text
    table, ids = bytes_to_unicode(), []
    for word in GPT2_PATTERN.findall(text):
      ids.extend(self._vocab[p] for p in self._bpe("".join(table[b] for b in word.encode())))
    return ids

  def _decode(self, ids: list[int]) -> str:
    out, run = [], bytearray()
    for i in ids:
      piece = self._bytes[i]
      if isinstance(piece, str):
        out.append(run.decode("utf-8", self._errors))
        run.clear()
        out.append(piece)
      else:
        run += piece
    out.append(run.decode("utf-8", self._errors))
    return "".join(out)

  def piece_text(self, i: int) -> str:
    piece = self._bytes[i]
    return piece if isinstance(piece, str) else piece.decode("utf-8", "replace")


def _is_whitespace(char: str) -> bool:
  return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
  return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def _is_punctuation(char: str) -> bool:
  """Unicode punctuation, and every non-alphanumeric printable ASCII character (BERT's)."""
  cp = ord(char)
  if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
    return True
  return unicodedata.category(char).startswith("P")


def _is_cjk(cp: int) -> bool:
  """The CJK Unified Ideographs blocks (not Hangul, Hiragana or Katakana, which use spaces)."""
  return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
          or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
          or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _strip_accents(text: str) -> str:
  return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _split_on_punctuation(word: str) -> list[str]:
  out, start_new = [], True
  for char in word:
    if _is_punctuation(char):
      out.append(char)
      start_new = True
    else:
      if start_new:
        out.append("")
      start_new = False
      out[-1] += char
  return out


# HF's clean_up_tokenization: BERT's decode puts a space between every two pieces; these undo it.
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


class WordPieceTokenizer(HFTokenizer):
  """BERT's WordPiece (vocab.txt); see the module docstring. Follows transformers' slow
  BertTokenizer (BasicTokenizer + WordpieceTokenizer) step by step."""

  FILES = ("vocab.txt",)
  DEFAULTS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
              "cls_token": "[CLS]", "mask_token": "[MASK]"}
  MAX_WORD_CHARS = 100  # HF's max_input_chars_per_word: longer words are [UNK]

  def __init__(self, files: dict[str, bytes], path: str = ""):
    super().__init__(files, path)
    c = self.config
    self.lower_case = bool(c.get("do_lower_case", True))
    self._strip_accents = c.get("strip_accents")
    self._chinese_chars = bool(c.get("tokenize_chinese_chars", True))
    self._basic = bool(c.get("do_basic_tokenize", True))
    self._clean_up = bool(c.get("clean_up_tokenization_spaces", True))
    specials = {self._pieces[i] for i in self._special if i < self._size}
    self._never_split = set(c.get("never_split") or ()) - specials
    self._unk = self._role_id("unk_token")
    if self._unk < 0:
      raise DataError(f"{self._file('vocab.txt')} has no unknown token "
                      f"{self._token('unk_token')!r}; name the vocabulary's as unk_token in "
                      "special_tokens_map.json")
    self._cache = _Cache()

  def _read_vocab(self) -> dict[str, int]:
    text = self._text("vocab.txt").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
      lines.pop()
    if not lines:
      raise DataError(f"{self._file('vocab.txt')} is empty; copy the checkpoint's vocab.txt")
    return {token: i for i, token in enumerate(lines)}  # a repeated token keeps its last id, as HF

  def _words(self, text: str) -> list[str]:
    """HF's BasicTokenizer.tokenize."""
    words = []
    for word in self._cleaned(text).split():
      if word in self._never_split:
        words.append(word)
        continue
      words.extend(_split_on_punctuation(self._cased(word)))
    return " ".join(words).split()

  def _cleaned(self, text: str) -> str:
    """Control characters dropped, whitespace as spaces, CJK characters spaced, NFC."""
    text = "".join(" " if _is_whitespace(ch) else ch for ch in text
                   if not (ch in "\x00\ufffd" or _is_control(ch)))
    if self._chinese_chars:
      text = "".join(f" {ch} " if _is_cjk(ord(ch)) else ch for ch in text)
    return unicodedata.normalize("NFC", text)

  def _cased(self, text: str) -> str:
    """Lower-cased and accents stripped as configured."""
    if self.lower_case:
      text = text.lower()
      if self._strip_accents is not False:
        text = _strip_accents(text)
    elif self._strip_accents:
      text = _strip_accents(text)
    return text

  def _wordpiece(self, word: str) -> tuple[int, ...]:
    """Greedy longest-match-first: the longest prefix in the vocabulary, then the longest
    "##" continuation, ...; [UNK] for the whole word when some rest has none."""
    ids = self._cache.get(word)
    if ids is not None:
      return ids
    if len(word) > self.MAX_WORD_CHARS:
      return self._cache.put(word, (self._unk,))
    ids, start = [], 0
    while start < len(word):
      for end in range(len(word), start, -1):
        piece = word[start:end] if start == 0 else "##" + word[start:end]
        if piece in self._vocab:
          ids.append(self._vocab[piece])
          start = end
          break
      else:
        return self._cache.put(word, (self._unk,))
    return self._cache.put(word, tuple(ids))

  def encode(self, text: str) -> list[int]:
    if not self._basic:
      return [i for word in text.split() for i in self._wordpiece(word)]
    ids = []
    for word in self._words(text):
      if word in self._never_split:
        ids.append(self._vocab.get(word, self._unk))
      else:
        ids.extend(self._wordpiece(word))
    return ids

  def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """encode's steps on each run of non-space characters, a base character with its combining
    marks normalized together (NFC, lower case, accents) so that every normalized character
    knows the original span it came from; a piece spans the characters it was cut from, an
    [UNK] its whole word (as BertTokenizerFast's offset_mapping)."""
    ids, offsets = [], []
    for match in regex.finditer(r"\S+", text):
      if self._basic and unicodedata.normalize("NFC", match.group()) in self._never_split:
        ids.append(self._vocab.get(unicodedata.normalize("NFC", match.group()), self._unk))
        offsets.append(match.span())
        continue
      chars, spans = [], []  # the normalized word's characters and their original spans
      for cluster in regex.finditer(r"\P{M}\p{M}*|\p{M}+", match.group()):
        start, end = match.start() + cluster.start(), match.start() + cluster.end()
        for ch in self._normalized(cluster.group()) if self._basic else cluster.group():
          chars.append(ch)
          spans.append((start, end))
      word = "".join(chars)
      for piece, at in self._basic_pieces(word) if self._basic else [(word, 0)]:
        word_ids = self._wordpiece(piece)
        if word_ids == (self._unk,):
          ids.append(self._unk)
          offsets.append((spans[at][0], spans[at + len(piece) - 1][1]))
          continue
        for j, i in enumerate(word_ids):  # pieces after the first are "##" continuations
          size = len(self._pieces[i]) - (2 if j else 0)
          ids.append(i)
          offsets.append((spans[at][0], spans[at + size - 1][1]))
          at += size
    return ids, offsets

  def _normalized(self, chars: str) -> str:
    """A base character and its combining marks as _words normalizes them: cleaned up, NFC,
    lower-cased and accents stripped as configured, CJK characters spaced."""
    return self._cased(self._cleaned(chars))

  def _basic_pieces(self, word: str) -> list[tuple[str, int]]:
    """(piece, where it starts in `word`) of a normalized word split on spaces (CJK characters)
    and punctuation, as _words splits it."""
    out = []
    for part in regex.finditer(r"\S+", word):
      at = part.start()
      for piece in _split_on_punctuation(part.group()):
        out.append((piece, at))
        at += len(piece)
    return out

  def _decode(self, ids: list[int]) -> str:
    text = " ".join(self._pieces[i] for i in ids).replace(" ##", "").strip()
    if self._clean_up:
      for old, new in _CLEAN_UP:
        text = text.replace(old, new)
    return text

  def piece_text(self, i: int) -> str:
    """A "##" continuation without its marks; any other piece starts a word."""
    piece = self.id_to_piece(i)
    return piece[2:] if piece.startswith("##") else " " + piece


class T5Tokenizer(SentencePieceIds, HFTokenizer):
  """T5's sentencepiece model (spiece.model) and its sentinels; see the module docstring."""

  FILES = ("spiece.model",)
  DEFAULTS = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
  CLASS = "T5Tokenizer"  # the tokenizer_class assumed where tokenizer_config.json names none

  def _read_vocab(self) -> dict[str, int]:
    name = self.FILES[0]
    self._sp = processor(self._files[name], self._file(name), f"copy the checkpoint's {name}")
    size = self._sp.vocab_size()
    # T5Tokenizer's default; other sentencepiece tokenizers (ALBERT, XLNet) have no sentinels.
    t5 = "T5" in str(self.config.get("tokenizer_class") or self.CLASS)
    self.extra_ids = extra = self.config.get("extra_ids", 100 if t5 else 0)
    if not isinstance(extra, int) or isinstance(extra, bool) or extra < 0:
      raise DataError(f"{self._file('tokenizer_config.json')}: extra_ids is {self.extra_ids!r}, "
                      "not a number of sentinels (T5: 100)")
    vocab = {self._sp.id_to_piece(i): i for i in range(size)}
    for k in range(self.extra_ids):
      vocab.setdefault(f"<extra_id_{k}>", size + self.extra_ids - 1 - k)
    return vocab

  def _model_special_ids(self) -> set[int]:
    sp = self._sp
    return ({i for i in range(sp.vocab_size()) if sp.is_control(i) or sp.is_unknown(i)}
            | set(range(sp.vocab_size(), self._size)))

  def _find_eos(self) -> int:
    return self._sp.eos_id() if self._sp.eos_id() >= 0 else super()._find_eos()

  def _decode(self, ids: list[int]) -> str:
    return self._sp.decode(ids)


class LlamaTokenizer(T5Tokenizer):
  """Llama's sentencepiece model (tokenizer.model), without sentinels; see the module
  docstring."""

  FILES = ("tokenizer.model",)
  DEFAULTS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
  CLASS = "LlamaTokenizer"
