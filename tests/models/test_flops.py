"""flops_per_token against a hand count and against the model's own matmul weights."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from roots_jax.models import build_model, flops_per_token

from tiny_models import tiny_config


def test_hand_count():
  # D=32, N=4, K=2, H=8, F=64, L=2, V=64, T=16.
  attention = 32 * 32 + 32 * 16 + 32 * 16 + 32 * 32  # q, k, v, out
  mlp = 2 * 32 * 64
  params = 2 * (attention + mlp) + 32 * 64  # + LM head
  assert params == 16384
  assert flops_per_token(tiny_config(num_kv_heads=2), 16) == 6 * 16384 + 12 * 2 * 16 * 4 * 8


def kernel_sizes(config, *inputs):
  """{path: size} of every matmul weight of the model ("kernel" leaves)."""
  abstract = jax.eval_shape(build_model(config).init, jax.random.key(0), *inputs)
  flat = jax.tree_util.tree_flatten_with_path(nn.meta.unbox(abstract))[0]
  return {jax.tree_util.keystr(path): math.prod(leaf.shape) for path, leaf in flat
          if path[-1].key == "kernel"}


@pytest.mark.parametrize("overrides", [dict(tie_embeddings=False, num_kv_heads=1),
                                       dict(mlp_activation="swiglu", head_dim=16)])
def test_counts_every_kernel(overrides):
  config = tiny_config(**overrides)
  kernels = sum(kernel_sizes(config, jnp.zeros((1, 8), int)).values())
  if config.tie_embeddings:
    kernels += config.vocab_size * config.embed_dim
  attention = 12 * config.num_layers * 8 * config.num_heads * config.head_size
  assert flops_per_token(config, 8) == 6 * kernels + attention


@pytest.mark.parametrize("overrides", [dict(type_vocab_size=2),
                                       dict(tie_embeddings=False, mlp_activation="geglu")])
def test_encoder_counts_every_kernel_and_the_heads(overrides):
  """Per token: every kernel but the NSP head's, which runs once per sequence of T tokens."""
  config = tiny_config(family="encoder", **overrides)
  sizes = kernel_sizes(config, jnp.zeros((1, 8), int))
  per_sequence = sizes.pop("['params']['pooler']['kernel']") + sizes.pop(
      "['params']['nsp_classifier']['kernel']")
  kernels = sum(sizes.values()) + (64 * 32 if config.tie_embeddings else 0)
  attention = 12 * config.num_layers * 8 * config.num_heads * config.head_size
  assert flops_per_token(config, 8) == pytest.approx(6 * kernels + 6 * per_sequence / 8
                                                     + attention)


def test_encoder_decoder_per_encoder_token():
  # D=32, N=4, H=8, F=64, V=64, 2 encoder layers on S=16 tokens, 3 decoder layers on T=8 tokens.
  config = tiny_config(family="encoder_decoder", num_decoder_layers=3, tie_embeddings=False)
  sizes = kernel_sizes(config, jnp.zeros((1, 16), int), jnp.zeros((1, 8), int))
  on_encoder_tokens = sum(v for k, v in sizes.items() if "'encoder'" in k or (
      "cross_attention" in k and ("'key'" in k or "'value'" in k)))
  on_decoder_tokens = sum(sizes.values()) - on_encoder_tokens  # incl. lm_head
  assert on_encoder_tokens == 2 * (4 * 32 * 32 + 2 * 32 * 64) + 3 * 2 * 32 * 32
  attention = 12 * 4 * 8 * (2 * 16 * 16 + 3 * (8 * 8 + 8 * 16))
  expected = (6 * (16 * on_encoder_tokens + 8 * on_decoder_tokens) + attention) / 16
  assert flops_per_token(config, 16, target_len=8) == pytest.approx(expected)
  # Without target_len the decoder is as long as the encoder.
  assert flops_per_token(config, 16) == pytest.approx(flops_per_token(config, 16, 16))
