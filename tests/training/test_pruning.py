"""Unstructured pruning's pieces against numpy: the cubic schedule, magnitude masks per layer and
global, 2:4 masks, and which parameters are prunable."""

import os
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

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


# --- in a training run -----------------------------------------------------------------------

def _prune_config(corpus, **extra):
  from tiny_gpt import tiny_overrides  # pylint: disable=g-import-not-at-top
  from roots_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  values = dict(train__steps=10, train__checkpoint_every=5, prune__method="magnitude",
                prune__target_sparsity=0.5, prune__begin_step=2, prune__end_step=8,
                prune__frequency=2, mesh__shape="2,2,2", mesh__parallelism="fsdp_tp")
  values.update(extra)
  return config_lib.load_config("configs/gpt2.py:tiny", tiny_overrides(corpus, **values))


def _state(workdir, step):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  return ocp.StandardCheckpointer().restore(
      os.path.join(os.path.abspath(workdir), "checkpoints", str(step), "state"))


def _kernels(params):
  flat = traverse_util.flatten_dict(params)
  return {p: np.asarray(flat[p]) for p in pruning.prunable_paths(params)}


def test_pruned_weights_stay_zero_through_training_resume_and_export(corpus, tmp_path):
  """Gradual magnitude pruning on a tiny GPT (sharded fsdp + tensor): sparsity logged as the
  schedule says, exactly the target share of zeros per layer at end_step and after, the masks
  saved with the state, an exact resume, and zeros in the exported safetensors."""
  from tiny_gpt import read_metrics  # pylint: disable=g-import-not-at-top
  from roots_jax.runs import convert  # pylint: disable=g-import-not-at-top
  from roots_jax.runs.pretrain import train  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  train(_prune_config(corpus), str(tmp_path / "run"))
  rows = read_metrics(tmp_path / "run")
  for step in (1, 2, 4, 6, 8, 10):
    want = float(pruning.polynomial_sparsity(step, target=0.5, begin=2, end=8))
    assert rows[step]["sparsity"] == pytest.approx(want, abs=2e-3), step
  summary = read_metrics(tmp_path / "run", "summary")[10]
  assert summary["sparsity"] == pytest.approx(0.5, abs=1e-3)
  assert summary["sparsity/layers_1/mlp/wi/kernel"] == pytest.approx(0.5, abs=1e-3)

  state = _state(tmp_path / "run", 10)
  masks = traverse_util.flatten_dict(state["masks"])
  kernels = _kernels(state["params"])
  assert set(masks) == set(kernels) and len(kernels) == 6
  for path, w in kernels.items():
    assert ((w == 0) == ~np.asarray(masks[path])).all(), path
    per_layer = (w.reshape(w.shape[0], -1) == 0).sum(axis=1)
    assert (per_layer == w[0].size // 2).all(), path
  # checkpoint 5 (mid-schedule) resumed to 10 gives the unbroken run's state, bit for bit
  shutil.copytree(tmp_path / "run", tmp_path / "resumed", ignore=shutil.ignore_patterns("10"))
  train(_prune_config(corpus), str(tmp_path / "resumed"))
  resumed = _state(tmp_path / "resumed", 10)
  jax.tree.map(np.testing.assert_array_equal, resumed["params"], state["params"])
  jax.tree.map(np.testing.assert_array_equal, resumed["masks"], state["masks"])

  convert.export_hf(str(tmp_path / "run"), str(tmp_path / "hf"))
  tensors = load_file(str(tmp_path / "hf" / "model.safetensors"))
  for i in range(2):
    for name, ours in (("mlp.c_fc", "wi"), ("mlp.c_proj", "wo")):
      exported = tensors[f"transformer.h.{i}.{name}.weight"]
      np.testing.assert_array_equal(exported == 0, kernels[("layers", "mlp", ours, "kernel")][i] == 0)
    assert (tensors[f"transformer.h.{i}.attn.c_attn.weight"] == 0).mean() == pytest.approx(0.5)


def test_a_run_without_pruning_continues_with_two_of_four(corpus, tmp_path):
  """A run without pruning saves the plain state (no masks) as before; resumed with prune.*
  set (continued pretraining), its masks start at that checkpoint and n_m, imposed at
  begin_step, keeps exactly 2 of every 4 weights along the input dimension."""
  from tiny_gpt import read_metrics  # pylint: disable=g-import-not-at-top
  from roots_jax.runs.pretrain import train  # pylint: disable=g-import-not-at-top
  train(_prune_config(corpus, prune__method="", train__steps=4, train__checkpoint_every=2),
        str(tmp_path / "run"))
  assert "masks" not in _state(tmp_path / "run", 4)
  shutil.copytree(tmp_path / "run", tmp_path / "late")
  train(_prune_config(corpus, prune__method="n_m", prune__begin_step=6, train__steps=7),
        str(tmp_path / "run"))
  rows = read_metrics(tmp_path / "run")
  assert "sparsity" not in rows[4] and rows[5]["sparsity"] < 0.01
  assert rows[6]["sparsity"] == rows[7]["sparsity"] == 0.5
  wi = _kernels(_state(tmp_path / "run", 7)["params"])[("layers", "mlp", "wi", "kernel")]
  assert ((wi != 0).reshape(2, -1, 4, wi.shape[-1]).sum(axis=2) == 2).all()
  # Pruning whose begin_step the checkpoint has passed starts at its masks of that step.
  train(_prune_config(corpus, prune__method="n_m", prune__begin_step=2, prune__end_step=2,
                      train__steps=5), str(tmp_path / "late"))
  assert read_metrics(tmp_path / "late")[5]["sparsity"] == 0.5


def test_fine_tuning_prunes_the_backbone(pretrained, task_files, tmp_path):
  """Pruning while fine-tuning: the backbone's kernels reach the target in the run's best
  checkpoint, the one the fine-tuned model is used from; the head is not pruned."""
  from tiny_gpt import read_metrics, tiny_finetune_config  # pylint: disable=g-import-not-at-top
  from roots_jax.runs import load, finetune  # pylint: disable=g-import-not-at-top
  config = tiny_finetune_config("classification", pretrained["decoder"], task_files,
                                prune__method="magnitude", prune__target_sparsity=0.5,
                                prune__begin_step=0, prune__end_step=2, prune__frequency=1)
  finetune.finetune(config, str(tmp_path / "tuned"))
  rows = read_metrics(tmp_path / "tuned")
  assert rows[1]["sparsity"] > 0 and rows[4]["sparsity"] == pytest.approx(0.5, abs=1e-3)
  params = jax.device_get(load.load(str(tmp_path / "tuned")).params)
  kernels = _kernels(params)
  assert kernels and all(p[0] == "backbone" for p in kernels)
  for kernel in kernels.values():
    assert (kernel == 0).mean() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("overrides, message", [
    (("prune.method=magnitude", "prune.target_sparsity=1.0"), "target_sparsity must be in [0, 1)"),
    (("prune.method=n_m", "prune.n=4"), "prune.n must be in 1..prune.m - 1"),
    (("prune.method=n_m", "prune.n=2", "prune.m=3"), "prune.m (3) must divide model.embed_dim"),
    (("prune.method=magnitude", "prune.begin_step=5", "prune.end_step=4"), "begin_step <= end_step"),
    (("prune.method=dense",), "prune.method must be one of"),
])
def test_config_errors(overrides, message):
  from roots_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from roots_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  with pytest.raises(ConfigError, match=re.escape(message)):
    config_lib.load_config("configs/gpt2.py:tiny", list(overrides))
