"""Distillation runs (kind "distill"): a student trained on its pretraining objective against a
teacher's soft targets (Hinton et al. 2015) and, optionally, its hidden states (DistilBERT, Sanh
et al. 2019); used like a pretraining run once trained.

  distill(config_lib.load_config("distill/gpt", ["teacher=/tmp/run"]), "/tmp/student")

The teacher (a pretraining, converted, distilled run or a Hugging Face model directory) runs in
the same mesh, forward only, in distill.teacher_dtype if set. Its parameters are an argument of
the train step, never part of the train state: the student's checkpoints hold the student alone
(and the learned projection of a narrower student's hidden states). The run records the teacher
checkpoint and its fingerprint, and refuses to resume with another one.
"""

import dataclasses
import hashlib
import logging
import math
import os

import jax
import ml_collections
import numpy as np
from flax import linen as nn
from flax import traverse_util

from roots_jax import config as config_lib
from roots_jax import models, objectives, tasks
from roots_jax.data import load_tokenizer
from roots_jax.data.supervised import LabelVocab
from roots_jax.errors import ConfigError
from roots_jax.models import families, stack
from roots_jax.models.config import ModelConfig
from roots_jax.runs import assemble, finetune, load, loop, pretrain, workdir as workdir_lib
from roots_jax.training import checkpoints, distillation, distributed, optimizers, partitioning

log = logging.getLogger("roots_jax")



@dataclasses.dataclass(frozen=True)
class Teacher:
  """The teacher checkpoint a distillation run reads."""
  workdir: str
  step: int
  checkpoint: str                     # its directory, as the student's config records it
  config: ml_collections.ConfigDict   # the teacher run's config
  fingerprint: str


def resolve_teacher(path: str, *, task: bool = False) -> Teacher:
  """The checkpoint `path` names: a run's default one (a fine-tuned run's best, else its
  newest), one of its checkpoints/<step>, or a Hugging Face model directory (converted once).
  A student of a pretraining objective has a pretrained (converted, distilled) teacher; one of
  a `task`, a teacher fine-tuned on it."""
  if not path:
    raise ConfigError("set --config.teacher=RUN: the run, checkpoint or Hugging Face model "
                      "directory to distil from")
  workdir, which = load.resolve(path)
  config = workdir_lib.read_config(workdir)
  if config.kind not in ("pretrain", "converted", "finetune", "distill"):
    raise ConfigError(f"teacher {path} is a {config.kind} run; a teacher is a pretraining, "
                      "converted, fine-tuned or distilled run (or a Hugging Face model directory)")
  if ("task" in config) != task:
    raise ConfigError(
        f"teacher {path} is a fine-tuned model: distil it with a task's config (as "
        "configs/distill/package.py)" if not task else
        f"teacher {path} is a pretrained model: a task's student needs a teacher fine-tuned on "
        "that task")
  manager, step = workdir_lib.find_checkpoint(workdir, which or load.KINDS[config.kind]
                                              .DEFAULT_CHECKPOINT)
  checkpoint = os.path.join(os.fspath(manager.directory), str(step))
  manager.close()
  return Teacher(workdir, step, checkpoint, config, fingerprint(checkpoint))


def fingerprint(checkpoint: str) -> str:
  """What identifies a checkpoint's files without reading its arrays: every file's name and
  size, and the contents of the small ones (metadata, manifests: an Orbax data file's name is
  new at every write)."""
  digest = hashlib.sha256()
  for root, dirs, names in sorted(os.walk(checkpoint)):
    dirs.sort()
    for name in sorted(names):
      path = os.path.join(root, name)
      size = os.path.getsize(path)
      digest.update(f"{os.path.relpath(path, checkpoint)}\0{size}\0".encode())
      if size <= 65536:
        with open(path, "rb") as f:
          digest.update(f.read())
  return digest.hexdigest()[:16]


def merge_teacher(config: ml_collections.ConfigDict, teacher: Teacher) -> None:
  """Fills the student's unset model fields from the teacher's (num_layers: half the teacher's
  with distill.init_layers=every_other), points tokenizer.path at the teacher's tokenizer, and
  rejects what cannot be distilled: another family, vocabulary or tokenizer."""
  t = teacher.config.model
  with config.unlocked():
    if config.distill.init_layers == "every_other":
      for key in ("num_layers", "num_decoder_layers"):
        if config.model[key] is None:
          config.model[key] = math.ceil(t[key] / 2)
    for key, value in t.items():
      if config.model[key] is None:
        config.model[key] = value
  for key in ("family", "vocab_size"):
    if config.model[key] != t[key]:
      raise ConfigError(f"model.{key} is {config.model[key]!r} but the teacher's is {t[key]!r}: "
                        "a student shares its teacher's family and vocabulary (leave it unset)")
  if objectives.get(config.data.objective).family != t.family:
    raise ConfigError(f"data.objective={config.data.objective} trains another family than the "
                      f"teacher's ({t.family}); use {teacher.config.data.objective}")
  theirs = load_tokenizer(workdir_lib.tokenizer_path(teacher.workdir, teacher.config))
  if config.tokenizer.path:
    mine = load_tokenizer(config.tokenizer.path)
    if mine.contents() != theirs.contents():
      raise ConfigError(f"tokenizer.path {config.tokenizer.path} is not the teacher's tokenizer "
                        f"({theirs.path}): a student reads its teacher's token ids; leave "
                        "tokenizer.path empty")
  with config.unlocked():
    config.tokenizer.path = theirs.path
    config.teacher = teacher.checkpoint
    config.distill.teacher_fingerprint = teacher.fingerprint


def check_resume(workdir: str, teacher: Teacher) -> None:
  """A ConfigError when the run in `workdir` was distilled from another teacher checkpoint."""
  if not os.path.isfile(workdir_lib.config_path(workdir)):
    return
  recorded = workdir_lib.read_config(workdir)
  if recorded.kind != "distill":
    return  # pretrain.train's restore refuses another kind's checkpoint
  if recorded.distill.teacher_fingerprint != teacher.fingerprint:
    raise ConfigError(f"{workdir} was distilled from the teacher checkpoint {recorded.teacher} "
                      f"(fingerprint {recorded.distill.teacher_fingerprint}), not "
                      f"{teacher.checkpoint} ({teacher.fingerprint}): give that teacher to "
                      "resume, or use a new --workdir")


def distill(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Distils (or resumes distilling) the teacher into the configured student in `workdir`;
  returns the student's last eval metrics."""
  if config.kind != "distill":
    raise ConfigError(f"this is a {config.kind} config; distil with a config built on "
                      "roots_jax.config.distill_config() (see configs/distill/)")
  workdir_lib.check_workdir(workdir)
  distributed.maybe_initialize(config.distributed)
  teacher = resolve_teacher(config.teacher, task="task" in config)
  if "task" in config:
    return distill_task(config, workdir, teacher)
  merge_teacher(config, teacher)
  check_resume(workdir, teacher)
  config_lib.validate(config, jax.device_count())
  teacher_model = ModelConfig.from_config(teacher.config.model)  # checked before writing
  if config.distill.init_layers:
    kept_layers(config, teacher_model)
  if config.distill.hidden_loss:
    layer_pairs(config, teacher_model)
  os.makedirs(workdir, exist_ok=True)
  t, rules = config.train, partitioning.logical_rules(config)
  mesh = partitioning.make_mesh(config)
  log.info("mesh %s over %d devices (%d processes)", dict(mesh.shape), jax.device_count(),
           jax.process_count())
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    tokenizer = pretrain.load_or_train_tokenizer(config, workdir)
    shard = dict(process_index=jax.process_index(), process_count=jax.process_count())
    train_iter = iter(objectives.dataset(config, tokenizer, "train", **shard))
    taught = load_teacher(config, teacher)
    parts, student = build(config, mesh, taught)
    log.info("distilling %s (%.2fM parameters) into a %s student of %.2fM parameters",
             teacher.checkpoint, _size(taught.params) / 1e6, config.model.family,
             parts.num_params / 1e6)

    manager = checkpoints.make_manager(workdir, keep=t.keep_checkpoints)
    state = assemble.restore(parts, manager, train_iter)
    if state is None:
      state = initial_state(config, parts, taught)
    else:
      log.info("resumed from checkpoint step %d", int(state.step))
    if jax.process_index() == 0:
      workdir_lib.write_config(config, workdir)
      workdir_lib.save_run_copy(tokenizer, workdir)

    evaluate = pretrain.evaluator(config, tokenizer, parts.scorer, max_batches=t.eval_batches)
    target_len = objectives.target_len(config.data) or None
    teacher_flops = models.forward_flops_per_token(taught.model_config, config.data.seq_len,
                                                   target_len)
    return loop.run_loop(config, workdir, parts, state, manager, train_iter, evaluate,
                         tokens_per_step=t.batch_size * config.data.seq_len,
                         flops_per_token=pretrain.flops_per_token(config, student.model_config)
                         + teacher_flops)


def distill_task(config: ml_collections.ConfigDict, workdir: str, teacher: Teacher) -> dict:
  """Fine-tunes the student (init_from's model under a fresh head) on the task against the
  fine-tuned teacher's class (token) distributions, with the teacher's labels; returns the
  best validation metrics (runs.finetune)."""
  theirs = teacher.config
  if config.task.kind != theirs.task.kind:
    raise ConfigError(f"task.kind is {config.task.kind} but the teacher was fine-tuned for "
                      f"{theirs.task.kind}")
  pretrained = workdir_lib.resolve_init_from(config.init_from)
  if pretrained.config.model.family != theirs.model.family:
    raise ConfigError(f"init_from is a {pretrained.config.model.family} model but the teacher "
                      f"a {theirs.model.family}: a student shares its teacher's family")
  mine = load_tokenizer(pretrained.tokenizer_path)
  if mine.contents() != load_tokenizer(
      workdir_lib.tokenizer_path(teacher.workdir, theirs)).contents():
    raise ConfigError(f"init_from {config.init_from} has another tokenizer than the teacher: a "
                      "student reads its teacher's token ids")
  check_resume(workdir, teacher)
  _share_labels(teacher.workdir, workdir)
  with config.unlocked():
    config.teacher = teacher.checkpoint
    config.distill.teacher_fingerprint = teacher.fingerprint

  def distil(student: assemble.RunModel):
    taught = load_teacher(config, teacher)
    model = taught.model
    length = tasks.get(config.task.kind).row_length(
        families.get(config.model.family), config.task.max_len, config.task.target_len)
    flops = models.forward_flops_per_token(
        taught.model_config, length, config.task.target_len, reads=model.reads,
        outputs=model.num_outputs, pooling=model.pooling)
    return distillation_loss(config, student.loss, taught), (teacher_params(config, taught),), flops

  return finetune.finetune(config, workdir, distil=distil)


def _share_labels(teacher_dir: str, workdir: str) -> None:
  """The student's class ids are the teacher's: its labels.json, copied (or checked)."""
  theirs = os.path.join(teacher_dir, "labels.json")
  if not os.path.exists(theirs):
    return
  labels = LabelVocab.load(theirs)
  mine = os.path.join(workdir, "labels.json")
  if os.path.exists(mine):
    if LabelVocab.load(mine).names != labels.names:
      raise ConfigError(f"{mine} holds other labels than the teacher's {theirs}; use a new "
                        "--workdir")
  elif jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    labels.save(mine)


def load_teacher(config: ml_collections.ConfigDict, teacher: Teacher) -> load.Loaded:
  """The teacher's model and parameters on the student's mesh and rules (call under them), in
  distill.teacher_dtype when set."""
  teacher_config = ml_collections.ConfigDict(teacher.config.to_dict())
  with teacher_config.unlocked():
    teacher_config.mesh = ml_collections.ConfigDict(config.mesh.to_dict())
    if config.distill.teacher_dtype:
      teacher_config.model.dtype = config.distill.teacher_dtype
  return load.load_run(teacher.workdir, teacher_config, str(teacher.step), needs_tokenizer=False)


def layer_pairs(config: ml_collections.ConfigDict, teacher_config: ModelConfig) -> tuple:
  """(student layer, teacher layer) pairs whose outputs the hidden loss matches, in the stack an
  LM head reads."""
  student = ModelConfig.from_config(config.model)
  depth = lambda m: m.decoder_layers if m.family == "encoder_decoder" else m.num_layers
  mine, theirs = depth(student), depth(teacher_config)
  chosen = config.distill.hidden_layers
  if not chosen:
    return ((mine - 1, theirs - 1),)
  if len(chosen) != mine or not all(-1 <= i < theirs for i in chosen):
    raise ConfigError(f"distill.hidden_layers {tuple(chosen)} must name, for each of the "
                      f"student's {mine} layers, a teacher layer in 0..{theirs - 1} or -1")
  return tuple((i, j) for i, j in enumerate(chosen) if j >= 0)


def build(config: ml_collections.ConfigDict, mesh, taught: load.Loaded):
  """(the run's Parts, the student's RunModel): the student trained on the distillation loss,
  with the teacher's parameters (cast to distill.teacher_dtype) as the step's constant."""
  student = pretrain.model_for(config)
  loss = distillation_loss(config, student.loss, taught)
  init = assemble.param_initializer(student.model, student.loss, student.init_batch)
  widths = student.model_config.embed_dim, taught.model_config.embed_dim
  if loss.layer_pairs and widths[0] != widths[1]:
    project = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", None))
    init = _with_projection(init, project, widths)
  parts = assemble.assemble(config, mesh, student.model_config, student.model, loss,
                            student.init_batch,
                            optimizers.make_optimizer(config.optimizer, config.train.steps),
                            init_params=init, step_constants=(teacher_params(config, taught),))
  return parts, student


def distillation_loss(config: ml_collections.ConfigDict, student_loss,
                      taught: load.Loaded) -> distillation.DistillLoss:
  """The student's loss with the teacher's terms, as the distill section says."""
  d = config.distill
  pairs = layer_pairs(config, taught.model_config) if d.hidden_loss else ()
  return distillation.distill_loss(
      student_loss, taught.model, alpha=d.alpha, temperature=d.temperature,
      hidden_loss=d.hidden_loss, hidden_weight=d.hidden_weight, layer_pairs=pairs,
      layer_outputs=stack.layer_outputs)


def teacher_params(config: ml_collections.ConfigDict, taught: load.Loaded):
  """The teacher's parameters as the step reads them: in distill.teacher_dtype if set."""
  dtype = config.distill.teacher_dtype
  return jax.tree.map(lambda x: x.astype(dtype), taught.params) if dtype else taught.params


def _with_projection(init, project, widths):
  """The student's initializer, plus the [Ds, Dt] projection of its hidden states."""
  def init_params(rng):
    return {**init(rng), distillation.PROJECTION: {
        "kernel": project(jax.random.fold_in(rng, 1), widths)}}
  return init_params


def initial_state(config: ml_collections.ConfigDict, parts: assemble.Parts,
                  taught: load.Loaded):
  """The student's first state: random, or (distill.init_layers) the teacher's parameters cut
  to the chosen layers (a projection stays random)."""
  state = parts.init(jax.random.key(config.seed))
  spec = config.distill.init_layers
  if not spec:
    return state
  keep = kept_layers(config, taught.model_config)
  try:
    chosen = stack.select_layers(taught.params, keep, scanned=taught.model_config.scan_layers)
  except ValueError as e:
    raise ConfigError(f"distill.init_layers: {e}") from None
  params = dict(state.params)
  mine = {p: v.shape for p, v in traverse_util.flatten_dict(params).items()}
  for path, value in traverse_util.flatten_dict(chosen).items():
    if mine.get(path) != value.shape:
      raise ConfigError(f"distill.init_layers: the student's {'/'.join(path)} is "
                        f"{mine.get(path, 'absent')} but the teacher's is {value.shape}; a "
                        "student started from the teacher's layers has its widths and layout "
                        "(leave those model fields unset)")
  # Copies: the state is donated to the step, the teacher's arrays are read by every step.
  copy = jax.jit(lambda tree: jax.tree.map(lambda x: x.astype(np.float32), tree),
                 out_shardings={k: parts.state_sharding.params[k] for k in chosen})
  params.update(copy(chosen))
  return state.replace(params=params)


def kept_layers(config: ml_collections.ConfigDict, teacher: ModelConfig) -> list[int]:
  """The teacher layers distill.init_layers names, checked against the student's depth."""
  spec, student = config.distill.init_layers, ModelConfig.from_config(config.model)
  if student.scan_layers != teacher.scan_layers:
    raise ConfigError(f"distill.init_layers needs model.scan_layers={teacher.scan_layers}, "
                      "the teacher's layout")
  depth = student.num_layers
  if spec == "every_other":
    keep = list(range(0, 2 * depth, 2))
  else:
    try:
      keep = [int(i) for i in spec.split(",")]
    except ValueError:
      raise ConfigError(f"distill.init_layers must be every_other or comma-separated teacher "
                        f"layer indices; got {spec!r}") from None
  if len(keep) != depth or (student.family == "encoder_decoder"
                            and student.decoder_layers != depth):
    raise ConfigError(f"distill.init_layers names {len(keep)} teacher layers for a student of "
                      f"{depth} (each stack of an encoder-decoder student as deep)")
  return keep


def _size(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))
