"""Distilled runs (kind "distill"): a student trained by runs.distill, used as the kind of run it
is: a pretraining run's model (a student of a pretraining objective) or a fine-tuned one's (a
student of a fine-tuned teacher's task, its config a fine-tuning config's)."""

import ml_collections

from roots_jax.runs import assemble, finetune, pretrain

# A distilled run is used from its newest checkpoint, or a task student's best.
DEFAULT_CHECKPOINT = "best"


def student_kind(config: ml_collections.ConfigDict):
  """The module of the kind of run a student is: finetune with a task, else pretrain."""
  return finetune if "task" in config else pretrain


def model_for(config: ml_collections.ConfigDict, workdir: str) -> assemble.RunModel:
  return student_kind(config).model_for(config, workdir)


def eval_split(config: ml_collections.ConfigDict, split: str) -> tuple[str, str]:
  return student_kind(config).eval_split(config, split)


def evaluate(loaded, split: str) -> tuple[dict, dict]:
  return student_kind(loaded.config).evaluate(loaded, split)
