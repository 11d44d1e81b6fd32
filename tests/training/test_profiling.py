"""MFU's denominator: a CPU's peak is measured where the run runs."""

import jax
import pytest

from roots_jax.training import profiling


def test_a_cpu_peak_is_measured_here_and_shared_by_the_simulated_devices(monkeypatch):
  peak = profiling.measured_cpu_peak()
  assert 1e9 < peak < 1e15  # a CPU's FLOP/s, measured once per process
  # The best of the matmuls timed: on a clock where the second of three calls is the fastest,
  # 2 n^3 FLOPs over its time (the timer is faked: a host's load makes real times wander).
  # deadline 0 + 1 s; calls timed 0.5, 0.2 and 0.4 s; the last ends past the deadline.
  clock = iter([0.0, 0.1, 0.6, 0.6, 0.6, 0.8, 0.8, 0.8, 1.2, 1.2])
  monkeypatch.setattr(profiling.time, "perf_counter", lambda: next(clock))
  n = 64
  assert profiling.measured_cpu_peak.__wrapped__(n, seconds=1.0) == pytest.approx(
      2 * n ** 3 / 0.2)
  monkeypatch.undo()
  # The host's devices share it; a configured peak wins.
  assert profiling.peak_flops_per_device(0.0) == peak / jax.local_device_count()
  assert profiling.peak_flops_per_device(5e9) == 5e9
