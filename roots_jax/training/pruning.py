"""Unstructured pruning during training: which weights may be pruned, the gradual sparsity
schedule, magnitude and N:M masks, and the achieved sparsity.

Prunable are the blocks' Dense kernels: attention query/key/value/out (cross-attention's too) and
the MLP's wi (wi_gate, wi_up) and wo. Embeddings, norms, biases, position tables and the heads
(LM, MLM, pooler, classifiers) stay dense: they are a small share of a model's weights, and
pruning them costs accuracy out of proportion (Gale et al. 2019; jaxpruner's defaults leave them
dense too).

Masks are trees holding a bool array for each prunable kernel, at the kernel's path in the
params (`masks_like`); the train step keeps them in its state and applies them after every
update (training.steps), so a pruned weight is exactly 0.0 from then on. A scanned stack's
kernels carry a leading layer axis: per-layer scope prunes each layer's slice separately.

Zhu & Gupta (2017), "To prune, or not to prune": sparsity rises from s_i to s_f as
  s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3
over n dt = end_step - begin_step steps, masks recomputed from the weights' magnitudes every
dt = frequency steps. N:M (Mishra et al. 2021, NVIDIA's 2:4): the n largest of every m
consecutive weights along the input (reduction) dimension are kept.
"""

import dataclasses

import jax
import jax.numpy as jnp
from flax import traverse_util

METHODS = ("", "magnitude", "n_m")
SCOPES = ("layer", "global")

# (module, parameter) names of the prunable kernels, with the count of their input axes: the
# attention output contracts heads and head dim ([N, H, D]); the rest one axis ([D, ...], [F, D]).
_ATTENTION = ("attention", "cross_attention")
_INPUT_AXES = {"query": 1, "key": 1, "value": 1, "out": 2, "wi": 1, "wi_gate": 1, "wi_up": 1,
               "wo": 1}


def _in_layer(path: tuple[str, ...]) -> bool:
  return any(p == "layers" or (p.startswith("layers_") and p[7:].isdigit()) for p in path)


def input_axes(path: tuple[str, ...]) -> int:
  """The prunable kernel at `path`'s count of input axes (without a scan's layer axis); 0 for a
  parameter that is not prunable."""
  if len(path) < 3 or path[-1] != "kernel" or not _in_layer(path):
    return 0
  module, layer = path[-2], path[-3]
  if (layer in _ATTENTION and module in ("query", "key", "value", "out")) or (
      layer == "mlp" and module in ("wi", "wi_gate", "wi_up", "wo")):
    return _INPUT_AXES[module]
  return 0


def is_scanned(path: tuple[str, ...]) -> bool:
  """Whether the parameter at `path` has a leading layer axis (nn.scan's stack `layers`)."""
  return "layers" in path


def prunable_paths(params) -> list[tuple[str, ...]]:
  """The paths (tuples of names) of the prunable kernels of `params`."""
  return [p for p in traverse_util.flatten_dict(params) if input_axes(p)]


def masks_like(params, value: bool = True):
  """A masks tree for `params`: a bool array of `value` per prunable kernel, at its path."""
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict(
      {p: jnp.full(flat[p].shape, value, bool) for p in prunable_paths(params)})


def select(tree, masks):
  """The leaves of `tree` (params, or shardings shaped like them) at the masks' paths."""
  flat = traverse_util.flatten_dict(tree)
  return traverse_util.unflatten_dict({p: flat[p] for p in traverse_util.flatten_dict(masks)})


def apply_masks(params, masks):
  """`params` with every masked-out weight set to exactly 0.0."""
  flat = traverse_util.flatten_dict(params)
  for path, mask in traverse_util.flatten_dict(masks).items():
    flat[path] = jnp.where(mask, flat[path], jnp.zeros((), flat[path].dtype))
  return traverse_util.unflatten_dict(flat)


def polynomial_sparsity(step, *, target: float, begin: int, end: int, initial: float = 0.0):
  """Zhu & Gupta's cubic schedule at `step` (steps taken): `initial` up to `begin`, `target`
  from `end` on."""
  span = max(end - begin, 1)
  progress = jnp.clip((jnp.asarray(step, jnp.float32) - begin) / span, 0.0, 1.0)
  return target + (initial - target) * (1.0 - progress) ** 3


def keep_largest(x: jax.Array, pruned) -> jax.Array:
  """Bool mask of x's shape keeping all but the `pruned` (a traced count is fine) smallest |x|:
  exactly that many are dropped, ties broken by position (an argsort is stable, so weights already
  at zero go first)."""
  flat = jnp.abs(x).reshape(-1)                                           # [S]
  order = jnp.argsort(flat)                                               # [S] smallest first
  keep = jnp.zeros(flat.shape, bool).at[order].set(jnp.arange(flat.size) >= pruned)
  return keep.reshape(x.shape)


def magnitude_masks(params, masks, sparsity, *, scope: str):
  """New masks (the tree of `masks`) dropping the smallest-magnitude `sparsity` share of the
  prunable weights: of each layer's kernel (scope "layer"; a scanned kernel's every layer slice
  on its own) or of all prunable weights together ("global": one threshold)."""
  weights = traverse_util.flatten_dict(select(params, masks))
  if scope == "global":
    flat = jnp.concatenate([w.reshape(-1) for w in weights.values()])    # [all prunable]
    keep = keep_largest(flat, jnp.floor(sparsity * flat.size).astype(jnp.int32))
    out, start = {}, 0
    for path, w in weights.items():
      out[path] = keep[start:start + w.size].reshape(w.shape)
      start += w.size
    return traverse_util.unflatten_dict(out)

  def per_layer(w):
    return keep_largest(w, jnp.floor(sparsity * w.size).astype(jnp.int32))

  return traverse_util.unflatten_dict({
      path: jax.vmap(per_layer)(w) if is_scanned(path) else per_layer(w)
      for path, w in weights.items()})


def n_m_mask(w: jax.Array, n: int, m: int, n_in: int) -> jax.Array:
  """Keeps the n largest |w| of every m consecutive weights along the input dimension of a
  kernel [inputs (n_in axes)..., outputs...], flattened row-major (the last input axis varies
  fastest): for each output, groups of m along the reduction, as 2:4 sparse tensor cores read
  them."""
  fan_in = 1
  for size in w.shape[:n_in]:
    fan_in *= size
  groups = jnp.abs(w).reshape(fan_in // m, m, -1)                         # [I/m, m, O]
  rank = jnp.argsort(jnp.argsort(-groups, axis=1), axis=1)                # 0: the largest
  return (rank < n).reshape(w.shape)


def n_m_masks(params, masks, *, n: int, m: int):
  """New masks (the tree of `masks`) of n:m sparsity for every prunable kernel."""
  out = {}
  for path, w in traverse_util.flatten_dict(select(params, masks)).items():
    mask = lambda x, k=input_axes(path): n_m_mask(x, n, m, k)
    out[path] = jax.vmap(mask)(w) if is_scanned(path) else mask(w)
  return traverse_util.unflatten_dict(out)


def sparsity(params, masks) -> jax.Array:
  """The share of the prunable weights that are exactly zero (float32 scalar)."""
  weights = jax.tree.leaves(select(params, masks))
  zeros = sum(jnp.sum(w == 0, dtype=jnp.float32) for w in weights)
  return zeros / sum(w.size for w in weights)


def layer_sparsity(params, masks) -> dict[str, jax.Array]:
  """{"sparsity/<path>": the share of zeros} per prunable kernel and layer: a scanned kernel's
  layer i is named as the unscanned stack names it (layers_i/attention/query/kernel)."""
  out = {}
  for path, w in traverse_util.flatten_dict(select(params, masks)).items():
    if is_scanned(path):
      at = path.index("layers")
      per_layer = jnp.mean(w.reshape(w.shape[0], -1) == 0, axis=1)       # [L]
      for i in range(w.shape[0]):
        name = (*path[:at], f"layers_{i}", *path[at + 1:])
        out["sparsity/" + "/".join(name)] = per_layer[i]
    else:
      out["sparsity/" + "/".join(path)] = jnp.mean(w == 0)
  return out


@dataclasses.dataclass(frozen=True)
class Pruner:
  """What the train step does for a `prune` config section: masks updated at the schedule's
  steps and applied after every update."""
  method: str              # magnitude | n_m
  target_sparsity: float   # magnitude: s_f
  scope: str               # magnitude: layer | global
  begin_step: int
  end_step: int
  frequency: int           # dt: steps between mask updates
  n: int                   # n_m: kept of every m
  m: int

  @classmethod
  def from_config(cls, prune) -> "Pruner | None":
    """The pruner of a `prune` config section; None when prune.method is empty (off)."""
    if not prune.method:
      return None
    return cls(prune.method, prune.target_sparsity, prune.scope, prune.begin_step, prune.end_step,
               prune.frequency, prune.n, prune.m)

  def schedule(self, step):
    """The sparsity the masks have after `step` steps (n_m: its fixed 1 - n/m from begin_step)."""
    if self.method == "n_m":
      return jnp.where(step >= self.begin_step, 1.0 - self.n / self.m, 0.0)
    return polynomial_sparsity(step, target=self.target_sparsity, begin=self.begin_step,
                               end=self.end_step)

  def is_update(self, step) -> jax.Array:
    """Whether the masks are recomputed once `step` steps are taken: every `frequency` steps
    from begin_step, and at end_step."""
    inside = (step >= self.begin_step) & (step <= self.end_step)
    return inside & (((step - self.begin_step) % self.frequency == 0) | (step == self.end_step))

  def masks_at(self, step: int, params):
    """The masks the schedule has after `step` steps, from `params` (all ones before
    begin_step): where a run starts pruning on a checkpoint written without it."""
    ones = masks_like(params)
    if step < self.begin_step:
      return ones
    if self.method == "n_m":
      return n_m_masks(params, ones, n=self.n, m=self.m)
    return magnitude_masks(params, ones, self.schedule(min(step, self.end_step)),
                           scope=self.scope)

  def update(self, step, params, masks):
    """The masks after `step` steps: recomputed from `params` at update steps, else `masks`."""
    def recompute():
      if self.method == "n_m":
        return n_m_masks(params, masks, n=self.n, m=self.m)
      return magnitude_masks(params, masks, self.schedule(step), scope=self.scope)
    return jax.lax.cond(self.is_update(step), recompute, lambda: masks)
