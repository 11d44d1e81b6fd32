"""The encoder-decoder (Transformer, T5): encode/decode, causal decoder, cross-attention masking
under padding and packing, relative position tables per stack, the tied head's rescaling."""

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

B, S, T = 2, 16, 12
ENC = jax.random.randint(jax.random.key(7), (B, S), 0, 64)
DEC = jax.random.randint(jax.random.key(8), (B, T), 0, 64)
# T5 v1.0: relative bias, unscaled attention, RMSNorm, ReLU, no biases, tied head; 3 decoder layers.
T5 = tiny_config(family="encoder_decoder", position="relative", scaled_attention=False,
                 norm="rmsnorm", use_bias=False, mlp_activation="relu", num_decoder_layers=3)
# Vaswani et al. 2017: post-LN, sinusoids, sqrt(D)-scaled embeddings; untied head and GQA here.
VASWANI = tiny_config(family="encoder_decoder", position="sinusoidal", norm_placement="post",
                      scale_embeddings=True, tie_embeddings=False, num_kv_heads=2)
CONFIGS = pytest.mark.parametrize("config", [T5, VASWANI], ids=["t5", "vaswani"])


@functools.cache
def apply_fn(config):
  return jax.jit(build_model(config).apply, static_argnames="deterministic")


def forward(config, params, enc=ENC, dec=DEC, **kwargs):
  return apply_fn(config)({"params": params}, enc, dec, **kwargs)


@functools.cache
def model_params(config):
  return random_params(build_model(config), ENC, DEC)["params"]


def test_encode_then_decode_is_the_forward_pass():
  model, params = build_model(T5), model_params(T5)

  @jax.jit
  def split(params, enc, dec):
    encoded = model.apply({"params": params}, enc, method="encode")
    return encoded, model.apply({"params": params}, encoded, dec, method="decode")

  encoded, logits = split(params, ENC, DEC)
  assert encoded.shape == (B, S, 32) and logits.shape == (B, T, 64)
  np.testing.assert_allclose(logits, forward(T5, params), atol=1e-5)


@CONFIGS
def test_decoder_is_causal_and_reads_the_whole_encoder(config):
  params = model_params(config)
  logits = forward(config, params)
  t = 7
  changed = forward(config, params, dec=DEC.at[:, t].set((DEC[:, t] + 1) % 64))
  np.testing.assert_allclose(logits[:, :t], changed[:, :t], atol=1e-5)
  assert not np.allclose(logits[:, t:], changed[:, t:])
  last_input = forward(config, params, enc=ENC.at[:, -1].set((ENC[:, -1] + 1) % 64))
  assert not np.any(np.all(np.isclose(logits, last_input, atol=1e-6), axis=-1))


@CONFIGS
def test_cross_attention_respects_padding_and_packing(config):
  params = model_params(config)
  enc_segments = jnp.array([[1] * 6 + [2] * 6 + [0] * 4] * B)
  enc_positions = jnp.array([list(range(6)) * 2 + [0] * 4] * B)
  dec_segments = jnp.array([[1] * 5 + [2] * 4 + [0] * 3] * B)
  dec_positions = jnp.array([list(range(5)) + list(range(4)) + [0] * 3] * B)
  packed = lambda enc, dec: forward(
      config, params, enc, dec, encoder_segment_ids=enc_segments,
      decoder_segment_ids=dec_segments, encoder_positions=enc_positions,
      decoder_positions=dec_positions)
  logits = packed(ENC, DEC)

  second_input = packed(ENC.at[:, 6:12].set((ENC[:, 6:12] + 5) % 64), DEC)
  np.testing.assert_allclose(logits[:, :5], second_input[:, :5], atol=1e-5)
  assert not np.allclose(logits[:, 5:9], second_input[:, 5:9])
  padding_input = packed(ENC.at[:, 12:].set((ENC[:, 12:] + 5) % 64), DEC)
  np.testing.assert_allclose(logits[:, :9], padding_input[:, :9], atol=1e-5)
  second_target = packed(ENC, DEC.at[:, 5:].set((DEC[:, 5:] + 5) % 64))
  np.testing.assert_allclose(logits[:, :5], second_target[:, :5], atol=1e-5)
  # The second pair reads as it would alone at the start of a row.
  alone = forward(config, params, jnp.pad(ENC[:, 6:12], ((0, 0), (0, S - 6))),
                  jnp.pad(DEC[:, 5:9], ((0, 0), (0, T - 4))),
                  encoder_segment_ids=jnp.array([[1] * 6 + [0] * (S - 6)] * B),
                  decoder_segment_ids=jnp.array([[1] * 4 + [0] * (T - 4)] * B),
                  encoder_positions=jnp.broadcast_to(jnp.arange(S), (B, S)),
                  decoder_positions=jnp.broadcast_to(jnp.arange(T), (B, T)))
  np.testing.assert_allclose(logits[:, 5:9], alone[:, :4], atol=1e-5)


@pytest.mark.parametrize("config, scale", [(T5, 32 ** -0.5),
                                           (dataclasses.replace(VASWANI, tie_embeddings=True), 1)],
                         ids=["t5", "vaswani"])
def test_tied_head(config, scale):
  """T5 / Hugging Face: logits = (decoder output * D^-0.5) . token embedding; the 2017 model,
  whose inputs are scaled by sqrt(D) instead, does not rescale."""
  params = model_params(config)
  logits, state = jax.jit(functools.partial(
      build_model(config).apply, capture_intermediates=lambda m, _: m.name == "decoder",
      mutable="intermediates"))({"params": params}, ENC, DEC)
  x = np.asarray(state["intermediates"]["decoder"]["__call__"][0], np.float64)
  expected = x * scale @ np.asarray(params["token_embed"]["embedding"]).T
  np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_shared_embedding_init_gives_unit_scale_inputs():
  """T5's table is N(0, 1); with scale_embeddings (x sqrt(D) on input) it is N(0, 1/D)."""
  for config, std in ((T5, 1.0), (VASWANI, 32 ** -0.5)):
    model = build_model(dataclasses.replace(config, vocab_size=4096))
    variables = model.init(jax.random.key(0), method=lambda m: m.token_embed(DEC))
    table = nn.meta.unbox(variables)["params"]["token_embed"]["embedding"]
    np.testing.assert_allclose(np.std(table), std, rtol=0.03)


def partition_specs(config):
  boxed = jax.eval_shape(build_model(config).init, jax.random.key(0), ENC, DEC)["params"]
  for path, leaf in jax.tree_util.tree_flatten_with_path(
      boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))[0]:
    assert isinstance(leaf, nn.Partitioned), jax.tree_util.keystr(path)
    assert len(leaf.names) == leaf.value.ndim, jax.tree_util.keystr(path)
  return nn.get_partition_spec(boxed)


def test_parameter_layout_and_logical_axes():
  t5 = partition_specs(T5)
  assert set(t5) == {"token_embed", "encoder", "decoder"}  # one embedding, tied head
  assert set(t5["encoder"]) == {"relative_bias", "layers", "final_norm"}
  assert set(t5["decoder"]) == {"relative_bias", "layers", "final_norm"}
  # One relative position table per stack, shared by its layers.
  assert t5["encoder"]["relative_bias"]["embedding"] == P(None, "heads")
  assert t5["decoder"]["relative_bias"]["embedding"] == P(None, "heads")
  assert "cross_attention" not in t5["encoder"]["layers"]
  layer = t5["decoder"]["layers"]
  assert set(layer) == {"attention", "attention_norm", "cross_attention", "cross_attention_norm",
                        "mlp", "mlp_norm"}
  assert layer["cross_attention"]["key"]["kernel"] == P("layers", "embed", "kv_heads", "kv")
  shapes = jax.eval_shape(build_model(T5).init, jax.random.key(0), ENC, DEC)
  decoder = nn.meta.unbox(shapes)["params"]["decoder"]
  assert decoder["relative_bias"]["embedding"].shape == (32, 4)
  assert decoder["layers"]["mlp"]["wi"]["kernel"].shape == (3, 32, 64)  # num_decoder_layers

  looped = partition_specs(dataclasses.replace(T5, scan_layers=False))
  assert set(looped["encoder"]) == {"relative_bias", "layers_0", "layers_1", "final_norm"}
  assert set(looped["decoder"]) == {"relative_bias", "layers_0", "layers_1", "layers_2",
                                    "final_norm"}
  vaswani = partition_specs(VASWANI)
  assert set(vaswani) == {"token_embed", "encoder", "decoder", "lm_head"}
  assert set(vaswani["encoder"]) == {"layers"}  # post-LN: no final norm; sinusoids: no table
  assert vaswani["lm_head"]["kernel"] == P("embed", "vocab")


def test_scan_and_loop_agree():
  params = model_params(T5)
  looped = {"token_embed": params["token_embed"]}
  for stack, layers in (("encoder", 2), ("decoder", 3)):
    looped[stack] = {k: v for k, v in params[stack].items() if k != "layers"}
    for i in range(layers):
      looped[stack][f"layers_{i}"] = jax.tree.map(lambda x: x[i], params[stack]["layers"])
  np.testing.assert_allclose(forward(T5, params),
                             forward(dataclasses.replace(T5, scan_layers=False), looped),
                             atol=1e-5)
