"""The sentencepiece tokenizer: exact round trips, reserved ids, caching, errors and the CLI."""

import os
import pickle
import subprocess
import sys
import threading

import pytest

from roots_jax.data import load_tokenizer, sentencepiece, sources
from roots_jax.data.sentencepiece import SentencePieceTokenizer
from roots_jax.data.tokenizers import write_atomically
from roots_jax.errors import DataError
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
  assert os.listdir(tmp_path / "tokenizer") == ["spm.model"]  # no temporary file left

  def fail(*args, **kwargs):
    raise AssertionError("retrained")

  monkeypatch.setattr(pretrain, "train_tokenizer", fail)
  again = load_or_train_tokenizer(config, str(tmp_path))
  assert again.encode(CODE) == tok.encode(CODE)
  config.model.vocab_size = 1024
  with pytest.raises(DataError, match="has 512 pieces but model.vocab_size is 1024"):
    load_or_train_tokenizer(config, str(tmp_path))


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
                    "bpe", "--output", str(model))
  assert trained.returncode == 0, trained.stderr
  tok = load_tokenizer(str(model))
  assert tok.vocab_size == 300
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
