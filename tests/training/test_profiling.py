"""MFU's denominator: a CPU's peak is measured where the run runs."""

import time

import jax
import numpy as np

from roots_jax.training import profiling


def test_a_cpu_peak_is_measured_here_and_shared_by_the_simulated_devices():
  peak = profiling.measured_cpu_peak()
  # The best of its timed matmuls: no slower than one such matmul timed here (2 n^3 FLOPs).
  n = profiling.CPU_PEAK_MATMUL
  x = jax.device_put(np.ones((n, n), np.float32), jax.local_devices()[0])
  matmul = jax.jit(lambda a: a @ a)
  jax.block_until_ready(matmul(x))
  start = time.perf_counter()
  jax.block_until_ready(matmul(x))
  assert peak >= 0.7 * 2 * n ** 3 / (time.perf_counter() - start)
  # The host's devices share it; a configured peak wins.
  assert profiling.peak_flops_per_device(0.0) == peak / jax.local_device_count()
  assert profiling.peak_flops_per_device(5e9) == 5e9
