"""What the train and eval steps need of an objective: the model call, the loss terms and their
counts (a `Loss`), and the cross-entropy sums the objectives build their terms from.

A term's value over a batch is sum / count. The counts depend on the batch alone (how many
target tokens, how many sentence pairs), so the train step takes them from the whole global batch
before splitting it into accumulation steps: the loss, its gradient and every metric are then the
same whatever the mesh or the accumulation.
"""

import dataclasses
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

# {key: (shape without the batch dimension, dtype)} of a batch row.
Spec = dict[str, tuple[tuple[int, ...], type]]


@dataclasses.dataclass(frozen=True)
class Loss:
  """An objective's contract with the train step (roots_jax.training.steps)."""
  model_inputs: Callable          # batch -> (args, kwargs) of the model call
  terms: Callable                 # (model outputs, batch, z_loss) -> {term: sum}
  counts: Callable                # batch -> {term: count}
  loss_terms: tuple[str, ...]     # terms whose values add up to the training loss
  nll_term: str                   # the token cross-entropy behind perplexity
  example: Callable               # (length, target_length) -> Spec of a batch row
  # The distributions the objective scores and where (a distillation's soft targets go there):
  # model outputs -> {prefix: logits [..., C]} and batch -> {prefix: weights [...]}; None: it
  # scores none (a regression).
  distributions: Callable | None = None
  distribution_weights: Callable | None = None
  # term -> its weight in the training loss (default 1): a distillation mixes its terms.
  term_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)

  def forward(self, model: nn.Module, params, batch, *, rng, deterministic: bool, z_loss: float):
    """{term: sum} for one (micro)batch."""
    args, kwargs = self.model_inputs(batch)
    outputs = model.apply({"params": params}, *args, **kwargs, deterministic=deterministic,
                          rngs=None if deterministic else {"dropout": rng})
    return self.terms(outputs, batch, z_loss)

  def weighted_loss(self, values: Mapping[str, jax.Array]) -> jax.Array:
    """The training loss: the loss terms' values, weighted."""
    return sum(self.term_weights.get(t, 1.0) * values[t] for t in self.loss_terms)

  def init_batch(self, length: int, target_length: int) -> dict:
    """A batch of one all-zero row, enough to initialise the model."""
    return {k: np.zeros((1, *shape), dtype) for k, (shape, dtype) in
            self.example(length, target_length).items()}


def token_terms(logits, targets, weights, z_loss: float, prefix: str = ""):
  """Sums of cross-entropy, z-loss and accuracy over weighted tokens, in float32.

  logits [B, T, V], targets [B, T] int, weights [B, T] float. PaLM's z-loss, z_loss * log(Z)^2,
  keeps the softmax normaliser near 1.
  """
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)                                        # [B, T]
  target = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]        # [B, T]
  nll = log_z - target
  # The target is the argmax (or ties it): one max over the vocabulary, which logsumexp takes
  # too, where jnp.argmax's index reduction costs a CPU step as much as the LM head's matmul.
  top = jax.lax.stop_gradient(logits).max(axis=-1)                                  # [B, T]
  correct = (jax.lax.stop_gradient(target) >= top).astype(jnp.float32)
  return {f"{prefix}nll": (nll * weights).sum(),
          f"{prefix}z_loss": (z_loss * jnp.square(log_z) * weights).sum(),
          f"{prefix}accuracy": (correct * weights).sum()}


def token_counts(weight_key: str, prefix: str = "") -> Callable:
  """batch -> the counts of token_terms' sums: the weights of `weight_key`."""
  def counts(batch):
    total = batch[weight_key].sum()
    return {f"{prefix}nll": total, f"{prefix}z_loss": total, f"{prefix}accuracy": total}
  return counts


def token_loss(model_inputs: Callable, targets: str, weights: str, example: Callable) -> Loss:
  """Next-token cross-entropy (+ z-loss) of `targets` weighted by `weights`."""
  return Loss(model_inputs=model_inputs,
              terms=lambda logits, b, z: token_terms(logits, b[targets], b[weights], z),
              counts=token_counts(weights), loss_terms=("nll", "z_loss"), nll_term="nll",
              example=example, distributions=lambda logits: {"": logits},
              distribution_weights=lambda b: {"": b[weights]})


def class_terms(logits, labels, weights, *, label_smoothing: float = 0.0, class_weights=None):
  """Sums of (label-smoothed, class-weighted) cross-entropy and of accuracy, in float32.

  logits [..., C], labels [...] int, weights [...] float (0 on padding). As PyTorch's
  CrossEntropyLoss(weight=w, label_smoothing=s): a row's loss is -sum_c w_c q_c log p_c with
  q the smoothed target, and the mean divides by sum w[label] (see `class_count`).
  """
  logits = logits.astype(jnp.float32)
  log_p = jax.nn.log_softmax(logits, axis=-1)                                        # [..., C]
  target = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  if class_weights is not None:
    target = target * jnp.asarray(class_weights, jnp.float32)
  nll = -(target * log_p).sum(-1)                                                   # [...]
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  return {"nll": (nll * weights).sum(), "accuracy": (correct * weights).sum()}


def class_count(labels, weights, class_weights=None):
  """The denominator of class_terms' mean cross-entropy: sum of weights x w[label]."""
  if class_weights is None:
    return weights.sum()
  return (weights * jnp.asarray(class_weights, jnp.float32)[labels]).sum()


def class_loss(model_inputs: Callable, labels: str, weights: str, example: Callable, *,
               label_smoothing: float = 0.0, class_weights=None) -> Loss:
  """Cross-entropy (class_terms) of the class ids in `labels` weighted by `weights`."""
  cw = tuple(class_weights) if class_weights else None
  return Loss(
      model_inputs=model_inputs,
      terms=lambda logits, b, z: class_terms(logits, b[labels], b[weights],
                                             label_smoothing=label_smoothing, class_weights=cw),
      counts=lambda b: {"nll": class_count(b[labels], b[weights], cw),
                        "accuracy": b[weights].sum()},
      loss_terms=("nll",), nll_term="nll", example=example,
      distributions=lambda logits: {"": logits}, distribution_weights=lambda b: {"": b[weights]})
