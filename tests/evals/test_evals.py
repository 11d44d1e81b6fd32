"""Evaluators: generations meet their own references whatever the process layout; which way a
metric is better."""

import numpy as np
import pytest

from roots_jax import evals
from roots_jax.evals.generation import generation_metrics


class _Tokenizer:
  pad_id, eos_id = 0, 3

  def decode(self, ids):
    return " ".join(f"w{i}" for i in ids)


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_generations_meet_their_references(process_count):
  """Process p's shard is examples[p::n]; its local rows b*local + j sit at global rows
  p*local + j of batch b. Each generation here spells its example's index."""
  num_examples, local, new = 13, 2, 4
  examples = [{"target": f"w{100 + i}"} for i in range(num_examples)]
  num_batches = -(-num_examples // (local * process_count))
  rows = []
  for b in range(num_batches):
    generated = np.zeros((local * process_count, new), np.int32)
    for p in range(process_count):
      for j in range(local):
        index = p + process_count * (b * local + j)
        if index < num_examples:
          generated[p * local + j, :2] = [100 + index, _Tokenizer.eos_id]
    rows.append((generated, {}))
  scores = generation_metrics(rows, examples, _Tokenizer(), process_count, _Tokenizer.eos_id)
  assert scores["exact_match"] == 1.0 and scores["bleu"] == 0.0  # one-word outputs: no 4-grams
  assert scores["rouge1"] == scores["rougeL"] == 100.0
  # Read back in the wrong order, they do not.
  shuffled = [(g[::-1], batch) for g, batch in rows]
  assert generation_metrics(shuffled, examples, _Tokenizer(), process_count,
                            _Tokenizer.eos_id)["exact_match"] < 1.0


@pytest.mark.parametrize("metric,value,best,better", [
    ("loss", 1.0, 2.0, True), ("accuracy", 0.5, 0.6, False), ("pearson", float("nan"), None, False),
    ("rougeL", 0.1, None, True)])
def test_is_better(metric, value, best, better):
  assert evals.is_better(metric, value, best) == better
