"""Fine-tuning pieces of the train step: the class-weighted, label-smoothed cross-entropy, the
trained/frozen split of the parameters, and the head's own learning rate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roots_jax.config import base_config
from roots_jax.training import losses, optimizers, steps


def _torch_cross_entropy(logits, labels, weights, smoothing):
  """PyTorch's CrossEntropyLoss(weight=w, label_smoothing=s, reduction="mean"), in numpy."""
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  num_classes = logits.shape[-1]
  target = np.eye(num_classes)[labels] * (1 - smoothing) + smoothing / num_classes
  per_row = -(target * log_p * weights).sum(-1)
  return per_row.sum() / weights[labels].sum()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_class_terms_match_pytorch(smoothing, weighted):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(12, 5)).astype(np.float32) * 3
  labels = rng.integers(0, 5, size=12)
  class_weights = rng.uniform(0.2, 3.0, size=5) if weighted else np.ones(5)
  mask = np.ones(12, np.float32)
  mask[-3:] = 0  # padding rows
  sums = losses.class_terms(logits, labels, mask, label_smoothing=smoothing,
                           class_weights=class_weights if weighted else None)
  count = losses.class_count(labels, mask, class_weights if weighted else None)
  expected = _torch_cross_entropy(logits[:9].astype(np.float64), labels[:9], class_weights,
                                  smoothing)
  np.testing.assert_allclose(float(sums["nll"] / count), expected, rtol=1e-5)
  accuracy = (logits[:9].argmax(-1) == labels[:9]).sum()
  assert float(sums["accuracy"]) == accuracy


def test_split_and_merge_params():
  params = {"head": {"kernel": jnp.ones((3, 2))},
            "backbone": {"layers": {"kernel": jnp.arange(24.0).reshape(4, 3, 2)},
                         "embed": jnp.zeros((5, 3))}}
  plan = {"head": {"kernel": steps.ALL},
          "backbone": {"layers": {"kernel": 1}, "embed": steps.NONE}}
  trained, frozen = steps.split_params(plan, params)
  assert trained["backbone"]["embed"] is None and frozen["head"]["kernel"] is None
  np.testing.assert_array_equal(trained["backbone"]["layers"]["kernel"],
                                params["backbone"]["layers"]["kernel"][3:])
  merged = steps.merge_params(plan, trained, frozen)
  jax.tree.map(np.testing.assert_array_equal, merged, params)
  assert len(jax.tree.leaves(trained)) == 2


def test_head_learning_rate():
  opt = base_config().optimizer
  opt.update(name="sgd", momentum=0.0, weight_decay=0.0, clip_norm=0.0, warmup_steps=0,
             schedule="constant", learning_rate=0.1)
  tx = optimizers.make_optimizer(opt, 10, head_learning_rate=1.0)
  params = {"head": {"kernel": jnp.ones(2)}, "backbone": {"kernel": jnp.ones(2)}}
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  np.testing.assert_allclose(updates["head"]["kernel"], -1.0)
  np.testing.assert_allclose(updates["backbone"]["kernel"], -0.1)
