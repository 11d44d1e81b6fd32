"""The pretraining pipeline: batch format, completeness, determinism, exact resume and process
shares."""

import collections
import json

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from roots_jax import objectives
from roots_jax.errors import ConfigError, DataError

KEYS = {"inputs": np.int32, "targets": np.int32, "segment_ids": np.int32, "positions": np.int32,
        "weights": np.float32}


def windows(docs, tokenizer, seq_len) -> collections.Counter:
  """The (inputs, targets) pairs the causal objective should produce, computed independently."""
  out = collections.Counter()
  for doc in docs:
    ids = [tokenizer.bos_id, *tokenizer.encode(doc), tokenizer.eos_id]
    for i in range(0, len(ids) - 1, seq_len):
      w = ids[i:i + seq_len + 1]
      out[tuple(w[:-1]), tuple(w[1:])] += 1
  return out


def segments(batches) -> collections.Counter:
  """Every packed segment of every row, checking the row invariants on the way."""
  out = collections.Counter()
  for batch in batches:
    assert {k: v.dtype for k, v in batch.items()} == KEYS
    np.testing.assert_array_equal(batch["weights"], batch["segment_ids"] > 0)
    for row in range(batch["inputs"].shape[0]):
      ids = batch["segment_ids"][row]
      assert np.all(batch["inputs"][row][ids == 0] == 0)
      for s in np.unique(ids[ids > 0]):
        mask = ids == s
        np.testing.assert_array_equal(batch["positions"][row][mask], np.arange(mask.sum()))
        out[tuple(batch["inputs"][row][mask]), tuple(batch["targets"][row][mask])] += 1
  return out


def take(dataset, n):
  it = iter(dataset)
  batches = [next(it) for _ in range(n)]
  it.close()
  return batches


def same(a, b) -> bool:
  return len(a) == len(b) and all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_train_batches_hold_real_windows(make_config, tokenizer, jsonl_files):
  pattern, docs = jsonl_files
  config = make_config(source="files", train_files=pattern)
  batches = take(objectives.dataset(config, tokenizer, "train"), 30)
  assert all(b["inputs"].shape == (4, 32) for b in batches)
  got = segments(batches)
  assert set(got) <= set(windows(docs, tokenizer, 32))
  assert sum(b["weights"].sum() for b in batches) / (30 * 4 * 32) > 0.8  # packing fills rows


def test_eval_is_complete_finite_and_identical_every_time(make_config, tokenizer, jsonl_files):
  pattern, docs = jsonl_files
  config = make_config(source="files", train_files="unused.txt", eval_files=pattern)
  batches = list(objectives.dataset(config, tokenizer, "eval"))
  assert segments(batches) == windows(docs, tokenizer, 32)  # no token lost, none crosses
  assert batches[-1]["inputs"].shape == (4, 32)  # padded, not short
  assert same(batches, list(objectives.dataset(config, tokenizer, "eval")))


def test_train_is_seeded_and_repeats_with_new_orders(make_config, tokenizer, tmp_path):
  (tmp_path / "a.txt").write_text("\n\n".join(f"short document {i}" for i in range(12)))
  config = make_config(source="files", train_files=str(tmp_path / "a.txt"), eval_fraction=0.0)
  first = take(objectives.dataset(config, tokenizer, "train"), 12)  # several epochs of 12 documents
  assert same(first, take(objectives.dataset(config, tokenizer, "train"), 12))
  config.seed = 1
  assert not same(first, take(objectives.dataset(config, tokenizer, "train"), 12))
  order = [tuple(r[s == i]) for b in first for r, s in zip(b["inputs"], b["segment_ids"])
           for i in range(1, s.max() + 1)]
  assert min(collections.Counter(order).values()) >= 3  # every document, epoch after epoch
  assert order[:12] != order[12:24]  # each epoch in another order


# Skips long enough that the restore point is inside a file and a shuffle window.
@pytest.mark.parametrize("num_workers, prefetch, skip", [(0, 0, 25), (0, 2, 31), (2, 2, 50)])
def test_resume_from_state_is_exact(make_config, tokenizer, jsonl_files, num_workers, prefetch,
                                    skip):
  config = make_config(source="files", train_files=jsonl_files[0], num_workers=num_workers,
                       prefetch=prefetch)
  dataset = objectives.dataset(config, tokenizer, "train")
  it = iter(dataset)
  for _ in range(skip):
    next(it)
  state = json.loads(json.dumps(it.get_state()))  # what grain's checkpoint handler stores
  unbroken = [next(it) for _ in range(60)]  # past the 60 documents: crosses an epoch
  it.close()
  resumed = iter(objectives.dataset(config, tokenizer, "train"))
  resumed.set_state(state)
  assert same([next(resumed) for _ in range(60)], unbroken)
  resumed.close()


def test_orbax_composite_checkpoint_restores_the_iterator(make_config, tokenizer, jsonl_files,
                                                          tmp_path):
  config = make_config(source="files", train_files=jsonl_files[0])
  it = iter(objectives.dataset(config, tokenizer, "train"))
  for _ in range(3):
    next(it)
  with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
    manager.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    manager.wait_until_finished()
    expected = [next(it) for _ in range(5)]
    restored = iter(objectives.dataset(config, tokenizer, "train"))
    manager.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(restored)))
  assert same([next(restored) for _ in range(5)], expected)


def test_process_shares_are_disjoint_and_cover_the_data(make_config, tokenizer, jsonl_files):
  pattern, docs = jsonl_files
  config = make_config(source="files", train_files="unused.txt", eval_files=pattern)
  shares = [list(objectives.dataset(config, tokenizer, "eval", process_index=i, process_count=2))
            for i in range(2)]
  assert all(b["inputs"].shape == (2, 32) for share in shares for b in share)
  first, second = segments(shares[0]), segments(shares[1])
  assert first and second and first + second == windows(docs, tokenizer, 32)


def test_config_mistakes(make_config, tokenizer):
  with pytest.raises(ConfigError, match=r"batch_size \(4\) must be divisible.*\(3\)"):
    objectives.dataset(make_config(), tokenizer, "train", process_count=3)
  config = make_config()
  config.model.vocab_size = 8192
  with pytest.raises(DataError, match="512 pieces but model.vocab_size is 8192"):
    objectives.dataset(config, tokenizer, "train")


def stream_states(state):
  """The ExampleStream states nested anywhere in an iterator state."""
  if isinstance(state, dict):
    if "carry" in state:
      yield state
    for value in state.values():
      yield from stream_states(value)


@pytest.mark.parametrize("objective, skip", [("mlm_nsp", 17), ("span_corruption", 17),
                                             ("seq2seq", 7)])
def test_resume_is_exact_for_every_objective(make_config, tokenizer, jsonl_files, tmp_path,
                                             objective, skip):
  pattern = jsonl_files[0]
  if objective == "seq2seq":
    pattern = str(tmp_path / "pairs.jsonl")
    with open(pattern, "w") as f:
      f.writelines(json.dumps({"input": d, "target": d[::-1]}) + "\n" for d in jsonl_files[1])
  # No shuffle window, so the restore point is well inside the stream (shuffling is tested
  # with the causal objective above).
  config = make_config(source="files", train_files=pattern, objective=objective, seq_len=48,
                       shuffle_window=0)
  it = iter(objectives.dataset(config, tokenizer, "train"))
  for _ in range(skip):
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  if objective != "seq2seq":  # restores inside a document, with a carry (and NSP pool)
    [inner] = stream_states(state)
    assert inner["index"] > 0 and inner["carry"]["count"] > 0
    assert len(inner["carry"].get("pool", [0])) > 0
  unbroken = [next(it) for _ in range(40)]  # past the 60 documents: crosses an epoch
  it.close()
  resumed = iter(objectives.dataset(config, tokenizer, "train"))
  resumed.set_state(state)
  assert same([next(resumed) for _ in range(40)], unbroken)
  resumed.close()
