"""Fine-tuning runs (kind "finetune"): a pretrained (or converted) run's model under a task head,
trained on a task's examples; and using one once trained.

The model (architecture and tokenizer) comes from init_from; fields set in the fine-tune config
must match it. finetune.mode=full trains everything; frozen uses the backbone as a fixed feature
extractor (no backbone gradients) with finetune.trainable_layers top layers trained as well.
The validation split is scored every train.eval_every steps; the best score of finetune.metric
is kept in WORKDIR/best, and finetune.patience evaluations without improvement stop the run;
without validation examples the run trains unscored and is used at its last checkpoint.
Running it again resumes.
"""

import logging
import os
from typing import Callable, NamedTuple, Sequence

import jax
import ml_collections
from flax import linen as nn

from roots_jax import config as config_lib
from roots_jax import evals, models, tasks
from roots_jax.data import load_tokenizer, supervised
from roots_jax.data.supervised import LabelVocab
from roots_jax.data.tokenizers import BaseTokenizer, check_vocab_size
from roots_jax.errors import ConfigError
from roots_jax.models import families
from roots_jax.models.config import ModelConfig
from roots_jax.models.heads import FinetuneModel
from roots_jax.runs import assemble, loop, workdir as workdir_lib
from roots_jax.training import checkpoints, distributed, optimizers, partitioning, steps

log = logging.getLogger("roots_jax")

# The checkpoint a fine-tuned model is used from: its best by the validation metric.
DEFAULT_CHECKPOINT = "best"


def finetune(config: ml_collections.ConfigDict, workdir: str,
             examples: dict[str, Sequence[dict]] | None = None, *,
             distil: Callable | None = None) -> dict:
  """Fine-tunes (or resumes) in `workdir`; returns the best validation metrics. `examples`
  ({split: examples}, as the task kind reads them) replaces the task's data source for the
  splits it has. `distil` (runs.distill: a distillation config's student) trains on a teacher's
  soft targets: distil(RunModel) -> (the loss, the step's constants, the teacher's FLOPs per
  token), called inside the mesh."""
  if config.kind != "finetune" and distil is None:
    raise ConfigError(f"this is a {config.kind} config; fine-tune with a config built on "
                      "roots_jax.config.finetune_config() (see configs/finetune/)")
  workdir_lib.check_workdir(workdir)
  distributed.maybe_initialize(config.distributed)
  pretrained = workdir_lib.resolve_init_from(config.init_from)
  workdir_lib.merge_model(config, pretrained)
  kind = tasks.get(config.task.kind)
  kind.check_family(families.get(config.model.family))
  config_lib.validate(config, jax.device_count())
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  tokenizer = load_tokenizer(pretrained.tokenizer_path)
  workdir_lib.check_run_copy(tokenizer, workdir)
  # The run keeps its own copy, for evaluation.
  tokenizer_path = workdir_lib.run_copy_path(tokenizer, os.path.abspath(workdir))
  with config.unlocked():
    config.init_from = os.path.join(pretrained.workdir, "checkpoints", str(pretrained.step))
    config.tokenizer.path = tokenizer_path
  kind.prepare(config, tokenizer)
  if is_main:
    workdir_lib.save_run_copy(tokenizer, workdir)
    workdir_lib.write_config(config, workdir)
  t, f = config.train, config.finetune

  # Mesh.
  mesh = partitioning.make_mesh(config)
  log.info("mesh %s over %d devices (%d processes)", dict(mesh.shape), jax.device_count(),
           jax.process_count())
  with jax.set_mesh(mesh), nn.logical_axis_rules(partitioning.logical_rules(config)):

    # Data, model and optimizer.
    run = setup(config, workdir, mesh, tokenizer=tokenizer, examples=examples, distil=distil)
    parts, family = run.parts, families.get(config.model.family)
    shard = dict(process_index=jax.process_index(), process_count=jax.process_count())
    train_iter = iter(kind.dataset(config, run.tokenizer, run.labels, run.examples("train"),
                                   family=family, split="train", **shard))
    log.info("%s fine-tuning for %s of %s (%s, %.2fM parameters)", f.mode, kind.name,
             "a random model shaped like " * f.from_scratch + config.init_from,
             config.model.family, parts.num_params / 1e6)

    # Restore, or initialise: the backbone from init_from, the head fresh.
    manager = checkpoints.make_manager(workdir, keep=t.keep_checkpoints)
    state = assemble.restore(parts, manager, train_iter)
    if state is None:
      state = _initial_state(config, parts, pretrained)
    else:
      log.info("resumed from checkpoint step %d", int(state.step))

    # Loop, keeping the best checkpoint by the validation metric.
    metric = f.metric or kind.default_metric
    evaluate = None
    if run.examples("validation"):
      evaluate = evaluator(config, run, parts.scorer, "validation",
                           generate=metric in evals.generation.METRICS)
    best = checkpoints.make_manager(
        workdir, keep=1, subdir="best", items=("state",), best_fn=lambda m: m[metric],
        best_mode="min" if metric in evals.LOWER_IS_BETTER else "max")
    tracker = _BestTracker(best, metric, config.train.eval_every, f.patience)
    length = kind.row_length(family, config.task.max_len, config.task.target_len)
    try:
      if evaluate is not None and tracker.exhausted(int(state.step)):
        log.info("the run stopped early at step %d (finetune.patience=%d); raise it to train on",
                 int(state.step), f.patience)
        manager.close()
        train_iter.close()
      else:
        loop.run_loop(config, workdir, parts, state, manager, train_iter, evaluate,
                      tokens_per_step=t.batch_size * length,
                      flops_per_token=flops_per_token(config, parts.model, length)
                      + run.teacher_flops,
                      after_eval=None if evaluate is None else tracker)
    finally:
      best.wait_until_finished()
      best.close()
    if tracker.best_step is not None:
      log.info("best validation %s %.4f at step %d", metric, tracker.best_value, tracker.best_step)
    return tracker.best_metrics


def flops_per_token(config: ml_collections.ConfigDict, model: FinetuneModel, length: int) -> float:
  """Training FLOPs per token of `length`-token rows of what the step runs: the backbone's
  features and the head, all of it trained (full) or the head and the top trainable_layers
  forward and backward over a backbone run forward only (frozen)."""
  f = config.finetune
  return models.flops_per_token(
      model.config, length, config.task.target_len, reads=model.reads, outputs=model.num_outputs,
      pooling=model.pooling, trained_layers=None if f.mode == "full" else f.trainable_layers)


class Setup(NamedTuple):
  """A fine-tuning run's pieces."""
  tokenizer: BaseTokenizer
  labels: LabelVocab | None
  parts: assemble.Parts
  examples: Callable        # split -> examples
  teacher_flops: float = 0.0  # per token, of a distillation's teacher


def model_for(config: ml_collections.ConfigDict, workdir: str,
              examples: dict[str, Sequence[dict]] | None = None) -> assemble.RunModel:
  """The FinetuneModel of a resolved fine-tuning config (model fields filled) and its loss; the
  labels are the run's labels.json, made from the train split the first time."""
  task, f = config.task, config.finetune
  kind = tasks.get(task.kind)
  family = families.get(config.model.family)
  cache = dict(examples or {})

  def split_examples(split: str):
    if split not in cache:
      cache[split] = kind.load_examples(task, split)
    return cache[split]

  labels = None
  if kind.label_key:
    path = os.path.join(workdir, "labels.json")
    if os.path.exists(path):
      labels = LabelVocab.load(path)
    else:
      labels = LabelVocab.build(task, split_examples("train"), kind.labels_of)
      if jax.process_index() == 0:
        labels.save(path)
  classes = len(labels) if labels else 0
  if f.class_weights and len(f.class_weights) != classes:
    raise ConfigError(f"finetune.class_weights has {len(f.class_weights)} weights for "
                      f"{classes} classes ({', '.join(labels.names[:10]) if labels else ''})")
  model_config = ModelConfig.from_config(config.model)
  model = FinetuneModel(model_config, reads=kind.reads, num_outputs=kind.num_outputs(labels),
                        scalar=kind.scalar, head_dropout=f.head_dropout, pooling=f.pooling)
  loss = kind.loss(family, label_smoothing=f.label_smoothing,
                   class_weights=f.class_weights or None)
  return assemble.RunModel(model_config, model, loss,
                           loss.init_batch(task.max_len, task.target_len), labels, split_examples)


def setup(config: ml_collections.ConfigDict, workdir: str, mesh, tokenizer: BaseTokenizer,
          examples: dict[str, Sequence[dict]] | None = None, *,
          distil: Callable | None = None) -> Setup:
  """Labels, model and steps of a resolved fine-tuning config (model fields filled) with the
  checkpoint's tokenizer (and a distillation's loss: see `finetune`); call inside the mesh and
  rules contexts."""
  check_vocab_size(tokenizer, config.model.vocab_size, "it is not the checkpoint's tokenizer")
  m = model_for(config, workdir, examples)
  loss, constants, teacher_flops = distil(m) if distil else (m.loss, (), 0.0)
  tx = optimizers.make_optimizer(config.optimizer, config.train.steps,
                                 head_learning_rate=config.finetune.head_learning_rate)
  parts = assemble.assemble(config, mesh, m.model_config, m.model, loss, m.init_batch, tx,
                            make_plan=lambda params: training_plan(config, params),
                            step_constants=constants)
  return Setup(tokenizer, m.labels, parts, m.examples, teacher_flops)


def eval_split(config: ml_collections.ConfigDict, split: str) -> tuple[str, str]:
  """(the split scored for `split`, default validation, and the run's task kind)."""
  split = split or "validation"
  if split not in supervised.SPLITS:
    raise ConfigError(f"--split {split!r}: a fine-tuning run is scored on train, validation or "
                      "test (task.*_split / task.*_files say where they come from)")
  return split, config.task.kind


def evaluate(loaded, split: str) -> tuple[dict, dict]:
  """A loaded run's task metrics on `split`, generations included, and their details (per-class
  figures, sample generations)."""
  return evaluator(loaded.config, loaded, loaded.scorer, split, generate=True).report(
      loaded.params)


def evaluator(config: ml_collections.ConfigDict, run, scorer: evals.Scorer, split: str, *,
              generate: bool) -> Callable:
  """evaluate(params) -> the task's metrics on every example of `split` of `run` (a Setup or
  a loaded run: its tokenizer, labels and examples)."""
  kind = tasks.get(config.task.kind)
  family = families.get(config.model.family)
  shard = dict(process_index=jax.process_index(), process_count=jax.process_count())
  examples = run.examples(split)
  batches = lambda: kind.dataset(config, run.tokenizer, run.labels, examples, family=family,
                                 split=split, **shard)
  return evals.get(kind.evaluator)(scorer, evals.Split(split, batches, examples),
                                   tokenizer=run.tokenizer, family=family, labels=run.labels,
                                   target_len=config.task.target_len, generate=generate,
                                   task=config.task)


def training_plan(config: ml_collections.ConfigDict, params):
  """Which parameters train (see steps.split_params): None (all) for full fine-tuning; for a
  frozen backbone the head, plus with trainable_layers = k the top k layers of the stack the
  head reads and everything between them and the head (final norm, BERT's pooler)."""
  f = config.finetune
  if f.mode == "full":
    return None
  k = f.trainable_layers
  path, num_layers, between = families.get(config.model.family).head_stack(
      ModelConfig.from_config(config.model), tasks.get(config.task.kind).reads)
  stack = ("backbone", *path)

  def leaf_plan(path, _):
    names = tuple(getattr(p, "key", None) for p in path)
    if names[0] == "head":
      return steps.ALL
    if not k or names[:len(stack)] != stack:
      return steps.NONE
    name = names[len(stack)]
    if name == "layers":
      return steps.ALL if k >= num_layers else k
    if name.startswith("layers_"):
      return steps.ALL if int(name.split("_")[1]) >= num_layers - k else steps.NONE
    if name == "final_norm" or name in between:
      return steps.ALL
    return steps.NONE

  return jax.tree_util.tree_map_with_path(leaf_plan, params)


def _initial_state(config: ml_collections.ConfigDict, parts: assemble.Parts,
                   pretrained: workdir_lib.Pretrained) -> steps.TrainState:
  """A fresh state whose backbone is the pretrained one (unless finetune.from_scratch); an LM
  head starts as a copy of the pretrained one."""
  state = parts.init(jax.random.key(config.seed))
  if config.finetune.from_scratch:
    return state
  params = dict(state.params)
  shardings = parts.state_sharding.params
  manager = workdir_lib.checkpoint_manager(pretrained.workdir)
  params["backbone"] = checkpoints.restore_params(
      manager, pretrained.step,
      checkpoints.abstract_like(parts.abstract_state.params["backbone"], shardings["backbone"]))
  if tasks.get(config.task.kind).reads == "lm":
    family = families.get(config.model.family)
    kernel = jax.jit(lambda b: family.output_kernel(parts.model_config, b),
                     out_shardings=shardings["head"]["kernel"])(params["backbone"])
    params["head"] = {"kernel": kernel}
  log.info("initialised the backbone from %s step %d", pretrained.workdir, pretrained.step)
  return state.replace(params=params)


class _BestTracker:
  """After each evaluation: saves the state to WORKDIR/best when `metric` improves and says when
  `patience` evaluations in a row did not. The best so far is read back from WORKDIR/best, so a
  resumed run continues the count."""

  def __init__(self, manager, metric: str, eval_every: int, patience: int):
    self.manager, self.metric, self.eval_every, self.patience = manager, metric, eval_every, patience
    self.best_step = manager.best_step()
    self.best_metrics = {}
    if self.best_step is not None:
      self.best_metrics = dict(manager.metrics(self.best_step) or {})
    self.best_value = self.best_metrics.get(metric)

  def __call__(self, step: int, state, metrics: dict) -> bool:
    if self.metric not in metrics:
      raise ConfigError(f"finetune.metric={self.metric!r} is not computed for this task; choose "
                        f"one of {', '.join(sorted(metrics))}")
    value = metrics[self.metric]
    if evals.is_better(self.metric, value, self.best_value):
      checkpoints.save(self.manager, step, state, None, metrics=metrics)
      self.best_step, self.best_value, self.best_metrics = step, value, dict(metrics)
      log.info("new best validation %s %.4f at step %d", self.metric, value, step)
      return False
    if self.exhausted(step):
      log.info("no better validation %s for %d evaluations: stopping early at step %d",
               self.metric, self.patience, step)
      return True
    return False

  def exhausted(self, step: int) -> bool:
    """Whether `patience` evaluations since the best one found nothing better."""
    stale = (step - (self.best_step or 0)) // self.eval_every
    return bool(self.patience) and stale >= self.patience
