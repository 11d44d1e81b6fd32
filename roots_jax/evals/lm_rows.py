"""Token rows for a language model on a mesh, shared by the Python API (roots_jax.api) and
in-context evaluation (evals.incontext_lm): widths rounded up to shape buckets so that varied
inputs share compilations, batches padded with all-zero rows to the data-parallel size, and the
log-probability of target tokens under teacher forcing.

A scored batch holds, right-padded: inputs, segment_ids, targets, weights [B, T] (position i
predicts targets[i]; weights 1 where scored) and, for an encoder-decoder, encoder_inputs and
encoder_segment_ids [B, S].
"""

from typing import Any, Callable, ContextManager

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

# Widths are rounded up to a multiple of this: one compilation per bucket.
WIDTH_MULTIPLE = 16


def round_up(n: int, multiple: int = WIDTH_MULTIPLE) -> int:
  return -(-max(n, 1) // multiple) * multiple


def left_padded(rows: list[list[int]], width: int) -> tuple[np.ndarray, np.ndarray]:
  """tokens, segment ids [B, width], each row at the right end (generation's prompt layout)."""
  tokens = np.zeros((len(rows), width), np.int32)
  segments = np.zeros((len(rows), width), np.int32)
  for i, ids in enumerate(rows):
    tokens[i, width - len(ids):] = ids
    segments[i, width - len(ids):] = 1
  return tokens, segments


def right_padded(rows: list[list], width: int, dtype=np.int32) -> np.ndarray:
  out = np.zeros((len(rows), width), dtype)
  for i, values in enumerate(rows):
    out[i, :len(values)] = values
  return out


def positions(segments: jax.Array) -> jax.Array:
  """[B, T] positions of right-padded rows (0 on padding)."""
  return jnp.where(segments > 0, jnp.arange(segments.shape[1])[None], 0)


def data_parallel_size(batch_sharding: jax.sharding.NamedSharding) -> int:
  """How many shards the batch axis is split into: batches are padded to a multiple of it."""
  spec = batch_sharding.spec[0] if batch_sharding.spec else None
  axes = () if spec is None else (spec if isinstance(spec, tuple) else (spec,))
  return int(np.prod([batch_sharding.mesh.shape[a] for a in axes]))


def run_padded(fn: Callable, params, batch: dict[str, np.ndarray], rows: int, total: int,
               batch_sharding, context: Callable[[], ContextManager], *args) -> Any:
  """fn(params, batch, *args) on `batch` padded with all-zero rows to `total` rows, under the
  mesh `context`; the first `rows` rows of every output, as numpy."""
  padded = {k: np.concatenate([v, np.zeros((total - len(v), *v.shape[1:]), v.dtype)])
            for k, v in batch.items()}
  with context():
    out = fn(params, jax.device_put(padded, batch_sharding), *args)
  return jax.tree.map(lambda x: np.asarray(x)[:rows], jax.device_get(out))


def scored_batch(rows: list[tuple[list[int], list[int] | None, list[int], list[float]]],
                 width: int, encoder_width: int | None = None) -> dict[str, np.ndarray]:
  """A scored batch of rows (inputs, encoder inputs or None, targets, weights), right-padded
  to `width` (and `encoder_width` for an encoder-decoder)."""
  batch = {"inputs": right_padded([r[0] for r in rows], width),
           "segment_ids": right_padded([[1] * len(r[0]) for r in rows], width),
           "targets": right_padded([r[2] for r in rows], width),
           "weights": right_padded([r[3] for r in rows], width, np.float32)}
  if encoder_width is not None:
    batch["encoder_inputs"] = right_padded([r[1] for r in rows], encoder_width)
    batch["encoder_segment_ids"] = right_padded([[1] * len(r[1]) for r in rows], encoder_width)
  return batch


def target_scores(model: nn.Module, has_encoder: bool) -> Callable:
  """(params, scored batch) -> ([B] sums of the log-probabilities of the weighted targets,
  [B] whether every weighted target is the model's most likely token there)."""

  def fn(params, b):
    segments = b["segment_ids"]
    if has_encoder:
      encoder_segments = b["encoder_segment_ids"]
      logits = model.apply({"params": params}, b["encoder_inputs"], b["inputs"],
                           encoder_segment_ids=encoder_segments, decoder_segment_ids=segments,
                           encoder_positions=positions(encoder_segments),
                           decoder_positions=positions(segments))
    else:
      logits = model.apply({"params": params}, b["inputs"], positions=positions(segments),
                           segment_ids=segments)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))                      # [B, T, V]
    picked = jnp.take_along_axis(logp, b["targets"][..., None], axis=-1)[..., 0]
    greedy = (jnp.argmax(logp, axis=-1) == b["targets"]) | (b["weights"] == 0)  # [B, T]
    return (picked * b["weights"]).sum(-1), greedy.all(-1)                     # [B], [B]
  return fn
