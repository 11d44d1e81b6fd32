"""Starting a fine-tuning run from a pretraining run: its config, tokenizer and parameters.

`init_from` names a pretraining workdir (its newest checkpoint) or one of its
`checkpoints/<step>` directories. Only the parameters are read (Orbax partial restore), straight
into the current mesh's shardings, so the fine-tuning mesh may differ from the pretraining one.
"""

import dataclasses
import os

import ml_collections

from roots_jax import config as config_lib
from roots_jax.data import tokenizer as tokenizer_lib
from roots_jax.errors import ConfigError
from roots_jax.training import checkpoints


@dataclasses.dataclass(frozen=True)
class Pretrained:
  workdir: str
  step: int
  config: ml_collections.ConfigDict  # the pretraining run's resolved config
  tokenizer_path: str


def resolve(init_from: str) -> Pretrained:
  """The run and checkpoint step that `init_from` names; errors say what is missing."""
  if not init_from:
    raise ConfigError("set init_from to a pretraining workdir or one of its checkpoints/<step> "
                      "directories (finetune.from_scratch=True re-initialises its weights)")
  path = os.path.abspath(os.path.expanduser(init_from))
  step = None
  if os.path.basename(os.path.dirname(path)) == "checkpoints" and os.path.basename(path).isdigit():
    workdir, step = os.path.dirname(os.path.dirname(path)), int(os.path.basename(path))
  else:
    workdir = path
  if not os.path.isdir(path):
    raise ConfigError(f"init_from {init_from!r} does not exist")
  config_path = os.path.join(workdir, "config.json")
  if not os.path.isfile(config_path):
    raise ConfigError(f"init_from {init_from!r} is not a roots_jax run: {config_path} is missing")
  config = config_lib.read_config(config_path)
  if "task" in config:
    raise ConfigError(f"init_from {init_from!r} is a fine-tuning run; give a pretraining run")
  if step is None:
    step = _manager(workdir).latest_step()
    if step is None:
      raise ConfigError(f"init_from {init_from!r} has no complete checkpoint in "
                        f"{os.path.join(workdir, 'checkpoints')}")
  return Pretrained(workdir, step, config, tokenizer_path(workdir, config))


def tokenizer_path(workdir: str, config: ml_collections.ConfigDict) -> str:
  """A run's tokenizer: a sentencepiece model, or a converted checkpoint's directory of Hugging
  Face files. tokenizer.path as configured, else (unset, or the run was moved) the run's own copy
  in WORKDIR/tokenizer."""
  configured = config.tokenizer.path
  if configured and (os.path.isfile(configured) or (os.path.isdir(configured)
                                                    and os.listdir(configured))):
    return configured
  copy = tokenizer_lib.run_copy(workdir)
  if copy is None:
    missing = configured or os.path.join(workdir, "tokenizer", "spm.model")
    raise ConfigError(f"the run {workdir} has no tokenizer at {missing}; copy the tokenizer it "
                      "was trained with there")
  return copy


def merge_model(config: ml_collections.ConfigDict, pretrained: Pretrained) -> None:
  """Fills the fine-tune config's unset model fields from the checkpoint's; a field set to a
  different value is an error naming each difference (the run-time fields may differ)."""
  differences = []
  with config.unlocked():
    for key, value in pretrained.config.model.items():
      mine = config.model[key]
      if mine is None:
        config.model[key] = value
      elif mine != value and key not in config_lib.RUNTIME_MODEL_KEYS:
        differences.append(f"model.{key} is {mine!r} here but {value!r} in the checkpoint")
  if differences:
    raise ConfigError(f"the config does not match init_from {pretrained.workdir}: "
                      f"{'; '.join(differences)}; drop those settings to use the checkpoint's")


def restore_params(pretrained: Pretrained, abstract_params):
  """The checkpoint's parameters, restored into `abstract_params` (ShapeDtypeStructs carrying
  shardings; a subset of the saved tree is fine, e.g. without the pretraining heads)."""
  return checkpoints.restore_params(_manager(pretrained.workdir), pretrained.step, abstract_params)


def _manager(workdir: str):
  return checkpoints.make_manager(workdir, keep=1, read_only=True)
