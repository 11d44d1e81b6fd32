"""The BERT encoder: heads against numpy, bidirectional but segment-isolated attention, token types,
parameter layout and scan/loop equivalence."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from roots_jax.models import build_model

from tiny_models import random_params, tiny_config

B, T = 2, 16
TOKENS = jax.random.randint(jax.random.key(7), (B, T), 0, 64)
BERT = tiny_config(family="encoder", type_vocab_size=2, norm_placement="post")
# T5's encoder stack with BERT's heads: relative bias, no attention scale, gated GELU, no biases.
T5_LIKE = tiny_config(family="encoder", position="relative", scaled_attention=False,
                      mlp_activation="geglu", norm="rmsnorm", use_bias=False, tie_embeddings=False)


@functools.cache
def apply_fn(config):
  return jax.jit(build_model(config).apply, static_argnames="deterministic")


def forward(config, params, tokens=TOKENS, **kwargs):
  return apply_fn(config)({"params": params}, tokens, **kwargs)


@functools.cache
def encoder_params(config):
  return random_params(build_model(config), TOKENS)["params"]


def abstract_variables(config):
  return jax.eval_shape(build_model(config).init, jax.random.key(0), TOKENS)


def test_heads_match_numpy():
  """MLM: transform, GELU, norm, then the word embeddings (tied) plus the head's own bias; NSP:
  tanh pooler on the first token, then a 2-way classifier."""
  params = encoder_params(BERT)
  assert set(params["mlm_output"]) == {"bias"} and params["mlm_output"]["bias"].shape == (64,)
  (mlm, nsp), state = jax.jit(functools.partial(
      build_model(BERT).apply, capture_intermediates=True, mutable="intermediates"))(
          {"params": params}, TOKENS)
  assert mlm.shape == (B, T, 64) and nsp.shape == (B, 2)
  captured = state["intermediates"]
  h = np.asarray(captured["mlm_norm"]["__call__"][0], np.float64)
  expected = h @ np.asarray(params["token_embed"]["embedding"]).T + params["mlm_output"]["bias"]
  np.testing.assert_allclose(mlm, expected, atol=1e-4)
  pooler = np.asarray(captured["pooler"]["__call__"][0])
  assert pooler.shape == (B, 32)
  c = params["nsp_classifier"]
  np.testing.assert_allclose(nsp, np.tanh(pooler) @ c["kernel"] + c["bias"], atol=1e-5)

  untied = encoder_params(T5_LIKE)["mlm_output"]
  assert untied["kernel"].shape == (32, 64) and untied["bias"].shape == (64,)


@pytest.mark.parametrize("config", [BERT, T5_LIKE], ids=["bert", "t5_like"])
def test_bidirectional_within_segments_only(config):
  params = encoder_params(config)
  segment_ids = jnp.array([[1] * 6 + [2] * 7 + [0] * 3] * B)
  positions = jnp.array([list(range(6)) + list(range(7)) + [0] * 3] * B)
  packed = lambda tokens: forward(config, params, tokens, positions=positions,
                                  segment_ids=segment_ids)
  mlm, nsp = packed(TOKENS)

  # A later token of the first document changes the earlier ones (bidirectional), nothing else.
  later = packed(TOKENS.at[:, 5].set((TOKENS[:, 5] + 1) % 64))
  assert not np.allclose(mlm[:, :5], later[0][:, :5])
  assert not np.allclose(nsp, later[1])
  np.testing.assert_allclose(mlm[:, 6:], later[0][:, 6:], atol=1e-5)
  # The second document and the padding never reach the first (nor the NSP head on token 0).
  other = packed(TOKENS.at[:, 6:].set((TOKENS[:, 6:] + 5) % 64))
  np.testing.assert_allclose(mlm[:, :6], other[0][:, :6], atol=1e-5)
  np.testing.assert_allclose(nsp, other[1], atol=1e-5)
  other_padding = packed(TOKENS.at[:, 13:].set((TOKENS[:, 13:] + 5) % 64))
  np.testing.assert_allclose(mlm[:, :13], other_padding[0][:, :13], atol=1e-5)
  # The second document reads as it would alone (its padding then visible only to padding).
  alone_segments = jnp.array([[1] * 7 + [0] * 9] * B)
  alone, _ = forward(config, params, jnp.pad(TOKENS[:, 6:13], ((0, 0), (0, T - 7))),
                     positions=jnp.broadcast_to(jnp.arange(T), (B, T)),
                     segment_ids=alone_segments)
  np.testing.assert_allclose(mlm[:, 6:13], alone[:, :7], atol=1e-5)


def test_token_types_change_outputs():
  params = encoder_params(BERT)
  assert params["token_type_embed"]["embedding"].shape == (2, 32)
  mlm, nsp = forward(BERT, params)
  zeros = forward(BERT, params, token_types=jnp.zeros_like(TOKENS))
  np.testing.assert_array_equal(mlm, zeros[0])
  types = jnp.array([[0] * 8 + [1] * 8] * B)
  typed = forward(BERT, params, token_types=types)
  assert not np.allclose(mlm, typed[0]) and not np.allclose(nsp, typed[1])
  assert "token_type_embed" not in encoder_params(T5_LIKE)


def test_parameter_layout_and_logical_axes():
  boxed = abstract_variables(BERT)["params"]
  for path, leaf in jax.tree_util.tree_flatten_with_path(
      boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))[0]:
    assert isinstance(leaf, nn.Partitioned), jax.tree_util.keystr(path)
    assert len(leaf.names) == leaf.value.ndim, jax.tree_util.keystr(path)
  specs = nn.get_partition_spec(boxed)
  assert set(specs) == {"token_embed", "pos_embed", "token_type_embed", "embed_norm", "layers",
                        "mlm_transform", "mlm_norm", "mlm_output", "pooler", "nsp_classifier"}
  assert specs["token_type_embed"]["embedding"] == P(None, "embed")
  assert specs["mlm_output"]["bias"] == P("vocab")
  assert specs["mlm_transform"]["kernel"] == P("embed", None)
  assert specs["layers"]["attention_norm"]["scale"] == P("layers", "embed")
  t5 = nn.get_partition_spec(abstract_variables(T5_LIKE)["params"])
  assert set(t5) == {"token_embed", "relative_bias", "layers", "final_norm", "mlm_transform",
                     "mlm_norm", "mlm_output", "pooler", "nsp_classifier"}
  assert t5["relative_bias"]["embedding"] == P(None, "heads")  # one table for all layers
  assert t5["mlm_output"]["kernel"] == P("embed", "vocab")
  assert set(t5["layers"]["mlp"]) == {"wi_gate", "wi_up", "wo"}


def test_scan_and_loop_agree():
  params = encoder_params(T5_LIKE)
  looped = {k: v for k, v in params.items() if k != "layers"}
  for i in range(T5_LIKE.num_layers):
    looped[f"layers_{i}"] = jax.tree.map(lambda x: x[i], params["layers"])
  loop_config = dataclasses.replace(T5_LIKE, scan_layers=False)
  for ours, theirs in zip(forward(T5_LIKE, params), forward(loop_config, looped)):
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
