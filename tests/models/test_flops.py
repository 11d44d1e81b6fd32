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


@pytest.mark.parametrize("overrides", [dict(tie_embeddings=False, num_kv_heads=1),
                                       dict(mlp_activation="swiglu", head_dim=16)])
def test_counts_every_kernel(overrides):
  config = tiny_config(**overrides)
  abstract = jax.eval_shape(build_model(config).init, jax.random.key(0), jnp.zeros((1, 8), int))
  flat = jax.tree_util.tree_flatten_with_path(nn.meta.unbox(abstract))[0]
  kernels = sum(math.prod(leaf.shape) for path, leaf in flat if path[-1].key == "kernel")
  if config.tie_embeddings:
    kernels += config.vocab_size * config.embed_dim
  attention = 12 * config.num_layers * 8 * config.num_heads * config.head_size
  assert flops_per_token(config, 8) == 6 * kernels + attention
