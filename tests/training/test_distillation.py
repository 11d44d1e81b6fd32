"""Distillation's loss terms against numpy: the soft-target KL with its temperature, its
gradient, and the hidden-state distances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roots_jax.errors import ConfigError
from roots_jax.training import distillation


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _example(seed=0):
  rng = np.random.default_rng(seed)
  student = rng.normal(size=(2, 5, 11)).astype(np.float32) * 3
  teacher = rng.normal(size=(2, 5, 11)).astype(np.float32) * 3
  weights = (rng.random((2, 5)) > 0.3).astype(np.float32)
  return student, teacher, weights


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_soft_target_kl_matches_numpy_with_its_temperature_squared(temperature):
  student, teacher, weights = _example()
  log_p, log_q = _log_softmax(teacher / temperature), _log_softmax(student / temperature)
  kl = (np.exp(log_p) * (log_p - log_q)).sum(-1)
  sums = distillation.soft_target_terms(jnp.asarray(student), jnp.asarray(teacher), weights,
                                        temperature)
  np.testing.assert_allclose(sums["kd_kl"], temperature**2 * (kl * weights).sum(), rtol=1e-5)
  same = distillation.soft_target_terms(jnp.asarray(teacher), jnp.asarray(teacher), weights,
                                        temperature)
  assert abs(float(same["kd_kl"])) < 1e-5


def test_soft_target_gradient_is_t_times_q_minus_p_and_none_reaches_the_teacher():
  student, teacher, weights = _example(1)
  t = 2.0
  loss = lambda s, te: distillation.soft_target_terms(s, te, weights, t)["kd_kl"]
  d_student, d_teacher = jax.grad(loss, argnums=(0, 1))(jnp.asarray(student),
                                                        jnp.asarray(teacher))
  p, q = np.exp(_log_softmax(teacher / t)), np.exp(_log_softmax(student / t))
  np.testing.assert_allclose(d_student, t * (q - p) * weights[..., None], atol=1e-6)
  assert not np.any(np.asarray(d_teacher))


def test_hidden_distances_match_numpy():
  rng = np.random.default_rng(2)
  s, t = rng.normal(size=(2, 3, 8)).astype(np.float32), rng.normal(size=(2, 3, 8)).astype(
      np.float32)
  weights = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
  cosine = 1 - (s * t).sum(-1) / (np.linalg.norm(s, axis=-1) * np.linalg.norm(t, axis=-1))
  got = distillation.hidden_terms(jnp.asarray(s), jnp.asarray(t), weights, "cosine")
  np.testing.assert_allclose(got["kd_hidden"], (cosine * weights).sum(), rtol=1e-5)
  got = distillation.hidden_terms(jnp.asarray(s), jnp.asarray(t), weights, "mse")
  np.testing.assert_allclose(got["kd_hidden"], (((s - t) ** 2).mean(-1) * weights).sum(),
                             rtol=1e-5)
  d_teacher = jax.grad(lambda te: distillation.hidden_terms(
      jnp.asarray(s), te, weights, "cosine")["kd_hidden"])(jnp.asarray(t))
  assert not np.any(np.asarray(d_teacher))


def test_bad_settings_are_one_line_errors():
  student, teacher, weights = _example()
  with pytest.raises(ConfigError, match="temperature must be positive; got 0"):
    distillation.soft_target_terms(student, teacher, weights, 0)
  with pytest.raises(ConfigError, match="must be one of cosine, mse; got 'l1'"):
    distillation.hidden_terms(student, teacher, weights, "l1")
