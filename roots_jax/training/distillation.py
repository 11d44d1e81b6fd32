"""Knowledge distillation's loss terms: the KL divergence of the student's temperature-softened
distribution from the teacher's (Hinton et al. 2015) and a distance between their hidden states
(DistilBERT's cosine loss, Sanh et al. 2019; or the mean squared error). Like
losses.token_terms they are float32 sums over weighted positions, a term's value being
sum / count, so a distillation run adds them to its objective's terms and counts.

The teacher is a constant: no gradient reaches it.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from roots_jax.errors import ConfigError
from roots_jax.training.losses import Loss

# The distances hidden_terms takes.
HIDDEN_LOSSES = ("cosine", "mse")


def soft_target_terms(student_logits, teacher_logits, weights, temperature: float,
                      prefix: str = "kd_") -> dict:
  """{PREFIX + "kl": sum of weights x T^2 KL(p_T || q_T)}, p_T = softmax(teacher / T) and
  q_T = softmax(student / T) over the last axis. The T^2 keeps the soft targets' gradients at
  the scale of the hard targets' whatever T (Hinton et al. 2015, section 2).

  student_logits, teacher_logits [..., V]; weights [...] (0 where the objective scores nothing).
  """
  if temperature <= 0:
    raise ConfigError(f"the distillation temperature must be positive; got {temperature}")
  t = jnp.float32(temperature)
  log_q = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t, axis=-1)       # [..., V]
  teacher = jax.lax.stop_gradient(teacher_logits).astype(jnp.float32)
  log_p = jax.nn.log_softmax(teacher / t, axis=-1)                                    # [..., V]
  kl = (jnp.exp(log_p) * (log_p - log_q)).sum(-1)                                     # [...]
  return {f"{prefix}kl": (t * t * kl * weights).sum()}


def hidden_terms(student_hidden, teacher_hidden, weights, distance: str,
                 prefix: str = "kd_") -> dict:
  """{PREFIX + "hidden": sum of weights x the distance of each position's hidden states}:
  "cosine" 1 - cos(student, teacher), "mse" their squared difference averaged over features.

  student_hidden [..., D] (projected to the teacher's width where the widths differ),
  teacher_hidden [..., D], weights [...].
  """
  if distance not in HIDDEN_LOSSES:
    raise ConfigError(f"the hidden-state distance must be one of {', '.join(HIDDEN_LOSSES)}; "
                      f"got {distance!r}")
  s = student_hidden.astype(jnp.float32)
  t = jax.lax.stop_gradient(teacher_hidden).astype(jnp.float32)
  if distance == "cosine":
    # As torch.nn.functional.cosine_similarity: each norm kept above its eps, 1e-8.
    norms = (jnp.maximum(jnp.linalg.norm(s, axis=-1), 1e-8)
             * jnp.maximum(jnp.linalg.norm(t, axis=-1), 1e-8))
    per_position = 1.0 - (s * t).sum(-1) / norms                                      # [...]
  else:
    per_position = jnp.square(s - t).mean(-1)                                         # [...]
  return {f"{prefix}hidden": (per_position * weights).sum()}


# The student's parameters' key of the learned projection to the teacher's width.
PROJECTION = "kd_projection"


@dataclasses.dataclass(frozen=True)
class DistillLoss(Loss):
  """A student's objective (the Loss fields, its own) with the teacher's soft targets on every
  distribution the objective scores (Loss.distributions), at those positions, and optionally the
  distance of matched layer outputs at the real tokens. The train step passes the teacher's
  parameters to `forward` after the batch; evaluation passes none."""
  teacher: nn.Module | None = None
  temperature: float = 1.0
  hidden_loss: str = ""              # "" (none) or one of HIDDEN_LOSSES
  layer_pairs: tuple = ()            # (student layer, teacher layer) outputs matched
  layer_outputs: Callable | None = None  # sown intermediates -> each layer's output [L, B, T, D]

  def forward(self, model: nn.Module, params, batch, teacher_params=None, *, rng,
              deterministic: bool, z_loss: float):
    """{term: sum}; without the teacher's parameters (evaluation) the student's own terms."""
    student = {k: v for k, v in params.items() if k != PROJECTION}
    if teacher_params is None:
      return super().forward(model, student, batch, rng=rng, deterministic=deterministic,
                             z_loss=z_loss)
    args, kwargs = self.model_inputs(batch)
    mutable = ["intermediates"] if self.hidden_loss else False
    outputs = model.apply({"params": student}, *args, **kwargs, deterministic=deterministic,
                          rngs=None if deterministic else {"dropout": rng}, mutable=mutable)
    taught = self.teacher.apply({"params": teacher_params}, *args, **kwargs, deterministic=True,
                                mutable=mutable)
    if mutable:
      (outputs, sown), (taught, taught_sown) = outputs, taught
    sums = self.terms(outputs, batch, z_loss)
    targets, weights = self.distributions(taught), self.distribution_weights(batch)
    for prefix, logits in self.distributions(outputs).items():
      sums.update(soft_target_terms(logits, targets[prefix], weights[prefix], self.temperature,
                                    prefix=f"kd_{prefix}"))
    if self.hidden_loss:
      mine, theirs = (np.asarray(i) for i in zip(*self.layer_pairs))
      hidden = self.layer_outputs(sown["intermediates"])[mine]                     # [P, B, T, Ds]
      if PROJECTION in params:
        hidden = hidden @ params[PROJECTION]["kernel"].astype(hidden.dtype)    # [P, B, T, Dt]
      target = self.layer_outputs(taught_sown["intermediates"])[theirs]            # [P, B, T, Dt]
      weights = jnp.broadcast_to(real_tokens(batch), hidden.shape[:-1])      # [P, B, T]
      sums.update(hidden_terms(hidden, target, weights, self.hidden_loss))
    return sums


def real_tokens(batch) -> jax.Array:
  """[B, T] 1.0 at the real tokens of the stack an LM head reads (the decoder's of an
  encoder-decoder objective's rows), 0.0 on padding."""
  segments = batch["decoder_segment_ids"] if "decoder_segment_ids" in batch else batch[
      "segment_ids"]
  return (segments > 0).astype(jnp.float32)


def distill_loss(student: Loss, teacher: nn.Module, *, alpha: float, temperature: float,
                 hidden_loss: str = "", hidden_weight: float = 0.0, layer_pairs: tuple = (),
                 layer_outputs: Callable | None = None) -> DistillLoss:
  """The student's Loss turned into alpha x the soft-target KLs + (1 - alpha) x its own loss
  terms (+ hidden_weight x the hidden-state distance of `layer_pairs`, read by
  `layer_outputs` from both models' sown intermediates), each term logged."""
  if student.distributions is None:
    raise ConfigError("this objective scores no distribution (a regression): there are no "
                      "soft targets to distil")
  kd = [f"kd_{prefix}kl" for prefix in student.distribution_weights(student.init_batch(1, 1))]
  hidden = ["kd_hidden"] if hidden_loss else []

  def counts(batch):
    c = student.counts(batch)
    for prefix, weights in student.distribution_weights(batch).items():
      c[f"kd_{prefix}kl"] = weights.sum()
    if hidden_loss:
      c["kd_hidden"] = real_tokens(batch).sum() * len(layer_pairs)
    return c

  weights = {**{t: 1.0 - alpha for t in student.loss_terms}, **{t: alpha for t in kd},
             **{t: hidden_weight for t in hidden}}
  return DistillLoss(
      model_inputs=student.model_inputs, terms=student.terms, counts=counts,
      loss_terms=(*student.loss_terms, *kd, *hidden), nll_term=student.nll_term,
      example=student.example, distributions=student.distributions,
      distribution_weights=student.distribution_weights, term_weights=weights, teacher=teacher,
      temperature=temperature, hidden_loss=hidden_loss, layer_pairs=tuple(layer_pairs),
      layer_outputs=layer_outputs)
