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
import optax
from flax import linen as nn

from roots_jax.data import finetune as finetune_data
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


def finetune_task(family: str, kind: str, *, label_smoothing: float = 0.0,
                  class_weights=None) -> Task:
  """The Task of a fine-tuning run: the FinetuneModel takes the whole batch (see
  roots_jax.data.finetune for its keys); the loss is cross-entropy or, for regression, MSE."""
  cw = tuple(class_weights) if class_weights else None
  example = lambda length, target_length: finetune_data.example_spec(family, kind, length,
                                                                     target_length)
  model_inputs = lambda b: ((b,), {})
  if kind in ("classification", "token_classification"):
    labels, weights = (("label", "label_weight") if kind == "classification"
                       else ("tags", "tag_weights"))
    return Task(
        name=kind, family=family, model_inputs=model_inputs,
        terms=lambda logits, b, z: class_terms(logits, b[labels], b[weights],
                                               label_smoothing=label_smoothing, class_weights=cw),
        counts=lambda b: {"nll": class_count(b[labels], b[weights], cw),
                          "accuracy": b[weights].sum()},
        loss_terms=("nll",), nll_term="nll", example=example)
  if kind == "regression":
    return Task(
        name=kind, family=family, model_inputs=model_inputs,
        terms=lambda scores, b, z: {"mse": (jnp.square(scores - b["label"]) * b["label_weight"]).sum()},
        counts=lambda b: {"mse": b["label_weight"].sum()},
        loss_terms=("mse",), nll_term="mse", example=example)
  targets, weights = (("decoder_targets", "decoder_weights") if family == "encoder_decoder"
                      else ("targets", "weights"))
  return Task(
      name=kind, family=family, model_inputs=model_inputs,
      terms=lambda logits, b, z: token_terms(logits, b[targets], b[weights], z),
      counts=_counts(weights), loss_terms=("nll", "z_loss"), nll_term="nll", example=example)
