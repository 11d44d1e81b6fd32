"""Structured pruning that shrinks a run's model: attention heads and MLP units, the same number
kept in every layer (so a scanned stack stays one shape), written as a new run of a smaller
model whose outputs are the masked original's.

  prune_run("/tmp/bert", "/tmp/bert-pruned", heads=8, mlp_units=2048, batches=8)

Importance (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"): each head's output
is scaled by a mask variable xi_h = 1 (models.attention.MASKS), and I_h = sum over a few training
batches of |d loss / d xi_h|; an MLP unit's the same with a mask on its activation (the
first-order Taylor estimate of the loss change when the unit is removed, Molchanov et al. 2017).
Each layer keeps its k most important heads and units, in their original order: the query, key
and value kernels and biases lose the other heads, the output kernel their rows; the MLP's input
kernels and biases lose the other units' columns, its output kernel their rows. The pruned run
records (prune.kept_heads) which original heads each layer kept, which the Hugging Face export
writes as BERT's pruned_heads.
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from roots_jax import objectives
from roots_jax.errors import ConfigError
from roots_jax.models import families
from roots_jax.models.attention import MASKS
from roots_jax.runs import load as load_lib

log = logging.getLogger("roots_jax")

_HEAD_KERNELS = ("query", "key", "value")       # [D, N, H] kernels, [N, H] biases
_MLP_INPUTS = ("wi", "wi_gate", "wi_up")         # [D, F] kernels, [F] biases


def mask_paths(params) -> dict[tuple[str, ...], tuple[str, int]]:
  """{path of a mask in the MASKS collection: (head_mask | unit_mask, its width)} for every
  attention and MLP module of `params`; a scanned stack's masks have a leading layer axis too."""
  out = {}
  for path, value in traverse_util.flatten_dict(params).items():
    module, name = path[:-2], path[-2:]
    if name == ("query", "kernel"):
      out[(*module, "head_mask")] = value.shape[-2]
    elif name == ("wo", "kernel") and module[-1] == "mlp":
      out[(*module, "unit_mask")] = value.shape[-2]
  return out


def _layers(path: tuple[str, ...], params_flat) -> int | None:
  """A scanned module's layer count (the leading axis of its parameters); None if looped."""
  if "layers" not in path:
    return None
  module = path[:-1]
  return next(v.shape[0] for p, v in params_flat.items() if p[:len(module)] == module)


def full_masks(params, kept: dict | None = None):
  """The MASKS collection for `params`: ones, or with `kept` ({mask path: [L or 1, k] kept
  indices}) ones at the kept heads and units only: the masked model a pruned one equals."""
  flat = traverse_util.flatten_dict(params)
  out = {}
  for path, width in mask_paths(params).items():
    layers = _layers(path, flat)
    mask = np.ones((layers or 1, width), np.float32)
    if kept is not None and path in kept:
      mask[:] = 0.0
      np.put_along_axis(mask, np.asarray(kept[path]), 1.0, axis=1)
    out[path] = mask if layers else mask[0]
  return traverse_util.unflatten_dict(out)


def importance(loaded: load_lib.Loaded, batches) -> dict:
  """{mask path: [L or 1, width] float} the sum over `batches` (global arrays in the run's
  batch layout) of |d loss / d mask| at mask = 1."""
  model, loss = loaded.model, loaded.loss

  @jax.jit
  def grads(params, masks, batch):
    def loss_of(m):
      args, kwargs = loss.model_inputs(batch)
      outputs = model.apply({"params": params, MASKS: m}, *args, **kwargs, deterministic=True)
      sums, counts = loss.terms(outputs, batch, 0.0), loss.counts(batch)
      return sum(sums[t] / jnp.maximum(counts[t], 1.0) for t in loss.loss_terms)
    return jax.tree.map(jnp.abs, jax.grad(loss_of)(masks))

  masks = jax.tree.map(jnp.asarray, full_masks(loaded.params))
  total, seen = None, 0
  with loaded.context():
    for batch in batches:
      g = grads(loaded.params, masks, batch)
      total = g if total is None else jax.tree.map(jnp.add, total, g)
      seen += 1
  if not seen:
    raise ConfigError("no batches to score the heads and units on: the run's training split "
                      "is empty")
  return {p: np.asarray(v).reshape(-1, v.shape[-1])
          for p, v in traverse_util.flatten_dict(jax.device_get(total)).items()}


def top_k(scores: dict, k_heads: int, k_units: int) -> dict:
  """{mask path: [L or 1, k] indices, ascending} of each layer's k most important heads (units)."""
  out = {}
  for path, score in scores.items():
    k = k_heads if path[-1] == "head_mask" else k_units
    best = np.argsort(-score, axis=1, kind="stable")[:, :k]
    out[path] = np.sort(best, axis=1)
  return out


def prune_params(params, kept: dict):
  """`params` with only the `kept` heads and units ({mask path: [L or 1, k] indices}) of each
  attention and MLP module (numpy)."""
  flat = {p: np.asarray(v) for p, v in traverse_util.flatten_dict(params).items()}
  out = dict(flat)
  for path, indices in kept.items():
    module, scanned = path[:-1], "layers" in path
    if path[-1] == "head_mask":
      # axis of the heads in each parameter (without a scanned stack's layer axis)
      cuts = {(*module, n, "kernel"): 1 for n in _HEAD_KERNELS}
      cuts.update({(*module, n, "bias"): 0 for n in _HEAD_KERNELS})
      cuts[(*module, "out", "kernel")] = 0                            # [N, H, D]
    else:
      cuts = {(*module, n, "kernel"): 1 for n in _MLP_INPUTS}        # [D, F]
      cuts.update({(*module, n, "bias"): 0 for n in _MLP_INPUTS})
      cuts[(*module, "wo", "kernel")] = 0                            # [F, D]
    for p, axis in cuts.items():
      if p not in flat:
        continue
      x = flat[p]
      if scanned:
        out[p] = np.stack([np.take(x[i], indices[i], axis=axis) for i in range(x.shape[0])])
      else:
        out[p] = np.take(x, indices[0], axis=axis)
  return traverse_util.unflatten_dict(out)


def _layer_index(path: tuple[str, ...]) -> int:
  """A looped stack's layer (layers_i) of a mask path; 0 for a scanned stack's one path."""
  return next((int(p[7:]) for p in path if p.startswith("layers_") and p[7:].isdigit()), 0)


def check_prunable(loaded: load_lib.Loaded, heads: int, mlp_units: int) -> None:
  """ConfigError for a k out of range, or heads of a model whose heads cannot be cut per layer."""
  m = loaded.model_config
  if not 0 < heads <= m.num_heads:
    raise ConfigError(f"--heads must be in 1..{m.num_heads} (the model's heads); got {heads}")
  if not 0 < mlp_units <= m.mlp_dim:
    raise ConfigError(f"--mlp_units must be in 1..{m.mlp_dim} (model.mlp_dim); got {mlp_units}")
  if heads == m.num_heads:
    return
  if m.kv_heads != m.num_heads:
    raise ConfigError(f"heads of grouped-query attention (model.num_kv_heads={m.num_kv_heads}) "
                      "are not pruned: keep --heads at model.num_heads")
  if m.position == "relative":
    raise ConfigError("heads of a relative-position model (T5) are not pruned: its position bias "
                      "is shared by every layer's heads; keep --heads at model.num_heads")
  if m.family == "encoder_decoder":
    raise ConfigError("heads of an encoder-decoder are not pruned (its stacks and "
                      "cross-attention share model.num_heads); keep --heads at model.num_heads")


def batches(loaded: load_lib.Loaded, count: int):
  """The run's first `count` training batches (its config's batch size), as global arrays."""
  config, tokenizer = loaded.config, loaded.tokenizer
  if tokenizer is None:
    raise ConfigError(f"scoring heads and units reads training data, which needs the run's "
                      f"tokenizer: {loaded.no_tokenizer}")
  shard = dict(process_index=jax.process_index(), process_count=jax.process_count())
  task = loaded.task
  if task is None:
    data = objectives.dataset(config, tokenizer, "train", **shard)
  else:
    data = task.dataset(config, tokenizer, loaded.labels, loaded.examples("train"),
                        family=families.get(config.model.family), split="train", **shard)
  to_global = lambda b: jax.make_array_from_process_local_data(loaded.batch_sharding, b)
  it = iter(data)
  try:
    for _ in range(count):
      try:
        yield jax.tree.map(to_global, next(it))
      except StopIteration:
        return
  finally:
    close = getattr(it, "close", None)
    if close:
      close()


def prune_run(run: str, out: str, *, heads: int, mlp_units: int, num_batches: int = 8,
              checkpoint: str | int | None = None) -> dict:
  """Prunes the run (or checkpoint) `run` to `heads` heads and `mlp_units` MLP units per layer,
  scored on `num_batches` training batches, and writes the smaller model as the run `out`.
  Returns a summary: parameters before and after, and the kept heads per layer."""
  loaded = load_lib.load(run, checkpoint=checkpoint)
  check_prunable(loaded, heads, mlp_units)
  m = loaded.model_config
  scores = importance(loaded, batches(loaded, num_batches))
  kept = top_k(scores, heads, mlp_units)
  params = prune_params(jax.device_get(loaded.params), kept)
  record = tuple(loaded.config.prune.kept_heads)
  if heads < m.num_heads:  # one stack (check_prunable): its layers' rows, in layer order
    kept_heads = np.concatenate([kept[p] for p in sorted(
        (p for p in kept if p[-1] == "head_mask"), key=_layer_index)])       # [L, k]
    if record:  # pruned before: indices of the original heads
      kept_heads = np.take_along_axis(np.asarray(record), kept_heads, axis=1)
    record = tuple(tuple(int(i) for i in row) for row in kept_heads)
  load_lib.save(loaded, params, out, changes={
      "model.num_heads": heads, "model.head_dim": m.head_size, "model.mlp_dim": mlp_units,
      "prune.kept_heads": record})
  count = lambda tree: sum(int(np.size(x)) for x in jax.tree.leaves(tree))
  summary = dict(parameters_before=count(loaded.params), parameters_after=count(params),
                 kept_heads=record)
  log.info("pruned %s to %d heads and %d MLP units per layer: %d -> %d parameters, in %s",
           loaded.workdir, heads, mlp_units, summary["parameters_before"],
           summary["parameters_after"], out)
  return summary
