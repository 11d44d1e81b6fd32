"""What a run costs: the compiled train step's memory and FLOPs at start, a jax.profiler trace
of a window of steps with a summary of where its time went, and model FLOPs utilisation."""

import collections
import functools
import glob
import gzip
import json
import logging
import math
import os
import time

import jax
import numpy as np

log = logging.getLogger("roots_jax")

# Dense peak FLOP/s per device for the compute dtype (bf16 on accelerators), used for MFU. A
# CPU has no fixed figure: its peak is measured where the run runs (measured_cpu_peak).
PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
    "NVIDIA A100": 312e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
}


# The side of the matmul measured_cpu_peak times: large enough for XLA's CPU matmul to reach
# its full rate (2 x 2048^3 = 17 GFLOP, about 35 ms on two AVX-512 cores).
CPU_PEAK_MATMUL = 2048


def compiled_stats(compiled, state, num_params: int) -> dict:
  """The numbers worth knowing before a long run: parameters, bytes per parameter of the whole
  training state (AdamW in float32: 12), and XLA's per-device memory plan and FLOP count of one
  step (what the device runs: with fsdp or tensor sharding, its share). XLA counts a loop's body
  once, so with scanned layers (model.scan_layers) the count holds one layer of the stack."""
  state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves((state.params, state.opt_state)))
  stats = {"params": num_params, "state_bytes_per_param": state_bytes / max(num_params, 1)}
  memory = compiled.memory_analysis()
  if memory is not None:
    stats.update(
        argument_bytes=memory.argument_size_in_bytes, output_bytes=memory.output_size_in_bytes,
        temp_bytes=memory.temp_size_in_bytes, alias_bytes=memory.alias_size_in_bytes,
        peak_bytes_estimate=peak_bytes(memory))
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # one dict per program in older jax
    cost = cost[0] if cost else None
  if cost:
    stats.update(step_flops=float(cost.get("flops", 0.0)),
                 step_bytes_accessed=float(cost.get("bytes accessed", 0.0)))
  return stats


def peak_bytes(memory) -> int:
  """XLA's plan of a compiled program's peak memory per device, from its memory_analysis():
  arguments, outputs and temporaries, less the donated arguments that outputs reuse."""
  return (memory.argument_size_in_bytes + memory.output_size_in_bytes
          + memory.temp_size_in_bytes - memory.alias_size_in_bytes)


def log_compiled_stats(stats: dict) -> None:
  gib = lambda key: f"{stats[key] / 2**30:.3f} GiB"
  log.info("train state: %.2fM parameters, %.1f bytes per parameter", stats["params"] / 1e6,
           stats["state_bytes_per_param"])
  if "peak_bytes_estimate" in stats:
    log.info("compiled train step, per device: arguments %s, outputs %s, temporaries %s, donated "
             "%s, peak about %s", gib("argument_bytes"), gib("output_bytes"), gib("temp_bytes"),
             gib("alias_bytes"), gib("peak_bytes_estimate"))
  if "step_flops" in stats:
    log.info("compiled train step, per device: %.3e FLOPs, %.3e bytes accessed",
             stats["step_flops"], stats["step_bytes_accessed"])


class StepTracer:
  """Traces steps first..first+count-1 (numbered as logged: 1 is the first update) into
  `directory`, readable by TensorBoard's profile plugin and by Perfetto, and logs a summary."""

  def __init__(self, directory: str, first: int, count: int):
    self.directory, self.first, self.last = directory, first, first + count - 1
    self.active = False

  def before(self, step: int) -> None:
    """Call before running `step`."""
    if self.first > 0 and step == self.first:
      jax.profiler.start_trace(self.directory)
      self.active = True

  def after(self, step: int, outputs) -> bool:
    """Call after `step` was dispatched, with its outputs (waited for, so the trace holds it).
    True when the trace ended here: the steps it spans ran slower than usual."""
    if not (self.active and step >= self.last):
      return False
    jax.block_until_ready(outputs)
    self.stop()
    log.info("profile of steps %d..%d in %s (TensorBoard: --logdir %s; or ui.perfetto.dev)\n%s",
             self.first, step, self.directory, self.directory, format_summary(
                 summarize(self.directory), steps=step - self.first + 1))
    return True

  def stop(self) -> None:
    if self.active:
      jax.profiler.stop_trace()
      self.active = False


def summarize(directory: str, top: int = 10) -> list[tuple[str, float, int]]:
  """(operation, total ms, count) of the newest trace under `directory`, the longest first,
  summed over devices: the accelerators' kernels, or on CPU the XLA ops of its worker threads
  (not the runtime's or Python's own frames)."""
  traces = sorted(glob.glob(os.path.join(directory, "plugins", "profile", "*", "*.trace.json.gz")),
                  key=os.path.getmtime)
  if not traces:
    return []
  with gzip.open(traces[-1], "rt") as f:
    events = json.load(f).get("traceEvents", [])
  meta = lambda kind: {(e["pid"], e.get("tid")) if kind == "thread_name" else e["pid"]:
                       e["args"]["name"] for e in events
                       if e.get("ph") == "M" and e.get("name") == kind}
  processes, threads = meta("process_name"), meta("thread_name")
  devices = {pid for pid, name in processes.items() if name.startswith("/device:")}
  if devices:
    keep = lambda e: e["pid"] in devices
  else:
    keep = lambda e: (threads.get((e["pid"], e.get("tid")), "").startswith("tf_XLAEigen")
                      and "::" not in e["name"])
  totals, counts = collections.Counter(), collections.Counter()
  for e in events:
    if e.get("ph") == "X" and keep(e):
      totals[e["name"]] += e.get("dur", 0.0) / 1e3
      counts[e["name"]] += 1
  return [(name, ms, counts[name]) for name, ms in totals.most_common(top)]


def format_summary(rows, steps: int) -> str:
  if not rows:
    return "  (no trace events found)"
  width = max(len(name[:60]) for name, _, _ in rows)
  lines = [f"  {'operation':<{width}}  {'ms/step':>9}  {'calls/step':>10}   (summed over devices)"]
  lines += [f"  {name[:60]:<{width}}  {ms / steps:9.3f}  {count / steps:10.1f}"
            for name, ms, count in rows]
  return "\n".join(lines)


def peak_flops_per_device(configured: float) -> float:
  """The config's value, else the known peak of this device kind, or on CPU the measured one
  (0 when unknown)."""
  if configured > 0:
    return configured
  device = jax.devices()[0]
  if device.platform == "cpu":
    return measured_cpu_peak() / len(jax.local_devices())
  kind = device.device_kind
  for name, flops in PEAK_FLOPS.items():
    if kind.startswith(name):
      return flops
  log.warning("unknown device kind %r: set hardware.peak_flops_per_device to get MFU", kind)
  return 0.0


@functools.cache
def measured_cpu_peak(size: int = CPU_PEAK_MATMUL, seconds: float = 0.5) -> float:
  """This host's float32 FLOP/s on a jitted [size, size] x [size, size] matmul, the best of the
  calls in `seconds` after a warm-up: what XLA's matmul reaches here, the ceiling a train step's
  matmuls can approach (a CPU's vector units and clocks vary too much for a table). The host's
  simulated devices (XLA_FLAGS' host platform device count) share it."""
  device = jax.local_devices(backend="cpu")[0]
  with jax.set_mesh(jax.sharding.Mesh(np.array([device]), ("host",))):  # whatever mesh is set
    x = jax.device_put(np.ones((size, size), np.float32), device)
    matmul = jax.jit(lambda a: a @ a)
    jax.block_until_ready(matmul(x))
    best, deadline = math.inf, time.perf_counter() + seconds
    while best == math.inf or time.perf_counter() < deadline:
      start = time.perf_counter()
      jax.block_until_ready(matmul(x))
      best = min(best, time.perf_counter() - start)
  peak = 2 * size ** 3 / best
  log.info("cpu peak: %.0f GFLOP/s measured (float32 %d^3 matmul)", peak / 1e9, size)
  return peak


def mfu(tokens_per_sec: float, flops_per_token: float, peak_per_device: float) -> float:
  """Model FLOPs utilisation, a fraction: the model FLOP/s of training (the step's matmuls,
  without remat's recomputation: models.families.step_flops) over the peak of all devices."""
  peak = peak_per_device * jax.device_count()
  return tokens_per_sec * flops_per_token / peak if peak > 0 else 0.0


def format_mfu(fraction: float) -> str:
  """MFU as it is shown to people: a percentage (metrics.jsonl keeps the fraction)."""
  return f"{100 * fraction:.2f}%"
