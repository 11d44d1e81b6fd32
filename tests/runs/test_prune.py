"""Structured pruning (runs.prune, python -m roots_jax.prune): a pruned model's logits equal its
masked original's, it has fewer parameters, and what it kept is the most important."""

import json
import os

import jax
import numpy as np
import pytest

from roots_jax import config as config_lib
from roots_jax.errors import ConfigError
from roots_jax.hf import bert
from roots_jax.models.attention import MASKS
from roots_jax.prune import main as prune_main
from roots_jax.runs import convert, load as load_lib, prune

TOLERANCE = 1e-5
BERT = bert.model_fields(dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                              intermediate_size=64, vocab_size=512, max_position_embeddings=64,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
# A decoder with RoPE, a gated MLP, biases and a head size of its own, layers unrolled.
DECODER = dict(family="decoder", vocab_size=512, num_layers=2, embed_dim=32, num_heads=4,
               head_dim=16, mlp_dim=64, mlp_activation="swiglu", norm="rmsnorm", position="rope",
               max_len=64, scan_layers=False, tie_embeddings=False)


def make_run(run_dir, fields, corpus, seed=0) -> str:
  """A run of `fields` with random parameters that reads the corpus fixture."""
  overrides = ["data.source=files", f"data.train_files={corpus / 'train.jsonl'}",
               "data.seq_len=32", "train.batch_size=8", "data.shuffle_window=64"]
  config = convert.run_config(fields, str(corpus / "spm.model"), overrides)
  rng = np.random.default_rng(seed)
  abstract = convert.abstract_params(config_lib.ModelConfig.from_config(config.model))
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: (0.1 * rng.normal(size=x.shape) + (p[-1].key == "scale")).astype(np.float32),
      abstract)
  convert.write_params(str(run_dir), params)
  config_lib.save_config(config, os.path.join(run_dir, "config.json"))
  return str(run_dir)


def logits(loaded, params, masks=None):
  rng = np.random.default_rng(1)
  tokens = rng.integers(5, 500, (8, 16))  # a row per device
  segments = (np.arange(16)[None] < rng.integers(4, 17, (8, 1))).astype(np.int32)
  variables = {"params": params, **({MASKS: masks} if masks is not None else {})}
  with loaded.context():
    if loaded.model_config.family == "encoder":
      out = loaded.model.apply(variables, tokens, token_types=(np.arange(16) >= 8) * segments,
                               segment_ids=segments)
    else:
      out = (loaded.model.apply(variables, tokens, segment_ids=segments),)
  return [np.asarray(x)[segments.astype(bool)] if x.ndim == 3 else np.asarray(x) for x in out]


@pytest.mark.parametrize("fields, heads, units", [(BERT, 2, 24), (DECODER, 3, 40)])
def test_pruned_model_equals_its_masked_original(fields, heads, units, corpus, tmp_path):
  run = make_run(tmp_path / "run", fields, corpus)
  assert prune_main(["--run", run, "--out", str(tmp_path / "pruned"), "--heads", str(heads),
                     "--mlp_units", str(units), "--batches", "2"]) == 0
  original, pruned = load_lib.load(run), load_lib.load(str(tmp_path / "pruned"))
  m = pruned.model_config
  assert (m.num_heads, m.head_size, m.mlp_dim) == (heads, original.model_config.head_size, units)

  scores = prune.importance(original, prune.batches(original, 2))
  kept = prune.top_k(scores, heads, units)
  rows = [r for p in sorted(kept) if p[-1] == "head_mask" for r in kept[p].tolist()]
  assert [list(row) for row in pruned.config.prune.kept_heads] == rows and len(rows) == 2
  for path, score in scores.items():  # the kept are the highest scored of each layer
    chosen = np.take_along_axis(score, kept[path], axis=1)
    dropped = np.where(np.isin(np.arange(score.shape[1])[None], kept[path]), np.inf, score)
    assert (chosen.min(axis=1) >= dropped.min(axis=1)).all() or units == score.shape[1]
    assert score.min() >= 0 and score.max() > 0

  masked = jax.tree.map(np.asarray, prune.full_masks(jax.device_get(original.params), kept))
  want = logits(original, original.params, masked)
  got = logits(pruned, pruned.params)
  for a, b in zip(want, got):
    np.testing.assert_allclose(b, a, atol=TOLERANCE, rtol=0)
  unmasked = logits(original, original.params)
  assert max(np.abs(a - b).max() for a, b in zip(unmasked, want)) > 1e-3  # pruning did something

  count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))
  d, h, layers, n, f = 32, original.model_config.head_size, 2, 4, 64
  per_head = 3 * (d * h + h) + h * d  # q, k, v kernels and biases, and out's rows
  gated = 2 if fields["mlp_activation"] == "swiglu" else 1
  per_unit = gated * (d + 1) + d
  assert count(original.params) - count(pruned.params) == layers * (
      (n - heads) * per_head + (f - units) * per_unit)


def test_errors(corpus, tmp_path):
  run = make_run(tmp_path / "run", BERT, corpus)
  loaded = load_lib.load(run)
  with pytest.raises(ConfigError, match=r"--heads must be in 1\.\.4"):
    prune.check_prunable(loaded, 5, 10)
  gqa = make_run(tmp_path / "gqa", {**DECODER, "num_kv_heads": 2}, corpus)
  assert prune_main(["--run", gqa, "--out", str(tmp_path / "x"), "--heads", "2",
                     "--mlp_units", "8"]) == 2
  assert not os.path.exists(tmp_path / "x")
  with open(os.path.join(run, "config.json")) as f:
    assert json.load(f)["prune"]["kept_heads"] == []
