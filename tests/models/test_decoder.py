"""The GPT decoder: shapes, parameter layout, masking by perturbation, scan/remat equivalence."""

import functools

import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from roots_jax.errors import ConfigError
from roots_jax.models import build_model

from tiny_models import random_params, tiny_config

B, T = 2, 16
TOKENS = jax.random.randint(jax.random.key(7), (B, T), 0, 64)


@functools.cache
def apply_fn(config):
  """One jitted apply per config, shared by the tests (compiling dominates their time)."""
  return jax.jit(build_model(config).apply, static_argnames="deterministic")


def forward(config, params, tokens=TOKENS, **kwargs):
  return apply_fn(config)({"params": params}, tokens, **kwargs)


def decoder_params(config):
  return random_params(build_model(config), TOKENS)["params"]


def partition_specs(config):
  model = build_model(config)
  return nn.get_partition_spec(jax.eval_shape(model.init, jax.random.key(0), TOKENS))["params"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_logits_shape_and_dtype(dtype):
  config = tiny_config(dtype=dtype)
  params = decoder_params(config)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  logits = forward(config, params)
  assert logits.shape == (B, T, 64) and logits.dtype == jnp.dtype(dtype)
  np.testing.assert_allclose(logits, forward(tiny_config(), params), atol=0.05)


def test_parameter_logical_axes():
  specs = partition_specs(tiny_config(num_kv_heads=2))
  layer = specs["layers"]
  assert specs["token_embed"]["embedding"] == P("vocab", "embed")
  assert specs["pos_embed"]["embedding"] == P(None, "embed")
  assert specs["final_norm"]["scale"] == P("embed")
  assert layer["attention"]["query"]["kernel"] == P("layers", "embed", "heads", "kv")
  assert layer["attention"]["key"]["kernel"] == P("layers", "embed", "kv_heads", "kv")
  assert layer["attention"]["value"]["bias"] == P("layers", "kv_heads", "kv")
  assert layer["attention"]["out"]["kernel"] == P("layers", "heads", "kv", "embed")
  assert layer["mlp"]["wi"]["kernel"] == P("layers", "embed", "mlp")
  assert layer["mlp"]["wo"]["kernel"] == P("layers", "mlp", "embed")
  assert layer["attention_norm"]["bias"] == P("layers", "embed")

  looped = partition_specs(tiny_config(scan_layers=False, tie_embeddings=False))
  assert set(looped) == {"token_embed", "pos_embed", "layers_0", "layers_1", "final_norm",
                         "lm_head"}
  assert looped["layers_1"]["mlp"]["wi"]["kernel"] == P("embed", "mlp")
  assert looped["lm_head"]["kernel"] == P("embed", "vocab")


def test_variants_have_their_parameters():
  assert "lm_head" not in partition_specs(tiny_config())
  assert set(partition_specs(tiny_config(tie_embeddings=False))["lm_head"]) == {"kernel"}
  llama = partition_specs(tiny_config(norm="rmsnorm", mlp_activation="swiglu", position="rope",
                                      use_bias=False))
  assert "pos_embed" not in llama
  assert set(llama["layers"]["mlp"]) == {"wi_gate", "wi_up", "wo"}
  assert set(llama["layers"]["attention_norm"]) == {"scale"}
  assert set(llama["final_norm"]) == {"scale"}
  assert set(llama["layers"]["attention"]["query"]) == {"kernel"}
  assert "pos_embed" not in partition_specs(tiny_config(position="sinusoidal"))


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(position="rope", num_kv_heads=1, attention_impl="dot_product_attention",
         tie_embeddings=False),
    dict(position="sinusoidal", scan_layers=False, norm="rmsnorm", mlp_activation="swiglu",
         num_kv_heads=2),
])
def test_causal(overrides):
  config = tiny_config(**overrides)
  params = decoder_params(config)
  t = 9
  logits = forward(config, params)
  changed = forward(config, params, TOKENS.at[:, t].set((TOKENS[:, t] + 1) % 64))
  np.testing.assert_allclose(logits[:, :t], changed[:, :t], atol=1e-6)
  assert not np.allclose(logits[:, t:], changed[:, t:])


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_packed_segments_and_padding_are_isolated(position):
  config = tiny_config(position=position)
  params = decoder_params(config)
  segment_ids = jnp.array([[1] * 6 + [2] * 7 + [0] * 3] * B)
  positions = jnp.array([list(range(6)) + list(range(7)) + [0] * 3] * B)
  packed = lambda tokens: forward(config, params, tokens, positions=positions,
                                  segment_ids=segment_ids)
  logits = packed(TOKENS)

  other_second = packed(TOKENS.at[:, 6:13].set((TOKENS[:, 6:13] + 5) % 64))
  np.testing.assert_allclose(logits[:, :6], other_second[:, :6], atol=1e-6)
  assert not np.allclose(logits[:, 6:13], other_second[:, 6:13])
  other_padding = packed(TOKENS.at[:, 13:].set((TOKENS[:, 13:] + 5) % 64))
  np.testing.assert_allclose(logits[:, :13], other_padding[:, :13], atol=1e-6)
  # The second document reads as it would alone at the start of a row.
  alone = forward(config, params, jnp.pad(TOKENS[:, 6:13], ((0, 0), (0, T - 7))))
  np.testing.assert_allclose(logits[:, 6:13], alone[:, :7], atol=1e-5)


def test_scan_and_loop_agree():
  scanned = tiny_config(scan_layers=True)
  params = decoder_params(scanned)
  looped = {k: v for k, v in params.items() if k != "layers"}
  for i in range(scanned.num_layers):
    looped[f"layers_{i}"] = jax.tree.map(lambda x: x[i], params["layers"])
  np.testing.assert_allclose(forward(scanned, params),
                             forward(tiny_config(scan_layers=False, remat_policy="full"), looped),
                             atol=1e-6)


def remat_policies(jaxpr):
  """(policy, prevent_cse) of every rematerialised region, nested jaxprs (scan bodies) included."""
  found = []
  for eqn in jaxpr.eqns:
    if "policy" in eqn.params:
      found.append((eqn.params["policy"], eqn.params["prevent_cse"]))
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(sub, (jax.extend.core.ClosedJaxpr, jax.extend.core.Jaxpr)):
          found += remat_policies(getattr(sub, "jaxpr", sub))
  return found


@pytest.mark.parametrize("scan", [True, False])
def test_remat_policy_wraps_each_block(scan):
  policies = {"none": None, "full": jax.checkpoint_policies.nothing_saveable,
              "dots": jax.checkpoint_policies.checkpoint_dots,
              "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims}
  for name, policy in policies.items():
    model = build_model(tiny_config(remat_policy=name, scan_layers=scan))
    variables = jax.eval_shape(model.init, jax.random.key(0), TOKENS)
    found = remat_policies(jax.make_jaxpr(model.apply)(variables, TOKENS).jaxpr)
    assert found == ([] if policy is None else [(policy, not scan)] * (1 if scan else 2)), name


def test_remat_keeps_loss_and_gradients():
  def loss_and_grads(config, params):
    def loss_fn(p):
      logits = build_model(config).apply({"params": p}, TOKENS)
      return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], TOKENS[:, 1:]).mean()
    return jax.jit(jax.value_and_grad(loss_fn))(params)

  params = decoder_params(tiny_config())
  loss, grads = loss_and_grads(tiny_config(), params)
  remat_loss, remat_grads = loss_and_grads(tiny_config(remat_policy="full"), params)
  np.testing.assert_allclose(remat_loss, loss, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               remat_grads, grads)


def test_dropout_only_when_not_deterministic():
  config = tiny_config(dropout_rate=0.3, attention_dropout_rate=0.3)
  params = decoder_params(config)
  np.testing.assert_array_equal(forward(config, params), forward(tiny_config(), params))
  rngs = {"dropout": jax.random.key(3)}
  dropped = forward(config, params, deterministic=False, rngs=rngs)
  assert not np.allclose(forward(config, params), dropped)
  np.testing.assert_array_equal(dropped, forward(config, params, deterministic=False, rngs=rngs))


def test_unknown_family_raises():
  with pytest.raises(ConfigError, match="model.family"):
    build_model(tiny_config(family="bert"))
