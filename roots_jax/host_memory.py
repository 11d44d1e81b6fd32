"""glibc's malloc tuned for XLA's CPU runtime, which allocates a step's buffers anew on each call.

With glibc's defaults, blocks above a moving threshold are mmap'd and unmapped again when freed,
and the heap's free top is given back, so each step faults its pages in afresh: about 260,000
page faults a step for a 4-layer, width-256 GPT at batch 16 x 256, a quarter of its CPU step,
and KV-cached decoding runs at half speed or full speed depending on what ran before it
(benchmarks/RESULTS.md). Three tunables fix both, as tcmalloc (LD_PRELOAD) does:
  glibc.malloc.hugetlb=1           transparent huge pages for malloc's memory (glibc >= 2.35)
  glibc.malloc.mmap_threshold=32M  a fixed threshold: blocks below it stay in malloc's arenas
  glibc.malloc.trim_threshold=16G  freed memory stays with the process for the next step
glibc reads tunables only when a process starts, so a command re-executes itself once, first
thing, with those the user has not set. Nothing changes under another C library, an
LD_PRELOAD allocator, or ROOTS_JAX_TUNE_MALLOC=0.
"""

import os
import platform
import sys

TUNABLES = {"glibc.malloc.hugetlb": "1", "glibc.malloc.mmap_threshold": str(32 << 20),
            "glibc.malloc.trim_threshold": str(16 << 30)}
SWITCH = "ROOTS_JAX_TUNE_MALLOC"
# glibc.malloc.hugetlb first appears in glibc 2.35.
GLIBC_WITH_TUNABLES = (2, 35)


def tune_malloc() -> None:
  """Re-executes this process (same pid, arguments and environment) with the TUNABLES it lacks
  when it runs on glibc; otherwise returns."""
  missing = missing_tunables()
  if not missing:
    return
  tunables = [t for t in os.environ.get("GLIBC_TUNABLES", "").split(":") if t]
  env = {**os.environ, "GLIBC_TUNABLES": ":".join(
      [*tunables, *(f"{name}={value}" for name, value in missing.items())])}
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, sys.orig_argv, env)


def missing_tunables() -> dict[str, str]:
  """The TUNABLES this process would gain (none where they cannot apply or were turned off)."""
  if os.environ.get(SWITCH) == "0" or "malloc" in os.environ.get("LD_PRELOAD", ""):
    return {}
  libc, version = platform.libc_ver()
  try:
    numbers = tuple(int(v) for v in version.split(".")[:2])
  except ValueError:
    return {}
  if libc != "glibc" or numbers < GLIBC_WITH_TUNABLES:
    return {}
  given = {t.split("=", 1)[0] for t in os.environ.get("GLIBC_TUNABLES", "").split(":")}
  return {name: value for name, value in TUNABLES.items() if name not in given}
