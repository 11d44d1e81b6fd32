"""Train state and the pure, jitted train and eval steps.

The loss is a token-weighted sum divided by the total weight of the global batch, so the result
does not depend on the mesh or on how the batch is split into accumulation steps.
"""

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn


@flax.struct.dataclass
class TrainState:
  step: jax.Array        # int32 scalar: updates applied so far
  params: Any
  opt_state: Any
  # The first step whose loss or gradient norm was not finite (-1: none), with those values.
  # The host checks it at log steps and before every save, so a state past a bad step is never
  # checkpointed and the run halts there.
  bad_step: jax.Array
  bad_loss: jax.Array
  bad_grad_norm: jax.Array


def init_state(params, tx: optax.GradientTransformation) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    bad_step=jnp.full((), -1, jnp.int32), bad_loss=jnp.zeros((), jnp.float32),
                    bad_grad_norm=jnp.zeros((), jnp.float32))


def cross_entropy(logits, targets, weights, z_loss: float = 0.0):
  """Token-weighted cross-entropy sums in float32.

  logits [B, T, V], targets [B, T] int, weights [B, T] float.
  Returns (loss_sum incl. z-loss, nll_sum, correct_sum, weight_sum).
  """
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)                                      # [B, T]
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]  # [B, T]
  nll = log_z - target_logit
  loss = nll + z_loss * jnp.square(log_z)  # PaLM's z-loss keeps log Z near 0
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  return ((loss * weights).sum(), (nll * weights).sum(), (correct * weights).sum(), weights.sum())


def lm_sums(model: nn.Module, params, batch, rng, *, deterministic: bool, z_loss: float):
  """Forward pass on one (micro)batch -> the cross_entropy sums."""
  logits = model.apply({"params": params}, batch["inputs"], positions=batch["positions"],
                       segment_ids=batch["segment_ids"], deterministic=deterministic,
                       rngs=None if deterministic else {"dropout": rng})
  return cross_entropy(logits, batch["targets"], batch["weights"], z_loss)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, *, seed: int,
                    grad_accum_steps: int, z_loss: float, schedule: Callable) -> Callable:
  """train_step(state, batch) -> (state, metrics); the caller jits it with shardings."""

  def sums_and_grads(params, micro, rng):
    def loss_fn(p):
      loss_sum, nll_sum, correct, weight = lm_sums(model, p, micro, rng, deterministic=False,
                                                   z_loss=z_loss)
      return loss_sum, (nll_sum, correct, weight)
    (loss_sum, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return grads, (loss_sum,) + aux

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(jax.random.key(seed), state.step)
    if grad_accum_steps == 1:
      grads, sums = sums_and_grads(state.params, batch, rng)
    else:
      # Microbatch m takes rows m, m+A, m+2A, ...: every device keeps its share of each one.
      micro = jax.tree.map(lambda x: jnp.swapaxes(
          x.reshape(x.shape[0] // grad_accum_steps, grad_accum_steps, *x.shape[1:]), 0, 1), batch)

      def accumulate(carry, xs):
        m, mb = xs
        grads, sums = sums_and_grads(state.params, mb, jax.random.fold_in(rng, m))
        return jax.tree.map(jnp.add, carry, (grads, sums)), None

      zeros = (jax.tree.map(jnp.zeros_like, state.params), (jnp.zeros((), jnp.float32),) * 4)
      (grads, sums), _ = jax.lax.scan(accumulate, zeros, (jnp.arange(grad_accum_steps), micro))
    loss_sum, nll_sum, correct, weight = sums
    denom = jnp.maximum(weight, 1.0)
    grads = jax.tree.map(lambda g: g / denom, grads)
    loss = loss_sum / denom
    grad_norm = optax.tree.norm(grads)

    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    first_bad = ~(jnp.isfinite(loss) & jnp.isfinite(grad_norm)) & (state.bad_step < 0)
    new_state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        opt_state=opt_state,
        bad_step=jnp.where(first_bad, state.step, state.bad_step),
        bad_loss=jnp.where(first_bad, loss, state.bad_loss),
        bad_grad_norm=jnp.where(first_bad, grad_norm, state.bad_grad_norm),
    )
    metrics = {
        "loss": loss,
        "nll": nll_sum / denom,
        "accuracy": correct / denom,
        "grad_norm": grad_norm,
        "param_norm": optax.tree.norm(state.params),
        "learning_rate": schedule(state.step),
        "tokens": weight,
    }
    return new_state, metrics

  return train_step


def make_eval_step(model: nn.Module) -> Callable:
  """eval_step(params, batch) -> sums of nll, correct and weight for aggregation over batches."""

  def eval_step(params, batch):
    _, nll_sum, correct, weight = lm_sums(model, params, batch, None, deterministic=True, z_loss=0.0)
    return {"nll_sum": nll_sum, "correct": correct, "weight": weight}

  return eval_step
