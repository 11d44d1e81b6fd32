"""End-to-end training runs on a tiny GPT: loss, artifacts, mesh independence, exact resume,
preemption, non-finite halts and CLI errors."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tiny_gpt import read_metrics, tiny_overrides
from roots_jax import config as config_lib
from roots_jax.errors import TrainingHalted
from roots_jax.train import train

CONFIG = "configs/gpt2.py:tiny"


def _config(corpus, **extra):
  return config_lib.load_config(CONFIG, tiny_overrides(corpus, **extra))


def _final_params(workdir, step):
  restored = ocp.StandardCheckpointer().restore(
      os.path.join(os.path.abspath(workdir), "checkpoints", str(step), "state"))
  return jax.device_get(restored["params"])


def _cli(corpus, workdir, **extra):
  args = [sys.executable, "-m", "roots_jax.train", "--config", CONFIG, "--workdir", str(workdir)]
  return args + [f"--config.{o}" for o in tiny_overrides(corpus, **extra)]


def test_loss_falls_and_run_leaves_its_artifacts(corpus, tmp_path):
  result = train(_config(corpus, train__steps=40, train__eval_every=20, train__checkpoint_every=20),
                 str(tmp_path))
  rows = read_metrics(tmp_path)
  assert sorted(rows) == list(range(1, 41))
  first, last = np.mean([rows[s]["loss"] for s in (1, 2, 3)]), np.mean([rows[s]["loss"] for s in (38, 39, 40)])
  assert first > np.log(512) - 1.0 and last < first - 1.5, (first, last)
  for key in ("learning_rate", "grad_norm", "tokens_per_sec", "step_time", "mfu"):
    assert np.isfinite(rows[40][key]) and rows[40][key] > 0
  evals = read_metrics(tmp_path, "eval")
  assert sorted(evals) == [20, 40] and evals[40]["loss"] < evals[20]["loss"]
  assert evals[40]["perplexity"] == pytest.approx(np.exp(evals[40]["loss"]), rel=1e-5)
  assert result["loss"] == pytest.approx(evals[40]["loss"])
  assert json.load(open(tmp_path / "config.json"))["train"]["steps"] == 40
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tensorboard"))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["20", "40"]


@pytest.fixture(scope="module")
def single_device_losses(corpus, tmp_path_factory):
  """Per-step losses of the reference run on one device (a fresh process with one CPU device)."""
  workdir = tmp_path_factory.mktemp("one_device")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  subprocess.run(_cli(corpus, workdir, train__steps=6, mesh__shape="1,1,1"), env=env, check=True,
                 capture_output=True)
  return [read_metrics(workdir)[s]["loss"] for s in range(1, 7)]


@pytest.mark.parametrize("shape, parallelism, accum", [
    ("8,1,1", "dp", 1), ("2,4,1", "fsdp", 1), ("1,2,4", "fsdp_tp", 2)])
def test_loss_does_not_depend_on_the_mesh(corpus, tmp_path, single_device_losses, shape, parallelism,
                                          accum):
  train(_config(corpus, train__steps=6, mesh__shape=shape, mesh__parallelism=parallelism,
                train__grad_accum_steps=accum), str(tmp_path))
  losses = [read_metrics(tmp_path)[s]["loss"] for s in range(1, 7)]
  np.testing.assert_allclose(losses, single_device_losses, rtol=2e-5)


def _wait_for(predicate, process, timeout=240):
  deadline = time.time() + timeout
  while not predicate():
    assert process.poll() is None, process.communicate()
    assert time.time() < deadline, "timed out"
    time.sleep(0.05)


def test_sigkill_then_resume_matches_an_unbroken_run(corpus, tmp_path):
  extra = dict(train__steps=16, train__checkpoint_every=4)
  subprocess.run(_cli(corpus, tmp_path / "unbroken", **extra), check=True, capture_output=True)

  broken = tmp_path / "broken"
  process = subprocess.Popen(_cli(corpus, broken, **extra), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
  steps_logged = lambda: len(read_metrics(broken)) if (broken / "metrics.jsonl").exists() else 0
  # Past the step-4 checkpoint, whose directory appears only once the async save is complete.
  _wait_for(lambda: steps_logged() >= 6 and (broken / "checkpoints" / "4").exists(), process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert steps_logged() < 16
  resumed = subprocess.run(_cli(corpus, broken, **extra), capture_output=True, text=True, check=True)
  assert "resumed from checkpoint step" in resumed.stderr

  unbroken, again = read_metrics(tmp_path / "unbroken"), read_metrics(broken)
  assert [unbroken[s]["loss"] for s in range(1, 17)] == [again[s]["loss"] for s in range(1, 17)]
  a, b = _final_params(tmp_path / "unbroken", 16), _final_params(broken, 16)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_sigterm_saves_the_current_step_and_the_run_resumes(corpus, tmp_path):
  process = subprocess.Popen(_cli(corpus, tmp_path, train__steps=100000), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  _wait_for(lambda: (tmp_path / "metrics.jsonl").exists() and len(read_metrics(tmp_path)) >= 3, process)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 0, stderr
  assert "preempted: saved the checkpoint of step" in stderr
  saved = ocp.CheckpointManager(tmp_path / "checkpoints").latest_step()
  assert saved is not None and saved == max(read_metrics(tmp_path))


def test_restore_into_a_different_mesh(corpus, tmp_path):
  schedule = dict(optimizer__decay_steps=8)
  train(_config(corpus, train__steps=8, mesh__shape="8,1,1", mesh__parallelism="dp", **schedule),
        str(tmp_path / "unbroken"))
  train(_config(corpus, train__steps=4, mesh__shape="8,1,1", mesh__parallelism="dp", **schedule),
        str(tmp_path / "moved"))
  train(_config(corpus, train__steps=8, mesh__shape="2,2,2", mesh__parallelism="fsdp_tp", **schedule),
        str(tmp_path / "moved"))
  unbroken, moved = read_metrics(tmp_path / "unbroken"), read_metrics(tmp_path / "moved")
  np.testing.assert_allclose([moved[s]["loss"] for s in range(1, 9)],
                             [unbroken[s]["loss"] for s in range(1, 9)], rtol=2e-5)


def test_non_finite_loss_halts_and_keeps_the_last_good_checkpoint(corpus, tmp_path):
  config = _config(corpus, train__steps=10, train__checkpoint_every=1, optimizer__learning_rate=1e30,
                   optimizer__warmup_steps=0, optimizer__clip_norm=0.0)
  with pytest.raises(TrainingHalted, match=r"non-finite loss .* at step 2; nothing after it "
                                           r"was saved and checkpoint 1 is intact"):
    train(config, str(tmp_path))
  manager = ocp.CheckpointManager(tmp_path / "checkpoints")
  assert manager.all_steps() == [1]
  params = _final_params(tmp_path, 1)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


def test_cli_errors_are_one_line_with_status_2(corpus, tmp_path):
  result = subprocess.run(_cli(corpus, tmp_path) + ["--config.train.batchsize=3"], capture_output=True,
                          text=True)
  assert result.returncode == 2
  assert result.stderr.strip() == ("error: unknown config key 'train.batchsize'; "
                                   "did you mean train.batch_size?")
  result = subprocess.run([sys.executable, "-m", "roots_jax.train", "--config", CONFIG],
                          capture_output=True, text=True)
  assert result.returncode == 2 and result.stderr.startswith("error: missing --workdir")
