"""What each pretraining objective computes: the model call, its loss terms and their counts.

A term's value over a batch is sum / count. The counts depend on the batch alone (how many
target tokens, how many sentence pairs), so the train step takes them from the whole global batch
before splitting it into accumulation steps: the loss, its gradient and every metric are then the
same whatever the mesh or the accumulation.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from roots_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  family: str                     # the model family whose call signature `model_inputs` fits
  model_inputs: Callable          # batch -> (args, kwargs) of the model call
  terms: Callable                 # (model outputs, batch, z_loss) -> {term: sum}
  counts: Callable                # batch -> {term: count}
  loss_terms: tuple[str, ...]     # terms whose values add up to the training loss
  nll_term: str                   # the token cross-entropy behind perplexity
  example: Callable               # (seq_len, target_len) -> {key: (shape without batch, dtype)}

  def forward(self, model: nn.Module, params, batch, *, rng, deterministic: bool, z_loss: float):
    """{term: sum} for one (micro)batch."""
    args, kwargs = self.model_inputs(batch)
    outputs = model.apply({"params": params}, *args, **kwargs, deterministic=deterministic,
                          rngs=None if deterministic else {"dropout": rng})
    return self.terms(outputs, batch, z_loss)

  def init_batch(self, seq_len: int, target_len: int) -> dict:
    """A batch of one all-zero row, enough to initialise the model."""
    return {k: np.zeros((1, *shape), dtype) for k, (shape, dtype) in
            self.example(seq_len, target_len).items()}


def token_terms(logits, targets, weights, z_loss: float, prefix: str = ""):
  """Sums of cross-entropy, z-loss and accuracy over weighted tokens, in float32.

  logits [B, T, V], targets [B, T] int, weights [B, T] float. PaLM's z-loss, z_loss * log(Z)^2,
  keeps the softmax normaliser near 1.
  """
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)                                        # [B, T]
  nll = log_z - jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]   # [B, T]
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  return {f"{prefix}nll": (nll * weights).sum(),
          f"{prefix}z_loss": (z_loss * jnp.square(log_z) * weights).sum(),
          f"{prefix}accuracy": (correct * weights).sum()}


def _counts(weight_key: str, prefix: str = "") -> Callable:
  def counts(batch):
    total = batch[weight_key].sum()
    return {f"{prefix}nll": total, f"{prefix}z_loss": total, f"{prefix}accuracy": total}
  return counts


_I32, _F32 = np.int32, np.float32

CAUSAL = Task(
    name="causal", family="decoder",
    model_inputs=lambda b: ((b["inputs"],), dict(positions=b["positions"],
                                                 segment_ids=b["segment_ids"])),
    terms=lambda logits, b, z: token_terms(logits, b["targets"], b["weights"], z),
    counts=_counts("weights"),
    loss_terms=("nll", "z_loss"), nll_term="nll",
    example=lambda t, _: {"inputs": ((t,), _I32), "targets": ((t,), _I32),
                          "segment_ids": ((t,), _I32), "positions": ((t,), _I32),
                          "weights": ((t,), _F32)})


def _mlm_nsp_terms(outputs, b, z):
  mlm_logits, nsp_logits = outputs                       # [B, T, V], [B, 2]
  sums = token_terms(mlm_logits, b["targets"], b["weights"], z, prefix="mlm_")
  nsp = token_terms(nsp_logits[:, None], b["nsp_labels"][:, None], b["nsp_weights"][:, None], 0.0,
                    prefix="nsp_")
  return {**sums, "nsp_nll": nsp["nsp_nll"], "nsp_accuracy": nsp["nsp_accuracy"]}


def _mlm_nsp_counts(b):
  counts = _counts("weights", "mlm_")(b)
  pairs = b["nsp_weights"].sum()
  return {**counts, "nsp_nll": pairs, "nsp_accuracy": pairs}


MLM_NSP = Task(
    name="mlm_nsp", family="encoder",
    model_inputs=lambda b: ((b["inputs"],), dict(token_types=b["token_types"],
                                                 positions=b["positions"],
                                                 segment_ids=b["segment_ids"])),
    terms=_mlm_nsp_terms, counts=_mlm_nsp_counts,
    loss_terms=("mlm_nll", "mlm_z_loss", "nsp_nll"), nll_term="mlm_nll",
    example=lambda t, _: {"inputs": ((t,), _I32), "targets": ((t,), _I32),
                          "weights": ((t,), _F32), "token_types": ((t,), _I32),
                          "segment_ids": ((t,), _I32), "positions": ((t,), _I32),
                          "nsp_labels": ((), _I32), "nsp_weights": ((), _F32)})

SEQ2SEQ = Task(
    name="seq2seq", family="encoder_decoder",
    model_inputs=lambda b: ((b["encoder_inputs"], b["decoder_inputs"]), dict(
        encoder_segment_ids=b["encoder_segment_ids"], decoder_segment_ids=b["decoder_segment_ids"],
        encoder_positions=b["encoder_positions"], decoder_positions=b["decoder_positions"])),
    terms=lambda logits, b, z: token_terms(logits, b["decoder_targets"], b["decoder_weights"], z),
    counts=_counts("decoder_weights"),
    loss_terms=("nll", "z_loss"), nll_term="nll",
    example=lambda s, t: {"encoder_inputs": ((s,), _I32), "encoder_segment_ids": ((s,), _I32),
                          "encoder_positions": ((s,), _I32), "decoder_inputs": ((t,), _I32),
                          "decoder_targets": ((t,), _I32), "decoder_segment_ids": ((t,), _I32),
                          "decoder_positions": ((t,), _I32), "decoder_weights": ((t,), _F32)})

TASKS = {"causal": CAUSAL, "mlm_nsp": MLM_NSP, "span_corruption": SEQ2SEQ, "seq2seq": SEQ2SEQ}


def get_task(objective: str, family: str) -> Task:
  """The task of data.objective, checked against model.family."""
  task = TASKS[objective]
  if task.family != family:
    fits = [name for name, t in TASKS.items() if t.family == family]
    raise ConfigError(f"data.objective={objective} trains a model.family={task.family} model, not "
                      f"{family}; for {family} use data.objective={' or '.join(fits)}")
  return task
