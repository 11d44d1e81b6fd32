"""Everything a training run needs around a model, built abstractly first: parameter and state
shardings from the logical annotations, the sharded init and the jitted train step. Call inside
`jax.set_mesh(mesh)` and `nn.logical_axis_rules(rules)`."""

import logging
from typing import Callable, NamedTuple

import jax
import optax
from flax import linen as nn

from roots_jax.data.supervised import LabelVocab
from roots_jax.evals import Scorer
from roots_jax.models.config import ModelConfig
from roots_jax.training import (checkpoints, optimizers, partitioning, pruning, quantization,
                                steps)
from roots_jax.training.losses import Loss

log = logging.getLogger("roots_jax")


class RunModel(NamedTuple):
  """A run config's model: what a kind of run trains, and what using the run restores."""
  model_config: ModelConfig
  model: nn.Module
  loss: Loss
  init_batch: dict                  # one all-zero row in the loss's layout
  labels: LabelVocab | None = None  # a classifier's class names
  examples: Callable | None = None  # split -> the examples of a fine-tuning task's split


class Parts(NamedTuple):
  """What a training run is made of (also used by benchmarks)."""
  model_config: ModelConfig
  model: nn.Module
  loss: Loss
  num_params: int
  abstract_state: steps.TrainState
  state_sharding: steps.TrainState
  batch_sharding: jax.sharding.NamedSharding
  init: Callable          # rng -> sharded TrainState
  train_step: Callable    # (state, batch, *step_constants) -> (state, metrics); donates state
  step_constants: tuple = ()  # what every step reads besides the batch (a teacher's params)
  pruner: pruning.Pruner | None = None  # a pruning run's schedule (prune.*)

  @property
  def scorer(self) -> Scorer:
    """The model and loss on this mesh, for evaluators."""
    return Scorer(self.model, self.loss, self.state_sharding.params, self.batch_sharding)


def param_initializer(model: nn.Module, loss: Loss, init_batch: dict) -> Callable:
  """rng -> the model's parameters, boxed with their logical axes, from a batch in `loss`'s
  layout."""
  args, kwargs = loss.model_inputs(init_batch)
  return lambda rng: model.init(rng, *args, **kwargs)["params"]


def abstract_params(model: nn.Module, loss: Loss, init_batch: dict, seed: int):
  """The model's parameters as boxed ShapeDtypeStructs; nothing is computed."""
  return jax.eval_shape(param_initializer(model, loss, init_batch), jax.random.key(seed))


def unbox(boxed):
  """Boxed abstract parameters without their logical-axis boxes."""
  return jax.eval_shape(nn.meta.unbox, boxed)


def assemble(config, mesh, model_config: ModelConfig, model: nn.Module, loss: Loss,
             init_batch: dict, tx: optax.GradientTransformation,
             make_plan: Callable | None = None, *, init_params: Callable | None = None,
             step_constants: tuple = ()) -> Parts:
  """A run's Parts for `model` and its `loss`; `init_batch` is one row in the loss's layout.
  `make_plan(abstract params) -> plan` chooses the trained parameters (see
  steps.split_params); without it everything trains. `init_params(rng)` -> boxed parameters
  replaces the model's own initialisation (a distillation adds its projection);
  `step_constants`, sharded arrays, are passed to every step after the batch."""
  t, rules = config.train, partitioning.logical_rules(config)
  model = quantization.training_model(model, config.quant)  # QAT or fp8 matmuls, if configured
  init_params = init_params or param_initializer(model, loss, init_batch)
  rng = jax.random.key(config.seed)
  boxed = jax.eval_shape(init_params, rng)
  plan = make_plan(unbox(boxed)) if make_plan else None
  pruner = pruning.Pruner.from_config(config.prune)
  init_state = lambda rng: steps.init_state(nn.meta.unbox(init_params(rng)), tx, plan, pruner)
  abstract_state = jax.eval_shape(init_state, rng)
  state_sharding = _state_shardings(abstract_state, boxed, tx, mesh, rules, plan)
  batch_sharding = partitioning.data_sharding(mesh, rules)
  train_step = jax.jit(
      steps.make_train_step(
          model, tx, loss, seed=config.seed, grad_accum_steps=t.grad_accum_steps, z_loss=t.z_loss,
          schedule=optimizers.make_schedule(config.optimizer, t.steps), plan=plan,
          skip_bad_steps=t.bad_steps == "skip", spike_sigma=t.spike_sigma,
          spike_window=t.spike_window, pruner=pruner),
      in_shardings=(state_sharding, batch_sharding,
                    *jax.tree.map(lambda x: x.sharding, step_constants)),
      out_shardings=(state_sharding, partitioning.replicated(mesh)), donate_argnums=0)
  num_params = sum(x.size for x in jax.tree.leaves(abstract_state.params))
  return Parts(model_config, model, loss, num_params, abstract_state, state_sharding,
               batch_sharding, jax.jit(init_state, out_shardings=state_sharding), train_step,
               step_constants, pruner)


def restore(parts: Parts, manager, data_iterator):
  """The newest checkpoint restored into the parts' state, or None when there is none. A pruning
  run resumed from a checkpoint written without pruning (continued pretraining) starts from the
  masks its schedule has at that step (all ones before prune.begin_step), applied."""
  abstract = checkpoints.abstract_like(parts.abstract_state, parts.state_sharding)
  step = manager.latest_step()
  if (getattr(abstract, "masks", None) is None or step is None
      or "masks" in checkpoints.saved_fields(manager, step)):
    return checkpoints.restore(manager, abstract, data_iterator)
  fields = {k: v for k, v in vars(abstract).items() if k != "masks"}
  state = checkpoints.restore(manager, steps.TrainState(**fields), data_iterator)
  at = int(state.step)
  masks = jax.jit(lambda p: parts.pruner.masks_at(at, p),
                  out_shardings=parts.state_sharding.masks)(state.params)
  params = jax.jit(pruning.apply_masks, out_shardings=parts.state_sharding.params,
                   donate_argnums=0)(state.params, masks)
  log.info("pruning starts on checkpoint step %d, which was written without it", at)
  return steps.PrunedTrainState(**dict(vars(state), params=params), masks=masks)


def _state_shardings(abstract_state, boxed_params, tx, mesh, rules, plan):
  """Params by their logical axes; optimizer leaves shaped like their (trained part of the)
  parameter share its sharding (Adafactor's factored moments and counters are replicated)."""
  param_sharding = partitioning.tree_shardings(boxed_params, mesh, rules)
  replicated = partitioning.replicated(mesh)
  trained = jax.eval_shape(lambda p: steps.split_params(plan, p)[0], abstract_state.params)
  trained_sharding = steps.split_params(plan, param_sharding, take=lambda s, k: (s, s))[0]
  opt_sharding = optax.tree_map_params(
      tx, lambda leaf, sharding, param: sharding if leaf.shape == param.shape else replicated,
      abstract_state.opt_state, trained_sharding, trained,
      transform_non_params=lambda _: replicated)
  return abstract_state.replace(
      step=replicated, params=param_sharding, opt_state=opt_sharding,
      health=jax.tree.map(lambda _: replicated, abstract_state.health),
      **_mask_shardings(abstract_state, param_sharding))


def _mask_shardings(abstract_state, param_sharding) -> dict:
  """A pruning state's masks are sharded like the kernels they mask."""
  masks = getattr(abstract_state, "masks", None)
  return {} if masks is None else dict(masks=pruning.select(param_sharding, masks))
