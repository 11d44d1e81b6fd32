"""Fine-tuning runs (kind "finetune"): a pretrained (or converted) run's model under a task head,
trained on a task's examples; and using one once trained.

The model (architecture and tokenizer) comes from init_from; fields set in the fine-tune config
must match it. finetune.mode=full trains everything; frozen uses the backbone as a fixed feature
extractor (no backbone gradients) with finetune.trainable_layers top layers trained as well.
The validation split is scored every train.eval_every steps; the best score of finetune.metric
is kept in WORKDIR/best, and finetune.patience evaluations without improvement stop the run;
without validation examples the run trains unscored and is used at its last checkpoint.
Running it again resumes. With finetune.lora.rank > 0 it is an adapter run (runs.lora): LoRA
adapters train on a frozen base that init_from supplies whenever the run is used.
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
from roots_jax.runs import assemble, lora, loop, workdir as workdir_lib
from roots_jax.training import (checkpoints, distributed, optimizers, partitioning, quantization,
                                steps)

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
    log.info("%s fine-tuning for %s of %s (%s, %.2fM parameters)",
             "LoRA" if run.adapter else f.mode, kind.name,
             "a random model shaped like " * f.from_scratch + config.init_from,
             config.model.family, parts.num_params / 1e6)
    if run.adapter:
      base = quantization.num_values(run.adapter.base)
      log.info("LoRA rank %d on %s: %d trained parameters, %.2f%% of the %d of the frozen base%s",
               f.lora.rank, f.lora.modules, parts.num_params, 100 * parts.num_params / base,
               base, f" ({f.lora.quantize})" * bool(f.lora.quantize))

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
      score = evaluator(config, run, run.scorer, "validation",
                        generate=metric in evals.generation.METRICS)
      evaluate = lambda params: score(run.for_use(params))
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
  forward and backward over a backbone run forward only (frozen). Under LoRA gradients pass
  through every base matmul but none is computed for its weights, and a new task head trains;
  the adapters' own matmuls (2 r (inputs + outputs) per token and kernel) are not counted."""
  f = config.finetune
  head = dict(reads=model.reads, outputs=model.num_outputs, pooling=model.pooling)
  if lora.enabled(config):
    matmuls = families.get(model.config.family).matmuls(model.config, length,
                                                        config.task.target_len, **head)
    matmuls = ([m._replace(trains=False) for m in matmuls[:-1]]
               + [matmuls[-1]._replace(trains=lora.head_trains(config))])
    return families.step_flops(matmuls) / length
  return models.flops_per_token(
      model.config, length, config.task.target_len, **head,
      trained_layers=None if f.mode == "full" else f.trainable_layers)


class Setup(NamedTuple):
  """A fine-tuning run's pieces."""
  tokenizer: BaseTokenizer
  labels: LabelVocab | None
  parts: assemble.Parts
  examples: Callable        # split -> examples
  teacher_flops: float = 0.0  # per token, of a distillation's teacher
  adapter: "AdapterBase | None" = None  # an adapter run's frozen base

  @property
  def scorer(self) -> evals.Scorer:
    """What evaluators run: the model on the parameters evaluate(params) is given (an adapter
    run's: the trained ones joined with the base)."""
    return self.adapter.scorer if self.adapter else self.parts.scorer

  def for_use(self, params):
    """The model's parameters from the train state's."""
    return lora.join(params, self.adapter.base) if self.adapter else params


class AdapterBase(NamedTuple):
  """An adapter run's frozen base (sharded: float, or quantized for QLoRA) and the scorer of
  the adapted model."""
  base: dict
  scorer: evals.Scorer


def adapter_base(config: ml_collections.ConfigDict, plain: assemble.RunModel,
                 m: assemble.RunModel, mesh) -> AdapterBase:
  """The frozen base of an adapter run whose model (adapted) is `m` and base model `plain`:
  init_from's backbone (and LM head), quantized to finetune.lora.quantize if set."""
  rules = partitioning.logical_rules(config)
  boxed = assemble.abstract_params(m.model, m.loss, m.init_batch, config.seed)
  sharding = partitioning.tree_shardings(boxed, mesh, rules)
  abstract = assemble.unbox(boxed)
  lora.check_matches(config, abstract)
  head_trains = lora.head_trains(config)
  float_boxed = assemble.abstract_params(plain.model, plain.loss, plain.init_batch, config.seed)
  pretrained = workdir_lib.resolve_init_from(config.init_from)
  base = pretrained_params(config, plain.model_config, assemble.unbox(float_boxed),
                           partitioning.tree_shardings(float_boxed, mesh, rules), pretrained)
  scheme = config.finetune.lora.quantize
  if scheme:
    quantized = lora.split(abstract, head_trains)[1]
    base = jax.jit(lambda b: quantization.quantize_params(b, quantized),
                   out_shardings=lora.split(sharding, head_trains)[1])(base)
    log.info("the frozen base is held as %s", scheme)
  return AdapterBase(base, evals.Scorer(m.model, m.loss, sharding,
                                        partitioning.data_sharding(mesh, rules)))


def model_for(config: ml_collections.ConfigDict, workdir: str,
              examples: dict[str, Sequence[dict]] | None = None) -> assemble.RunModel:
  """The FinetuneModel of a resolved fine-tuning config (model fields filled) and its loss, with
  its LoRA adapters in an adapter run (runs.lora); the labels are the run's labels.json, made
  from the train split the first time."""
  m = plain_model_for(config, workdir, examples)
  return m._replace(model=lora.adapted(config, m.model)) if lora.enabled(config) else m


def plain_model_for(config: ml_collections.ConfigDict, workdir: str,
                    examples: dict[str, Sequence[dict]] | None = None) -> assemble.RunModel:
  """model_for without adapters: an adapter run's base."""
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
  init_params, adapter = None, None
  if lora.enabled(config):
    adapter = adapter_base(config, plain_model_for(config, workdir, examples), m, mesh)
    head_trains = lora.head_trains(config)
    loss, constants = lora.AdapterLoss.of(loss), (adapter.base,)
    init = assemble.param_initializer(m.model, m.loss, m.init_batch)
    init_params = lambda rng: lora.split(init(rng), head_trains)[0]
  parts = assemble.assemble(config, mesh, m.model_config, m.model, loss, m.init_batch, tx,
                            make_plan=lambda params: training_plan(config, params),
                            init_params=init_params, step_constants=constants)
  return Setup(tokenizer, m.labels, parts, m.examples, teacher_flops, adapter)


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
  if config.finetune.from_scratch or lora.enabled(config):  # adapters: the base is a constant
    return state
  params = dict(state.params)
  params.update(pretrained_params(config, parts.model_config, parts.abstract_state.params,
                                  parts.state_sharding.params, pretrained))
  return state.replace(params=params)


def adapted_params(config: ml_collections.ConfigDict, workdir: str, m: assemble.RunModel,
                   abstract, manager, step: int, mesh) -> dict:
  """An adapter run's parameters for use: its trained ones from checkpoint `step` of `manager`
  joined with its base, read from init_from (and quantized as in training). `m` is its
  (adapted) model, `abstract` that model's parameters (sharded ShapeDtypeStructs). Call inside
  the mesh and rules contexts."""
  trained = checkpoints.restore_params(manager, step,
                                       lora.split(abstract, lora.head_trains(config))[0])
  return lora.join(trained, adapter_base(config, plain_model_for(config, workdir), m, mesh).base)


def pretrained_params(config: ml_collections.ConfigDict, model_config: ModelConfig, abstract,
                      shardings, pretrained: workdir_lib.Pretrained) -> dict:
  """{"backbone": the pretrained one} and, for an LM head, {"head": a copy of the pretrained
  LM head}, restored into the shardings of the parameters `abstract`."""
  manager = workdir_lib.checkpoint_manager(pretrained.workdir)
  params = {"backbone": checkpoints.restore_params(
      manager, pretrained.step,
      checkpoints.abstract_like(abstract["backbone"], shardings["backbone"]))}
  if tasks.get(config.task.kind).reads == "lm":
    family = families.get(config.model.family)
    kernel = jax.jit(lambda b: family.output_kernel(model_config, b),
                     out_shardings=shardings["head"]["kernel"])(params["backbone"])
    params["head"] = {"kernel": kernel}
  log.info("initialised the backbone from %s step %d", pretrained.workdir, pretrained.step)
  return params


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
