"""Hugging Face tokenizer directories: parity with transformers' tokenizers built from the same
files (made here, never downloaded), and our own behaviour without transformers: specials,
sentinels, errors, pickling, run loading, and the objectives' and fine-tuning rows."""

import collections
import inspect
import io
import json
import os
import pickle
import re
import textwrap
import unicodedata

import numpy as np
import pytest
import sentencepiece as spm

from roots_jax import config as config_lib
from roots_jax import objectives, tasks
from roots_jax import tokenizer as tokenizer_cli
from roots_jax.config import finetune_config
from roots_jax.data import hf_tokenizers, load_tokenizer
from roots_jax.data.sentencepiece import SentencePieceTokenizer
from roots_jax.data.supervised import LabelVocab
from roots_jax.errors import ConfigError, DataError
from roots_jax.models import families
from roots_jax.objectives.mlm_nsp import MaskedLM
from roots_jax.objectives.span_corruption import SpanCorruption
from roots_jax.runs.workdir import resolve_init_from
from roots_jax.runs.pretrain import load_or_train_tokenizer

TEXTS = [
    "Hello world! It's a test, isn't it? We'll see... (maybe) -- 'quoted' \"double\".",
    "Multiple   spaces\n\nnew lines\ttabs \t\n  and trailing  ",
    "Numbers: 12345, 3.14159 and 1,000,000; ½ ² ٣ x2 v1.2.3",
    "Accents: café naïve résumé Ångström ÉCOLE façade Ünïcödé",
    "CJK: 日本語のテキスト 中文字符 한국어",
    "Emoji 😀🎉👍🏽 and the family 👨\u200d👩\u200d👧.",
    "def f(x):\n    return {'k': [1, 2]}  # comment\n\nclass A(B): pass\n",
    "y = a+b ^ c | d & ~e; s = `cmd` $HOME <tag> @deco 100%",
    "don't I'm you're we've they'll he'd",
    "",
    " leading and trailing ",
    "x" * 150,
    "no\u00a0break\u3000ideographic space",
]
PROSE = textwrap.dedent("""\
    The quick brown fox jumps over the lazy dog. Tokenizers split text into pieces; models
    read the pieces' ids. A byte-level tokenizer never meets an unknown character, while a
    WordPiece vocabulary marks what it cannot spell as unknown. Sentences end with a period!
    Do they? Mostly. The model is trained on many documents, and each document is long.
    """)
CORPUS = [PROSE, *TEXTS, inspect.getsource(json.decoder)] * 2
EXTRA_IDS = 100


def learn_bpe(texts, num_merges):
  """A small GPT-2 style vocab.json / merges.txt: the 256 byte tokens, then the most frequent
  adjacent pair merged `num_merges` times (ties by the pair), then <|endoftext|>."""
  table = hf_tokenizers.bytes_to_unicode()
  words = collections.Counter("".join(table[b] for b in w.encode())
                              for t in texts for w in hf_tokenizers.GPT2_PATTERN.findall(t))
  splits = {w: list(w) for w in words}
  vocab, merges = list(table.values()), []
  for _ in range(num_merges):
    pairs = collections.Counter()
    for w, count in words.items():
      for pair in zip(splits[w], splits[w][1:]):
        pairs[pair] += count
    if not pairs:
      break
    best = max(pairs, key=lambda p: (pairs[p], p))
    merges.append(best)
    vocab.append("".join(best))
    for w, parts in splits.items():
      i, merged = 0, []
      while i < len(parts):
        if tuple(parts[i:i + 2]) == best:
          merged.append(parts[i] + parts[i + 1])
          i += 2
        else:
          merged.append(parts[i])
          i += 1
      splits[w] = merged
  ids = {}
  for token in vocab + ["<|endoftext|>"]:
    ids.setdefault(token, len(ids))
  return ids, merges


def write_gpt2(directory, vocab, merges, config=None):
  directory.mkdir(parents=True, exist_ok=True)
  (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
  (directory / "merges.txt").write_text(
      "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
  if config is not None:
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
  return str(directory)


def bert_vocab(texts):
  """[PAD] [UNK] [CLS] [SEP] [MASK], each character seen (alone and as a "##" continuation, but
  not the emoji, which stay [UNK]), frequent words in both cases and frequent word endings."""
  words = collections.Counter(w for t in texts for w in re.findall(r"\w+|[^\w\s]", t))
  chars = sorted({c for t in texts for c in t.lower() + t if not c.isspace() and ord(c) < 0x1F000})
  tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
  for w, _ in words.most_common(150):
    tokens += [w, w.lower()]
    if len(w) > 4:
      tokens += ["##" + w[-3:].lower(), w[:4].lower()]
  return list(dict.fromkeys(tokens))


def train_spm(texts, **options):
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter([l for t in texts for l in t.splitlines() if l.strip()]),
      model_writer=model, vocab_size=300, character_coverage=1.0, minloglevel=2, **options)
  return model.getvalue()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
  """Tokenizer directories as a conversion leaves them: gpt2, bert (uncased), bert_cased, t5."""
  root = tmp_path_factory.mktemp("hf")
  vocab, merges = learn_bpe(CORPUS, 300)
  out = {"gpt2": write_gpt2(root / "gpt2", vocab, merges)}
  for name, config in (("bert", {}), ("bert_cased", {"do_lower_case": False})):
    (root / name).mkdir()
    (root / name / "vocab.txt").write_text("\n".join(bert_vocab(CORPUS)) + "\n", encoding="utf-8")
    (root / name / "tokenizer_config.json").write_text(json.dumps(config))
    out[name] = str(root / name)
  (root / "t5").mkdir()
  # T5's ids: pad 0, eos 1, unk 2, no bos.
  (root / "t5" / "spiece.model").write_bytes(train_spm(CORPUS, pad_id=0, eos_id=1, unk_id=2,
                                                       bos_id=-1))
  out["t5"] = str(root / "t5")
  return out


@pytest.fixture(scope="module")
def toks(dirs):
  return {name: load_tokenizer(path) for name, path in dirs.items()}


# Parity with transformers.


def reference(name, path):
  import transformers  # pylint: disable=g-import-not-at-top
  if name == "gpt2":
    return transformers.GPT2Tokenizer.from_pretrained(path)
  if name == "t5":
    return transformers.T5Tokenizer.from_pretrained(path)
  try:  # transformers 5: the slow (Python) BERT tokenizer; 4: BertTokenizer is that one
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as Bert
  except ImportError:
    Bert = transformers.BertTokenizer
  return Bert.from_pretrained(path)


@pytest.mark.extra("hf")
@pytest.mark.parametrize("name", ["gpt2", "bert", "bert_cased", "t5"])
def test_ids_and_text_match_transformers(dirs, toks, name):
  ref, tok = reference(name, dirs[name]), toks[name]
  assert tok.vocab_size == len(ref)
  texts = TEXTS + PROSE.splitlines() + inspect.getsource(json.decoder).splitlines()[:80]
  if name == "bert_cased":
    texts.append("e\u0301 decomposed")  # HF's BasicTokenizer composes it (NFC) first
  for text in texts:
    ids = tok.encode(text)
    assert ids == ref.encode(text, add_special_tokens=False), text
    assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=True), text
  for role in ("pad", "unk", "eos"):
    if getattr(ref, f"{role}_token_id") is not None and not (name == "gpt2" and role == "unk"):
      assert getattr(tok, f"{role}_id") == getattr(ref, f"{role}_token_id"), role
  for piece in ("[CLS]", "[SEP]", "[MASK]", "<extra_id_0>", "<extra_id_99>", "<|endoftext|>"):
    assert tok.has_piece(piece) == (piece in ref.get_vocab()), piece
    if tok.has_piece(piece):
      assert tok.piece_id(piece) == ref.convert_tokens_to_ids(piece)


# Our own behaviour.


def test_byte_level_bpe_merges_by_rank(tmp_path):
  table = hf_tokenizers.bytes_to_unicode()
  assert len(set(table.values())) == 256 and table[ord(" ")] == "Ġ" and table[10] == "Ċ"
  merges = [("l", "l"), ("h", "e"), ("he", "ll"), ("hell", "o"), ("Ġ", "h")]
  vocab = {c: i for i, c in enumerate(table.values())}
  for token in ["ll", "he", "hell", "hello", "Ġh", "<|endoftext|>"]:
    vocab[token] = len(vocab)
  tok = load_tokenizer(write_gpt2(tmp_path / "bpe", vocab, merges))
  # " hello": l+l (rank 0) and h+e (1) come before Ġ+h (4), which is then gone.
  assert [tok.id_to_piece(i) for i in tok.encode("hello hello")] == ["hello", "Ġ", "hello"]
  assert tok.piece_text(tok.piece_id("Ġh")) == " h"


def test_gpt2_specials_and_exact_round_trips(toks):
  tok = toks["gpt2"]
  eot = tok.piece_id("<|endoftext|>")
  assert tok.bos_id == tok.eos_id == tok.pad_id == eot and tok.unk_id == -1
  assert tok.is_special(eot) and not tok.is_special(0)
  assert not tok.has_piece("[SEP]") and not tok.has_piece("[CLS]")
  for text in TEXTS + ["\x00\x1c\ufffd\U0010ffff"]:
    assert tok.decode(tok.encode(text)) == text
  assert eot not in tok.encode("a <|endoftext|> b")  # the text of a special token stays text
  assert tok.decode([eot, *tok.encode("ok"), eot, tok.vocab_size + 5]) == "ok"


BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "aff",
              "the", "The", "cafe", "café", "c", "##a", "##f", "##é", ",", "!", "?", "'", "日",
              "本", "a", "it", "s", "test", "isn", "t", "mask", "[", "]", "##s"]


def test_bert_wordpiece_pieces_and_specials(tmp_path):
  for name, config in (("uncased", {}), ("cased", {"do_lower_case": False})):
    (tmp_path / name).mkdir()
    (tmp_path / name / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n")
    (tmp_path / name / "tokenizer_config.json").write_text(json.dumps(config))
  uncased, cased = (load_tokenizer(str(tmp_path / n)) for n in ("uncased", "cased"))
  pieces = lambda tok, text: [tok.id_to_piece(i) for i in tok.encode(text)]
  # Longest match first, then "##" continuations; accents go with the case.
  assert pieces(uncased, "Unaffable, CAFÉ!") == ["un", "##aff", "##able", ",", "cafe", "!"]
  assert pieces(cased, "The café") == ["The", "café"]
  assert pieces(cased, "Unaffable") == ["[UNK]"]
  assert pieces(uncased, "日本 😀 " + "a" * 101) == ["日", "本", "[UNK]", "[UNK]"]
  assert (uncased.pad_id, uncased.unk_id, uncased.bos_id) == (0, 1, -1)
  assert uncased.eos_id == uncased.piece_id("[SEP]") == 3  # BERT's sequences end with [SEP]
  assert all(uncased.is_special(i) for i in range(5)) and not uncased.is_special(5)
  assert pieces(uncased, "a [MASK]") == ["a", "[", "mask", "]"]  # text, not the mask token
  assert uncased.decode(uncased.encode("It's a test , isn't it?")) == "it's a test, isn't it?"
  assert uncased.decode([2, *uncased.encode("unaffable"), 3, 0]) == "unaffable"
  assert uncased.piece_text(uncased.piece_id("##s")) == "s"
  assert uncased.piece_text(uncased.piece_id("the")) == " the"


def test_t5_ids_and_sentinels(toks, tmp_path):
  tok = toks["t5"]
  sp_size = tok.vocab_size - EXTRA_IDS
  assert (tok.pad_id, tok.eos_id, tok.unk_id, tok.bos_id) == (0, 1, 2, -1)
  assert tok.piece_id("<extra_id_0>") == tok.vocab_size - 1
  assert tok.piece_id("<extra_id_99>") == sp_size
  assert [tok.sentinel_id(i) for i in range(3)] == [tok.vocab_size - 1 - i for i in range(3)]
  assert tok.sentinel_id(100) == tok.vocab_size - 101  # past the extra ids: T5's count goes on
  assert all(tok.is_special(i) for i in range(sp_size, tok.vocab_size))
  assert tok.id_to_piece(tok.vocab_size - 1) == "<extra_id_0>"
  ids = tok.encode("The quick brown fox.")
  assert tok.decode([*ids[:2], tok.sentinel_id(0), *ids[2:], 1]) == "The quick brown fox."
  config = tmp_path / "t5_10"
  config.mkdir()
  (config / "spiece.model").write_bytes(tok.__getstate__()["files"]["spiece.model"])
  (config / "tokenizer_config.json").write_text(json.dumps({"extra_ids": 10}))
  assert load_tokenizer(str(config)).vocab_size == sp_size + 10


def test_native_sentencepiece_sentinels(tokenizer):
  assert [tokenizer.sentinel_id(i) for i in range(3)] == [511, 510, 509]
  tok = SentencePieceTokenizer(train_spm(CORPUS,
                                         user_defined_symbols=["<extra_id_0>", "<extra_id_1>"]))
  assert tok.sentinel_id(0) == tok.piece_id("<extra_id_0>") < 10
  assert tok.sentinel_id(1) == tok.piece_id("<extra_id_1>")
  assert tok.sentinel_id(2) == tok.vocab_size - 3


def test_span_corruption_uses_the_t5_sentinels(toks):
  tok = toks["t5"]
  objective = SpanCorruption(tok, 64, target_len=0, noise_density=0.15,
                             mean_noise_span_length=3.0, seed=0)
  tokens = np.asarray(tok.encode(PROSE * 3), np.int32)
  examples, _ = objective.generate(tokens, objective.initial_carry())
  for example in examples:
    inputs = example["encoder_inputs"].tolist()
    sentinels = [tok.id_to_piece(i) for i in inputs if i >= tok.vocab_size - EXTRA_IDS]
    assert sentinels == [f"<extra_id_{k}>" for k in range(len(sentinels))] and sentinels
    assert inputs[-1] == example["decoder_targets"][-1] == tok.eos_id


@pytest.mark.parametrize("name", ["gpt2", "bert", "t5"])
def test_pickles_as_its_files(dirs, toks, name, tmp_path):
  tok = toks[name]
  clone = pickle.loads(pickle.dumps(tok))
  assert clone.encode(PROSE) == tok.encode(PROSE) and clone.vocab_size == tok.vocab_size
  assert all(isinstance(v, bytes) for v in tok.__getstate__()["files"].values())
  tok.save(str(tmp_path / "copy"))
  again = load_tokenizer(str(tmp_path / "copy"))
  assert type(again) is type(tok) and again.encode(PROSE) == tok.encode(PROSE)
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def test_bad_directories_say_what_to_change(tmp_path, dirs):
  def fails(files, match):
    directory = tmp_path / f"d{len(os.listdir(tmp_path))}"
    directory.mkdir()
    for name, content in files.items():
      (directory / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=match):
      load_tokenizer(str(directory))

  gpt2 = {n: open(os.path.join(dirs["gpt2"], n), "rb").read() for n in ("vocab.json", "merges.txt")}
  vocab = json.loads(gpt2["vocab.json"])
  fails({"config.json": "{}"}, "has none of vocab.json \\+ merges.txt .* spiece.model")
  fails({"tokenizer.json": "{}"}, "tokenizer.json alone is not read")
  fails({"vocab.json": gpt2["vocab.json"]}, "has vocab.json but not merges.txt")
  fails({**gpt2, "vocab.json": "{not json"}, "vocab.json is not valid JSON")
  fails({**gpt2, "vocab.json": "[1, 2]"}, "holds a list, not a JSON object")
  fails({**gpt2, "vocab.json": json.dumps({**vocab, "x": "7"})}, "maps 'x' to '7'")
  fails({**gpt2, "vocab.json": json.dumps({"a": 0, "<|endoftext|>": 1})}, "lacks 255 of the 256")
  fails({**gpt2, "merges.txt": "#version: 0.2\na b c\n"}, "line 2 is 'a b c', not two tokens")
  fails({**gpt2, "merges.txt": "Ġ zq\n"}, "has no 'zq': the two files do not belong together")
  no_eot = {k: v for k, v in vocab.items() if k != "<|endoftext|>"}
  fails({**gpt2, "vocab.json": json.dumps(no_eot)}, "no end-of-sequence token")
  fails({**gpt2, "tokenizer_config.json": "{\"added_tokens_decoder\": {\"1\": 5}}"},
        "added_tokens_decoder is not")
  fails({"vocab.txt": "[PAD]\n[SEP]\nhello\n"}, "has no unknown token '\\[UNK\\]'")
  fails({"vocab.txt": ""}, "vocab.txt is empty")
  fails({"vocab.txt": b"\xff\xfe"}, "vocab.txt is not UTF-8")
  fails({"spiece.model": "junk"}, "spiece.model is not a sentencepiece model")
  t5 = open(os.path.join(dirs["t5"], "spiece.model"), "rb").read()
  fails({"spiece.model": t5, "tokenizer_config.json": "{\"extra_ids\": -1}"}, "extra_ids is -1")


def test_runs_load_a_directory_with_a_padded_model_vocabulary(dirs, toks, make_config, tmp_path,
                                                             jsonl_files):
  tok = toks["t5"]
  config = make_config(source="files", train_files=jsonl_files[0], objective="span_corruption")
  config.tokenizer.path = dirs["t5"]
  config.model.vocab_size = tok.vocab_size + 28  # as HF's T5: 32100 pieces, 32128 embeddings
  assert load_or_train_tokenizer(config, str(tmp_path)).vocab_size == tok.vocab_size
  batch = next(iter(objectives.dataset(config, tok, "train")))
  assert batch["encoder_inputs"].max() < tok.vocab_size
  config.model.vocab_size = tok.vocab_size - 1
  with pytest.raises(DataError, match=f"set model.vocab_size={tok.vocab_size} or more"):
    load_or_train_tokenizer(config, str(tmp_path))
  # A fine-tuning run finds a converted run's tokenizer directory.
  run = tmp_path / "converted"
  (run / "checkpoints" / "7").mkdir(parents=True)
  config.model.vocab_size = tok.vocab_size + 28
  config_lib.save_config(config, str(run / "config.json"))
  assert resolve_init_from(str(run / "checkpoints" / "7")).tokenizer_path == dirs["t5"]
  config.tokenizer.path = str(tmp_path / "gone")
  config_lib.save_config(config, str(run / "config.json"))
  with pytest.raises(ConfigError, match="has no tokenizer at"):
    resolve_init_from(str(run / "checkpoints" / "7"))


def test_cli_encodes_with_a_directory(dirs, toks, capsys):
  assert tokenizer_cli.main(["encode", "--model", dirs["bert"], "Hello world"]) == 0
  assert capsys.readouterr().out.split() == [str(i) for i in toks["bert"].encode("Hello world")]


def test_mlm_rows_with_bert_wordpiece(toks):
  tok = toks["bert"]
  objective = MaskedLM(tok, 64, mask_rate=0.15, whole_word_masking=True,
                       next_sentence_prediction=True, seed=0)
  cls, sep, mask = (tok.piece_id(p) for p in ("[CLS]", "[SEP]", "[MASK]"))
  docs = [np.asarray(tok.encode(PROSE + f" Document {i} tokenization."), np.int32)
          for i in range(6)]
  # Sentences end at ".", "!" and "?": the first document's first segment is its first sentence.
  first = objective.segments(docs[0])[0]
  assert tok.decode(first) == "the quick brown fox jumps over the lazy dog."
  carry, rows, masked = objective.initial_carry(), [], []
  for d in docs:
    new, carry = objective.generate(d, carry)
    rows += new
  for row in rows:
    n = int(row["segment_ids"].sum())
    original = np.where(row["weights"] > 0, row["targets"], row["inputs"])[:n]
    seps = np.flatnonzero(original == sep)
    assert original[0] == cls and len(seps) == 2 and seps[1] == n - 1  # [CLS] A [SEP] B [SEP]
    assert (row["token_types"][:n] == (np.arange(n) > seps[0])).all()
    selected = np.flatnonzero(row["weights"])
    masked += (row["inputs"][selected] == mask).tolist()
    for p in selected:  # whole words: a "##" piece is chosen with the piece before it
      if tok.id_to_piece(int(original[p])).startswith("##") and p - 1 not in (0, seps[0]):
        assert p - 1 in selected
  assert 0.6 < np.mean(masked) < 0.95  # 80 % become [MASK]


FT_LABELS = LabelVocab(["neg", "pos"])
PAIR = {"text": "The quick brown fox.", "text_pair": "A lazy dog!", "label": "pos"}


@pytest.mark.parametrize("name,family", [("bert", "encoder"), ("gpt2", "decoder"),
                                         ("t5", "encoder_decoder")])
def test_finetune_rows_with_each_tokenizer(toks, name, family):
  tok = toks[name]
  a, b = tok.encode(PAIR["text"]), tok.encode(PAIR["text_pair"])
  row = tasks.get("classification").encode(PAIR, family=families.get(family), tokenizer=tok,
                                           labels=FT_LABELS, max_len=32, target_len=8)
  prefix = "encoder_" if family == "encoder_decoder" else ""
  real = row[f"{prefix}inputs"][row[f"{prefix}segment_ids"] > 0].tolist()
  eos = tok.eos_id
  if family == "encoder":  # BERT: [CLS] a [SEP] b [SEP], [SEP] being eos
    assert real == [tok.piece_id("[CLS]"), *a, eos, *b, eos]
  elif family == "decoder":  # GPT-2: <|endoftext|> as bos, separator and eos
    assert real == [eos, *a, eos, *b, eos]
  else:  # T5: a </s> b </s>, as HF's T5Tokenizer pairs
    assert real == [*a, eos, *b, eos]
  config = finetune_config()
  config.train.batch_size = 2
  config.task.update(dict(kind="classification", max_len=32, target_len=8))
  batch = next(iter(tasks.get("classification").dataset(
      config, tok, FT_LABELS, [PAIR] * 3, family=families.get(family), split="train")))
  assert batch[f"{prefix}inputs"].shape == (2, 32) and batch["label"].tolist() == [1, 1]
  if family != "encoder":  # generation targets end with eos
    kind_row = tasks.get("seq2seq").encode({"text": "x y", "target": "the dog"},
                                           family=families.get(family), tokenizer=tok,
                                           labels=None, max_len=16, target_len=8)
    key = "targets" if family == "decoder" else "decoder_targets"
    weights = kind_row["weights" if family == "decoder" else "decoder_weights"]
    assert kind_row[key][weights > 0].tolist() == [*tok.encode("the dog"), eos]


@pytest.mark.extra("hf")
def test_wordpiece_offsets_match_bert_tokenizer_fast(dirs, toks):
  """encode_offsets gives encode's ids and BertTokenizerFast's offset_mapping (what extractive
  question answering cuts answers with), [UNK] words and accents stripped included."""
  import transformers  # pylint: disable=g-import-not-at-top
  fast = transformers.BertTokenizerFast.from_pretrained(dirs["bert"])
  for text in TEXTS + PROSE.splitlines():
    ids, offsets = toks["bert"].encode_offsets(text)
    assert ids == toks["bert"].encode(text), text
    reference = fast(text, add_special_tokens=False, return_offsets_mapping=True)
    assert ids == reference["input_ids"], text
    assert offsets == [tuple(o) for o in reference["offset_mapping"]], text


@pytest.mark.parametrize("name", ["bert", "bert_cased", "t5", "native"])
def test_offsets_cut_each_piece_from_the_text(toks, name, tokenizer):
  """Every tokenizer that has offsets gives encode's ids, and spans that read as the piece (a
  WordPiece one normalised: lower case, accents stripped; sentencepiece's without the leading
  space it trims, T5's on ASCII text), in order."""
  tok = tokenizer if name == "native" else toks[name]
  for text in TEXTS + ["e\u0301 decomposed", "Ångström's café"]:
    ids, offsets = tok.encode_offsets(text)
    assert ids == tok.encode(text) and len(offsets) == len(ids), text
    assert all(a <= b for a, b in offsets) and offsets == sorted(offsets), text
    for i, (a, b) in zip(ids, offsets):
      if tok.is_special(i) or a == b:  # [UNK]; a character's leading byte pieces
        continue
      piece = tok.piece_text(i)
      if name.startswith("bert"):
        norm = hf_tokenizers._strip_accents(text[a:b].lower()) if name == "bert" else text[a:b]
        assert unicodedata.normalize("NFC", norm) == unicodedata.normalize("NFC", piece.strip())
      elif name == "t5":  # NFKC (which expands some characters), whitespace made spaces
        assert not text.isascii() or text[a:b].split() == piece.split(), (text, piece)
      else:
        assert text[a:b] == (piece.lstrip() or piece) or piece.startswith("<0x"), (text, piece)
  with pytest.raises(DataError, match="no character offsets"):
    toks["gpt2"].encode_offsets("x")
