"""Tokenizers: the interface the pipeline relies on, and the sentencepiece tokenizer: loading,
training on a sample of the corpus, caching in the workdir.

Models trained here fit code and prose alike: identity normalization and kept whitespace, so
decode(encode(s)) == s exactly; byte fallback, so any character (and "\\n", which sentencepiece
never sees because it trains line by line) is a byte piece instead of <unk>; digits split. Ids
0-3 are pad, unk, bos, eos. [CLS], [SEP] and [MASK] are reserved as control symbols for BERT:
they have ids but are never produced from text, so a literal "[MASK]" in the corpus stays text.

A directory of Hugging Face tokenizer files (a converted GPT-2, BERT or T5 run) loads as one of
`hf_tokenizers`' classes behind the same `BaseTokenizer` interface.
"""

import io
import os
import tempfile
import time
from typing import Iterable, Iterator, Sequence

import jax
import ml_collections
import sentencepiece as spm

from roots_jax.data import sources
from roots_jax.errors import DataError

SPECIAL_PIECES = ("[CLS]", "[SEP]", "[MASK]")
# Lines longer than this (minified code, data blobs) are skipped in training, not truncated.
_MAX_LINE_BYTES = 1 << 14
# How long other processes wait for process 0 to train the shared tokenizer.
_WAIT_S = 1800


class BaseTokenizer:
  """What the pipeline, the objectives and the drivers use of a tokenizer.

  Ids are 0..vocab_size-1; pad_id, unk_id and bos_id are -1 where a tokenizer has none (GPT-2
  has no unk and pads with eos, as HF; BERT and T5 have no bos); eos_id always exists (the
  objectives end sequences with it).
  Special ids (is_special: pad, bos, eos, [CLS], [SEP], [MASK], sentinels, unk) are never made
  from text, except unk for what the vocabulary cannot spell, and never masked; decode writes
  no text for them (sentencepiece's " ⁇ " for unk aside). Subclasses pickle as their files'
  contents: grain workers get the tokenizer itself, not a path.
  """

  path: str

  @property
  def vocab_size(self) -> int:
    raise NotImplementedError

  @property
  def pad_id(self) -> int:
    raise NotImplementedError

  @property
  def unk_id(self) -> int:
    raise NotImplementedError

  @property
  def bos_id(self) -> int:
    raise NotImplementedError

  @property
  def eos_id(self) -> int:
    raise NotImplementedError

  def piece_id(self, piece: str) -> int:
    """The id of a piece such as "[MASK]"; DataError when the tokenizer has none."""
    raise NotImplementedError

  def id_to_piece(self, i: int) -> str:
    raise NotImplementedError

  def is_special(self, i: int) -> bool:
    raise NotImplementedError

  def encode(self, text: str) -> list[int]:
    raise NotImplementedError

  def decode(self, ids: Sequence[int]) -> str:
    raise NotImplementedError

  def save(self, path: str) -> None:
    """Writes what `Tokenizer.load(path)` reads back (a file or a directory), atomically."""
    raise NotImplementedError

  def contents(self) -> dict[str, bytes]:
    """The files that define it, by name: equal contents give equal ids."""
    raise NotImplementedError

  def piece_text(self, i: int) -> str:
    """Piece i as it reads in running text, a word-starting piece with its leading space (what
    sentencepiece writes "▁", GPT-2 "Ġ"): MLM cuts sentences and whole words with it."""
    return self.id_to_piece(i)

  def has_piece(self, piece: str) -> bool:
    try:
      self.piece_id(piece)
    except DataError:
      return False
    return True

  def sentinel_id(self, i: int) -> int:
    """Span corruption's i-th sentinel: the piece <extra_id_i> where the tokenizer has it (T5's),
    else vocab_size - 1 - i, as T5 counts down from the top of the vocabulary."""
    piece = f"<extra_id_{i}>"
    return self.piece_id(piece) if self.has_piece(piece) else self.vocab_size - 1 - i

  def fits_model_vocab(self, vocab_size: int) -> bool:
    """Whether a model with `vocab_size` embeddings fits this tokenizer: exactly, as one trained
    here; a Hugging Face tokenizer also fits a padded one (T5: 32100 pieces, 32128 rows)."""
    return vocab_size == self.vocab_size


def sentencepiece_text(piece: str) -> str:
  """A sentencepiece piece as text: "▁" is a space and a byte piece <0xNN> of ASCII its
  character (other bytes are parts of characters and stay pieces)."""
  if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
    byte = int(piece[3:5], 16)
    return chr(byte) if byte < 0x80 else piece
  return piece.replace("\u2581", " ")


class Tokenizer(BaseTokenizer):
  """A sentencepiece model and the ids the pipeline and the models rely on."""

  def __init__(self, model_proto: bytes, path: str = ""):
    self.path = path
    try:
      self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
      valid = self._sp.vocab_size() > 0  # An empty proto loads as an empty model.
    except RuntimeError:
      valid = False
    if not valid:
      raise DataError(f"{path or 'the tokenizer'} is not a sentencepiece model; fix "
                      "tokenizer.path or leave it empty to train one")
    if self.eos_id < 0:
      raise DataError(f"tokenizer {path} has no end-of-sequence piece; use one trained with "
                      "eos_id set")

  @classmethod
  def load(cls, path: str) -> BaseTokenizer:
    """A sentencepiece .model file, or a directory of Hugging Face tokenizer files."""
    if os.path.isdir(path):
      from roots_jax.data import hf_tokenizers  # pylint: disable=g-import-not-at-top
      return hf_tokenizers.load(path)
    try:
      with open(path, "rb") as f:
        proto = f.read()
    except OSError as e:
      raise DataError(f"cannot read tokenizer {path}: {e.strerror or e}; fix tokenizer.path "
                      "or leave it empty to train one") from e
    return cls(proto, path)

  @property
  def vocab_size(self) -> int:
    return self._sp.vocab_size()

  @property
  def pad_id(self) -> int:
    return self._sp.pad_id()

  @property
  def unk_id(self) -> int:
    return self._sp.unk_id()

  @property
  def bos_id(self) -> int:
    """-1 when the model has none (e.g. T5's); the causal objective then starts without it."""
    return self._sp.bos_id()

  @property
  def eos_id(self) -> int:
    return self._sp.eos_id()

  def piece_id(self, piece: str) -> int:
    """The id of a reserved piece such as "[MASK]"."""
    i = self._sp.piece_to_id(piece)
    if i == self.unk_id and piece != self._sp.id_to_piece(i):
      raise DataError(f"tokenizer {self.path} has no piece {piece!r}; train a new one")
    return i

  def id_to_piece(self, i: int) -> str:
    return self._sp.id_to_piece(i)

  def piece_text(self, i: int) -> str:
    return sentencepiece_text(self._sp.id_to_piece(i))

  def is_special(self, i: int) -> bool:
    """Control pieces (pad, bos, eos, [CLS], [SEP], [MASK]) and unk: never text, never masked."""
    return self._sp.is_control(i) or self._sp.is_unknown(i)

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text)

  def decode(self, ids: Sequence[int]) -> str:
    return self._sp.decode([int(i) for i in ids])

  def save(self, path: str) -> None:
    write_atomically(path, self._sp.serialized_model_proto())

  def contents(self) -> dict[str, bytes]:
    return {"spm.model": self._sp.serialized_model_proto()}

  def __getstate__(self):  # grain workers receive the model itself, not a path.
    return {"proto": self._sp.serialized_model_proto(), "path": self.path}

  def __setstate__(self, state):
    self.__init__(state["proto"], state["path"])


def _lines(documents: Iterable[str | tuple[str, str]], max_bytes: int) -> Iterator[str]:
  """The documents' (or both sides of (input, target) pairs') non-empty lines, up to
  `max_bytes` of UTF-8 in all."""
  total = 0
  for doc in documents:
    for line in (l for text in ((doc,) if isinstance(doc, str) else doc)
                 for l in text.splitlines()):
      size = len(line.encode())
      if not line.strip() or size > _MAX_LINE_BYTES:
        continue
      total += size
      if total > max_bytes:
        return
      yield line


def train_tokenizer(documents: Iterable[str], *, vocab_size: int, model_type: str,
                    max_bytes: int) -> bytes:
  """Trains on the first `max_bytes` of `documents` and returns the serialized model."""
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=_lines(documents, max_bytes),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,          # keeps line starts and decode exact
        allow_whitespace_only_pieces=True,  # indentation runs become single pieces
        split_digits=True,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3,
        control_symbols=list(SPECIAL_PIECES),
        max_sentence_length=_MAX_LINE_BYTES,
        input_sentence_size=0,           # the sample is already capped by max_bytes
        # Unigram EM passes per pruning round (default 2): half the training time, and the
        # same compression on held-out stdlib modules (3.18 bytes/token at 8k pieces).
        num_sub_iterations=1,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )
  except RuntimeError as e:
    raise DataError(f"training the tokenizer failed: {str(e).strip().rstrip('.')}. With little text, lower "
                    "the vocabulary size (model.vocab_size) or give more data") from e
  return model.getvalue()


def write_atomically(path: str, data: bytes) -> None:
  """Readers never see a partial file: write a temporary file, then rename it into place."""
  directory = os.path.dirname(path) or "."
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def check_vocab_size(tokenizer: BaseTokenizer, vocab_size: int, fix: str) -> None:
  """DataError (ending in `fix`) unless a model of `vocab_size` embeddings fits `tokenizer`."""
  if not tokenizer.fits_model_vocab(vocab_size):
    raise DataError(f"tokenizer {tokenizer.path} has {tokenizer.vocab_size} pieces but "
                    f"model.vocab_size is {vocab_size}; {fix}")


def load_or_train_tokenizer(config: ml_collections.ConfigDict, workdir: str, *,
                            process_index: int | None = None) -> BaseTokenizer:
  """tokenizer.path if set (a sentencepiece model or a Hugging Face tokenizer directory, the
  one the run has a copy of, if it has one); else workdir/tokenizer/spm.model, trained on the
  training split by process 0 (default:
  `jax.process_index()`) the first time, while the others wait for the file: the workdir must
  be shared, and every process gets the very same model."""
  if process_index is None:
    process_index = jax.process_index()
  vocab_size = config.model.vocab_size
  if config.tokenizer.path:
    tokenizer = Tokenizer.load(config.tokenizer.path)
    check_run_copy(tokenizer, workdir)
    fix = (f"set model.vocab_size={tokenizer.vocab_size}"
           + " or more" * tokenizer.fits_model_vocab(tokenizer.vocab_size + 1))
  else:
    path = os.path.join(workdir, "tokenizer", "spm.model")
    if not os.path.exists(path):
      if process_index == 0:
        stream = sources.DocumentStream(sources.make_source(config.data, "train"),
                                        repeat=False, seed=config.seed)
        write_atomically(path, train_tokenizer(
            stream, vocab_size=vocab_size, model_type=config.tokenizer.model_type,
            max_bytes=int(config.tokenizer.train_max_bytes)))
      else:
        _wait_for(path)
    tokenizer = Tokenizer.load(path)
    fix = f"delete {path} to retrain it, or set model.vocab_size={tokenizer.vocab_size}"
  check_vocab_size(tokenizer, vocab_size, fix)
  return tokenizer


def run_copy(workdir: str) -> str | None:
  """A run's own copy of its tokenizer, if it has one: WORKDIR/tokenizer/spm.model, or the
  Hugging Face files in WORKDIR/tokenizer."""
  own = os.path.join(workdir, "tokenizer")
  if os.path.isfile(os.path.join(own, "spm.model")):
    return os.path.join(own, "spm.model")
  return own if os.path.isdir(own) and os.listdir(own) else None


def check_run_copy(tokenizer: BaseTokenizer, workdir: str) -> None:
  """DataError when the run already has a tokenizer and `tokenizer` is another: the run's
  embeddings belong to its own tokenizer's ids."""
  copy = run_copy(workdir)
  if copy is None or os.path.realpath(copy) == os.path.realpath(tokenizer.path):
    return
  try:
    own = Tokenizer.load(copy)
  except DataError:  # e.g. a converted run's tokenizer/ with only tokenizer_config.json
    return
  if own.contents() != tokenizer.contents():
    raise DataError(f"tokenizer {tokenizer.path} is not the tokenizer the run in {workdir} was "
                    f"started with ({copy}); set tokenizer.path to that one, or use a new "
                    "--workdir")


def run_copy_path(tokenizer: BaseTokenizer, workdir: str) -> str:
  """Where a run keeps its copy of `tokenizer`: the Hugging Face files in WORKDIR/tokenizer
  itself (as a converted run has them), a sentencepiece model as WORKDIR/tokenizer/spm.model."""
  own = os.path.join(workdir, "tokenizer")
  return own if os.path.isdir(tokenizer.path) else os.path.join(own, "spm.model")


def save_run_copy(tokenizer: BaseTokenizer, workdir: str) -> None:
  """Writes the run's copy of `tokenizer` unless it has one already, so a moved or deleted
  tokenizer.path leaves the run usable."""
  if run_copy(workdir) is None:
    tokenizer.save(run_copy_path(tokenizer, workdir))


def _wait_for(path: str) -> None:
  deadline = time.monotonic() + _WAIT_S
  while not os.path.exists(path):
    if time.monotonic() > deadline:
      raise DataError(f"waited {_WAIT_S} s for process 0 to write {path}; the workdir must be "
                      "shared by all processes (or set tokenizer.path)")
    time.sleep(1.0)
