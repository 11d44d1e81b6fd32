"""Stacking identical blocks: nn.scan over layers (one compiled body) or a loop, under nn.remat."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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
  Scanned parameters (and KV caches, and structured pruning's masks) live under `layers` with a
  leading "layers" (cache: layer) axis; looped ones under layers_0, layers_1, ... Decoding
  skips remat: there is no backward.
  """
  num_layers = num_layers or config.num_layers
  if config.remat_policy != "none" and not attrs.get("decode"):
    block = nn.remat(block, policy=REMAT_POLICIES[config.remat_policy],
                     prevent_cse=not config.scan_layers)
  if config.scan_layers:
    # intermediates: each layer's output, sown for a distillation's hidden loss; quant_stats:
    # activation statistics a quantization calibration collects (runs.quantized); masks: the
    # head and unit masks of structured pruning (runs.prune).
    block = nn.scan(block, variable_axes={"params": 0, "cache": 0, "intermediates": 0,
                                          "quant_stats": 0, "masks": 0},
                    split_rngs={"params": True, "dropout": True},
                    in_axes=(nn.broadcast,) * len(args), length=num_layers,
                    metadata_params={nn.PARTITION_NAME: "layers"})
    x, _ = block(config, **attrs, name="layers")(x, *args)
    return x
  for i in range(num_layers):
    x, _ = block(config, **attrs, name=f"layers_{i}")(x, *args)
  return x


def layer_outputs(intermediates: dict) -> jax.Array:
  """The outputs [L, B, T, D] of each layer of the stack an LM head reads (the decoder's of an
  encoder-decoder), from the "intermediates" a model (or a fine-tuning model, whose backbone it
  is) applied with that collection mutable sows (either layout)."""
  intermediates = intermediates.get("backbone", intermediates)
  stack = intermediates.get("decoder", intermediates)
  if "layers" in stack:
    return stack["layers"]["hidden"][0]
  return jnp.stack([stack[f"layers_{i}"]["hidden"][0]
                    for i in range(sum(map(_is_looped_layer, stack)))])


def select_layers(params: dict, keep: list[int], *, scanned: bool) -> dict:
  """`params` (a model's, or any tree holding stacks) with every stack cut to the layers `keep`,
  in that order, in the same layout: a student's start from its teacher's layers (DistilBERT
  takes every other one, Sanh et al. 2019). Scanned stacks (`layers`, a leading layer axis) are
  indexed; looped ones (layers_0, layers_1, ...) renumbered. Raises ValueError for an index a
  stack does not have."""
  out = {}
  for name, value in params.items():
    if scanned and name == "layers":
      depth = jax.tree.leaves(value)[0].shape[0]
      _check_kept(keep, depth)
      out[name] = jax.tree.map(lambda x: x[np.asarray(keep)], value)
    elif not scanned and _is_looped_layer(name):
      continue  # gathered below, with their stack's other layers
    elif isinstance(value, dict):
      out[name] = select_layers(value, keep, scanned=scanned)
    else:
      out[name] = value
  looped = [n for n in params if _is_looped_layer(n)]
  if not scanned and looped:
    _check_kept(keep, len(looped))
    out.update({f"layers_{j}": params[f"layers_{i}"] for j, i in enumerate(keep)})
  return out


def _is_looped_layer(name: str) -> bool:
  """layers_0, layers_1, ...: stack_layers' names for its blocks when not scanned."""
  return name.startswith("layers_") and name[len("layers_"):].isdigit()


def _check_kept(keep: list[int], depth: int) -> None:
  if not keep or any(not 0 <= i < depth for i in keep):
    raise ValueError(f"layers to keep {list(keep)} must be a non-empty list of indices into a "
                     f"stack of {depth}")
