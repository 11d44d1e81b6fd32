"""A run directory: where it is, its config (and so its kind), its tokenizer and its checkpoints.

  WORKDIR/config.json          the resolved config; its `kind` says what the run is
  WORKDIR/tokenizer/           the run's own copy of its tokenizer (spm.model or HF files)
  WORKDIR/checkpoints/<step>/  train state + data position (a converted run: parameters only)
  WORKDIR/best/<step>/         a fine-tuning run's best state by its validation metric
  WORKDIR/metrics.jsonl, tensorboard/, labels.json (classification), results.json (evaluate)
"""

import contextlib
import dataclasses
import os
import shutil

import jax
import ml_collections
import orbax.checkpoint as ocp

from roots_jax import config as config_lib
from roots_jax.data import load_tokenizer
from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.errors import CheckpointError, ConfigError, DataError, RootsError
from roots_jax.models.config import RUNTIME_FIELDS
from roots_jax.training import checkpoints


def check_workdir(workdir: str) -> None:
  """A run's directory is written with file I/O, on every host: a URL would become a local
  directory named like it on each of them, and the run would be lost with the machines. A file
  where the directory (or one above it) should be is a ConfigError too."""
  if "://" in workdir:
    raise ConfigError(f"--workdir {workdir} is a URL; give a path that every process sees, on a "
                      "shared file system (NFS, Lustre, a mounted bucket)")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir {workdir} is a file, not a directory; give a new directory or "
                      "a run's")
  parent = next(p for p in _ancestors(workdir) if os.path.exists(p))
  if not os.path.isdir(parent):
    raise ConfigError(f"--workdir {workdir}: {parent} is a file, not a directory")


def _ancestors(path: str) -> list[str]:
  """`path` and the directories above it, innermost first."""
  chain = [os.path.abspath(os.path.expanduser(path))]
  while os.path.dirname(chain[-1]) != chain[-1]:
    chain.append(os.path.dirname(chain[-1]))
  return chain


@contextlib.contextmanager
def removed_on_error(workdir: str):
  """Removes the directories a run created for `workdir` when the run fails with a user error
  before it has trained (no checkpoint, no metrics): a mistake leaves no half-made run behind.
  A workdir that existed is never touched."""
  created = [p for p in _ancestors(workdir) if not os.path.exists(p)]
  try:
    yield
  except RootsError:
    if created and jax.process_index() == 0 and not _has_trained(workdir):
      shutil.rmtree(created[-1], ignore_errors=True)
    raise


def _has_trained(workdir: str) -> bool:
  """Whether the run in `workdir` has written metrics or a checkpoint."""
  saved = os.path.join(workdir, "checkpoints")
  return (os.path.exists(os.path.join(workdir, "metrics.jsonl"))
          or (os.path.isdir(saved) and bool(os.listdir(saved))))


def split_checkpoint(path: str) -> tuple[str, int | None]:
  """(run directory, step) of one of a run's checkpoints/<step> directories; (path, None) of
  anything else."""
  parent, name = os.path.split(os.path.abspath(os.path.expanduser(path)))
  if os.path.basename(parent) == "checkpoints" and name.isdigit():
    return os.path.dirname(parent), int(name)
  return os.path.abspath(os.path.expanduser(path)), None


def config_path(workdir: str) -> str:
  return os.path.join(workdir, "config.json")


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config.json, in its kind's schema; ConfigError when there is none."""
  path = config_path(workdir)
  if not os.path.isfile(path):
    raise ConfigError(f"{workdir} is not a roots_jax run (no config.json)")
  return config_lib.read_config(path)


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  config_lib.save_config(config, config_path(workdir))


# Checkpoints.

def checkpoint_manager(workdir: str, *, best: bool = False) -> ocp.CheckpointManager:
  """A read-only manager of the run's checkpoints/ (or best/)."""
  if best:
    return checkpoints.make_manager(workdir, keep=1, subdir="best", items=("state",),
                                    read_only=True)
  return checkpoints.make_manager(workdir, keep=1, read_only=True)


def find_checkpoint(workdir: str, which: str):
  """(manager, step) of `which`: best (the run's best/ checkpoint, a fine-tuning run's, else the
  newest), latest (the newest) or a step number in checkpoints/."""
  best = checkpoint_manager(workdir, best=True)
  latest = checkpoint_manager(workdir)
  if which == "best" and best.latest_step() is not None:
    return best, best.latest_step()
  if which in ("best", "latest"):
    if latest.latest_step() is None:
      raise CheckpointError(f"{workdir} has no checkpoint to evaluate")
    return latest, latest.latest_step()
  if not which.isdigit() or int(which) not in latest.all_steps():
    raise CheckpointError(f"--checkpoint {which!r}: use best, latest or one of the steps "
                          f"{sorted(latest.all_steps())} in {workdir}/checkpoints")
  return latest, int(which)


# The tokenizer.

def tokenizer_path(workdir: str, config: ml_collections.ConfigDict) -> str:
  """A run's tokenizer: a sentencepiece model, or a converted checkpoint's directory of Hugging
  Face files. tokenizer.path as configured, else (unset, or the run was moved) the run's own copy
  in WORKDIR/tokenizer."""
  configured = config.tokenizer.path
  if configured and (os.path.isfile(configured) or (os.path.isdir(configured)
                                                    and os.listdir(configured))):
    return configured
  copy = run_copy(workdir)
  if copy is None:
    missing = configured or os.path.join(workdir, "tokenizer", "spm.model")
    raise ConfigError(f"the run {workdir} has no tokenizer at {missing}; copy the tokenizer it "
                      "was trained with there")
  return copy


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
    own = load_tokenizer(copy)
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


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """The run and checkpoint a run starts from (init_from): a fine-tuning run's backbone, a
  continued pretraining run's parameters."""
  workdir: str
  step: int
  config: ml_collections.ConfigDict  # its resolved config
  tokenizer_path: str


def resolve_init_from(init_from: str) -> Pretrained:
  """The run and checkpoint step that init_from names: a pretraining (or converted) run's
  directory (its newest checkpoint) or one of its checkpoints/<step> directories."""
  if not init_from:
    raise ConfigError("set init_from to a pretraining workdir or one of its checkpoints/<step> "
                      "directories (finetune.from_scratch=True re-initialises its weights)")
  if not os.path.isdir(os.path.expanduser(init_from)):
    raise ConfigError(f"init_from {init_from!r} does not exist")
  workdir, step = split_checkpoint(init_from)
  if not os.path.isfile(config_path(workdir)):
    raise ConfigError(f"init_from {init_from!r} is not a roots_jax run: "
                      f"{config_path(workdir)} is missing")
  config = read_config(workdir)
  if "task" in config:
    raise ConfigError(f"init_from {init_from!r} is a fine-tuned model; give a pretraining run")
  if step is None:
    step = checkpoint_manager(workdir).latest_step()
    if step is None:
      raise ConfigError(f"init_from {init_from!r} has no complete checkpoint in "
                        f"{os.path.join(workdir, 'checkpoints')}")
  return Pretrained(workdir, step, config, tokenizer_path(workdir, config))


def merge_model(config: ml_collections.ConfigDict, pretrained: Pretrained) -> None:
  """Fills the fine-tune config's unset model fields from the checkpoint's; a field set to a
  different value is an error naming each difference (the run-time fields may differ)."""
  differences = []
  with config.unlocked():
    for key, value in pretrained.config.model.items():
      mine = config.model[key]
      if mine is None:
        config.model[key] = value
      elif mine != value and key not in RUNTIME_FIELDS:
        differences.append(f"model.{key} is {mine!r} here but {value!r} in the checkpoint")
  if differences:
    raise ConfigError(f"the config does not match init_from {pretrained.workdir}: "
                      f"{'; '.join(differences)}; drop those settings, or set them to the "
                      "checkpoint's values")
