"""The attention core against a numpy reference, the impls against each other, and the masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roots_jax.errors import ConfigError
from roots_jax.models.attention import Attention, dot_product_attention, make_attention_mask

from numpy_reference import reference_attention
from tiny_models import random_params, tiny_config

SEGMENTS = np.array([[1, 1, 1, 2, 2, 2, 2, 0],
                     [1, 1, 1, 1, 1, 1, 1, 1]])


def random_qkv(kv_heads, b=2, t=8, n=4, h=16):
  rng = np.random.default_rng(0)
  return (rng.normal(size=(b, t, n, h)).astype(np.float32),
          rng.normal(size=(b, t, kv_heads, h)).astype(np.float32),
          rng.normal(size=(b, t, kv_heads, h)).astype(np.float32))


def test_mask_combines_causal_segments_and_padding():
  mask = np.asarray(make_attention_mask(jnp.asarray(SEGMENTS), jnp.asarray(SEGMENTS), causal=True))
  assert mask.shape == (2, 1, 8, 8)
  expected = np.zeros((8, 8), bool)
  expected[:3, :3] = np.tril(np.ones((3, 3), bool))  # segment 1
  expected[3:7, 3:7] = np.tril(np.ones((4, 4), bool))  # segment 2
  expected[7, 7] = True  # padding sees only padding
  np.testing.assert_array_equal(mask[0, 0], expected)
  np.testing.assert_array_equal(mask[1, 0], np.tril(np.ones((8, 8), bool)))
  bidirectional = make_attention_mask(jnp.asarray(SEGMENTS), jnp.asarray(SEGMENTS), causal=False)
  np.testing.assert_array_equal(bidirectional[0, 0, :3, :3], np.ones((3, 3), bool))


@pytest.mark.parametrize("impl", ["xla", "dot_product_attention"])
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_core_matches_numpy_reference(impl, kv_heads):
  q, k, v = random_qkv(kv_heads)
  segments = jnp.asarray(SEGMENTS)
  mask = jnp.concatenate([make_attention_mask(segments, segments, causal=True)[:1],
                          make_attention_mask(segments, segments, causal=False)[1:]])
  out = jax.jit(dot_product_attention, static_argnames="impl")(q, k, v, mask, impl=impl)
  assert out.shape == q.shape
  np.testing.assert_allclose(out, reference_attention(q, k, v, np.asarray(mask)), atol=1e-5)


@pytest.mark.parametrize("impl", ["xla", "dot_product_attention"])
@pytest.mark.parametrize("batch_bias", [False, True])
def test_core_adds_bias_and_respects_scale(impl, batch_bias):
  """T5: a relative position bias added before the mask, and no 1/sqrt(H)."""
  q, k, v = random_qkv(2)
  bias = np.random.default_rng(1).normal(size=(2 if batch_bias else 1, 4, 8, 8)) * 3
  bias = bias.astype(np.float32)
  segments = jnp.asarray(SEGMENTS)
  mask = make_attention_mask(segments, segments, causal=False)
  core = jax.jit(dot_product_attention, static_argnames=("impl", "scale"))
  out = core(q, k, v, mask, bias=bias, scale=1.0, impl=impl)
  expected = reference_attention(q, k, v, np.asarray(mask), bias=bias, scale=1.0)
  np.testing.assert_allclose(out, expected, atol=1e-4)
  assert not np.allclose(out, core(q, k, v, mask, bias=bias, impl=impl), atol=1e-2)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_layer_impls_agree(kv_heads):
  x = jax.random.normal(jax.random.key(1), (2, 8, 32))
  positions = jnp.asarray([[0, 1, 2, 0, 1, 2, 3, 0], list(range(8))])
  mask = make_attention_mask(jnp.asarray(SEGMENTS), jnp.asarray(SEGMENTS), causal=True)
  config = tiny_config(num_kv_heads=kv_heads, position="rope")
  params = random_params(Attention(config), x, mask=mask, positions=positions)
  xla, jax_nn = (
      jax.jit(Attention(tiny_config(num_kv_heads=kv_heads, position="rope", attention_impl=impl))
              .apply)(params, x, mask=mask, positions=positions)
      for impl in ("xla", "dot_product_attention"))
  np.testing.assert_allclose(xla, jax_nn, atol=1e-5)


def test_cudnn_on_cpu_raises_config_error():
  q, k, v = random_qkv(4)
  mask = make_attention_mask(jnp.asarray(SEGMENTS), jnp.asarray(SEGMENTS), causal=True)
  with pytest.raises(ConfigError, match="cudnn attention needs an NVIDIA GPU.*attention_impl=xla"):
    dot_product_attention(q, k, v, mask, impl="cudnn")


def test_attention_dropout():
  # Zero q and k give uniform attention over 64 keys; with v = 1 each output is the kept share.
  q = k = jnp.zeros((4, 64, 4, 8))
  v = jnp.ones((4, 64, 4, 8))
  mask = jnp.ones((4, 1, 64, 64), bool)
  out = jax.jit(dot_product_attention, static_argnames="dropout_rate")(
      q, k, v, mask, dropout_rate=0.5, dropout_rng=jax.random.key(0))
  assert np.std(out[..., 0]) > 0.05  # different keys dropped per row
  assert abs(np.mean(out) - 1.0) < 0.02  # inverted dropout keeps the expectation
  with pytest.raises(ConfigError, match="attention_impl=xla"):
    dot_product_attention(q, k, v, mask, impl="dot_product_attention", dropout_rate=0.5,
                          dropout_rng=jax.random.key(0))
