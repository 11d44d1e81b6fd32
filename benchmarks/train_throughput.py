"""Train-step throughput and MFU of a config on this machine's devices, on synthetic batches.

  python benchmarks/train_throughput.py --config configs/quickstart.py --steps 20 [--config.KEY=VALUE ...]

Measures the jitted train step alone (the data pipeline has its own numbers); prints a table.
"""

import contextlib
import sys
import time

from roots_jax import host_memory

if __name__ == "__main__":  # as the commands run (roots_jax/host_memory.py)
  host_memory.tune_malloc()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
from flax import linen as nn

from roots_jax import cli, objectives
from roots_jax import config as config_lib
from roots_jax.runs import pretrain
from roots_jax.training import partitioning, profiling


def benchmark(config, num_steps: int) -> dict:
  with _built(config) as (mesh, parts):
    b, t = config.train.batch_size, config.data.seq_len
    # Compiled before anything is allocated: autotuning times kernels in the free memory.
    start = time.perf_counter()
    step = _lowered(config, parts).compile()
    compile_s = time.perf_counter() - start
    memory = step.memory_analysis()
    batch = jax.device_put(synthetic_batch(parts.loss, config), parts.batch_sharding)
    state = parts.init(jax.random.key(0))
    for _ in range(2):  # warm steps outside the timing: the first runs allocate
      state, m = step(state, batch)
    jax.block_until_ready(m)
    start = time.perf_counter()
    for _ in range(num_steps):
      state, m = step(state, batch)
    jax.block_until_ready(m)
    step_s = (time.perf_counter() - start) / num_steps
  tokens_per_sec = b * t / step_s
  flops_per_token = pretrain.flops_per_token(config, parts.model_config)
  peak = profiling.peak_flops_per_device(config.hardware.peak_flops_per_device)
  return {
      "params (M)": parts.num_params / 1e6,
      "devices": jax.device_count(),
      "device": jax.devices()[0].device_kind,
      "mesh": "x".join(map(str, mesh.shape.values())),
      "batch x seq": f"{b}x{t}",
      "dtype": config.model.dtype,
      "compile (s)": compile_s,
      "peak memory (GiB)": profiling.peak_bytes(memory) / 2**30 if memory else "unknown",
      "step (ms)": step_s * 1e3,
      "tokens/s": tokens_per_sec,
      "TFLOP/s/device": tokens_per_sec * flops_per_token / jax.device_count() / 1e12,
      "MFU": profiling.format_mfu(profiling.mfu(tokens_per_sec, flops_per_token, peak)),
  }


def lowered_step(config):
  """config's train step lowered for abstract state and batch: compiling it gives XLA's memory
  plan (profiling.peak_bytes) without allocating anything, which sizes a batch before it runs."""
  with _built(config) as (_, parts):
    return _lowered(config, parts)


def _lowered(config, parts):
  """parts.train_step lowered for abstract state and a batch of config's size."""
  state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s,
                                                         weak_type=a.weak_type),
                       parts.abstract_state, parts.state_sharding)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=parts.batch_sharding)
           for k, v in synthetic_batch(parts.loss, config).items()}
  return parts.train_step.lower(state, batch)


@contextlib.contextmanager
def _built(config):
  """(mesh, the run's Parts) of `config` on this machine's devices, inside its mesh and rules."""
  config_lib.validate(config, jax.device_count())
  mesh, rules = partitioning.make_mesh(config), partitioning.logical_rules(config)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    yield mesh, pretrain.build(config, mesh)


def synthetic_batch(loss, config) -> dict:
  """Random tokens in the task's batch layout: one segment per row, every target counted."""
  rng = np.random.default_rng(0)
  b, t = config.train.batch_size, config.data.seq_len
  batch = {}
  for key, (shape, dtype) in loss.example(t, objectives.target_len(config.data)).items():
    shape = (b, *shape)
    if key.endswith("segment_ids") or np.issubdtype(dtype, np.floating):
      batch[key] = np.ones(shape, dtype)
    elif key.endswith("positions"):
      batch[key] = np.broadcast_to(np.arange(shape[-1], dtype=dtype), shape).copy()
    else:
      batch[key] = rng.integers(0, 2 if key in ("token_types", "nsp_labels") else
                                config.model.vocab_size, shape, dtype=dtype)
  return batch


def print_table(rows: dict) -> None:
  width = max(map(len, rows))
  for name, value in rows.items():
    shown = f"{value:,.4g}" if isinstance(value, float) else str(value)
    print(f"| {name:<{width}} | {shown:>14} |")


def main() -> int:
  p = cli.ArgumentParser(prog="python benchmarks/train_throughput.py", description=__doc__,
                         overrides=True)
  p.add_argument("--config", required=True, metavar="NAME[:ARG]",
                 help=config_lib.config_argument_help())
  p.add_argument("--steps", type=int, required=True, help="timed steps")

  def command():
    args = p.parse()
    print_table(benchmark(config_lib.load_config(args.config, args.overrides), args.steps))

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
