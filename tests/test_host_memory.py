"""A command re-executes itself with glibc's malloc tunables, and they spare XLA's CPU steps
their page faults."""

import os
import subprocess
import sys

import pytest

from roots_jax import host_memory

on_glibc = pytest.mark.skipif(not host_memory.missing_tunables(),
                              reason="not glibc >= 2.35, or the tunables are set already")
ALL = ":".join(f"{name}={value}" for name, value in host_memory.TUNABLES.items())
SHOW_TUNABLES = ("from roots_jax import host_memory; host_memory.tune_malloc(); "
                 "import os; print(os.environ.get('GLIBC_TUNABLES'))")
# Page faults per call of a jitted function with a [4096, 4096] float32 temporary (64 MiB).
FAULTS = """
import resource, jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.dot(jnp.exp(x), x[0]).sum())
x = jnp.ones((4096, 4096))
f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
  f(x).block_until_ready()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
"""


def _env(**changes) -> dict:
  env = {k: v for k, v in os.environ.items()
         if k not in ("GLIBC_TUNABLES", "LD_PRELOAD", host_memory.SWITCH)}
  return {**env, **changes}


def _run(code: str, **env) -> str:
  return subprocess.run([sys.executable, "-c", code], env=_env(**env), text=True,
                        capture_output=True, check=True).stdout.strip()


@on_glibc
def test_the_process_starts_again_with_the_tunables_the_user_has_not_set():
  assert _run(SHOW_TUNABLES) == ALL
  assert _run(SHOW_TUNABLES, GLIBC_TUNABLES="glibc.malloc.arena_max=2") == (
      "glibc.malloc.arena_max=2:" + ALL)
  # The user's own value of one stays, and the others are added.
  assert _run(SHOW_TUNABLES, GLIBC_TUNABLES="glibc.malloc.hugetlb=0") == (
      "glibc.malloc.hugetlb=0:" + ALL.split(":", 1)[1])
  assert _run(SHOW_TUNABLES, **{host_memory.SWITCH: "0"}) == "None"
  assert _run(SHOW_TUNABLES, LD_PRELOAD="libtcmalloc_minimal.so.4") == "None"


@on_glibc
def test_commands_start_again_with_them_and_importing_them_does_not(tmp_path):
  # Every interpreter start says which tunables it has (a sitecustomize on the path).
  (tmp_path / "sitecustomize.py").write_text(
      "import os, sys\nsys.stderr.write(f\"start {os.environ.get('GLIBC_TUNABLES')}\\n\")\n")
  env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path), os.getcwd()]))
  starts = lambda args: [line for line in subprocess.run(
      [sys.executable, *args], env=env, text=True, capture_output=True, check=True
  ).stderr.splitlines() if line.startswith("start ")]
  for command in ("train", "finetune", "evaluate", "generate", "convert"):
    assert starts(["-m", f"roots_jax.{command}", "--help"]) == ["start None", f"start {ALL}"], (
        command)
  assert starts(["-c", "import roots_jax.train"]) == ["start None"]


@on_glibc
def test_the_tunables_spare_an_xla_step_nearly_all_its_page_faults():
  without = float(_run(FAULTS, **{host_memory.SWITCH: "0"}))
  tuned = float(_run(FAULTS, GLIBC_TUNABLES=ALL))
  assert without > 10_000 and tuned < without / 10, (without, tuned)
