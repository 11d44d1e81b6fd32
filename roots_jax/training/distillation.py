"""Knowledge distillation's loss terms: the KL divergence of the student's temperature-softened
distribution from the teacher's (Hinton et al. 2015) and a distance between their hidden states
(DistilBERT's cosine loss, Sanh et al. 2019; or the mean squared error). Like
losses.token_terms they are float32 sums over weighted positions, a term's value being
sum / count, so a distillation run adds them to its objective's terms and counts.

The teacher is a constant: no gradient reaches it.
"""

import jax
import jax.numpy as jnp

from roots_jax.errors import ConfigError

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
