"""The one train loop every kind of training run uses: steps, log rows, evaluation, checkpoints
with the data position, preemption (SIGTERM), bad-step halts and a run summary."""

import logging
import os
import signal
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from roots_jax import progress
from roots_jax.errors import TrainingHalted
from roots_jax.runs.assemble import Parts
from roots_jax.training import checkpoints, distributed, metric_writer, profiling, pruning

log = logging.getLogger("roots_jax")


def run_loop(config, workdir: str, parts: Parts, state, manager, train_iter,
             evaluate: Callable | None, *, tokens_per_step: int, flops_per_token: float,
             after_eval: Callable | None = None) -> dict:
  """Steps from state.step to train.steps: logs, evaluates (`evaluate(params) -> metrics`, then
  `after_eval(step, state, metrics) -> stop early?`; None: no evaluation), checkpoints with the
  iterator, and saves and exits on SIGTERM. Logs the compiled step's costs first and a run summary last. Closes the
  manager and the iterator. Returns the last eval metrics."""
  t, is_main = config.train, jax.process_index() == 0
  writer = metric_writer.MetricWriter(workdir, enabled=is_main, loggers=t.loggers,
                                      run_config=config.to_dict())
  peak = profiling.peak_flops_per_device(config.hardware.peak_flops_per_device)
  to_global = lambda b: jax.make_array_from_process_local_data(parts.batch_sharding, b)
  step = first_step = int(state.step)
  throughput = _Throughput(tokens_per_step)
  tracer = profiling.StepTracer(_profile_dir(workdir), t.profile_start, t.profile_steps)
  eval_metrics, train_step = {}, None
  stop = _PreemptionFlag()
  # The log rows say where the run is when stderr is no terminal: no progress lines of its own.
  bar = progress.Progress("train", t.steps, unit="step", initial=step, delay_s=0.0,
                          log_lines=False)
  try:
    pending = []
    while step < t.steps:
      batch = jax.tree.map(to_global, next(train_iter))
      if train_step is None:
        train_step = _compile(parts, state, batch, writer, step)
        bar.resume()
      tracer.before(step + 1)
      state, m = train_step(state, batch, *parts.step_constants)
      step += 1
      if tracer.after(step, m):
        throughput.restart(m, step)  # traced steps are not training throughput
      pending.append(m)
      throughput.start(m, step)  # the first step includes compilation: time from its end
      last = step == t.steps
      postfix = None
      if step % t.log_every == 0 or last:
        _check_health(state, manager)
        row = _mean_row(jax.device_get(pending))
        row.update(throughput.lap(step, flops_per_token, peak))
        writer.write(step, "train", row, total_steps=t.steps,
                     eta_s=throughput.seconds_left(step, t.steps))
        postfix, pending = f"loss {row['loss']:.4f}", []
      bar.update(postfix=postfix)
      early_stop = False
      if evaluate is not None and (step % t.eval_every == 0 or last):
        eval_metrics = evaluate(state.params)
        writer.write(step, "eval", eval_metrics)
        if after_eval is not None:
          _check_health(state, manager)
          early_stop = after_eval(step, state, eval_metrics)
        throughput.restart(m, step)  # eval time is not training throughput
        bar.resume()
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
    bar.close()
    tracer.stop()
    stop.restore()
    manager.wait_until_finished()
    manager.close()
    writer.close()
    train_iter.close()
  return eval_metrics


def _compile(parts: Parts, state, batch, writer, step: int) -> Callable:
  """The train step compiled ahead of time for this state and batch, its costs logged."""
  begin = time.perf_counter()
  compiled = parts.train_step.lower(state, batch, *parts.step_constants).compile()
  stats = profiling.compiled_stats(compiled, state, parts.num_params)
  stats["compile_seconds"] = time.perf_counter() - begin
  profiling.log_compiled_stats(stats)
  writer.write(step, "setup", stats, echo=False)
  if any(jnp.issubdtype(x.dtype, jnp.integer) and jnp.iinfo(x.dtype).bits < 8
         for x in jax.tree.leaves(parts.step_constants)):
    # XLA:CPU compiles int4 arguments (a QLoRA base's) packed but holds such arrays unpacked,
    # which a compiled step refuses; the jitted step lays them out as it needs.
    return parts.train_step
  return compiled


# Metrics that count since the start of the run, or describe the state (the pruned share): a log
# row shows the latest value, not a mean.
_RUNNING_TOTALS = ("skipped_steps", "sparsity")


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
                mfu=profiling.mfu(tps, flops_per_token, peak))

  def seconds_left(self, step: int, total: int) -> float | None:
    """The time the steps after `step` take at the mean timed step time so far."""
    return (total - step) * self.timed_seconds / self.timed_steps if self.timed_steps else None

  def mean_tokens_per_sec(self) -> float:
    return self.tokens_per_step * self.timed_steps / self.timed_seconds if self.timed_seconds else 0.0


def _summarize(writer, state, first_step: int, step: int, throughput: _Throughput,
               flops_per_token: float, peak: float, *, skipped: bool) -> None:
  """The run's totals in the log and as a "summary" row of metrics.jsonl."""
  tps = throughput.mean_tokens_per_sec()
  summary = dict(steps=step, steps_this_run=step - first_step,
                 tokens_this_run=throughput.tokens_per_step * (step - first_step),
                 wall_seconds=time.perf_counter() - throughput.began, tokens_per_sec=tps,
                 mfu=profiling.mfu(tps, flops_per_token, peak))
  if skipped:
    summary["skipped_steps"] = int(state.health.skipped)
  masks = getattr(state, "masks", None)  # a pruning run's: the share of zeros per kernel and layer
  if masks is not None:
    summary["sparsity"] = float(jax.jit(pruning.sparsity)(state.params, masks))
    summary.update({k: float(v) for k, v in jax.device_get(
        jax.jit(pruning.layer_sparsity)(state.params, masks)).items()})
  best = writer.best("eval", "loss")
  if best is not None:
    summary.update(best_eval_step=best[0], best_eval_loss=best[1])
  writer.write(step, "summary", summary, echo=False)
  log.info("run summary: step %d (%d this run, %.3e tokens) in %.1f s, %.0f tokens/s, MFU %s%s%s%s",
           step, summary["steps_this_run"], summary["tokens_this_run"], summary["wall_seconds"],
           tps, profiling.format_mfu(summary["mfu"]),
           f", {summary['skipped_steps']} skipped steps" if skipped else "",
           f", sparsity {summary['sparsity']:.4f}" if "sparsity" in summary else "",
           f", best eval loss {best[1]:.4f} at step {best[0]}" if best else "")


def _profile_dir(workdir: str) -> str:
  """workdir/profile, per process when there are several (each writes its host's trace)."""
  directory = os.path.join(workdir, "profile")
  if jax.process_count() > 1:
    directory = os.path.join(directory, f"process_{jax.process_index()}")
  return directory


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
