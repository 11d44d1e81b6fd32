"""Unstructured pruning's pieces against numpy: the cubic schedule, magnitude masks per layer and
global, 2:4 masks, and which parameters are prunable."""

import jax.numpy as jnp
import numpy as np
import pytest

from roots_jax.training import pruning


def params(seed=0, layers=3):
  """A scanned stack's attention and MLP kernels (leading layer axis) and what is not prunable."""
  rng = np.random.default_rng(seed)
  n = lambda *shape: jnp.asarray(rng.normal(size=shape).astype(np.float32))
  return {"token_embed": {"embedding": n(10, 8)},
          "layers": {"attention": {"query": {"kernel": n(layers, 8, 2, 4), "bias": n(layers, 2, 4)},
                                   "out": {"kernel": n(layers, 2, 4, 8)}},
                     "mlp": {"wi": {"kernel": n(layers, 8, 16)}, "wo": {"kernel": n(layers, 16, 8)}},
                     "mlp_norm": {"scale": n(layers, 8)}},
          "head": {"kernel": n(8, 3)}}


def test_prunable_are_the_blocks_dense_kernels():
  assert sorted("/".join(p) for p in pruning.prunable_paths(params())) == [
      "layers/attention/out/kernel", "layers/attention/query/kernel", "layers/mlp/wi/kernel",
      "layers/mlp/wo/kernel"]
  assert pruning.input_axes(("backbone", "layers_3", "cross_attention", "out", "kernel")) == 2
  assert pruning.input_axes(("pooler", "kernel")) == 0


def test_schedule_is_zhu_and_gupta_cubic():
  begin, end, target = 10, 50, 0.8
  for t in (0, 10, 15, 30, 49, 50, 80):
    progress = min(max((t - begin) / (end - begin), 0), 1)
    want = target + (0 - target) * (1 - progress) ** 3
    got = float(pruning.polynomial_sparsity(t, target=target, begin=begin, end=end))
    assert got == pytest.approx(want, abs=1e-6)
  p = pruning.Pruner("magnitude", target, "layer", begin, end, 10, 2, 4)
  updates = [t for t in range(70) if bool(p.is_update(t))]
  assert updates == [10, 20, 30, 40, 50]


def test_layer_masks_prune_each_layers_smallest():
  ps = params()
  masks = pruning.masks_like(ps)
  new = pruning.magnitude_masks(ps, masks, 0.5, scope="layer")
  w = np.asarray(ps["layers"]["mlp"]["wi"]["kernel"])
  got = np.asarray(new["layers"]["mlp"]["wi"]["kernel"])
  for layer in range(w.shape[0]):
    a = np.abs(w[layer]).reshape(-1)
    want = np.zeros(a.size, bool)
    want[np.argsort(a, kind="stable")[a.size // 2:]] = True
    np.testing.assert_array_equal(got[layer].reshape(-1), want)
  assert "head" not in new and "token_embed" not in new and "bias" not in new["layers"][
      "attention"]["query"]


def test_global_masks_share_one_threshold():
  ps = params(1)
  new = pruning.magnitude_masks(ps, pruning.masks_like(ps), 0.7, scope="global")
  paths = pruning.prunable_paths(ps)
  flat = lambda tree: np.concatenate([np.asarray(_at(tree, p)).reshape(-1) for p in paths])
  weights, keep = np.abs(flat(ps)), flat(new)
  assert keep.sum() == weights.size - int(np.floor(0.7 * weights.size))
  assert weights[keep].min() >= weights[~keep].max()
  # per layer the shares differ: one threshold, not one share per kernel
  shares = [1 - np.asarray(_at(new, p)).mean() for p in paths]
  assert max(shares) - min(shares) > 0.01


def _at(tree, path):
  for key in path:
    tree = tree[key]
  return tree


def test_two_of_four_along_the_input_dimension():
  ps = params(2)
  new = pruning.n_m_masks(ps, pruning.masks_like(ps), n=2, m=4)
  wi = np.asarray(ps["layers"]["mlp"]["wi"]["kernel"])          # [L, D, F]: input D
  keep = np.asarray(new["layers"]["mlp"]["wi"]["kernel"])
  groups = keep.reshape(3, 2, 4, 16)                           # [L, D/4, 4, F]
  assert (groups.sum(axis=2) == 2).all()
  a = np.abs(wi).reshape(3, 2, 4, 16)
  kept_min = np.where(groups, a, np.inf).min(axis=2)
  dropped_max = np.where(groups, -np.inf, a).max(axis=2)
  assert (kept_min >= dropped_max).all()
  # the attention output contracts [N, H]: groups run along H, then N
  out = np.asarray(new["layers"]["attention"]["out"]["kernel"]).reshape(3, 2, 4, 8)
  assert (out.sum(axis=2) == 2).all()


def test_apply_and_measure():
  ps = params(3)
  masks = pruning.magnitude_masks(ps, pruning.masks_like(ps), 0.25, scope="layer")
  pruned = pruning.apply_masks(ps, masks)
  assert float(pruning.sparsity(pruned, masks)) == pytest.approx(0.25, abs=0.01)
  np.testing.assert_array_equal(pruned["head"]["kernel"], ps["head"]["kernel"])
  per_layer = pruning.layer_sparsity(pruned, masks)
  assert len(per_layer) == 4 * 3
  assert float(per_layer["sparsity/layers_1/mlp/wo/kernel"]) == pytest.approx(0.25)
  w = np.asarray(pruned["layers"]["mlp"]["wo"]["kernel"])
  assert ((w == 0) == ~np.asarray(masks["layers"]["mlp"]["wo"]["kernel"])).all()
