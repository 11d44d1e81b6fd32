"""The loss maths, gradient accumulation, mixed precision and checkpoint bookkeeping."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import linen as nn

from roots_jax import config as config_lib
from roots_jax import objectives
from roots_jax.errors import ConfigError
from roots_jax.runs.pretrain import build, train
from roots_jax.training import losses, partitioning, steps
from tiny_gpt import tiny_overrides


def test_token_terms_match_numpy_with_weights_and_z_loss():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 7)).astype(np.float32) * 3
  targets = rng.integers(0, 7, size=(2, 5))
  weights = (rng.random((2, 5)) > 0.3).astype(np.float32)
  log_z = np.log(np.exp(logits).sum(-1))
  nll = log_z - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
  sums = losses.token_terms(jnp.asarray(logits), targets, weights, z_loss=1e-2)
  np.testing.assert_allclose(sums["nll"], (nll * weights).sum(), rtol=1e-6)
  np.testing.assert_allclose(sums["z_loss"], (1e-2 * log_z**2 * weights).sum(), rtol=1e-6)
  np.testing.assert_allclose(sums["accuracy"], ((logits.argmax(-1) == targets) * weights).sum())


def test_objective_must_fit_the_family():
  with pytest.raises(ConfigError, match="data.objective=mlm_nsp trains a model.family=encoder "
                                        "model, not decoder; for decoder use data.objective=causal"):
    objectives.get("mlm_nsp", "decoder")


def _run_steps(corpus, *overrides, num_steps=3):
  config = config_lib.load_config("configs/gpt2.py:tiny", tiny_overrides(corpus) + list(overrides))
  config_lib.validate(config, jax.device_count())
  mesh, rules = partitioning.make_mesh(config), partitioning.logical_rules(config)
  rng = np.random.default_rng(0)
  b, t = config.train.batch_size, config.data.seq_len
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    parts = build(config, mesh)
    state = parts.init(jax.random.key(0))
    for _ in range(num_steps):
      batch = {"inputs": rng.integers(0, 512, (b, t), dtype=np.int32),
               "targets": rng.integers(0, 512, (b, t), dtype=np.int32),
               "segment_ids": np.repeat(np.arange(1, 3, dtype=np.int32), t // 2)[None].repeat(b, 0),
               "positions": np.tile(np.arange(t // 2, dtype=np.int32), 2)[None].repeat(b, 0),
               "weights": (rng.random((b, t)) > 0.1).astype(np.float32)}
      state, metrics = parts.train_step(state, jax.device_put(batch, parts.batch_sharding))
  return jax.device_get(state.params), float(metrics["loss"])


def test_gradient_accumulation_gives_the_same_update(corpus):
  # Plain SGD: the update is the gradient itself (Adam would amplify rounding noise in gradients
  # that are zero in theory, like the key bias's).
  sgd = ("optimizer.name=sgd", "optimizer.momentum=0.0", "optimizer.learning_rate=0.5")
  whole, loss = _run_steps(corpus, "train.grad_accum_steps=1", *sgd)
  accumulated, accumulated_loss = _run_steps(corpus, "train.grad_accum_steps=2", *sgd)
  assert accumulated_loss == pytest.approx(loss, rel=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), whole, accumulated)


def test_bfloat16_compute_keeps_float32_params(corpus):
  params, loss = _run_steps(corpus, "model.dtype=bfloat16")
  _, loss32 = _run_steps(corpus, "model.dtype=float32")
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(params))
  assert loss == pytest.approx(loss32, rel=0.02) and loss != loss32


def test_keeps_the_last_k_and_ignores_an_unfinished_save(corpus, tmp_path):
  config = config_lib.load_config("configs/gpt2.py:tiny", tiny_overrides(
      corpus, train__steps=6, train__checkpoint_every=2, train__keep_checkpoints=2))
  train(config, str(tmp_path))
  checkpoints = tmp_path / "checkpoints"
  assert sorted(os.listdir(checkpoints)) == ["4", "6"]
  # What a save killed before its final rename leaves behind: a step-8 temporary directory.
  shutil.copytree(checkpoints / "6", checkpoints / "8.orbax-checkpoint-tmp-1234567")
  assert ocp.CheckpointManager(checkpoints).latest_step() == 6
  config = config_lib.load_config("configs/gpt2.py:tiny", tiny_overrides(
      corpus, train__steps=8, train__checkpoint_every=2, train__keep_checkpoints=2))
  train(config, str(tmp_path))
  assert sorted(os.listdir(checkpoints)) == ["6", "8"]


def _health_run(losses, **policy):
  """Feeds `losses` (grad norm 1) through Health.update; -> (applied flags, final health)."""
  update = jax.jit(lambda h, step, loss: h.update(step, loss, jnp.float32(1.0), **policy))
  health, applied = steps.Health.create(), []
  for step, loss in enumerate(losses):
    apply, health = update(health, step, jnp.float32(loss))
    applied.append(bool(apply))
  return applied, jax.device_get(health)


def test_spikes_and_non_finite_losses_are_skipped_and_counted():
  rng = np.random.default_rng(0)
  losses = list(3.0 + 0.1 * rng.standard_normal(60))
  losses[30], losses[40], losses[50] = 3.0 + 1.5, np.nan, 3.0 + 0.15  # 15 sigma, NaN, 1.5 sigma
  applied, health = _health_run(losses, skip=True, spike_sigma=4.0, spike_window=20)
  assert [i for i, a in enumerate(applied) if not a] == [30, 40]
  assert int(health.skipped) == 2 and int(health.applied) == 58 and int(health.bad_step) == -1
  # The statistics saw exactly the applied losses: a running mean over the first 20, then an
  # exponential one with weight 1/20, and the matching exponential variance.
  mean, var = 0.0, 0.0
  for n, loss in enumerate(x for x, a in zip(losses, applied) if a):
    alpha = 1.0 / min(n + 1, 20)
    delta = loss - mean
    mean, var = mean + alpha * delta, (1 - alpha) * (var + alpha * delta**2)
  np.testing.assert_allclose([health.loss_mean, health.loss_var], [mean, var], rtol=1e-5)


def test_no_spike_is_called_before_the_window_fills():
  applied, _ = _health_run([3.0, 3.0, 30.0, 3.0], skip=True, spike_sigma=1.0, spike_window=5)
  assert applied == [True] * 4


def test_halt_policy_records_the_first_bad_step_and_applies_nothing_after_it():
  applied, health = _health_run([3.0, 2.9, np.inf, 2.8, np.nan], skip=False, spike_sigma=0.0,
                                spike_window=100)
  assert applied == [True, True, False, False, False]
  assert int(health.bad_step) == 2 and np.isinf(health.bad_loss) and int(health.skipped) == 0
