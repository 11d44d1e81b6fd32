"""Test setup: 8 simulated CPU devices, so sharding is exercised for real."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import json
import random
import subprocess
import sys

import pytest

def _vocabulary(rng: random.Random, size: int = 400) -> list[str]:
  syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
  return ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(size)]


def _document(rng: random.Random, words: list[str]) -> str:
  """Sentences of Zipf-distributed words: learnable structure for a few training steps."""
  weights = [1.0 / (rank + 1) for rank in range(len(words))]
  sentences = []
  for _ in range(rng.randint(3, 12)):
    sentence = rng.choices(words, weights, k=rng.randint(4, 12))
    sentences.append(" ".join(sentence).capitalize() + ".")
  return " ".join(sentences)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
  """Small JSONL train/validation files and a sentencepiece model trained on them (vocab 512)."""
  root = tmp_path_factory.mktemp("corpus")
  rng = random.Random(0)
  words = _vocabulary(rng)
  for name, count in (("train.jsonl", 600), ("val.jsonl", 60)):
    with open(root / name, "w") as f:
      for _ in range(count):
        f.write(json.dumps({"text": _document(rng, words)}) + "\n")
  subprocess.run([sys.executable, "-m", "roots_jax.tokenizer", "train", "--input",
                  str(root / "train.jsonl"), "--vocab_size", "512", "--output",
                  str(root / "spm.model")], check=True, capture_output=True)
  return root
