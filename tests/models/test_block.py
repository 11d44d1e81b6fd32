"""The shared Transformer block against a numpy computation: pre-LN vs post-LN order,
cross-attention, relative position bias and unscaled (T5) attention."""

import jax.numpy as jnp
import numpy as np
import pytest

from roots_jax.models.attention import make_attention_mask
from roots_jax.models.block import TransformerBlock

from numpy_reference import gelu_tanh, layernorm, reference_attention
from tiny_models import random_params, tiny_config

RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 6, 32)).astype(np.float32)
ENCODED = RNG.normal(size=(2, 5, 32)).astype(np.float32)
SEGMENTS = np.array([[1, 1, 1, 2, 2, 0], [1] * 6])
ENC_SEGMENTS = np.array([[1, 1, 2, 2, 0], [1, 1, 1, 1, 0]])
BIAS = RNG.normal(size=(2, 4, 6, 6)).astype(np.float32)


def numpy_attention(p, x, kv, mask, bias=None, scale=None):
  dense = lambda name, y: np.einsum("btd,dnh->btnh", y, p[name]["kernel"]) + p[name]["bias"]
  out = reference_attention(dense("query", x), dense("key", kv), dense("value", kv), mask,
                            bias=bias, scale=scale)
  return np.einsum("btnh,nhd->btd", out, p["out"]["kernel"]) + p["out"]["bias"]


def numpy_mlp(p, x):
  h = gelu_tanh(x @ p["wi"]["kernel"] + p["wi"]["bias"])
  return h @ p["wo"]["kernel"] + p["wo"]["bias"]


@pytest.mark.parametrize("placement, cross, relative", [("pre", False, False),
                                                         ("post", True, True),
                                                         ("pre", True, True)])
def test_block_matches_numpy(placement, cross, relative):
  config = tiny_config(norm_placement=placement, scaled_attention=not relative)
  mask = make_attention_mask(jnp.asarray(SEGMENTS), jnp.asarray(SEGMENTS), causal=cross)
  cross_mask = make_attention_mask(jnp.asarray(SEGMENTS), jnp.asarray(ENC_SEGMENTS), causal=False)
  positions = jnp.broadcast_to(jnp.arange(6), (2, 6))
  bias = BIAS if relative else None
  args = (X, mask, positions, bias) + ((ENCODED, cross_mask) if cross else ())
  block = TransformerBlock(config, cross_attention=cross)
  params = random_params(block, *args)
  p = params["params"]
  assert set(p) == ({"attention", "attention_norm", "mlp", "mlp_norm"}
                    | ({"cross_attention", "cross_attention_norm"} if cross else set()))
  out, _ = block.apply(params, *args)

  scale = None if config.scaled_attention else 1.0
  sublayers = [("attention", lambda h: numpy_attention(p["attention"], h, h, np.asarray(mask),
                                                       bias, scale))]
  if cross:
    sublayers.append(("cross_attention", lambda h: numpy_attention(
        p["cross_attention"], h, ENCODED, np.asarray(cross_mask), None, scale)))
  sublayers.append(("mlp", lambda h: numpy_mlp(p["mlp"], h)))
  x = X.astype(np.float64)
  for name, f in sublayers:
    if placement == "pre":  # x + f(norm(x))
      x = x + f(layernorm(x, p[f"{name}_norm"]))
    else:  # norm(x + f(x))
      x = layernorm(x + f(x), p[f"{name}_norm"])
  np.testing.assert_allclose(out, x, atol=1e-4, rtol=1e-4)
