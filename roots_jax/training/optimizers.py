"""Optimizers and learning-rate schedules from the `optimizer` config section (Optax)."""

import jax
import ml_collections
import optax

# Leaf names that get decoupled weight decay; norms' `scale`, all `bias` and `embedding` tables
# are exempt, as in GPT-2/BERT/T5 practice (Loshchilov & Hutter 2019; nanoGPT).
DECAYED_LEAVES = ("kernel",)


def make_schedule(opt: ml_collections.ConfigDict, total_steps: int,
                  peak: float | None = None) -> optax.Schedule:
  """Linear warmup from 0 to the peak (default optimizer.learning_rate), then the configured
  decay down to end_lr_fraction of it."""
  peak = opt.learning_rate if peak is None else peak
  warmup = opt.warmup_steps
  decay_steps = max((opt.decay_steps or total_steps) - warmup, 1)
  end = peak * opt.end_lr_fraction
  if opt.schedule == "cosine":
    decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=opt.end_lr_fraction)
  elif opt.schedule == "linear":
    decay = optax.linear_schedule(peak, end, decay_steps)
  elif opt.schedule == "inverse_sqrt":
    # lr = peak * sqrt(warmup / step), as in "Attention Is All You Need" after its warmup.
    decay = lambda count: peak * jax.lax.rsqrt((count + max(warmup, 1)) / max(warmup, 1))
  else:
    decay = optax.constant_schedule(peak)
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def decay_mask(params):
  """True for leaves that get weight decay (see DECAYED_LEAVES)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], "key", None) in DECAYED_LEAVES, params)


def make_optimizer(opt: ml_collections.ConfigDict, total_steps: int, *,
                   head_learning_rate: float = 0.0) -> optax.GradientTransformation:
  """Clipping (of the global norm), then the named optimizer with the schedule; weight decay
  masked by decay_mask. With head_learning_rate, the parameters under a top-level `head` (a
  fine-tuning head) peak at that rate instead."""
  tx = _optimizer(opt, make_schedule(opt, total_steps))
  if head_learning_rate:
    head = _optimizer(opt, make_schedule(opt, total_steps, peak=head_learning_rate))
    tx = optax.multi_transform({"head": head, "backbone": tx}, _head_labels)
  if opt.clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(opt.clip_norm), tx)
  return tx


def _head_labels(params):
  return {name: jax.tree.map(lambda _: "head" if name == "head" else "backbone", subtree)
          for name, subtree in params.items()}


def _optimizer(opt: ml_collections.ConfigDict, lr: optax.Schedule) -> optax.GradientTransformation:
  if opt.name == "adamw":
    return optax.adamw(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay,
                       mask=decay_mask)
  if opt.name == "lion":
    return optax.lion(lr, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay, mask=decay_mask)
  if opt.name == "adafactor":
    return optax.adafactor(lr, weight_decay_rate=opt.weight_decay or None,
                           weight_decay_mask=decay_mask)
  return optax.chain(optax.add_decayed_weights(opt.weight_decay, mask=decay_mask),
                     optax.sgd(lr, momentum=opt.momentum or None, nesterov=opt.nesterov))
