"""End-to-end training runs on a tiny GPT: loss, artifacts, mesh independence, exact resume,
preemption, non-finite halts and CLI errors."""

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from sentencepiece import sentencepiece_model_pb2

from tiny_gpt import log_messages, read_metrics, tiny_overrides
from roots_jax import config as config_lib, models
from roots_jax.errors import CheckpointError, ConfigError, TrainingHalted
from roots_jax.models.config import ModelConfig
from roots_jax.runs.pretrain import train
from roots_jax.train import main as train_main

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


def _wait_for(predicate, process, timeout=240, poll=0.05):
  deadline = time.time() + timeout
  while not predicate():
    assert process.poll() is None, process.communicate()
    assert time.time() < deadline, "timed out"
    time.sleep(poll)


def test_sigkill_at_random_points_then_resume_matches_an_unbroken_run(corpus, tmp_path):
  """Killed three times, at random steps and while an async checkpoint is being written, and rerun
  each time: the run ends with the unbroken run's losses and parameters, bit for bit."""
  extra = dict(train__steps=24, train__checkpoint_every=3, mesh__shape="1,1,1")
  # One device; restarts load the compiled steps from the session's persistent cache.
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  run = lambda workdir: subprocess.Popen(_cli(corpus, workdir, **extra), env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  unbroken = run(tmp_path / "unbroken")

  broken, rng = tmp_path / "broken", random.Random(0)
  logged = lambda: max(read_metrics(broken), default=0) if (broken / "metrics.jsonl").exists() else 0
  saving = lambda: (broken / "checkpoints").exists() and any(
      ".orbax-checkpoint-tmp" in name for name in os.listdir(broken / "checkpoints"))
  killed_mid_save = 0
  for attempt in range(3):
    process, target = run(broken), logged() + rng.randint(2, 5)
    if attempt % 2:
      _wait_for(lambda: logged() >= target and saving(), process, poll=0.001)
    else:
      _wait_for(lambda: logged() >= target, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_mid_save += saving()
  assert killed_mid_save >= 1 and logged() < 24
  final = run(broken)
  outputs = [process.communicate(timeout=300)[1] for process in (final, unbroken)]
  assert final.returncode == unbroken.returncode == 0, outputs
  assert "resumed from checkpoint step" in outputs[0]

  want, got = read_metrics(tmp_path / "unbroken"), read_metrics(broken)
  assert [want[s]["loss"] for s in range(1, 25)] == [got[s]["loss"] for s in range(1, 25)]
  jax.tree.map(np.testing.assert_array_equal, _final_params(tmp_path / "unbroken", 24),
               _final_params(broken, 24))


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
  with pytest.raises(TrainingHalted, match=r"non-finite loss .* at step 2; it was not applied, "
                                           r"nothing after it was saved and checkpoint 1 is intact"):
    train(config, str(tmp_path))
  manager = ocp.CheckpointManager(tmp_path / "checkpoints")
  assert manager.all_steps() == [1]
  params = _final_params(tmp_path, 1)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


def _truncate(path, keep=0.5):
  data = path.read_bytes()
  path.write_bytes(data[:int(len(data) * keep)])


# What a disk, a full quota or a stray `rm` can do to a finished checkpoint directory.
DAMAGE = {
    "truncated arrays": lambda d: [_truncate(f) for f in d.glob("state/**/d/*")],
    "missing array metadata": lambda d: (d / "state" / "_METADATA").unlink(),
    "truncated array metadata": lambda d: _truncate(d / "state" / "_METADATA"),
    "missing state": lambda d: shutil.rmtree(d / "state"),
    "truncated data position": lambda d: _truncate(d / "data" / "process_0-of-1.json"),
    "missing data position": lambda d: (d / "data" / "process_0-of-1.json").unlink(),
}


def test_damaged_checkpoints_are_set_aside_and_the_run_resumes_from_a_good_one(corpus, tmp_path):
  extra = dict(train__steps=6, train__checkpoint_every=2)
  train(_config(corpus, **extra), str(tmp_path))
  want_losses, want_params = read_metrics(tmp_path), _final_params(tmp_path, 6)
  ckpts = tmp_path / "checkpoints"
  DAMAGE["truncated arrays"](ckpts / "6")
  DAMAGE["missing array metadata"](ckpts / "4")
  with log_messages() as warnings:
    train(_config(corpus, **extra), str(tmp_path))
  assert len(warnings) == 2, warnings
  for step, warning in zip((6, 4), warnings):
    assert warning.startswith(f"checkpoint {step} is damaged (") and warning.endswith(
        f"moved it to {tmp_path / 'damaged_checkpoints' / str(step)} and trying the one before it")
  assert sorted(os.listdir(tmp_path / "damaged_checkpoints")) == ["4", "6"]
  got = read_metrics(tmp_path)  # steps 3..6 ran again from checkpoint 2: the same losses
  assert [got[s]["loss"] for s in range(1, 7)] == [want_losses[s]["loss"] for s in range(1, 7)]
  jax.tree.map(np.testing.assert_array_equal, want_params, _final_params(tmp_path, 6))

  # Every kind of damage is caught; with no readable checkpoint left the run stops, moving and
  # deleting nothing else, and says how to go on.
  names = list(DAMAGE)
  for round_ in range(2):
    for step in (2, 4, 6):
      DAMAGE[names[round_ * 3 + step // 2 - 1]](ckpts / str(step))
    with log_messages() as warnings, pytest.raises(CheckpointError, match=(
        f"no checkpoint in {ckpts} could be read; the damaged ones are in "
        f"{tmp_path / 'damaged_checkpoints'}: rerun to start the run from scratch")):
      train(_config(corpus, **extra), str(tmp_path))
    assert len(warnings) == 3 and not os.listdir(ckpts), warnings
    if round_ == 0:
      train(_config(corpus, **extra), str(tmp_path))  # from scratch, as the message says
  assert sorted(os.listdir(tmp_path / "damaged_checkpoints")) == [
      "2", "2.1", "4", "4.1", "4.2", "6", "6.1", "6.2"]


@pytest.mark.parametrize("override, message", [
    ("model.mlp_dim=96", "params/layers/mlp/wi/bias is shape (2, 128) there but shape (2, 96) in "
                         "this run"),
    ("optimizer.name=adafactor", "opt_state/1/0/mu/final_norm/bias is shape (64,) there but absent"),
])
def test_a_checkpoint_of_another_model_is_refused_and_left_alone(corpus, tmp_path, capsys, override,
                                                                 message):
  train(_config(corpus, train__steps=2), str(tmp_path))
  before = _files(tmp_path)
  argv = ["--config", CONFIG, "--workdir", str(tmp_path)] + [
      f"--config.{o}" for o in tiny_overrides(corpus, train__steps=4) + [override]]
  assert train_main(argv) == 2
  err = capsys.readouterr().err
  last = err.strip().splitlines()[-1]
  assert last.startswith("error: ") and message in last and "Traceback" not in err, err
  assert _files(tmp_path) == before


def _files(workdir):
  return {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file() and "tensorboard" not in p.parts}


def test_a_different_tokenizer_is_refused_and_the_run_keeps_its_own(corpus, tmp_path, capsys):
  workdir = tmp_path / "run"
  train(_config(corpus, train__steps=2), str(workdir))
  assert (workdir / "tokenizer" / "spm.model").read_bytes() == (corpus / "spm.model").read_bytes()
  proto = sentencepiece_model_pb2.ModelProto()  # the same vocabulary size, other scores
  proto.ParseFromString((corpus / "spm.model").read_bytes())
  proto.pieces[100].score += 1.0
  (tmp_path / "other.model").write_bytes(proto.SerializeToString())
  before = _files(workdir)
  argv = ["--config", CONFIG, "--workdir", str(workdir)] + [
      f"--config.{o}" for o in tiny_overrides(corpus, train__steps=4,
                                              tokenizer__path=tmp_path / "other.model")]
  assert train_main(argv) == 2
  assert capsys.readouterr().err.strip().splitlines()[-1] == (
      f"error: tokenizer {tmp_path / 'other.model'} is not the tokenizer the run in {workdir} was "
      f"started with ({workdir / 'tokenizer' / 'spm.model'}); set tokenizer.path to that one, or "
      "use a new --workdir")
  assert _files(workdir) == before
  # Without tokenizer.path the run goes on with its own copy.
  train(_config(corpus, train__steps=4, tokenizer__path=""), str(workdir))
  assert sorted(read_metrics(workdir, "setup")) == [0, 2]  # started at step 0, resumed at 2
  assert sorted(read_metrics(workdir)) == [1, 2, 3, 4]


def test_a_checkpoint_of_another_process_count_is_refused(corpus, tmp_path):
  train(_config(corpus, train__steps=2), str(tmp_path))
  data = tmp_path / "checkpoints" / "2" / "data"
  (data / "process_0-of-1.json").rename(data / "process_0-of-2.json")
  with pytest.raises(CheckpointError, match="was written by 2 processes, and the data position is "
                                            "per process: resume with that many processes"):
    train(_config(corpus, train__steps=4), str(tmp_path))


def test_skip_policy_drops_non_finite_steps_and_counts_them(corpus, tmp_path):
  config = _config(corpus, train__steps=5, train__checkpoint_every=1, train__keep_checkpoints=5,
                   train__bad_steps="skip", optimizer__learning_rate=1e30,
                   optimizer__warmup_steps=0, optimizer__clip_norm=0.0)
  train(config, str(tmp_path))  # step 1 applies a huge update; from step 2 the loss overflows
  rows = read_metrics(tmp_path)
  assert [rows[s]["skipped_steps"] for s in range(1, 6)] == [0, 1, 2, 3, 4]
  assert np.isfinite(rows[1]["loss"]) and not any(np.isfinite(rows[s]["loss"]) for s in range(2, 6))
  first = _final_params(tmp_path, 1)
  for step in range(2, 6):  # nothing after step 1 was applied
    jax.tree.map(np.testing.assert_array_equal, first, _final_params(tmp_path, step))
  assert read_metrics(tmp_path, "summary")[5]["skipped_steps"] == 4


def test_start_costs_profile_and_summary(corpus, tmp_path):
  with log_messages(logging.INFO) as records:
    train(_config(corpus, train__steps=6, train__eval_every=2, train__profile_start=3,
                  train__profile_steps=2), str(tmp_path))
  setup = read_metrics(tmp_path, "setup")[0]
  params = sum(x.size for x in jax.tree.leaves(_final_params(tmp_path, 6)))
  assert setup["params"] == params
  # AdamW in float32: the parameters and two moments, plus a few scalars.
  assert 12.0 <= setup["state_bytes_per_param"] < 12.01
  # XLA's count for one device's share (2 of 16 sequences) is near the model's own estimate.
  config = _config(corpus)
  estimate = models.flops_per_token(ModelConfig.from_config(config.model), 32, None) * 16 * 32 / 8
  assert 0.5 < setup["step_flops"] / estimate < 1.5
  assert setup["peak_bytes_estimate"] >= setup["argument_bytes"] > 0
  traces = list((tmp_path / "profile" / "plugins" / "profile").glob("*/*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0
  table = next(r for r in records if r.startswith("profile of steps 3..4 in "))
  assert "ms/step" in table and len(table.splitlines()) > 3, table

  evals = read_metrics(tmp_path, "eval")
  summary = read_metrics(tmp_path, "summary")[6]
  best = min(evals, key=lambda s: evals[s]["loss"])
  assert summary["best_eval_step"] == best and summary["best_eval_loss"] == evals[best]["loss"]
  assert summary["steps"] == summary["steps_this_run"] == 6
  assert summary["tokens_this_run"] == 6 * 16 * 32
  assert summary["tokens_per_sec"] > 0 and 0 < summary["mfu"] < 1 and summary["wall_seconds"] > 0
  line = next(r for r in records
              if r.startswith("run summary: step 6 (6 this run, 3.072e+03 tokens) in "))
  # MFU shown as a percentage; the summary row keeps the fraction.
  assert f", MFU {100 * summary['mfu']:.2f}%" in line, line


def test_cli_errors_are_one_line_with_status_2(corpus, tmp_path):
  result = subprocess.run(_cli(corpus, tmp_path) + ["--config.train.batchsize=3"], capture_output=True,
                          text=True)
  assert result.returncode == 2
  assert result.stderr.strip() == ("error: unknown config key 'train.batchsize'; "
                                   "did you mean train.batch_size?")
  result = subprocess.run([sys.executable, "-m", "roots_jax.train", "--config", CONFIG],
                          capture_output=True, text=True)
  assert result.returncode == 2 and result.stderr.startswith(
      "error: the following arguments are required: --workdir")


def test_continued_pretraining_starts_from_exactly_the_source_parameters(corpus, pretrained,
                                                                          tmp_path):
  source = pretrained["decoder"]  # configs/gpt2.py:tiny, 3 steps on the corpus
  workdir = tmp_path / "continued"
  # The first step's learning rate is 0 (warmup from 0): its parameters are the ones it started
  # from, with a fresh optimizer (step 1, not 4) and data read from the start.
  train(_config(corpus, train__steps=1, init_from=source, optimizer__warmup_steps=2),
        str(workdir))
  started, given = _final_params(workdir, 1), _final_params(source, 3)
  assert jax.tree.structure(started) == jax.tree.structure(given)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(started),
                                                  jax.tree.leaves(given)))
  assert sorted(read_metrics(workdir)) == [1]
  written = json.loads((workdir / "config.json").read_text())
  assert written["init_from"] == os.path.join(source, "checkpoints", "3")
  assert written["tokenizer"]["path"] == str(corpus / "spm.model")


def test_continued_pretraining_refuses_another_model_or_tokenizer(corpus, pretrained, tmp_path):
  source = pretrained["decoder"]
  with pytest.raises(ConfigError, match=r"model.embed_dim is 32 here but 64 in the checkpoint"):
    train(_config(corpus, init_from=source, model__embed_dim=32), str(tmp_path / "a"))
  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString((corpus / "spm.model").read_bytes())
  proto.pieces[100].score += 1.0
  (tmp_path / "other.model").write_bytes(proto.SerializeToString())
  with pytest.raises(ConfigError, match="is not the tokenizer of init_from"):
    train(_config(corpus, init_from=source, tokenizer__path=tmp_path / "other.model"),
          str(tmp_path / "b"))
  assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
