"""Span corruption (against T5's definitions) and seq2seq pairs, before and after packing."""

import collections
import json

import grain
import numpy as np
import pytest
import tensorflow_datasets as tfds

from roots_jax import objectives
from roots_jax.errors import ConfigError, DataError
from roots_jax.objectives import seq2seq, span_corruption as span_corruption_lib

VOCAB = 512
# Document tokens stay below this, so ids from here up are sentinels.
MAX_TOKEN = 400


def span_corruption(tokenizer, seq_len=512, **kwargs):
  options = dict(target_len=0, noise_density=0.15, mean_noise_span_length=3.0, seed=0)
  options.update(kwargs)
  return span_corruption_lib.SpanCorruption(tokenizer, seq_len, **options)


def random_documents(n, seed=0, max_len=3000):
  rng = np.random.default_rng(seed)
  return [rng.integers(10, MAX_TOKEN, rng.integers(1, max_len)).astype(np.int32)
          for _ in range(n)]


def reassemble(inputs, targets):
  """T5's inverse: each sentinel of the inputs -> the span after it in the targets."""
  spans, sentinel = {}, None
  for t in targets[:-1]:
    if t >= MAX_TOKEN:
      sentinel = t
      spans[t] = []
    else:
      spans[sentinel].append(t)
  return [u for t in inputs[:-1] for u in (spans[t] if t >= MAX_TOKEN else [t])], spans


def test_lengths_match_t5_random_spans_helper(tokenizer):
  # The T5 paper's setup: 512 input tokens, density 0.15, mean span 3 -> 568 tokens, 114 targets.
  assert span_corruption_lib.random_spans_helper(512, 0.15, 3.0) == (568, 114)
  assert span_corruption_lib.random_spans_helper(512, 0.5, 3.0)[1] <= 512
  objective = span_corruption(tokenizer)
  assert objective.length_struct == {"encoder_inputs": 512, "decoder_targets": 114}
  rng = np.random.default_rng(0)
  full = objective.corrupt(np.arange(10, 578, dtype=np.int32), rng)
  assert len(full["encoder_inputs"]) == 512 and len(full["decoder_targets"]) == 114
  for length in range(1, 569):  # every tail chunk fits
    example = objective.corrupt(np.full(length, 10, np.int32), rng)
    assert len(example["encoder_inputs"]) <= 512 and len(example["decoder_targets"]) <= 114


def test_noise_mask_matches_t5():
  rng = np.random.default_rng(0)
  mask = span_corruption_lib.random_spans_noise_mask(568, 0.15, 3.0, rng)
  starts = np.flatnonzero(mask & ~np.concatenate([[False], mask[:-1]]))
  assert mask.sum() == 85 and len(starts) == 28 and not mask[0] and mask[-1]
  assert not span_corruption_lib.random_spans_noise_mask(1, 0.15, 3.0, rng).any()


def test_inputs_and_targets_reassemble_to_the_document(tokenizer):
  objective = span_corruption(tokenizer)
  carry, noise, tokens, spans = objective.initial_carry(), 0, 0, 0
  for doc in random_documents(60):
    examples, carry = objective.generate(doc, carry)
    rebuilt = []
    for e in examples:
      inputs, targets = e["encoder_inputs"].tolist(), e["decoder_targets"].tolist()
      assert inputs[-1] == targets[-1] == tokenizer.eos_id
      sentinels = [t for t in inputs if t >= MAX_TOKEN]
      assert sentinels == list(range(VOCAB - 1, VOCAB - 1 - len(sentinels), -1))
      assert targets[0] == VOCAB - 1
      chunk, span_map = reassemble(inputs, targets)
      assert list(span_map) == sentinels
      rebuilt += chunk
      noise += sum(map(len, span_map.values()))
      spans += len(span_map)
      tokens += len(chunk)
    assert rebuilt == doc.tolist()
  assert carry["count"] == 60
  assert noise / tokens == pytest.approx(0.15, abs=0.005)
  assert noise / spans == pytest.approx(3.0, abs=0.1)


def test_masks_change_with_the_document_count(tokenizer):
  objective = span_corruption(tokenizer)
  doc = random_documents(1)[0]
  first, _ = objective.generate(doc, {"count": 0})
  again, _ = objective.generate(doc, {"count": 0})
  later, _ = objective.generate(doc, {"count": 1})
  assert first[0]["encoder_inputs"].tolist() == again[0]["encoder_inputs"].tolist()
  assert first[0]["encoder_inputs"].tolist() != later[0]["encoder_inputs"].tolist()


def packed_rows(objective, examples, bins=3):
  ds = grain.MapDataset.source(examples).to_iter_dataset()
  return list(objective.rows(ds, num_packing_bins=bins, seed=0, shuffle_bins=False))


def check_rows(rows, seq_len, target_len) -> collections.Counter:
  """Row invariants; returns the (encoder, decoder) pair of every packed segment."""
  pairs = collections.Counter()
  for row in rows:
    assert {k: v.shape for k, v in row.items()} == {
        **{k: (seq_len,) for k in ("encoder_inputs", "encoder_segment_ids", "encoder_positions")},
        **{k: (target_len,) for k in ("decoder_inputs", "decoder_targets", "decoder_segment_ids",
                                      "decoder_positions", "decoder_weights")}}
    assert row["decoder_weights"].dtype == np.float32
    assert all(v.dtype == np.int32 for k, v in row.items() if k != "decoder_weights")
    np.testing.assert_array_equal(row["decoder_weights"], row["decoder_segment_ids"] > 0)
    enc, dec = row["encoder_segment_ids"], row["decoder_segment_ids"]
    assert set(np.unique(enc[enc > 0])) == set(np.unique(dec[dec > 0]))
    for s in np.unique(enc[enc > 0]):
      e, d = enc == s, dec == s
      np.testing.assert_array_equal(row["encoder_positions"][e], np.arange(e.sum()))
      np.testing.assert_array_equal(row["decoder_positions"][d], np.arange(d.sum()))
      targets = row["decoder_targets"][d]
      np.testing.assert_array_equal(row["decoder_inputs"][d], np.concatenate([[0], targets[:-1]]))
      pairs[tuple(row["encoder_inputs"][e]), tuple(targets)] += 1
    assert not row["decoder_inputs"][dec == 0].any() and not row["encoder_inputs"][enc == 0].any()
  return pairs


def test_packed_span_corruption_keeps_each_example_in_one_row_and_segment(tokenizer):
  objective = span_corruption(tokenizer, seq_len=64)
  examples, carry = [], objective.initial_carry()
  for doc in random_documents(40, max_len=30):
    more, carry = objective.generate(doc, carry)
    examples += more
  rows = packed_rows(objective, examples)
  assert len(rows) < len(examples) / 2  # several examples per row
  expected = collections.Counter((tuple(e["encoder_inputs"]), tuple(e["decoder_targets"]))
                                 for e in examples)
  assert check_rows(rows, 64, objective.target_len) == expected


def test_seq2seq_truncates_and_appends_eos(tokenizer):
  objective = seq2seq.Seq2Seq(tokenizer, 8, target_len=0)
  assert objective.length_struct == {"encoder_inputs": 8, "decoder_targets": 8}
  objective = seq2seq.Seq2Seq(tokenizer, 8, target_len=4)
  [example] = objective.flat_map((np.arange(10, 30), np.arange(40, 42)))
  assert example["encoder_inputs"].tolist() == [*range(10, 17), tokenizer.eos_id]
  assert example["decoder_targets"].tolist() == [40, 41, tokenizer.eos_id]
  [example] = objective.flat_map((np.arange(10, 12), np.arange(40, 50)))
  assert example["decoder_targets"].tolist() == [40, 41, 42, tokenizer.eos_id]


def test_config_mistakes(tokenizer, make_config):
  with pytest.raises(ConfigError, match=r"target_len \(100\) is shorter than the 114"):
    span_corruption(tokenizer, target_len=100)
  with pytest.raises(ConfigError, match="noise_density must be in"):
    span_corruption(tokenizer, noise_density=0.0)
  with pytest.raises(ConfigError, match="mean_noise_span_length"):
    span_corruption(tokenizer, mean_noise_span_length=0.5)
  data = make_config(objective="span_corruption", seq_len=512, target_len=200).data
  transform = lambda: objectives.get(data.objective).transform(data, tokenizer, 0)
  assert transform().target_len == 200
  assert objectives.target_len(data) == 200
  data.target_len = 0
  assert transform().target_len == objectives.target_len(data) == 114
  data.objective = "seq2seq"
  assert objectives.target_len(data) == 512


def expected_pairs(pairs, tokenizer, seq_len, target_len) -> collections.Counter:
  return collections.Counter(
      (tuple(tokenizer.encode(i)[:seq_len - 1] + [tokenizer.eos_id]),
       tuple(tokenizer.encode(t)[:target_len - 1] + [tokenizer.eos_id])) for i, t in pairs)


def test_seq2seq_from_jsonl_end_to_end(make_config, tokenizer, tmp_path):
  pairs = [(f"question {i}: " + "why " * (i % 13), f"answer {i * 7}") for i in range(50)]
  with open(tmp_path / "pairs.jsonl", "w") as f:
    f.writelines(json.dumps({"q": i, "a": t, "other": 1}) + "\n" for i, t in pairs)
  config = make_config(source="files", objective="seq2seq", train_files="unused.txt",
                       eval_files=str(tmp_path / "pairs.jsonl"), input_field="q",
                       target_field="a", target_len=8)
  batches = list(objectives.dataset(config, tokenizer, "eval"))
  got = check_rows([{k: v[r] for k, v in b.items()} for b in batches for r in range(4)], 32, 8)
  assert got == expected_pairs(pairs, tokenizer, 32, 8)
  config.data.input_field = "question"
  with pytest.raises(DataError, match="no field 'question'.*set data.input_field/data.target"):
    objectives.dataset(config, tokenizer, "eval")


def test_seq2seq_from_mocked_tfds_end_to_end(make_config, tokenizer):
  config = make_config(source="tfds", objective="seq2seq", tfds_name="aeslc",
                       input_field="email_body", target_field="subject_line", eval_split="test")
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    records = tfds.data_source("aeslc", split="test")
    pairs = [(r["email_body"], r["subject_line"]) for r in records]
    batches = list(objectives.dataset(config, tokenizer, "eval"))
  got = check_rows([{k: v[r] for k, v in b.items()} for b in batches for r in range(4)], 32, 32)
  assert got == expected_pairs(pairs, tokenizer, 32, 32) and sum(got.values()) == 12


def test_pairs_need_a_pair_format(make_config, tokenizer, tmp_path):
  (tmp_path / "a.txt").write_text("no pairs here")
  config = make_config(source="files", objective="seq2seq", train_files=str(tmp_path / "a.txt"))
  with pytest.raises(DataError, match="text file.*not \\(input, target\\) pairs"):
    objectives.dataset(config, tokenizer, "train")
  with pytest.raises(DataError, match="built-in corpus has no \\(input, target\\) pairs"):
    objectives.dataset(make_config(objective="seq2seq"), tokenizer, "train")
