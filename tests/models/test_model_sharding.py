"""The decoder initialised and run on a (data, fsdp, tensor) = (2, 2, 2) mesh of CPU devices."""

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from roots_jax.models import ModelConfig, build_model
from roots_jax.training.partitioning import RULE_PRESETS

from tiny_models import random_params

RULES = RULE_PRESETS["fsdp_tp"]


@pytest.fixture(scope="module")
def sharded():
  """(model, mesh, param shardings, params initialised straight into their shards, tokens)."""
  config = ModelConfig(vocab_size=64, num_layers=2, embed_dim=32, num_heads=4, num_kv_heads=2,
                       mlp_dim=64, max_len=32)
  model = build_model(config)
  tokens = jax.random.randint(jax.random.key(1), (8, 16), 0, 64)
  mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 3)
  with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
    abstract = jax.eval_shape(model.init, jax.random.key(0), tokens)
    shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, RULES)
    params = jax.jit(model.init, out_shardings=shardings)(jax.random.key(0), tokens)
  return model, mesh, shardings, params, tokens


def test_params_follow_the_rules_and_gpt2_init(sharded):
  """Shards per RULE_PRESETS['fsdp_tp']; each scanned layer drawn independently."""
  _, _, _, params, _ = sharded
  p = nn.meta.unbox(params)["params"]
  layers = p["layers"]
  assert layers["mlp"]["wi"]["kernel"].sharding.spec == P(None, "fsdp", "tensor")
  assert layers["mlp"]["wo"]["kernel"].sharding.spec == P(None, "tensor", "fsdp")
  assert layers["attention"]["query"]["kernel"].sharding.spec == P(None, "fsdp", "tensor", None)
  assert layers["attention"]["key"]["kernel"].sharding.spec == P(None, "fsdp", "tensor", None)
  assert layers["attention"]["out"]["kernel"].sharding.spec == P(None, "tensor", None, "fsdp")
  assert p["token_embed"]["embedding"].sharding.spec == P("tensor", "fsdp")
  # GPT-2 init: N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 L)), norms at identity.
  np.testing.assert_allclose(np.std(layers["mlp"]["wi"]["kernel"]), 0.02, rtol=0.05)
  np.testing.assert_allclose(np.std(layers["mlp"]["wo"]["kernel"]), 0.01, rtol=0.05)
  np.testing.assert_allclose(np.std(layers["attention"]["out"]["kernel"]), 0.01, rtol=0.05)
  np.testing.assert_array_equal(layers["mlp_norm"]["scale"], 1.0)
  np.testing.assert_array_equal(layers["attention"]["query"]["bias"], 0.0)
  assert not np.allclose(layers["mlp"]["wi"]["kernel"][0], layers["mlp"]["wi"]["kernel"][1])


def test_sharded_forward_matches_single_device(sharded):
  model, mesh, shardings, params, tokens = sharded
  with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
    batch = jax.NamedSharding(mesh, P(("data", "fsdp")))
    logits = jax.jit(model.apply, in_shardings=(shardings, batch))(params, tokens)
  assert logits.sharding.spec == P(("data", "fsdp"), None, "tensor")
  expected = jax.jit(model.apply)(jax.device_get(params), tokens)
  assert expected.sharding.num_devices == 1
  np.testing.assert_allclose(logits, expected, atol=1e-5)


@pytest.mark.parametrize("config", [
    ModelConfig(family="encoder", vocab_size=64, num_layers=2, embed_dim=32, num_heads=4,
                mlp_dim=64, max_len=32, type_vocab_size=2, norm_placement="post"),
    ModelConfig(family="encoder_decoder", vocab_size=64, num_layers=2, num_decoder_layers=1,
                embed_dim=32, num_heads=4, num_kv_heads=2, mlp_dim=64, position="relative",
                mlp_activation="geglu", scaled_attention=False),
], ids=["encoder", "encoder_decoder"])
def test_other_families_sharded_forward_matches_single_device(config):
  model = build_model(config)
  tokens = jax.random.randint(jax.random.key(1), (8, 16), 0, 64)
  inputs = (tokens, tokens[:, :12]) if config.family == "encoder_decoder" else (tokens,)
  mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 3)
  abstract = jax.eval_shape(model.init, jax.random.key(0), *inputs)
  shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, RULES)
  params = jax.device_put(random_params(model, *inputs), shardings)  # cheaper than a jitted init
  with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
    batch = jax.NamedSharding(mesh, P(("data", "fsdp")))
    outputs = jax.jit(model.apply, in_shardings=(shardings, *[batch] * len(inputs)))(
        params, *inputs)
  logits = outputs[0] if config.family == "encoder" else outputs
  assert logits.sharding.spec == P(("data", "fsdp"), None, "tensor")
  p = params["params"]
  if config.family == "encoder":
    assert p["mlm_output"]["bias"].sharding.spec == P("tensor")
  else:
    assert p["decoder"]["relative_bias"]["embedding"].sharding.spec == P(None, "tensor")
  expected = jax.jit(model.apply)(jax.device_get(params), *inputs)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), outputs, expected)
