"""Helpers for tiny training and fine-tuning runs on the `corpus` and `task_files` fixtures
(see conftest.py)."""

import contextlib
import json
import logging
import os

from roots_jax import config as config_lib


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


@contextlib.contextmanager
def log_messages(level=logging.WARNING):
  """The roots_jax logger's messages (whether or not a CLI test made it stop propagating)."""
  records = []
  handler = logging.Handler(level)
  handler.emit = lambda record: records.append(record.getMessage())
  logger = logging.getLogger("roots_jax")
  previous = logger.level
  logger.addHandler(handler)
  logger.setLevel(level)
  try:
    yield records
  finally:
    logger.removeHandler(handler)
    logger.setLevel(previous)


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



def tiny_finetune_args(kind, init_from, files, **extra) -> tuple[str, list[str]]:
  """(config file, overrides) of a fine-tuning run of `kind` on the task_files fixture: 4 steps
  of batch 8; `extra` adds `section__key=value` overrides."""
  spec = "configs/finetune/summary.py" if kind == "seq2seq" else "configs/finetune/package.py"
  train_file, validation_file, test_file = files[kind]
  values = {
      "init_from": init_from, "task.kind": kind, "task.source": "files",
      "task.train_files": train_file, "task.validation_files": validation_file,
      "task.test_files": test_file, "task.max_len": 24, "task.target_len": 8,
      "train.batch_size": 8, "train.steps": 4, "train.log_every": 1, "train.eval_every": 2,
      "train.checkpoint_every": 2, "optimizer.warmup_steps": 1, "optimizer.learning_rate": 1e-3,
  }
  values.update({k.replace("__", "."): v for k, v in extra.items()})
  return spec, [f"{k}={v}" for k, v in values.items()]


def tiny_finetune_config(kind, init_from, files, **extra):
  return config_lib.load_config(*tiny_finetune_args(kind, init_from, files, **extra))
