"""Two local processes (4 CPU devices each) against a coordinator on 127.0.0.1 train like one
process holding the same global batches, for each model family."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import linen as nn

from tiny_gpt import read_metrics, tiny_finetune_args, tiny_overrides
from roots_jax import config as config_lib
from roots_jax import objectives
from roots_jax.runs.evaluation import evaluate_run
from roots_jax.runs.pretrain import build, load_or_train_tokenizer
from roots_jax.training import partitioning

STEPS = 4


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _reference_losses(config, workdir) -> list[float]:
  """One process, 8 devices: each global batch is the two processes' local batches together."""
  mesh, rules = partitioning.make_mesh(config), partitioning.logical_rules(config)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    tokenizer = load_or_train_tokenizer(config, str(workdir))
    shares = [iter(objectives.dataset(config, tokenizer, "train", process_index=i, process_count=2))
              for i in range(2)]
    parts = build(config, mesh)
    state = parts.init(jax.random.key(config.seed))
    losses = []
    for _ in range(STEPS):
      local = [next(it) for it in shares]
      batch = {k: np.concatenate([b[k] for b in local]) for k in local[0]}
      state, metrics = parts.train_step(state, jax.device_put(batch, parts.batch_sharding))
      losses.append(float(metrics["loss"]))
  return losses


def _launch(module: str, spec: str, overrides: list[str], workdir) -> list[str]:
  """Runs `python -m module` as 2 processes of 4 CPU devices; returns their outputs."""
  address = f"127.0.0.1:{_free_port()}"
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_NUM_CPU_DEVICES="4", JAX_PLATFORMS="cpu")
  processes = [
      subprocess.Popen([sys.executable, "-m", module, "--config", spec,
                        "--workdir", str(workdir), *[f"--config.{o}" for o in overrides],
                        f"--config.distributed.coordinator_address={address}",
                        "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in processes]
  assert [p.returncode for p in processes] == [0, 0], outputs
  assert "over 8 devices (2 processes)" in outputs[0]
  return outputs


@pytest.mark.parametrize("spec, extra", [
    ("configs/gpt2.py:tiny", {}), ("configs/t5.py:tiny", {"model__head_dim": 16})])
def test_two_processes_match_one_process_on_the_same_global_batch(corpus, tmp_path, spec, extra):
  overrides = tiny_overrides(corpus, train__steps=STEPS, mesh__shape="2,2,2",
                             mesh__parallelism="fsdp_tp", **extra)
  workdir = tmp_path / "run"
  _launch("roots_jax.train", spec, overrides, workdir)

  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  losses = [r["loss"] for r in rows if r["split"] == "train"]
  assert len(losses) == STEPS
  reference = _reference_losses(config_lib.load_config(spec, overrides), tmp_path)
  np.testing.assert_allclose(losses, reference, rtol=2e-5)
  assert sorted(os.listdir(workdir / "checkpoints")) == [str(STEPS)]


def test_two_processes_fine_tune_and_score_every_example(pretrained, task_files, tmp_path):
  """Two processes fine-tune T5 with generation metrics at each evaluation, each scoring its own
  share of the validation examples; one 8-device process scoring the same step gets the same
  metrics. (Which reference each generation meets: test_evaluate.py.)"""
  spec, overrides = tiny_finetune_args("seq2seq", pretrained["encoder_decoder"], task_files,
                                       finetune__metric="rougeL", mesh__shape="2,2,2",
                                       mesh__parallelism="fsdp_tp")
  workdir = tmp_path / "run"
  _launch("roots_jax.finetune", spec, overrides, workdir)
  logged = read_metrics(workdir, "eval")[STEPS]
  results = evaluate_run(str(workdir), ["distributed.initialize=no"],
                         split="validation", checkpoint="latest")
  assert results["checkpoint_step"] == STEPS
  expected = {k: v for k, v in logged.items() if k not in ("step", "split")}
  assert results["metrics"] == pytest.approx(expected, rel=1e-5)
