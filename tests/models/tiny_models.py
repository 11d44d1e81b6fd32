"""Tiny model configs and cheap random parameters for the model tests (a plain module, not a
conftest: the root conftest is imported by name elsewhere)."""

import flax.linen as nn
import jax
import numpy as np

from roots_jax.models import ModelConfig

TINY = dict(vocab_size=64, num_layers=2, embed_dim=32, num_heads=4, mlp_dim=64, max_len=32)


def tiny_config(**overrides) -> ModelConfig:
  return ModelConfig(**{**TINY, **overrides})


def random_params(module: nn.Module, *args, **kwargs):
  """Variables shaped like module.init's, drawn by numpy: scales 1 + N(0, 0.1^2), the rest
  N(0, 0.1^2). Skips compiling the initialisers, which takes seconds on CPU."""
  abstract = nn.meta.unbox(jax.eval_shape(module.init, jax.random.key(0), *args, **kwargs))
  rng = np.random.default_rng(0)

  def draw(path, leaf):
    value = 0.1 * rng.normal(size=leaf.shape)
    return (value + (path[-1].key == "scale")).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, abstract)
