"""Train state and the pure train and eval steps, the same for every model family.

The objective's Loss supplies the model call and the loss terms; each term is a sum over the
batch divided by a count of the whole global batch, so the loss does not depend on the mesh or on
how the batch is split into accumulation steps.
"""

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from roots_jax.training import pruning
from roots_jax.training.losses import Loss


@flax.struct.dataclass
class Health:
  """What the train step knows about bad steps. A step whose loss or gradient norm is not
  finite (or, with spike detection, whose loss spikes) is never applied. Under the halt policy
  the first one is recorded and the host stops the run at the next log step or save, so a state
  past it is never checkpointed; under the skip policy it is counted and training goes on."""
  bad_step: jax.Array       # int32: the first bad step under the halt policy (-1: none)
  bad_loss: jax.Array       # its loss and gradient norm, for the message
  bad_grad_norm: jax.Array
  skipped: jax.Array        # int32: steps dropped under the skip policy
  applied: jax.Array        # int32: steps applied, which the loss statistics have seen
  loss_mean: jax.Array      # exponential mean and variance of the applied steps' losses
  loss_var: jax.Array

  @classmethod
  def create(cls) -> "Health":
    i, f = lambda v: jnp.full((), v, jnp.int32), lambda: jnp.zeros((), jnp.float32)
    return cls(bad_step=i(-1), bad_loss=f(), bad_grad_norm=f(), skipped=i(0), applied=i(0),
               loss_mean=f(), loss_var=f())

  def update(self, step, loss, grad_norm, *, skip: bool, spike_sigma: float,
             spike_window: int) -> tuple[jax.Array, "Health"]:
    """-> (apply this step?, the new health). A spike is a loss above the mean by spike_sigma
    standard deviations, once spike_window steps were applied."""
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    spike = False
    if spike_sigma > 0:
      spike = (self.applied >= spike_window) & (
          loss > self.loss_mean + spike_sigma * jnp.sqrt(self.loss_var))
    bad = ~finite | spike
    if skip:
      apply, first_bad = ~bad, jnp.zeros((), bool)
    else:
      apply, first_bad = ~bad & (self.bad_step < 0), bad & (self.bad_step < 0)
    # Welford's update with weight 1/n, then 1/window: a running mean that forgets slowly.
    alpha = 1.0 / jnp.minimum(self.applied + 1, spike_window).astype(jnp.float32)
    delta = jnp.where(apply, loss - self.loss_mean, 0.0)
    return apply, self.replace(
        bad_step=jnp.where(first_bad, step, self.bad_step),
        bad_loss=jnp.where(first_bad, loss, self.bad_loss),
        bad_grad_norm=jnp.where(first_bad, grad_norm, self.bad_grad_norm),
        skipped=self.skipped + (bad & skip).astype(jnp.int32),
        applied=self.applied + apply.astype(jnp.int32),
        loss_mean=self.loss_mean + alpha * delta,
        loss_var=jnp.where(apply, (1.0 - alpha) * (self.loss_var + alpha * delta**2),
                           self.loss_var))


@flax.struct.dataclass
class TrainState:
  step: jax.Array        # int32 scalar: steps taken (applied or not)
  params: Any
  opt_state: Any
  health: Health


@flax.struct.dataclass
class PrunedTrainState(TrainState):
  """The train state of a pruning run: the masks are trained with, saved and resumed with the
  rest (a state without pruning keeps the plain TrainState, and its checkpoints their layout)."""
  masks: Any             # bool per prunable kernel, at its path (training.pruning)


# A training plan says which parameters train (fine-tuning): a tree like the params holding, per
# leaf, ALL, NONE or k > 0 for the last k entries of its leading axis (the top k of scanned
# layers). Only the trained part gets gradients and optimizer state. None: everything trains.
ALL, NONE = -1, 0


def split_params(plan, params, take=lambda x, k: (x[-k:], x[:-k])):
  """-> (trained, frozen): trees like `params` with None where a leaf has no part. `take`
  cuts a partly trained leaf (the default slices arrays; pass another for shardings)."""
  if plan is None:
    return params, None
  parts = jax.tree.map(lambda k, x: (x, None) if k == ALL else (None, x) if k == NONE
                       else take(x, k), plan, params)
  is_part = lambda x: isinstance(x, tuple)
  return (jax.tree.map(lambda p: p[0], parts, is_leaf=is_part),
          jax.tree.map(lambda p: p[1], parts, is_leaf=is_part))


def merge_params(plan, trained, frozen):
  """The inverse of split_params."""
  if plan is None:
    return trained
  return jax.tree.map(lambda k, t, f: t if k == ALL else f if k == NONE
                      else jnp.concatenate([f, t]), plan, trained, frozen)


def init_state(params, tx: optax.GradientTransformation, plan=None,
               pruner: pruning.Pruner | None = None) -> TrainState:
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=tx.init(split_params(plan, params)[0]), health=Health.create())
  if pruner is None:
    return state
  return PrunedTrainState(**vars(state), masks=pruning.masks_like(params))


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, objective: Loss, *,
                    seed: int, grad_accum_steps: int, z_loss: float, schedule: Callable,
                    plan=None, skip_bad_steps: bool = False, spike_sigma: float = 0.0,
                    spike_window: int = 100, pruner: pruning.Pruner | None = None) -> Callable:
  """train_step(state, batch, *constants) -> (state, metrics); the caller jits it with
  shardings. `constants` (a distillation's teacher parameters) go to the objective's forward
  after the batch and get no gradient. With a `plan`, gradients are taken only with respect to
  the trained part of the parameters. A bad step (see Health) leaves the parameters and
  optimizer state as they were. With a `pruner`, the state's masks are recomputed at its update
  steps and applied after every step, so a pruned weight is exactly zero in every state;
  metrics then hold the achieved `sparsity`."""

  def grads_and_sums(trained, frozen, micro, rng, counts, constants):
    def loss_fn(part):
      params = merge_params(plan, part, frozen)
      sums = objective.forward(model, params, micro, *constants, rng=rng, deterministic=False,
                               z_loss=z_loss)
      return objective.weighted_loss(
          {t: sums[t] / jnp.maximum(counts[t], 1.0) for t in objective.loss_terms}), sums
    (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(trained)
    return grads, sums

  def train_step(state: TrainState, batch, *constants):
    rng = jax.random.fold_in(jax.random.key(seed), state.step)
    counts = objective.counts(batch)  # of the whole batch: every microbatch's terms share them
    trained, frozen = split_params(plan, state.params)
    if grad_accum_steps == 1:
      grads, sums = grads_and_sums(trained, frozen, batch, rng, counts, constants)
    else:
      # Microbatch m takes rows m, m+A, m+2A, ...: every device keeps its share of each one.
      micro = jax.tree.map(lambda x: jnp.swapaxes(
          x.reshape(x.shape[0] // grad_accum_steps, grad_accum_steps, *x.shape[1:]), 0, 1), batch)

      def accumulate(carry, xs):
        m, mb = xs
        return jax.tree.map(jnp.add, carry, grads_and_sums(
            trained, frozen, mb, jax.random.fold_in(rng, m), counts, constants)), None

      zeros = jax.eval_shape(grads_and_sums, trained, frozen, batch, rng, counts, constants)
      zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), zeros)
      (grads, sums), _ = jax.lax.scan(accumulate, zeros, (jnp.arange(grad_accum_steps), micro))
    values = {t: sums[t] / jnp.maximum(counts[t], 1.0) for t in sums}
    loss = objective.weighted_loss(values)
    grad_norm = optax.tree.norm(grads)

    apply, health = state.health.update(state.step, loss, grad_norm, skip=skip_bad_steps,
                                        spike_sigma=spike_sigma, spike_window=spike_window)

    def update():
      updates, opt_state = tx.update(grads, state.opt_state, trained)
      return optax.apply_updates(trained, updates), opt_state

    # A branch, not a select: a bad step costs nothing and a good one no extra pass over the
    # parameters and optimizer state.
    trained, opt_state = jax.lax.cond(apply, update, lambda: (trained, state.opt_state))
    params, pruned = merge_params(plan, trained, frozen), {}
    if pruner is not None:
      masks = pruner.update(state.step + 1, params, state.masks)
      params, pruned = pruning.apply_masks(params, masks), dict(masks=masks)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              health=health, **pruned)
    metrics = {
        "loss": loss,
        **values,
        "grad_norm": grad_norm,
        "param_norm": optax.tree.norm(state.params),
        "learning_rate": schedule(state.step),
        "tokens": counts[objective.nll_term],
    }
    if skip_bad_steps:
      metrics["skipped_steps"] = health.skipped
    if pruner is not None:
      metrics["sparsity"] = pruning.sparsity(params, pruned["masks"])
    return new_state, metrics

  return train_step


def make_eval_step(model: nn.Module, objective: Loss) -> Callable:
  """eval_step(params, batch) -> ({term: sum}, {term: count}) to aggregate over batches."""

  def eval_step(params, batch):
    sums = objective.forward(model, params, batch, rng=None, deterministic=True, z_loss=0.0)
    return sums, objective.counts(batch)

  return eval_step
