"""Sinusoidal, rotary and T5 relative position encodings against their numpy formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roots_jax.models.positions import (PositionEmbedding, RelativePositionBias, apply_rope,
                                       relative_position_bucket, sinusoidal)

import numpy_reference
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


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets, max_distance", [(32, 128), (16, 64), (10, 20)])
def test_relative_buckets_match_hugging_face(bidirectional, num_buckets, max_distance):
  relative = np.arange(-300, 301)[None]  # key - query, every distance to beyond max_distance
  ours = relative_position_bucket(jnp.asarray(relative), bidirectional=bidirectional,
                                  num_buckets=num_buckets, max_distance=max_distance)
  expected = numpy_reference.relative_position_bucket(relative, bidirectional, num_buckets,
                                                      max_distance)
  np.testing.assert_array_equal(ours, expected)
  assert np.asarray(ours).min() == 0 and np.asarray(ours).max() == num_buckets - 1


def test_relative_buckets_known_values():
  bucket = lambda r, bidirectional: int(relative_position_bucket(
      jnp.asarray(r), bidirectional=bidirectional, num_buckets=32, max_distance=128))
  # Encoder: keys before the query in buckets 0-15, after it in 16-31; exact below 8.
  assert [bucket(r, True) for r in (0, -1, -7, 1, 7, -200, 200)] == [0, 1, 7, 17, 23, 15, 31]
  # Decoder: only earlier keys; exact below 16, later keys all in bucket 0.
  assert [bucket(r, False) for r in (0, 5, -1, -15, -16, -1000)] == [0, 0, 1, 15, 16, 31]


def test_relative_bias_reads_the_table_per_packed_segment():
  config = tiny_config(relative_buckets=8, relative_max_distance=16)
  positions = jnp.array([[0, 1, 2, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 6]])
  layer = RelativePositionBias(config, bidirectional=True)
  params = random_params(layer, positions, positions)
  table = np.asarray(params["params"]["embedding"])
  assert table.shape == (8, 4)
  bias = np.asarray(layer.apply(params, positions, positions))
  assert bias.shape == (2, 4, 7, 7)
  relative = np.asarray(positions)[:, None, :] - np.asarray(positions)[:, :, None]  # [B, T, S]
  buckets = numpy_reference.relative_position_bucket(relative, True, 8, 16)
  np.testing.assert_array_equal(bias, table[buckets].transpose(0, 3, 1, 2))
