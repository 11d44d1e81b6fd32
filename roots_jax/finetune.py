"""Fine-tuning driver: a pretrained checkpoint of any family, a task head, and a task's data.

  python -m roots_jax.finetune --config configs/finetune/package.py --workdir DIR \
      --config.init_from=PRETRAIN_WORKDIR_OR_CHECKPOINT
  python -m roots_jax.evaluate --workdir DIR --split test

The model (architecture and tokenizer) comes from init_from; fields set in the fine-tune config
must match it. finetune.mode=full trains everything; frozen uses the backbone as a fixed feature
extractor (no backbone gradients) with finetune.trainable_layers top layers trained as well.
The validation split is scored every train.eval_every steps; the best score of finetune.metric
is kept in DIR/best, and finetune.patience evaluations without improvement stop the run.
Rerunning the command resumes.
"""

import logging
import os
import sys
from typing import Callable, NamedTuple

import jax
from flax import linen as nn

from roots_jax import config as config_lib
from roots_jax import evaluate as evaluate_lib
from roots_jax import models
from roots_jax import train as train_lib
from roots_jax.data import finetune as finetune_data
from roots_jax.data import supervised
from roots_jax.data.tokenizer import (BaseTokenizer, Tokenizer, check_run_copy, check_vocab_size,
                                      run_copy_path, save_run_copy)
from roots_jax.errors import ConfigError, RootsError
from roots_jax.models.config import ModelConfig
from roots_jax.models.heads import FinetuneModel, check_kind, pretrained_output_kernel
from roots_jax.training import checkpoints, distributed, optimizers, partitioning
from roots_jax.training import pretrained as pretrained_lib
from roots_jax.training import steps, tasks

log = logging.getLogger("roots_jax")

USAGE = ("usage: python -m roots_jax.finetune --config FILE.py[:ARG] --workdir DIR "
         "--config.init_from=PRETRAIN_RUN [--config.SECTION.KEY=VALUE ...]")


class Setup(NamedTuple):
  """A fine-tuning run's pieces, shared with the evaluate driver."""
  tokenizer: BaseTokenizer
  labels: supervised.LabelVocab | None
  parts: train_lib.Parts
  examples: Callable        # split -> examples


def finetune(config, workdir: str) -> dict:
  """Fine-tunes (or resumes) in `workdir`; returns the best validation metrics."""
  train_lib.check_workdir(workdir)
  distributed.maybe_initialize(config.distributed)
  if "task" not in config:
    raise ConfigError("this is a pretraining config; fine-tune with a config built on "
                      "roots_jax.config.finetune_config() (see configs/finetune/)")
  pretrained = pretrained_lib.resolve(config.init_from)
  pretrained_lib.merge_model(config, pretrained)
  check_kind(config.model.family, config.task.kind)
  config_lib.validate(config, jax.device_count())
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  tokenizer = Tokenizer.load(pretrained.tokenizer_path)
  check_run_copy(tokenizer, workdir)
  # The run keeps its own copy, for evaluation.
  tokenizer_path = run_copy_path(tokenizer, os.path.abspath(workdir))
  with config.unlocked():
    config.init_from = os.path.join(pretrained.workdir, "checkpoints", str(pretrained.step))
    config.tokenizer.path = tokenizer_path
  if is_main:
    save_run_copy(tokenizer, workdir)
    config_lib.save_config(config, os.path.join(workdir, "config.json"))
  t, f = config.train, config.finetune

  # Mesh.
  mesh = partitioning.make_mesh(config)
  log.info("mesh %s over %d devices (%d processes)", dict(mesh.shape), jax.device_count(),
           jax.process_count())
  with jax.set_mesh(mesh), nn.logical_axis_rules(config_lib.logical_rules(config)):

    # Data, model and optimizer.
    run = setup(config, workdir, mesh, tokenizer=tokenizer)
    parts = run.parts
    shard = dict(process_index=jax.process_index(), process_count=jax.process_count())
    train_iter = iter(finetune_data.make_dataset(
        config, run.tokenizer, run.labels, run.examples("train"), family=config.model.family,
        split="train", **shard))
    log.info("%s fine-tuning for %s of %s (%s, %.2fM parameters)", f.mode, config.task.kind,
             "a random model shaped like " * f.from_scratch + config.init_from,
             config.model.family, parts.num_params / 1e6)

    # Restore, or initialise: the backbone from init_from, the head fresh.
    manager = checkpoints.make_manager(workdir, keep=t.keep_checkpoints)
    state = checkpoints.restore(
        manager, checkpoints.abstract_like(parts.abstract_state, parts.state_sharding), train_iter)
    if state is None:
      state = _initial_state(config, parts, pretrained)
    else:
      log.info("resumed from checkpoint step %d", int(state.step))

    # Loop, keeping the best checkpoint by the validation metric.
    metric = f.metric or evaluate_lib.DEFAULT_METRIC[config.task.kind]
    evaluate = evaluate_lib.task_evaluator(
        config, parts, run.tokenizer, run.labels, run.examples("validation"), split="validation",
        generate=metric in evaluate_lib.GENERATION_METRICS)
    best = checkpoints.make_manager(
        workdir, keep=1, subdir="best", items=("state",), best_fn=lambda m: m[metric],
        best_mode="min" if metric in evaluate_lib.LOWER_IS_BETTER else "max")
    tracker = _BestTracker(best, metric, config.train.eval_every, f.patience)
    length = config.task.max_len + (config.task.target_len if config.task.kind == "seq2seq" and
                                    config.model.family == "decoder" else 0)
    try:
      if tracker.exhausted(int(state.step)):
        log.info("the run stopped early at step %d (finetune.patience=%d); raise it to train on",
                 int(state.step), f.patience)
        manager.close()
        train_iter.close()
      else:
        train_lib.run_loop(config, workdir, parts, state, manager, train_iter, evaluate,
                           tokens_per_step=t.batch_size * length,
                           flops_per_token=models.flops_per_token(parts.model_config, length),
                           after_eval=tracker)
    finally:
      best.wait_until_finished()
      best.close()
    if tracker.best_step is not None:
      log.info("best validation %s %.4f at step %d", metric, tracker.best_value, tracker.best_step)
    return tracker.best_metrics


def setup(config, workdir: str, mesh, tokenizer: BaseTokenizer | None = None) -> Setup:
  """Tokenizer, labels, model and steps of a resolved fine-tuning config (model fields filled);
  call inside the mesh and rules contexts."""
  task, f = config.task, config.finetune
  tokenizer = tokenizer or Tokenizer.load(config.tokenizer.path)
  check_vocab_size(tokenizer, config.model.vocab_size, "it is not the checkpoint's tokenizer")
  cache = {}

  def examples(split: str):
    if split not in cache:
      cache[split] = supervised.load_examples(task, split)
    return cache[split]

  labels = None
  if task.kind in ("classification", "token_classification"):
    path = os.path.join(workdir, "labels.json")
    if os.path.exists(path):
      labels = supervised.LabelVocab.load(path)
    else:
      labels = supervised.LabelVocab.build(task, examples("train"))
      if jax.process_index() == 0:
        labels.save(path)
  num_outputs = len(labels.names) if labels else 0
  if f.class_weights and len(f.class_weights) != num_outputs:
    raise ConfigError(f"finetune.class_weights has {len(f.class_weights)} weights for "
                      f"{num_outputs} classes ({', '.join(labels.names[:10]) if labels else ''})")
  model_config = ModelConfig.from_config(config.model)
  model = FinetuneModel(model_config, task.kind, num_outputs=num_outputs,
                        head_dropout=f.head_dropout, pooling=f.pooling)
  ft_task = tasks.finetune_task(model_config.family, task.kind, label_smoothing=f.label_smoothing,
                                class_weights=f.class_weights or None)
  tx = optimizers.make_optimizer(config.optimizer, config.train.steps,
                                 head_learning_rate=f.head_learning_rate)
  parts = train_lib.assemble(config, mesh, model_config, model, ft_task,
                             ft_task.init_batch(task.max_len, task.target_len), tx,
                             make_plan=lambda params: training_plan(config, params))
  return Setup(tokenizer, labels, parts, examples)


def training_plan(config, params):
  """Which parameters train (see steps.split_params): None (all) for full fine-tuning; for a
  frozen backbone the head, plus with trainable_layers = k the top k layers of the stack the
  head reads and everything between them and the head (final norm, BERT's pooler)."""
  f, family = config.finetune, config.model.family
  if f.mode == "full":
    return None
  k = f.trainable_layers
  stack, num_layers = ("backbone",), config.model.num_layers
  if family == "encoder_decoder":
    if config.task.kind == "token_classification":
      stack = ("backbone", "encoder")
    else:
      stack, num_layers = ("backbone", "decoder"), config.model.num_decoder_layers or num_layers

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
    if name == "final_norm" or (family == "encoder" and name == "pooler"):
      return steps.ALL
    return steps.NONE

  return jax.tree_util.tree_map_with_path(leaf_plan, params)


def _initial_state(config, parts: train_lib.Parts, pretrained) -> steps.TrainState:
  """A fresh state whose backbone is the pretrained one (unless finetune.from_scratch); a seq2seq
  head starts as a copy of the pretrained LM head."""
  state = parts.init(jax.random.key(config.seed))
  if config.finetune.from_scratch:
    return state
  params = dict(state.params)
  shardings = parts.state_sharding.params
  params["backbone"] = pretrained_lib.restore_params(
      pretrained, checkpoints.abstract_like(parts.abstract_state.params["backbone"],
                                            shardings["backbone"]))
  if config.task.kind == "seq2seq":
    kernel = jax.jit(lambda b: pretrained_output_kernel(parts.model_config, b),
                     out_shardings=shardings["head"]["kernel"])(params["backbone"])
    params["head"] = {"kernel": kernel}
  log.info("initialised the backbone from %s step %d", pretrained.workdir, pretrained.step)
  return state.replace(params=params)


class _BestTracker:
  """After each evaluation: saves the state to DIR/best when `metric` improves and says when
  `patience` evaluations in a row did not. The best so far is read back from DIR/best, so a
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
    if evaluate_lib.is_better(self.metric, value, self.best_value):
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


def main(argv=None) -> int:
  train_lib.log_to_console()
  try:
    values, overrides = train_lib.parse_args(sys.argv[1:] if argv is None else argv, usage=USAGE)
    config = config_lib.load_config(values["config"], overrides)
    finetune(config, values["workdir"])
  except RootsError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
