"""Norms, projections and MLPs against numpy."""

import jax.numpy as jnp
import numpy as np
import pytest

from roots_jax.errors import ConfigError
from roots_jax.models.layers import DenseGeneral, LayerNorm, Mlp, RMSNorm

from numpy_reference import gelu_tanh
from tiny_models import random_params, tiny_config


X = np.random.default_rng(0).normal(2.0, 3.0, size=(2, 5, 32)).astype(np.float32)


def test_layernorm_matches_numpy():
  layer = LayerNorm(eps=1e-5, param_dtype=jnp.float32)
  params = random_params(layer, X)
  p = params["params"]
  expected = (X - X.mean(-1, keepdims=True)) / np.sqrt(X.var(-1, keepdims=True) + 1e-5)
  np.testing.assert_allclose(layer.apply(params, X), expected * p["scale"] + p["bias"],
                             atol=1e-5)


def test_rmsnorm_matches_numpy():
  layer = RMSNorm(eps=1e-6, param_dtype=jnp.float32)
  params = random_params(layer, X)
  assert set(params["params"]) == {"scale"}
  expected = X / np.sqrt(np.mean(X ** 2, -1, keepdims=True) + 1e-6) * params["params"]["scale"]
  np.testing.assert_allclose(layer.apply(params, X), expected, atol=1e-5)


def test_norm_computes_in_float32_and_returns_input_dtype():
  layer = RMSNorm(eps=1e-6, param_dtype=jnp.float32)
  x = jnp.asarray(X, jnp.bfloat16)
  params = random_params(layer, x)
  out = layer.apply(params, x)
  assert out.dtype == jnp.bfloat16
  expected = layer.apply(params, x.astype(jnp.float32)).astype(jnp.bfloat16)
  np.testing.assert_array_equal(out, expected)


def test_dense_general_contracts_trailing_dims():
  layer = DenseGeneral((6,), ("heads", "kv", "embed"), use_bias=True, dtype=jnp.float32,
                       param_dtype=jnp.float32)
  x = X.reshape(2, 5, 4, 8)
  params = random_params(layer, x)
  p = params["params"]
  assert p["kernel"].shape == (4, 8, 6) and p["bias"].shape == (6,)
  np.testing.assert_allclose(layer.apply(params, x),
                             np.einsum("btnh,nhd->btd", x, p["kernel"]) + p["bias"], atol=1e-4)


@pytest.mark.parametrize("activation", ["gelu", "relu", "swiglu", "geglu"])
def test_mlp_matches_numpy(activation):
  layer = Mlp(tiny_config(mlp_activation=activation))
  params = random_params(layer, X)
  p = params["params"]
  dense = lambda name, x: x @ p[name]["kernel"] + p[name]["bias"]
  if activation in ("gelu", "relu"):
    assert set(p) == {"wi", "wo"}
    hidden = gelu_tanh(dense("wi", X)) if activation == "gelu" else np.maximum(dense("wi", X), 0)
  else:  # gated: act(x wi_gate) * x wi_up (T5 v1.1's wi_0 and wi_1)
    assert set(p) == {"wi_gate", "wi_up", "wo"}
    gate = dense("wi_gate", X)
    act = gate / (1 + np.exp(-gate)) if activation == "swiglu" else gelu_tanh(gate)
    hidden = act * dense("wi_up", X)
  np.testing.assert_allclose(layer.apply(params, X), dense("wo", hidden), rtol=1e-4, atol=1e-4)


def test_unknown_activation_raises():
  with pytest.raises(ConfigError, match="model.mlp_activation"):
    random_params(Mlp(tiny_config(mlp_activation="tanh")), X)
