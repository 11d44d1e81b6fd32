"""Using a run: its model, tokenizer and parameters restored for inference (parameters only: no
optimizer state, no train step), on a mesh of this machine's devices.

  loaded = load("/tmp/run")                  # a run, one of its checkpoints/<step>, an HF dir
  with loaded.context():
    logits = loaded.model.apply({"params": loaded.params}, tokens)

What a run's model is depends on its kind, which its config.json records: KINDS maps each to the
module of that kind of run, which gives `model_for(config, workdir)` and `DEFAULT_CHECKPOINT`
(and, for runs.evaluation, `eval_split` and `evaluate`).
"""

import contextlib
import dataclasses
import os
from typing import Any, Callable

import jax
import ml_collections
from flax import linen as nn

from roots_jax import evals, tasks
from roots_jax.data import load_tokenizer
from roots_jax.data.supervised import LabelVocab
from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.errors import ConfigError
from roots_jax.models import families
from roots_jax.models.config import ModelConfig
from roots_jax.runs import assemble, convert, finetune, pretrain, workdir as workdir_lib
from roots_jax.training import checkpoints, partitioning
from roots_jax.training.losses import Loss

# Run kind -> its module. A converted run holds a pretraining run's model (parameters only).
KINDS = {"pretrain": pretrain, "converted": pretrain, "finetune": finetune}


@dataclasses.dataclass
class Loaded:
  """A run's model and parameters on a mesh, with what using it needs."""
  workdir: str
  step: int
  config: ml_collections.ConfigDict
  tokenizer: BaseTokenizer
  model_config: ModelConfig
  model: nn.Module
  loss: Loss
  params: Any
  labels: LabelVocab | None
  examples: Callable | None          # split -> examples (a fine-tuning run's task data)
  mesh: jax.sharding.Mesh
  rules: tuple
  param_sharding: Any
  batch_sharding: jax.sharding.NamedSharding

  @property
  def family(self) -> families.Family:
    return families.get(self.model_config.family)

  @property
  def task(self) -> tasks.TaskKind | None:
    """A fine-tuning run's task kind; None for a pretrained (or converted) model."""
    return tasks.get(self.config.task.kind) if self.config.kind == "finetune" else None

  @property
  def scorer(self) -> evals.Scorer:
    return evals.Scorer(self.model, self.loss, self.param_sharding, self.batch_sharding)

  @contextlib.contextmanager
  def context(self):
    """The mesh and the logical-axis rules every trace and call runs under."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      yield


def resolve(path: str, checkpoint: int | str | None = None) -> tuple[str, str | None]:
  """(run directory, which checkpoint: None for the run's default) of a roots_jax run
  directory, one of its checkpoints/<step> directories, or a Hugging Face model directory
  (converted once into a run: runs.convert.converted_run)."""
  path = os.path.abspath(os.path.expanduser(os.fspath(path)))
  if not os.path.isdir(path):
    raise ConfigError(f"{path} does not exist: give a roots_jax run directory, one of its "
                      "checkpoints/<step> directories or a Hugging Face model directory")
  workdir, step = workdir_lib.split_checkpoint(path)
  which = None if checkpoint is None else str(checkpoint)
  if step is not None:
    if which is not None and which != str(step):
      raise ConfigError(f"{path} is checkpoint {step}, but checkpoint={checkpoint!r} was given")
    which = str(step)
  if not os.path.isfile(workdir_lib.config_path(workdir)):
    raise ConfigError(f"{workdir} is neither a roots_jax run nor a Hugging Face model: it has "
                      "no config.json")
  if convert.is_hf_model(workdir):
    if which not in (None, "latest", "0"):
      raise ConfigError(f"checkpoint={checkpoint!r}: a Hugging Face model has one set of weights")
    workdir = convert.converted_run(workdir)
  return workdir, which


def load(path: str, *, checkpoint: int | str | None = None) -> Loaded:
  """The run (or checkpoint, or Hugging Face model) at `path`, ready to use; `checkpoint`:
  "best", "latest" or a step number (default: the run kind's)."""
  workdir, which = resolve(path, checkpoint)
  config = workdir_lib.read_config(workdir)
  with config.unlocked():
    try:
      partitioning.mesh_shape(config, jax.device_count())
    except ConfigError:  # the run's mesh needs other devices: data-parallel over these
      config.mesh.shape = (-1, 1, 1)
  return load_run(workdir, config, which)


def load_run(workdir: str, config: ml_collections.ConfigDict, which: str | None = None) -> Loaded:
  """The run in `workdir` as `config` describes it (its own, or one with other data), from
  checkpoint `which` (None: the kind's default)."""
  kind = KINDS[config.kind]
  mesh, rules = partitioning.make_mesh(config), partitioning.logical_rules(config)
  tokenizer = load_tokenizer(workdir_lib.tokenizer_path(workdir, config))
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    m = kind.model_for(config, workdir)
    boxed = assemble.abstract_params(m.model, m.loss, m.init_batch, config.seed)
    param_sharding = partitioning.tree_shardings(boxed, mesh, rules)
    manager, step = workdir_lib.find_checkpoint(workdir, which or kind.DEFAULT_CHECKPOINT)
    try:
      params = checkpoints.restore_params(
          manager, step, checkpoints.abstract_like(assemble.unbox(boxed), param_sharding))
    finally:
      manager.close()
  return Loaded(workdir=workdir, step=step, config=config, tokenizer=tokenizer,
                model_config=m.model_config, model=m.model, loss=m.loss, params=params,
                labels=m.labels, examples=m.examples, mesh=mesh, rules=rules,
                param_sharding=param_sharding,
                batch_sharding=partitioning.data_sharding(mesh, rules))
