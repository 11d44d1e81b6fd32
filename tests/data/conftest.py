"""Shared fixtures: a small tokenizer trained once, tiny configs and document files."""

import json

import pytest

from roots_jax.config import base_config
from roots_jax.data import sources
from roots_jax.data.tokenizer import Tokenizer, train_tokenizer

VOCAB_SIZE = 512


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
  """BPE on 300 KB of the built-in corpus: about a second, and real code to learn from."""
  docs = sources.DocumentStream(sources.BuiltinSource("train", 0.02), repeat=False, seed=0)
  return Tokenizer(train_tokenizer(docs, vocab_size=VOCAB_SIZE, model_type="bpe",
                                   max_bytes=300_000))


@pytest.fixture
def make_config():
  """config(**data_fields): seq_len 32, global batch 4, the test tokenizer's vocabulary."""

  def make(**data):
    config = base_config()
    config.model.vocab_size = VOCAB_SIZE
    config.train.batch_size = 4
    config.data.update(dict(seq_len=32, shuffle_window=64, prefetch=0))
    config.data.update(data)
    return config

  return make


def documents(n: int, tag: str = "") -> list[str]:
  """n distinct documents from a few tokens to several 32-token windows long."""
  words = ["alpha", "beta", "gamma", "def", "return", "(x)", "é", "\t", "42", "\n"]
  return [f"doc{tag}{i}: " + " ".join(words[(i * j) % len(words)] for j in range(i * 7 % 60 + 1))
          for i in range(n)]


@pytest.fixture
def jsonl_files(tmp_path):
  """Three JSONL files of 20 documents each; returns (glob, all documents in file order)."""
  docs = []
  for k in range(3):
    part = documents(20, tag=f"f{k}-")
    with open(tmp_path / f"part{k}.jsonl", "w", encoding="utf-8") as f:
      f.writelines(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(part))
    docs += part
  return str(tmp_path / "part*.jsonl"), docs
