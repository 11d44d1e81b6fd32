"""Pretraining driver.

  python -m roots_jax.train --config configs/quickstart.py --workdir /tmp/run
  python -m roots_jax.train --config configs/gpt2.py:small --workdir DIR --config.train.batch_size=64

Running the same command again resumes from the newest complete checkpoint in the workdir.
"""

import logging
import os
import signal
import sys
import time
from typing import Callable, NamedTuple

import jax
import numpy as np
import optax
from flax import linen as nn

from roots_jax import config as config_lib
from roots_jax import models
from roots_jax.data import objectives, pipeline
from roots_jax.data import tokenizer as tokenizer_lib
from roots_jax.errors import ConfigError, RootsError, TrainingHalted
from roots_jax.models.config import ModelConfig
from roots_jax.training import checkpoints, distributed, metrics as metrics_lib, optimizers
from roots_jax.training import partitioning, profiling, steps, tasks

log = logging.getLogger("roots_jax")

USAGE = ("usage: python -m roots_jax.train --config FILE.py[:ARG] --workdir DIR "
         "[--config.SECTION.KEY=VALUE ...]")


def parse_args(argv: list[str], names=("config", "workdir"), usage: str = USAGE, required=None):
  """-> ({name: value}, overrides) from `--name value` / `--name=value` and `--config.a.b=v`.
  The `required` names (default: all) must be given."""
  values, overrides = {}, []
  args = list(argv)
  while args:
    arg = args.pop(0)
    flag, eq, value = arg.partition("=")
    name = flag[2:]
    if not flag.startswith("--") or (name not in names and not name.startswith("config.")):
      raise ConfigError(f"unknown argument {arg!r}; {usage}")
    if not eq:
      if not args:
        raise ConfigError(f"{flag} needs a value; {usage}")
      value = args.pop(0)
    if name.startswith("config."):
      overrides.append(f"{name[len('config.'):]}={value}")
    else:
      values[name] = value
  missing = [n for n in (names if required is None else required) if n not in values]
  if missing:
    raise ConfigError(f"missing --{missing[0]}; {usage}")
  return values, overrides


def check_workdir(workdir: str) -> None:
  """A run's directory is written with file I/O, on every host: a URL would become a local
  directory named like it on each of them, and the run would be lost with the machines."""
  if "://" in workdir:
    raise ConfigError(f"--workdir {workdir} is a URL; give a path that every process sees, on a "
                      "shared file system (NFS, Lustre, a mounted bucket)")


def train(config, workdir: str) -> dict:
  """Trains (or resumes) the configured model in `workdir`; returns the last eval metrics."""
  check_workdir(workdir)
  distributed.maybe_initialize(config.distributed)
  config_lib.validate(config, jax.device_count())
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  t, rules = config.train, config_lib.logical_rules(config)

  # Mesh.
  mesh = partitioning.make_mesh(config)
  log.info("mesh %s over %d devices (%d processes), rules %s", dict(mesh.shape), jax.device_count(),
           jax.process_count(), config.mesh.parallelism if not config.mesh.rules else "custom")
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):

    # Data.
    tokenizer = tokenizer_lib.load_or_train_tokenizer(config, workdir)
    shard = dict(process_index=jax.process_index(), process_count=jax.process_count())
    train_iter = iter(pipeline.make_dataset(config, tokenizer, "train", **shard))

    parts = build(config, mesh)
    log.info("model: %s, %.2fM parameters", config.model.family, parts.num_params / 1e6)

    # Restore, or initialise.
    manager = checkpoints.make_manager(workdir, keep=t.keep_checkpoints)
    state = checkpoints.restore(
        manager, checkpoints.abstract_like(parts.abstract_state, parts.state_sharding), train_iter)
    if state is None:
      state = parts.init(jax.random.key(config.seed))
    else:
      log.info("resumed from checkpoint step %d", int(state.step))
      if int(state.step) >= t.steps:
        log.info("the run is complete (train.steps=%d); raise train.steps to train further", t.steps)
    # Only once the workdir's checkpoint (if any) has been read with this config: a refused
    # resume leaves the run's own config.json and tokenizer as they were.
    if is_main:
      config_lib.save_config(config, os.path.join(workdir, "config.json"))
      tokenizer_lib.save_run_copy(tokenizer, workdir)

    # Loop.
    flops_per_token = models.flops_per_token(parts.model_config, config.data.seq_len,
                                             objectives.target_len(config.data) or None)
    evaluate = lambda params: evaluate_split(config, tokenizer, shard, parts, params,
                                             max_batches=t.eval_batches)
    return run_loop(config, workdir, parts, state, manager, train_iter, evaluate,
                    tokens_per_step=t.batch_size * config.data.seq_len,
                    flops_per_token=flops_per_token)


def run_loop(config, workdir: str, parts: "Parts", state, manager, train_iter, evaluate: Callable,
             *, tokens_per_step: int, flops_per_token: float,
             after_eval: Callable | None = None) -> dict:
  """Steps from state.step to train.steps: logs, evaluates (`evaluate(params) -> metrics`, then
  `after_eval(step, state, metrics) -> stop early?`), checkpoints with the iterator, and saves
  and exits on SIGTERM. Logs the compiled step's costs first and a run summary last. Closes the
  manager and the iterator. Returns the last eval metrics."""
  t, is_main = config.train, jax.process_index() == 0
  writer = metrics_lib.MetricWriter(workdir, enabled=is_main)
  peak = metrics_lib.peak_flops_per_device(config.hardware.peak_flops_per_device)
  to_global = lambda b: jax.make_array_from_process_local_data(parts.batch_sharding, b)
  step = first_step = int(state.step)
  throughput = _Throughput(tokens_per_step)
  tracer = profiling.StepTracer(_profile_dir(workdir), t.profile_start, t.profile_steps)
  eval_metrics, train_step = {}, None
  stop = _PreemptionFlag()
  try:
    pending = []
    while step < t.steps:
      batch = jax.tree.map(to_global, next(train_iter))
      if train_step is None:
        train_step = _compile(parts, state, batch, writer, step)
      tracer.before(step + 1)
      state, m = train_step(state, batch)
      step += 1
      if tracer.after(step, m):
        throughput.restart(m, step)  # traced steps are not training throughput
      pending.append(m)
      throughput.start(m, step)  # the first step includes compilation: time from its end
      last = step == t.steps
      if step % t.log_every == 0 or last:
        _check_health(state, manager)
        row = _mean_row(jax.device_get(pending))
        row.update(throughput.lap(step, flops_per_token, peak))
        writer.write(step, "train", row)
        pending = []
      early_stop = False
      if step % t.eval_every == 0 or last:
        eval_metrics = evaluate(state.params)
        writer.write(step, "eval", eval_metrics)
        if after_eval is not None:
          _check_health(state, manager)
          early_stop = after_eval(step, state, eval_metrics)
        throughput.restart(m, step)  # eval time is not training throughput
      preempted = stop.check(step % t.log_every == 0)
      if step % t.checkpoint_every == 0 or last or preempted or early_stop:
        _check_health(state, manager)
        checkpoints.save(manager, step, state, train_iter, force=True)
      if preempted:
        log.warning("preempted: saved the checkpoint of step %d; rerun the same command to resume",
                    step)
        break
      if early_stop:
        break
    _summarize(writer, state, first_step, step, throughput, flops_per_token, peak,
               skipped=t.bad_steps == "skip")
  finally:
    tracer.stop()
    stop.restore()
    manager.wait_until_finished()
    manager.close()
    writer.close()
    train_iter.close()
  return eval_metrics


def _compile(parts: "Parts", state, batch, writer, step: int) -> Callable:
  """The train step compiled ahead of time for this state and batch, its costs logged."""
  begin = time.perf_counter()
  compiled = parts.train_step.lower(state, batch).compile()
  stats = profiling.compiled_stats(compiled, state, parts.num_params)
  stats["compile_seconds"] = time.perf_counter() - begin
  profiling.log_compiled_stats(stats)
  writer.write(step, "setup", stats, echo=False)
  return compiled


# Metrics that count since the start of the run: a log row shows the latest value, not a mean.
_RUNNING_TOTALS = ("skipped_steps",)


def _mean_row(pending: list[dict]) -> dict:
  return {k: float(pending[-1][k] if k in _RUNNING_TOTALS else np.mean([x[k] for x in pending]))
          for k in pending[0]}


class _Throughput:
  """Training time between log rows, without compilation and evaluation, for tokens/s and MFU
  per row and over the whole run."""

  def __init__(self, tokens_per_step: int):
    self.tokens_per_step = tokens_per_step
    self.began, self.timer, self.timer_step = time.perf_counter(), None, None
    self.timed_steps, self.timed_seconds = 0, 0.0

  def start(self, outputs, step: int) -> None:
    if self.timer is None:
      self.restart(outputs, step)

  def restart(self, outputs, step: int) -> None:
    jax.block_until_ready(outputs)
    self.timer, self.timer_step = time.perf_counter(), step

  def lap(self, step: int, flops_per_token: float, peak: float) -> dict:
    if step <= self.timer_step:
      return {}
    elapsed, steps = time.perf_counter() - self.timer, step - self.timer_step
    self.timed_steps += steps
    self.timed_seconds += elapsed
    self.timer, self.timer_step = time.perf_counter(), step
    tps = self.tokens_per_step * steps / elapsed
    return dict(tokens_per_sec=tps, step_time=elapsed / steps,
                mfu=metrics_lib.mfu(tps, flops_per_token, peak))

  def mean_tokens_per_sec(self) -> float:
    return self.tokens_per_step * self.timed_steps / self.timed_seconds if self.timed_seconds else 0.0


def _summarize(writer, state, first_step: int, step: int, throughput: _Throughput,
               flops_per_token: float, peak: float, *, skipped: bool) -> None:
  """The run's totals in the log and as a "summary" row of metrics.jsonl."""
  tps = throughput.mean_tokens_per_sec()
  summary = dict(steps=step, steps_this_run=step - first_step,
                 tokens_this_run=throughput.tokens_per_step * (step - first_step),
                 wall_seconds=time.perf_counter() - throughput.began, tokens_per_sec=tps,
                 mfu=metrics_lib.mfu(tps, flops_per_token, peak))
  if skipped:
    summary["skipped_steps"] = int(state.health.skipped)
  best = writer.best("eval", "loss")
  if best is not None:
    summary.update(best_eval_step=best[0], best_eval_loss=best[1])
  writer.write(step, "summary", summary, echo=False)
  log.info("run summary: step %d (%d this run, %.3e tokens) in %.1f s, %.0f tokens/s, MFU %.2f%%%s%s",
           step, summary["steps_this_run"], summary["tokens_this_run"], summary["wall_seconds"],
           tps, 100 * summary["mfu"],
           f", {summary['skipped_steps']} skipped steps" if skipped else "",
           f", best eval loss {best[1]:.4f} at step {best[0]}" if best else "")


def _profile_dir(workdir: str) -> str:
  """workdir/profile, per process when there are several (each writes its host's trace)."""
  directory = os.path.join(workdir, "profile")
  if jax.process_count() > 1:
    directory = os.path.join(directory, f"process_{jax.process_index()}")
  return directory


class Parts(NamedTuple):
  """What a run is made of, built from the config for a mesh (also used by benchmarks)."""
  model_config: ModelConfig
  model: nn.Module
  task: tasks.Task
  num_params: int
  abstract_state: steps.TrainState
  state_sharding: steps.TrainState
  batch_sharding: jax.sharding.NamedSharding
  init: Callable          # rng -> sharded TrainState
  train_step: Callable    # (state, batch) -> (state, metrics); donates state
  eval_step: Callable     # (params, batch) -> sums


def build(config, mesh) -> Parts:
  """The pretraining model and optimizer. Call inside `jax.set_mesh(mesh)` and
  `nn.logical_axis_rules(rules)`."""
  model_config = ModelConfig.from_config(config.model)
  task = tasks.get_task(config.data.objective, config.model.family)
  init_batch = task.init_batch(config.data.seq_len, objectives.target_len(config.data))
  return assemble(config, mesh, model_config, models.build_model(model_config), task, init_batch,
                  optimizers.make_optimizer(config.optimizer, config.train.steps))


def assemble(config, mesh, model_config: ModelConfig, model: nn.Module, task: tasks.Task,
             init_batch: dict, tx, make_plan: Callable | None = None) -> Parts:
  """Everything a run needs around a model, abstractly first: shardings come from the logical
  annotations. `make_plan(abstract params) -> plan` chooses the trained parameters (see
  steps.split_params); without it everything trains."""
  t, rules = config.train, config_lib.logical_rules(config)
  args, kwargs = task.model_inputs(init_batch)
  init_params = lambda rng: model.init(rng, *args, **kwargs)["params"]
  rng = jax.random.key(config.seed)
  plan = make_plan(jax.eval_shape(lambda r: nn.meta.unbox(init_params(r)), rng)) if make_plan else None
  init_state = lambda rng: steps.init_state(nn.meta.unbox(init_params(rng)), tx, plan)
  abstract_state = jax.eval_shape(init_state, rng)
  state_sharding = _state_shardings(abstract_state, jax.eval_shape(init_params, rng), tx, mesh,
                                    rules, plan)
  batch_sharding = partitioning.data_sharding(mesh, rules)
  train_step = jax.jit(
      steps.make_train_step(model, tx, task, seed=config.seed, grad_accum_steps=t.grad_accum_steps,
                            z_loss=t.z_loss, schedule=optimizers.make_schedule(config.optimizer, t.steps),
                            plan=plan, skip_bad_steps=t.bad_steps == "skip",
                            spike_sigma=t.spike_sigma, spike_window=t.spike_window),
      in_shardings=(state_sharding, batch_sharding),
      out_shardings=(state_sharding, partitioning.replicated(mesh)), donate_argnums=0)
  eval_step = jax.jit(steps.make_eval_step(model, task),
                      in_shardings=(state_sharding.params, batch_sharding))
  return Parts(model_config, model, task, sum(x.size for x in jax.tree.leaves(abstract_state.params)),
               abstract_state, state_sharding, batch_sharding,
               jax.jit(init_state, out_shardings=state_sharding), train_step, eval_step)


def _state_shardings(abstract_state, boxed_params, tx, mesh, rules, plan):
  """Params by their logical axes; optimizer leaves shaped like their (trained part of the)
  parameter share its sharding (Adafactor's factored moments and counters are replicated)."""
  param_sharding = partitioning.tree_shardings(boxed_params, mesh, rules)
  replicated = partitioning.replicated(mesh)
  trained = jax.eval_shape(lambda p: steps.split_params(plan, p)[0], abstract_state.params)
  trained_sharding = steps.split_params(plan, param_sharding, take=lambda s, k: (s, s))[0]
  opt_sharding = optax.tree_map_params(
      tx, lambda leaf, sharding, param: sharding if leaf.shape == param.shape else replicated,
      abstract_state.opt_state, trained_sharding, trained,
      transform_non_params=lambda _: replicated)
  return abstract_state.replace(
      step=replicated, params=param_sharding, opt_state=opt_sharding,
      health=jax.tree.map(lambda _: replicated, abstract_state.health))


def evaluate_split(config, tokenizer, shard, parts: Parts, params, *,
                   max_batches: int | None) -> dict:
  """Every loss term, the loss and the token-weighted perplexity over the held-out split's first
  `max_batches` batches (None: all of them). Every process runs the same number of steps: a
  process whose share runs out feeds zero-weight batches."""
  it = iter(pipeline.make_dataset(config, tokenizer, "eval", **shard))
  to_global = lambda b: jax.make_array_from_process_local_data(parts.batch_sharding, b)
  sums, counts, filler, taken = {}, {}, None, 0
  while max_batches is None or taken < max_batches:
    batch = next(it, None)
    if max_batches is None and not distributed.any_process(batch is not None):
      break
    if batch is None:
      if filler is None:
        raise ConfigError("the eval split is empty: give data.eval_files or raise data.eval_fraction")
      batch = filler
    filler = jax.tree.map(np.zeros_like, batch)
    batch_sums, batch_counts = jax.device_get(parts.eval_step(params, jax.tree.map(to_global, batch)))
    for term in batch_sums:
      sums[term] = sums.get(term, 0.0) + float(batch_sums[term])
      counts[term] = counts.get(term, 0.0) + float(batch_counts[term])
    taken += 1
  it.close()
  if not sums:
    raise ConfigError("the eval split is empty: give data.eval_files or raise data.eval_fraction")
  values = {t: sums[t] / max(counts[t], 1.0) for t in sums if not t.endswith("z_loss")}
  loss = sum(values[t] for t in parts.task.loss_terms if t in values)
  return {"loss": loss, "perplexity": float(np.exp(min(values[parts.task.nll_term], 100.0))),
          **values}


def _check_health(state, manager) -> None:
  """Halts at the first bad step (halt policy: it was not applied); runs before every save."""
  health = jax.device_get(state.health)
  if health.bad_step < 0:
    return
  manager.wait_until_finished()
  good = manager.latest_step()
  raise TrainingHalted(
      f"non-finite loss ({float(health.bad_loss)}) or gradient norm "
      f"({float(health.bad_grad_norm)}) at step {int(health.bad_step) + 1}; it was not applied, "
      f"nothing after it was saved and "
      f"{'checkpoint ' + str(good) if good is not None else 'no checkpoint'} is intact: "
      "lower optimizer.learning_rate, raise optimizer.warmup_steps or set train.z_loss; "
      "train.bad_steps=skip drops such steps instead")


class _PreemptionFlag:
  """Set by SIGTERM (how TPU VMs and SLURM announce preemption) so the loop saves and exits.
  With several processes the flag is agreed on at log steps, so all save the same step."""

  def __init__(self):
    self._set = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def restore(self) -> None:
    signal.signal(signal.SIGTERM, self._previous)

  def _handle(self, signum, frame):
    self._set = True

  def check(self, at_log_step: bool) -> bool:
    if jax.process_count() == 1:
      return self._set
    return at_log_step and distributed.any_process(self._set)


class _StderrHandler(logging.StreamHandler):
  """Writes to whatever sys.stderr is when a record comes (notebooks and pytest replace it)."""

  @property
  def stream(self):
    return sys.stderr

  @stream.setter
  def stream(self, value):
    del value


def log_to_console() -> None:
  """Our own handler: absl (imported by grain and Orbax) owns the root logger."""
  if not log.handlers:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv=None) -> int:
  log_to_console()
  try:
    values, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    config = config_lib.load_config(values["config"], overrides)
    result = train(config, values["workdir"])
  except RootsError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if result:
    log.info("final eval: loss %.4f, perplexity %.2f", result["loss"], result["perplexity"])
  return 0


if __name__ == "__main__":
  sys.exit(main())
