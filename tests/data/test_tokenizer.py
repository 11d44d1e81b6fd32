"""The sentencepiece tokenizer: exact round trips, reserved ids, caching, errors and the CLI."""

import os
import pickle
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

from roots_jax.data import load_tokenizer, sentencepiece, sources
from roots_jax.data.sentencepiece import SentencePieceTokenizer
from roots_jax.data.tokenizers import write_atomically
from roots_jax.errors import ConfigError, DataError
from roots_jax.objectives.span_corruption import SpanCorruption
from roots_jax.runs import pretrain
from roots_jax.runs.pretrain import load_or_train_tokenizer

CODE = ('def f(x):\n\t"""Docstring — ünïcödé ✓ 😀."""\n    return {"k": [1, 2]}  \r\n\n\n'
        '    # trailing spaces   \n\x0bdone 12345 [MASK]')


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_code_round_trips_exactly(model_type):
  docs = sources.DocumentStream(sources.BuiltinSource("train", 0.02), repeat=False, seed=1)
  tok = SentencePieceTokenizer(sentencepiece.train_tokenizer(
      docs, vocab_size=400, model_type=model_type, max_bytes=100_000))
  for text in (CODE, " leading space", "x" * 5000, ""):
    assert tok.decode(tok.encode(text)) == text
  assert tok.encode("\n") == [tok.piece_id("<0x0A>")]  # byte fallback, not <unk>
  assert tok.unk_id not in tok.encode(CODE)


def test_reserved_ids(tokenizer):
  assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2, 3)
  specials = [tokenizer.piece_id(p) for p in sentencepiece.SPECIAL_PIECES]
  assert len(set(specials)) == 3 and min(specials) > 3
  assert not set(specials) & set(tokenizer.encode("[CLS] a [SEP] b [MASK]"))
  with pytest.raises(DataError, match="no piece"):
    tokenizer.piece_id("[NOPE]")


def test_pickles_without_the_file(tokenizer):
  clone = pickle.loads(pickle.dumps(tokenizer))
  assert clone.encode(CODE) == tokenizer.encode(CODE) and clone.vocab_size == 512


def test_trained_once_into_workdir_then_reused(make_config, tmp_path, monkeypatch):
  config = make_config()
  config.tokenizer.train_max_bytes = 100_000
  config.tokenizer.model_type = "bpe"
  tok = load_or_train_tokenizer(config, str(tmp_path))
  assert tok.path == str(tmp_path / "tokenizer" / "spm.model") and tok.vocab_size == 512
  assert not tok.has_piece("<extra_id_0>")  # sentinels only for span corruption
  assert os.listdir(tmp_path / "tokenizer") == ["spm.model"]  # no temporary file left

  def fail(*args, **kwargs):
    raise AssertionError("retrained")

  monkeypatch.setattr(pretrain, "train_tokenizer", fail)
  again = load_or_train_tokenizer(config, str(tmp_path))
  assert again.encode(CODE) == tok.encode(CODE)
  config.model.vocab_size = 1024
  with pytest.raises(DataError, match="has 512 pieces but model.vocab_size is 1024"):
    load_or_train_tokenizer(config, str(tmp_path))


@pytest.fixture(scope="module")
def t5_tokenizer():
  """400 pieces, the top 20 of them sentinels."""
  docs = sources.DocumentStream(sources.BuiltinSource("train", 0.02), repeat=False, seed=1)
  return SentencePieceTokenizer(sentencepiece.train_tokenizer(
      docs, vocab_size=400, model_type="unigram", max_bytes=100_000, sentinels=20))


def test_sentinels_are_on_top_and_typed_in_prompts(t5_tokenizer, tokenizer):
  tok = t5_tokenizer
  assert tok.vocab_size == 400
  assert [tok.sentinel_id(i) for i in range(20)] == list(range(399, 379, -1))  # T5's order
  assert tok.id_to_piece(399) == "<extra_id_0>" and tok.id_to_piece(380) == "<extra_id_19>"
  prompt = "def f(<extra_id_0>):\n    return <extra_id_1>+<extra_id_0>"
  ids = tok.encode(prompt)
  assert ids.count(399) == 2 and ids.count(398) == 1
  assert tok.decode(ids) == prompt
  assert tok.decode([399, tok.eos_id, 398]) == "<extra_id_0><extra_id_1>"
  assert len(tok.encode("<extra_id_20>")) > 1  # not a sentinel: text
  plain = tokenizer.encode("<extra_id_0>")  # a tokenizer without sentinels: text as well
  assert len(plain) > 1 and tokenizer.vocab_size - 1 not in plain


def test_span_corruption_sentinels_decode_to_extra_ids(t5_tokenizer):
  tok = t5_tokenizer
  corruption = SpanCorruption(tok, 64, target_len=0, noise_density=0.15,
                              mean_noise_span_length=3.0, seed=0)
  tokens = np.asarray(tok.encode(CODE * 4), np.int32)[:corruption.tokens_length]
  example = corruption.corrupt(tokens, np.random.default_rng(0))
  inputs, targets = (tok.decode(example[k]) for k in ("encoder_inputs", "decoder_targets"))
  spans = re.findall(r"<extra_id_\d+>", inputs)
  assert len(spans) > 1 and spans == [f"<extra_id_{i}>" for i in range(len(spans))]
  assert re.findall(r"<extra_id_\d+>", targets) == spans and targets.startswith(spans[0])
  # More spans than the tokenizer has sentinels would reuse ordinary pieces.
  with pytest.raises(ConfigError, match="up to 28 spans, more than the tokenizer has sentinels"):
    SpanCorruption(tok, 512, target_len=0, noise_density=0.15, mean_noise_span_length=3.0,
                   seed=0)


def test_a_run_trains_t5_sentinels_for_span_corruption(make_config, tmp_path):
  config = make_config(objective="span_corruption")
  config.tokenizer.train_max_bytes = 100_000
  tok = load_or_train_tokenizer(config, str(tmp_path))
  assert tok.vocab_size == 512 and tok.sentinel_id(0) == 511 and tok.sentinel_id(99) == 412
  assert tok.id_to_piece(412) == "<extra_id_99>" and not tok.has_piece("<extra_id_100>")


def test_other_processes_wait_for_process_0(make_config, tokenizer, tmp_path):
  path = tmp_path / "tokenizer" / "spm.model"
  proto = tokenizer.__getstate__()["proto"]
  writer = threading.Timer(0.5, write_atomically, (str(path), proto))
  writer.start()
  tok = load_or_train_tokenizer(make_config(), str(tmp_path), process_index=1)
  writer.join()
  assert tok.vocab_size == 512


def test_tokenizer_path_errors(make_config, tmp_path, tokenizer):
  config = make_config()
  config.tokenizer.path = str(tmp_path / "missing.model")
  with pytest.raises(DataError, match="cannot read tokenizer .*missing.model"):
    load_or_train_tokenizer(config, str(tmp_path))
  for name, content in (("junk.model", b"not a model"), ("empty.model", b"")):
    (tmp_path / name).write_bytes(content)
    config.tokenizer.path = str(tmp_path / name)
    with pytest.raises(DataError, match="is not a sentencepiece model"):
      load_or_train_tokenizer(config, str(tmp_path))
  (tmp_path / "ok.model").write_bytes(tokenizer.__getstate__()["proto"])
  config.tokenizer.path = str(tmp_path / "ok.model")
  config.model.vocab_size = 8192
  with pytest.raises(DataError, match="set model.vocab_size=512"):
    load_or_train_tokenizer(config, str(tmp_path))


def test_too_little_text_for_the_vocabulary(tmp_path):
  with pytest.raises(DataError, match="lower the vocabulary size"):
    sentencepiece.train_tokenizer(["tiny text"], vocab_size=5000, model_type="unigram",
                                  max_bytes=1000)


def run_cli(*args):
  return subprocess.run([sys.executable, "-m", "roots_jax.tokenizer", *args],
                        capture_output=True, text=True, timeout=120)


def test_cli_train_and_encode(tmp_path):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("\n\n".join(f"paragraph {i}\nwith two lines {i * 7}" for i in range(400)))
  model = tmp_path / "m.model"
  trained = run_cli("train", "--input", str(corpus), "--vocab_size", "300", "--model_type",
                    "bpe", "--sentinels", "5", "--output", str(model))
  assert trained.returncode == 0, trained.stderr
  tok = load_tokenizer(str(model))
  assert tok.vocab_size == 300
  assert tok.id_to_piece(299) == "<extra_id_0>" and tok.id_to_piece(295) == "<extra_id_4>"
  encoded = run_cli("encode", "--model", str(model), "paragraph 7\nwith")
  assert encoded.returncode == 0, encoded.stderr
  assert [int(i) for i in encoded.stdout.split()] == tok.encode("paragraph 7\nwith")


def test_cli_user_errors_are_one_line_and_exit_2(tmp_path):
  for args in (("encode", "--model", str(tmp_path / "none.model"), "x"),
               ("train", "--input", str(tmp_path / "*.txt"), "--vocab_size", "300",
                "--output", str(tmp_path / "m.model"))):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_training_text_of_pairs_is_both_sides():
  lines = sentencepiece._lines(["doc\n\nline", ("in\nput", "target")], max_bytes=100)
  assert list(lines) == ["doc", "line", "in", "put", "target"]
