"""Sinusoidal and rotary position encodings against their numpy formulas."""

import jax
import jax.numpy as jnp
import numpy as np

from roots_jax.models.positions import PositionEmbedding, apply_rope, sinusoidal

from tiny_models import random_params, tiny_config


def test_sinusoidal_matches_paper_formula():
  positions = np.array([[0, 1, 2, 7], [3, 0, 1, 30]])
  dim = 10
  expected = np.zeros((2, 4, dim))
  for i in range(dim // 2):
    expected[..., 2 * i] = np.sin(positions / 10000 ** (2 * i / dim))
    expected[..., 2 * i + 1] = np.cos(positions / 10000 ** (2 * i / dim))
  np.testing.assert_allclose(sinusoidal(jnp.asarray(positions), dim), expected, atol=1e-5)


def rope_reference(x, positions, theta):
  """Hugging Face LLaMA's apply_rotary_pos_emb, in numpy."""
  h = x.shape[-1]
  inv_freq = 1.0 / theta ** (np.arange(0, h, 2) / h)
  freqs = positions[..., None] * inv_freq
  emb = np.concatenate([freqs, freqs], -1)[:, :, None, :]
  rotated = np.concatenate([-x[..., h // 2:], x[..., :h // 2]], -1)
  return x * np.cos(emb) + rotated * np.sin(emb)


def test_rope_matches_reference():
  x = np.random.default_rng(0).normal(size=(2, 5, 3, 8)).astype(np.float32)
  positions = np.array([[0, 1, 2, 3, 4], [0, 1, 0, 1, 17]])
  out = apply_rope(jnp.asarray(x), jnp.asarray(positions), 500.0)
  np.testing.assert_allclose(out, rope_reference(x, positions, 500.0), atol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
  rng = np.random.default_rng(0)
  q, k = (jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32) for _ in range(2))

  def score(m, n):
    return jnp.sum(apply_rope(q, jnp.array([[m]]), 1e4) * apply_rope(k, jnp.array([[n]]), 1e4))

  np.testing.assert_allclose(score(3, 1), score(12, 10), rtol=1e-5)
  np.testing.assert_allclose(score(0, 5), score(20, 25), rtol=1e-5)
  assert not np.isclose(score(3, 1), score(3, 2), rtol=1e-3)


def test_learned_positions_look_up_table_rows():
  layer = PositionEmbedding(tiny_config(position="learned"))
  positions = jnp.array([[0, 1, 2, 0, 1]])
  params = random_params(layer, positions)
  table = params["params"]["embedding"]
  assert table.shape == (32, 32)
  np.testing.assert_array_equal(layer.apply(params, positions)[0], table[np.array([0, 1, 2, 0, 1])])
  assert not jax.tree.leaves(random_params(PositionEmbedding(tiny_config(position="sinusoidal")),
                                           positions))
