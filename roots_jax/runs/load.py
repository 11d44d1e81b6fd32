"""Using a run: its model, tokenizer and parameters restored for inference (parameters only: no
optimizer state, no train step), on a mesh of this machine's devices.

  loaded = load("/tmp/run")                  # a run, one of its checkpoints/<step>, an HF dir
  with loaded.context():
    logits = loaded.model.apply({"params": loaded.params}, tokens)
  save(loaded, loaded.params, "/tmp/copy")   # a run of its own that load reads

What a run's model is depends on its kind, which its config.json records: KINDS maps each to the
module of that kind of run, which gives `model_for(config, workdir)` and `DEFAULT_CHECKPOINT`
(and, for runs.evaluation, `eval_split` and `evaluate`).
"""

import contextlib
import dataclasses
import os
import shutil
from typing import Any, Callable

import jax
import ml_collections
from flax import linen as nn

from roots_jax import evals, tasks
from roots_jax.data import load_tokenizer
from roots_jax.data.supervised import SPLITS, LabelVocab
from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.errors import ConfigError, DataError
from roots_jax.models import families
from roots_jax.models.config import ModelConfig
from roots_jax.runs import (assemble, convert, distilled, finetune, lora, pretrain, quantized,
                            workdir as workdir_lib)
from roots_jax.training import checkpoints, partitioning
from roots_jax.training.losses import Loss

# Run kind -> its module. A converted run holds a pretraining run's model (parameters only), a
# distilled one a student of a pretraining objective or of a task.
KINDS = {"pretrain": pretrain, "converted": pretrain, "finetune": finetune, "distill": distilled,
         "quantized": quantized}


@dataclasses.dataclass
class Loaded:
  """A run's model and parameters on a mesh, with what using it needs."""
  workdir: str
  step: int
  config: ml_collections.ConfigDict
  tokenizer: BaseTokenizer | None    # None: the run has none (a Hugging Face model without one)
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
  no_tokenizer: str = ""             # why there is no tokenizer

  @property
  def family(self) -> families.Family:
    return families.get(self.model_config.family)

  @property
  def task(self) -> tasks.TaskKind | None:
    """A fine-tuned model's task kind; None for a pretrained (or converted) model."""
    return tasks.get(self.config.task.kind) if "task" in self.config else None

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


def config_here(workdir: str) -> ml_collections.ConfigDict:
  """The run's config, its mesh data-parallel over this machine's devices where the run's needs
  others."""
  config = workdir_lib.read_config(workdir)
  with config.unlocked():
    try:
      partitioning.mesh_shape(config, jax.device_count())
    except ConfigError:
      config.mesh.shape = (-1, 1, 1)
  return config


def load(path: str, *, checkpoint: int | str | None = None) -> Loaded:
  """The run (or checkpoint, or Hugging Face model) at `path`, ready to use; `checkpoint`:
  "best", "latest" or a step number (default: the run kind's). A run without a tokenizer loads
  with none (Loaded.no_tokenizer says why): its model still reads token ids."""
  workdir, which = resolve(path, checkpoint)
  loaded = load_run(workdir, config_here(workdir), which, needs_tokenizer=False)
  path = os.fspath(path)
  if loaded.no_tokenizer and workdir != workdir_lib.split_checkpoint(path)[0]:  # a Hugging Face
    loaded.no_tokenizer = (f"{os.path.abspath(os.path.expanduser(path))} has no tokenizer files: "
                           "add the model's (vocab.txt for BERT, vocab.json and merges.txt "
                           "for GPT-2, spiece.model for T5)")
  return loaded


def load_run(workdir: str, config: ml_collections.ConfigDict, which: str | None = None, *,
             needs_tokenizer: bool = True) -> Loaded:
  """The run in `workdir` as `config` describes it (its own, or one with other data), from
  checkpoint `which` (None: the kind's default); without its tokenizer an error unless not
  `needs_tokenizer`."""
  kind = KINDS[config.kind]
  mesh, rules = partitioning.make_mesh(config), partitioning.logical_rules(config)
  tokenizer, no_tokenizer = None, ""
  try:
    tokenizer = load_tokenizer(workdir_lib.tokenizer_path(workdir, config))
  except (ConfigError, DataError) as e:
    if needs_tokenizer:
      raise
    no_tokenizer = str(e)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    m = kind.model_for(config, workdir)
    boxed = assemble.abstract_params(m.model, m.loss, m.init_batch, config.seed)
    param_sharding = partitioning.tree_shardings(boxed, mesh, rules)
    manager, step = workdir_lib.find_checkpoint(workdir, which or kind.DEFAULT_CHECKPOINT)
    abstract = checkpoints.abstract_like(assemble.unbox(boxed), param_sharding)
    try:
      if lora.enabled(config):  # the adapters and a new head: the base is init_from's
        params = finetune.adapted_params(config, workdir, m, abstract, manager, step, mesh)
      else:
        params = checkpoints.restore_params(manager, step, abstract)
    finally:
      manager.close()
  return Loaded(workdir=workdir, step=step, config=config, tokenizer=tokenizer,
                model_config=m.model_config, model=m.model, loss=m.loss, params=params,
                labels=m.labels, examples=m.examples, mesh=mesh, rules=rules,
                param_sharding=param_sharding,
                batch_sharding=partitioning.data_sharding(mesh, rules), no_tokenizer=no_tokenizer)


def save(loaded: Loaded, params, directory: str,
         config: ml_collections.ConfigDict | None = None, *, changes: dict | None = None) -> None:
  """Writes `params` of the loaded run's model as a run in `directory` that `load` and the
  commands read: config.json (`config`, default the run's own: a pretrained model's as kind
  "converted", parameters only; a fine-tuned one's as "finetune", with labels.json and the task
  files kept inside its run), tokenizer/ and checkpoints/<step>. `changes` ({"section.key":
  value}) are set in its config (a pruned model's smaller model section). An earlier run there
  is replaced (only once the new one is written); any other non-empty directory is an error."""
  directory = check_save_directory(loaded, directory)
  if config is None:  # as written: load may have changed the mesh
    config = workdir_lib.read_config(loaded.workdir)
  if lora.enabled(config):
    raise ConfigError(f"{loaded.workdir} is an adapter run, whose checkpoints hold its adapters "
                      "only: merge them into a plain run first (python -m roots_jax.lora merge "
                      "--run RUN --out DIR) and use that")
  config = config.copy_and_resolve_references()
  tmp = f"{directory}.tmp-save"
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    os.makedirs(tmp)
    with config.unlocked():
      if config.kind == "pretrain":  # no optimizer or data state: it cannot be resumed
        config.kind = "converted"
      config.tokenizer.path = os.path.join(directory, "tokenizer")
      if loaded.tokenizer is None:
        os.makedirs(os.path.join(tmp, "tokenizer"))
      else:
        config.tokenizer.path = workdir_lib.run_copy_path(loaded.tokenizer, directory)
        workdir_lib.save_run_copy(loaded.tokenizer, tmp)
      if "task" in config:
        _keep_task_files(config, loaded.workdir, directory, tmp)
      for key, value in (changes or {}).items():
        section, name = key.split(".")
        config[section][name] = value
    if loaded.labels is not None:
      loaded.labels.save(os.path.join(tmp, "labels.json"))
    workdir_lib.write_config(config, tmp)
    convert.write_params(tmp, params, loaded.step)
    if os.path.isdir(directory):
      old = f"{directory}.old-save"
      shutil.rmtree(old, ignore_errors=True)
      os.replace(directory, old)
      os.replace(tmp, directory)
      shutil.rmtree(old)
    else:
      os.replace(tmp, directory)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def check_save_directory(loaded: Loaded, directory: str) -> str:
  """The absolute path of `directory`, where `save` may write the loaded model: not its own run,
  and new, empty or an earlier run (ConfigError otherwise)."""
  directory = os.path.abspath(os.path.expanduser(os.fspath(directory)))
  if os.path.realpath(directory) == os.path.realpath(loaded.workdir):
    raise ConfigError(f"{directory} is this model's own run: save it to another directory")
  if os.path.exists(directory) and not (os.path.isdir(directory) and (
      not os.listdir(directory) or _is_run(directory))):
    raise ConfigError(f"{directory} exists and is not a roots_jax run: give a new or empty "
                      "directory (an earlier save is replaced)")
  return directory


def _is_run(directory: str) -> bool:
  return (os.path.isfile(workdir_lib.config_path(directory))
          and not convert.is_hf_model(directory))


def _keep_task_files(config: ml_collections.ConfigDict, workdir: str, directory: str,
                     tmp: str) -> None:
  """Copies the task files a run keeps inside itself (LanguageModel.finetune's examples) into
  `tmp`, and points the config at their place in `directory`."""
  for split in SPLITS:
    path = config.task[f"{split}_files"]
    if path and os.path.isfile(path) and path.startswith(os.path.join(workdir, "")):
      relative = os.path.relpath(path, workdir)
      os.makedirs(os.path.dirname(os.path.join(tmp, relative)), exist_ok=True)
      shutil.copyfile(path, os.path.join(tmp, relative))
      config.task[f"{split}_files"] = os.path.join(directory, relative)
