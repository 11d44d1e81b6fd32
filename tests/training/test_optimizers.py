"""Schedules, the weight-decay mask, clipping and each optimizer on a small problem."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from roots_jax.config import base_config
from roots_jax.training import optimizers


def _opt(**kw):
  c = base_config().optimizer
  c.update(kw)
  return c


def test_warmup_then_cosine_to_end_fraction():
  s = optimizers.make_schedule(_opt(learning_rate=1.0, warmup_steps=10, end_lr_fraction=0.1), 110)
  np.testing.assert_allclose([s(0), s(5), s(10), s(60), s(110)], [0.0, 0.5, 1.0, 0.55, 0.1], atol=1e-6)


@pytest.mark.parametrize("name, mid, end", [("linear", 0.55, 0.1), ("constant", 1.0, 1.0)])
def test_linear_and_constant(name, mid, end):
  s = optimizers.make_schedule(_opt(learning_rate=1.0, warmup_steps=10, schedule=name), 110)
  np.testing.assert_allclose([s(10), s(60), s(110)], [1.0, mid, end], atol=1e-6)


def test_inverse_sqrt():
  s = optimizers.make_schedule(_opt(learning_rate=1.0, warmup_steps=100, schedule="inverse_sqrt"), 1000)
  np.testing.assert_allclose([s(100), s(400)], [1.0, 0.5], atol=1e-6)


def test_decay_mask_by_leaf_name():
  params = {"layers": {"attn": {"query": {"kernel": 1, "bias": 1}}, "ln": {"scale": 1, "bias": 1}},
            "token_embed": {"embedding": 1}, "lm_head": {"kernel": 1}}
  mask = optimizers.decay_mask(params)
  assert mask["layers"]["attn"]["query"] == {"kernel": True, "bias": False}
  assert mask["layers"]["ln"] == {"scale": False, "bias": False}
  assert mask["token_embed"]["embedding"] is False and mask["lm_head"]["kernel"] is True


@pytest.mark.parametrize("name", ["adamw", "lion", "sgd", "adafactor"])
def test_weight_decay_only_on_kernels(name):
  params = {"dense": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)}, "norm": {"scale": jnp.ones(4)}}
  tx = optimizers.make_optimizer(_opt(name=name, weight_decay=0.5, warmup_steps=0,
                                      schedule="constant", learning_rate=0.1), 10)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  assert float(jnp.abs(updates["dense"]["kernel"]).min()) > 0
  assert float(jnp.abs(updates["dense"]["bias"]).max()) == 0
  assert float(jnp.abs(updates["norm"]["scale"]).max()) == 0


def test_global_norm_clipping():
  params = {"w": jnp.zeros(3)}
  tx = optimizers.make_optimizer(_opt(name="sgd", momentum=0.0, weight_decay=0.0, clip_norm=1.0,
                                      warmup_steps=0, schedule="constant", learning_rate=1.0), 10)
  grads = {"w": jnp.array([30.0, 40.0, 0.0])}
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], [-0.6, -0.8, 0.0], atol=1e-6)
  assert float(optax.tree.norm(updates)) == pytest.approx(1.0)


@pytest.mark.parametrize("name, lr", [("adamw", 0.1), ("lion", 0.01), ("sgd", 0.1), ("adafactor", 0.1)])
def test_each_optimizer_minimises_a_quadratic(name, lr):
  target = jnp.arange(8.0).reshape(2, 4) / 8
  params = {"kernel": jnp.zeros((2, 4))}
  tx = optimizers.make_optimizer(_opt(name=name, learning_rate=lr, weight_decay=0.0, warmup_steps=0,
                                      schedule="constant"), 200)
  state = tx.init(params)
  loss = lambda p: jnp.sum((p["kernel"] - target) ** 2)
  first = float(loss(params))
  for _ in range(200):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
  assert float(loss(params)) < 0.05 * first
