"""Actual shardings of parameters and optimizer state under each preset, and divisibility errors."""

import jax
import pytest
from flax import linen as nn
from jax.sharding import PartitionSpec as P

from roots_jax import config as config_lib
from roots_jax.errors import ConfigError
from roots_jax.runs.pretrain import build
from roots_jax.training import partitioning


def _state(shape, parallelism, *extra):
  config = config_lib.load_config("configs/gpt2.py:tiny", [
      f"mesh.shape={shape}", f"mesh.parallelism={parallelism}", "model.vocab_size=512", *extra])
  mesh, rules = partitioning.make_mesh(config), partitioning.logical_rules(config)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    parts = build(config, mesh)
    return parts, parts.init(jax.random.key(0))


def _spec(x):
  return tuple(x.sharding.spec) + (None,) * (x.ndim - len(x.sharding.spec))


def test_fsdp_tp_shards_params_and_adam_moments_alike():
  parts, state = _state("2,2,2", "fsdp_tp")
  p = state.params
  wi = p["layers"]["mlp"]["wi"]["kernel"]                       # [L, D, F]
  assert wi.shape == (2, 128, 512) and _spec(wi) == (None, "fsdp", "tensor")
  assert wi.addressable_shards[0].data.shape == (2, 64, 256)
  assert _spec(p["layers"]["attention"]["query"]["kernel"]) == (None, "fsdp", "tensor", None)
  assert _spec(p["layers"]["attention"]["out"]["kernel"]) == (None, "tensor", None, "fsdp")
  assert _spec(p["token_embed"]["embedding"]) == ("tensor", "fsdp")
  assert _spec(p["final_norm"]["scale"]) == ("fsdp",)
  adam = state.opt_state[1][0]  # chain(clip, adamw): adamw's ScaleByAdamState
  for moments in (adam.mu, adam.nu):
    assert _spec(moments["layers"]["mlp"]["wi"]["kernel"]) == (None, "fsdp", "tensor")
    assert _spec(moments["token_embed"]["embedding"]) == ("tensor", "fsdp")
  assert _spec(state.step) == ()
  assert parts.batch_sharding.spec == P(("data", "fsdp"),)


def test_dp_replicates_and_fsdp_splits_embed():
  _, state = _state("8,1,1", "dp")
  assert all(_spec(x) == (None,) * x.ndim for x in jax.tree.leaves(state.params))
  _, state = _state("1,8,1", "fsdp")
  assert _spec(state.params["layers"]["mlp"]["wo"]["kernel"]) == (None, None, "fsdp")
  assert state.params["layers"]["mlp"]["wo"]["kernel"].addressable_shards[0].data.shape == (2, 512, 16)


def test_adafactor_factored_moments_are_replicated():
  _, state = _state("2,2,2", "fsdp_tp", "optimizer.name=adafactor")
  param_shapes = {x.shape for x in jax.tree.leaves(state.params)}
  factored = [x for x in jax.tree.leaves(state.opt_state) if x.ndim and x.shape not in param_shapes]
  assert factored  # row/column statistics of the factored second moment
  assert all(_spec(x) == (None,) * x.ndim for x in factored)


def test_indivisible_parameter_is_a_config_error():
  with pytest.raises(ConfigError, match=r"token_embed.*embedding.*cannot be split 2 ways over mesh "
                                        r"axes tensor"):
    _state("2,2,2", "fsdp_tp", "model.vocab_size=501")
