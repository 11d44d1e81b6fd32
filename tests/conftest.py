"""Test setup: 8 simulated CPU devices, so sharding is exercised for real."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import json
import random
import subprocess
import sys

import pytest

_WORDS = ("the model data token layer train loss step batch mesh shard device value key query "
          "attention head norm weight bias grad update learn rate decay warm cosine scale").split()


def _document(rng: random.Random) -> str:
  sentences = []
  for _ in range(rng.randint(3, 12)):
    words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 12))]
    sentences.append(" ".join(words).capitalize() + ".")
  return " ".join(sentences)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
  """Small JSONL train/validation files and a sentencepiece model trained on them (vocab 512)."""
  root = tmp_path_factory.mktemp("corpus")
  rng = random.Random(0)
  for name, count in (("train.jsonl", 600), ("val.jsonl", 60)):
    with open(root / name, "w") as f:
      for _ in range(count):
        f.write(json.dumps({"text": _document(rng)}) + "\n")
  subprocess.run([sys.executable, "-m", "roots_jax.tokenizer", "train", "--input",
                  str(root / "train.jsonl"), "--vocab_size", "512", "--output",
                  str(root / "spm.model")], check=True, capture_output=True)
  return root


def tiny_overrides(corpus, **extra) -> list[str]:
  """A 2-layer, 64-wide GPT on the corpus fixture; `extra` adds `section.key=value` overrides."""
  values = {
      "model.vocab_size": 512, "model.num_layers": 2, "model.embed_dim": 64, "model.num_heads": 4,
      "model.mlp_dim": 128, "model.max_len": 64,
      "tokenizer.path": corpus / "spm.model",
      "data.source": "files", "data.train_files": corpus / "train.jsonl",
      "data.eval_files": corpus / "val.jsonl", "data.seq_len": 32, "data.shuffle_window": 64,
      "train.batch_size": 16, "train.steps": 10, "train.log_every": 1, "train.eval_every": 1000,
      "train.eval_batches": 2, "train.checkpoint_every": 1000,
      "optimizer.learning_rate": 3e-3, "optimizer.warmup_steps": 2,
  }
  values.update({k.replace("__", "."): v for k, v in extra.items()})
  return [f"{k}={v}" for k, v in values.items()]
