"""Multi-process setup: `jax.distributed.initialize` when configured or when the platform says so;
and agreeing on a flag across processes."""

import os

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

# Variables that mean "this process is one of several" on the platforms JAX auto-detects.
_CLUSTER_HINTS = (
    ("SLURM_NTASKS", lambda v: int(v) > 1),
    ("OMPI_COMM_WORLD_SIZE", lambda v: int(v) > 1),
    ("TPU_WORKER_HOSTNAMES", lambda v: "," in v),
    ("JAX_COORDINATOR_ADDRESS", bool),
)


def maybe_initialize(dist: ml_collections.ConfigDict) -> None:
  """Initializes the distributed runtime once; must run before any other JAX call."""
  if dist.initialize == "no":
    return
  explicit = bool(dist.coordinator_address)
  detected = any(name in os.environ and test(os.environ[name]) for name, test in _CLUSTER_HINTS)
  if dist.initialize == "auto" and not (explicit or detected):
    return
  jax.distributed.initialize(
      coordinator_address=dist.coordinator_address or None,
      num_processes=dist.num_processes or None,
      process_id=dist.process_id if dist.process_id >= 0 else None)


def any_process(flag: bool) -> bool:
  """Whether `flag` is set on any process (every process must call it)."""
  if jax.process_count() == 1:
    return flag
  return bool(multihost_utils.process_allgather(np.array(flag)).any())
