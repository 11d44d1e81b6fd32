"""Stacking identical blocks: nn.scan over layers (one compiled body) or a loop, under nn.remat."""

from typing import Any

import flax.linen as nn
import jax

from roots_jax.models.config import ModelConfig

# What the backward pass may keep instead of recomputing (model.remat_policy; "none": no remat).
REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def stack_layers(block: type[nn.Module], config: ModelConfig, x: jax.Array, *args: Any,
                 num_layers: int | None = None, **attrs: Any) -> jax.Array:
  """Applies num_layers (default config.num_layers) blocks `block(config, **attrs)` to x; call
  inside a compact method.

  A block maps (x, *args) -> (x, None); `args` (masks, positions, a relative position bias, the
  encoder output; None allowed) are the same for every layer.
  Scanned parameters (and KV caches) live under `layers` with a leading "layers" (cache: layer)
  axis; looped ones under layers_0, layers_1, ... Decoding skips remat: there is no backward.
  """
  num_layers = num_layers or config.num_layers
  if config.remat_policy != "none" and not attrs.get("decode"):
    block = nn.remat(block, policy=REMAT_POLICIES[config.remat_policy],
                     prevent_cse=not config.scan_layers)
  if config.scan_layers:
    block = nn.scan(block, variable_axes={"params": 0, "cache": 0},
                    split_rngs={"params": True, "dropout": True},
                    in_axes=(nn.broadcast,) * len(args), length=num_layers,
                    metadata_params={nn.PARTITION_NAME: "layers"})
    x, _ = block(config, **attrs, name="layers")(x, *args)
    return x
  for i in range(num_layers):
    x, _ = block(config, **attrs, name=f"layers_{i}")(x, *args)
  return x
