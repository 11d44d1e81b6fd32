"""Helpers for tiny training runs on the `corpus` fixture (see conftest.py)."""

import json
import os


def read_metrics(workdir, split: str = "train") -> dict:
  """step -> metrics row of `split`; a step logged twice (replayed after a resume) keeps its
  last row."""
  rows = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      row = json.loads(line)
      if row["split"] == split:
        rows[row["step"]] = row
  return rows


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
