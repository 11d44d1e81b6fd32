"""The causal objective: windows, shifted targets, and rows after grain's packer."""

import types

import grain
import numpy as np
import pytest

from roots_jax import objectives
from roots_jax.errors import ConfigError
from roots_jax.objectives.causal import CausalLM


@pytest.mark.parametrize("length", [0, 1, 6, 7, 8, 20])
def test_windows_overlap_by_one_and_cover_every_target_once(tokenizer, length):
  causal = CausalLM(tokenizer, seq_len=7)
  tokens = np.arange(10, 10 + length, dtype=np.int32)
  examples = causal.flat_map(tokens)
  full = [tokenizer.bos_id, *tokens, tokenizer.eos_id]
  assert all(1 <= len(e["inputs"]) == len(e["targets"]) <= 7 for e in examples)
  assert [t for e in examples for t in e["inputs"]] == full[:-1]
  assert [t for e in examples for t in e["targets"]] == full[1:]
  assert all(e["inputs"].dtype == np.int32 for e in examples)


def test_tokenizers_without_bos_start_at_the_first_token():
  no_bos = types.SimpleNamespace(bos_id=-1, eos_id=1)
  examples = CausalLM(no_bos, seq_len=4).flat_map(np.array([7, 8, 9]))
  assert [e["inputs"].tolist() for e in examples] == [[7, 8, 9]]
  assert [e["targets"].tolist() for e in examples] == [[8, 9, 1]]


def test_packed_rows_keep_segments_apart(tokenizer):
  causal = CausalLM(tokenizer, seq_len=8)
  docs = [np.arange(100 * i, 100 * i + n, dtype=np.int32) for i, n in enumerate([3, 11, 1, 5])]
  examples = [e for d in docs for e in causal.flat_map(d)]
  ds = grain.MapDataset.source(examples).to_iter_dataset()
  ds = grain.experimental.FirstFitPackIterDataset(ds, length_struct=causal.length_struct,
                                                  num_packing_bins=3, shuffle_bins=False)
  rows = [causal.finalize(r) for r in ds]
  segments = []
  for row in rows:
    assert set(row) == {"inputs", "targets", "segment_ids", "positions", "weights"}
    np.testing.assert_array_equal(row["weights"], row["segment_ids"] > 0)
    assert row["weights"].dtype == np.float32
    for s in range(1, row["segment_ids"].max() + 1):
      mask = row["segment_ids"] == s
      np.testing.assert_array_equal(row["positions"][mask], np.arange(mask.sum()))
      segments.append((tuple(row["inputs"][mask]), tuple(row["targets"][mask])))
  expected = [(tuple(e["inputs"]), tuple(e["targets"])) for e in examples]
  assert sorted(segments) == sorted(expected)


def test_unknown_objective(make_config):
  data = make_config(objective="mlm").data
  with pytest.raises(ConfigError, match="unknown data.objective 'mlm'; choose one of causal"):
    objectives.get(data.objective)
