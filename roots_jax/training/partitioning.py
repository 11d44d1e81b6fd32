"""Mesh construction and logical-axis -> mesh sharding: the only module that names mesh axes.

Model code annotates parameters and activations with logical names (batch, embed, heads, ...);
a rules table maps them to mesh axes (data, fsdp, tensor): mesh.rules, or the preset that
mesh.parallelism names.
"""

import jax
import ml_collections
import numpy as np
from flax import linen as nn
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from roots_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis -> mesh axes. Flax never maps one mesh axis twice in a spec, so activations
# [batch, length, embed] keep `embed` unsharded where `batch` already took `fsdp`.
RULE_PRESETS = {
    "dp": (("batch", ("data", "fsdp")),),
    "fsdp": (("batch", ("data", "fsdp")), ("embed", "fsdp")),
    "fsdp_tp": (
        ("batch", ("data", "fsdp")),
        ("embed", "fsdp"),
        ("heads", "tensor"),
        ("kv_heads", "tensor"),
        ("mlp", "tensor"),
        ("vocab", "tensor"),
    ),
}


def mesh_shape(config: ml_collections.ConfigDict, num_devices: int) -> tuple[int, ...]:
  """Resolves a -1 in mesh.shape to the remaining devices and checks the product."""
  shape = list(config.mesh.shape)
  if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise ConfigError(f"mesh.shape {tuple(shape)} may hold at most one -1 and otherwise positive sizes")
  known = 1
  for s in shape:
    known *= s if s > 0 else 1
  if -1 in shape:
    if num_devices % known:
      raise ConfigError(f"mesh.shape {tuple(shape)} does not fit {num_devices} devices")
    shape[shape.index(-1)] = num_devices // known
  elif known != num_devices:
    raise ConfigError(f"mesh.shape {tuple(shape)} needs {known} devices; there are {num_devices}")
  return tuple(shape)


def logical_rules(config: ml_collections.ConfigDict) -> tuple:
  """The logical-axis rules in force: mesh.rules if given, else the parallelism preset's."""
  return tuple(config.mesh.rules) or RULE_PRESETS[config.mesh.parallelism]


def make_mesh(config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
  """The (data, fsdp, tensor) mesh over all devices of all processes."""
  shape = mesh_shape(config, jax.device_count())
  return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(shape))


def data_sharding(mesh: jax.sharding.Mesh, rules) -> NamedSharding:
  """Batch arrays [B, ...]: the leading dimension split over the data-parallel axes."""
  return NamedSharding(mesh, nn.logical_to_mesh_axes(("batch",), rules))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def tree_shardings(abstract_tree, mesh: jax.sharding.Mesh, rules):
  """NamedShardings for a tree of (possibly logically boxed) abstract values; unboxed leaves are
  replicated. Raises ConfigError when a sharded dimension does not divide evenly."""
  specs = nn.get_partition_spec(abstract_tree)
  shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
  unboxed = jax.tree.map(
      lambda x: x.unbox(apply_constraint=False) if isinstance(x, nn.Partitioned) else x,
      abstract_tree, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  check_divisible(unboxed, shardings)
  return shardings


def check_divisible(abstract_tree, shardings) -> None:
  """Every sharded dimension must be a multiple of its mesh axes' size."""
  for (path, leaf), sharding in zip(jax.tree_util.tree_leaves_with_path(abstract_tree),
                                    jax.tree_util.tree_leaves(shardings)):
    mesh = sharding.mesh
    for dim, axes in zip(leaf.shape, sharding.spec):
      if axes is None:
        continue
      size = int(np.prod([mesh.shape[a] for a in (axes if isinstance(axes, tuple) else (axes,))]))
      if dim % size:
        name = jax.tree_util.keystr(path)
        raise ConfigError(f"parameter {name} of shape {leaf.shape} cannot be split {size} ways over "
                          f"mesh axes {axes}: change mesh.shape or the model size")
