"""SQuAD v1.1 exact match and F1 equal the official evaluation script's on tricky answers."""

import collections
import json
import re
import string

import pytest

from roots_jax.metrics import squad


# A port of the official SQuAD v1.1 evaluation script, evaluate-v1.1.py (Rajpurkar et al. 2016;
# https://rajpurkar.github.io/SQuAD-explorer/, "Evaluation Script v1.1"), its functions as
# written there, the dataset walk of `evaluate` kept.
def official_normalize_answer(s):
  def remove_articles(text):
    return re.sub(r"\b(a|an|the)\b", " ", text)

  def white_space_fix(text):
    return " ".join(text.split())

  def remove_punc(text):
    exclude = set(string.punctuation)
    return "".join(ch for ch in text if ch not in exclude)

  def lower(text):
    return text.lower()

  return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_f1_score(prediction, ground_truth):
  prediction_tokens = official_normalize_answer(prediction).split()
  ground_truth_tokens = official_normalize_answer(ground_truth).split()
  common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
  num_same = sum(common.values())
  if num_same == 0:
    return 0
  precision = 1.0 * num_same / len(prediction_tokens)
  recall = 1.0 * num_same / len(ground_truth_tokens)
  return (2 * precision * recall) / (precision + recall)


def official_exact_match_score(prediction, ground_truth):
  return official_normalize_answer(prediction) == official_normalize_answer(ground_truth)


def official_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
  return max(metric_fn(prediction, ground_truth) for ground_truth in ground_truths)


def official_evaluate(dataset, predictions):
  f1 = exact_match = total = 0
  for article in dataset:
    for paragraph in article["paragraphs"]:
      for qa in paragraph["qas"]:
        total += 1
        if qa["id"] not in predictions:
          continue
        ground_truths = [x["text"] for x in qa["answers"]]
        prediction = predictions[qa["id"]]
        exact_match += official_metric_max_over_ground_truths(
            official_exact_match_score, prediction, ground_truths)
        f1 += official_metric_max_over_ground_truths(official_f1_score, prediction, ground_truths)
  return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


# (prediction, gold answers): articles, punctuation, whitespace, case, unicode punctuation and
# letters, several golds, empty predictions and answers made only of what normalisation drops.
CASES = [
    ("the Eiffel Tower", ["Eiffel Tower"]),
    ("An apple a day", ["apple day"]),
    ("theatre", ["the atre"]),              # "the" inside a word stays
    ("The   quick\tbrown\nfox", ["quick brown fox"]),
    ("U.S.A.", ["USA"]),
    ("don't", ["dont"]),
    ("“quoted” — dash", ["quoted dash"]),   # unicode quotes and dashes are not punctuation
    ("café", ["CAFÉ"]),
    ("Ångström", ["angstrom"]),
    ("1,000,000", ["1000000"]),
    ("Denver Broncos", ["Broncos", "Denver Broncos", "the Denver Broncos team"]),
    ("Broncos win", ["Panthers", "Broncos"]),
    ("", ["something"]),
    ("", ["the"]),                          # both normalise to nothing: exact, F1 0
    ("a an the", ["..."]),
    ("Carolina Panthers Carolina", ["Carolina Panthers"]),
    ("in 1990s", ["1990s", "the 1990s", "in the 1990s"]),
    ("(ii) yes", ["ii yes"]),
]


@pytest.mark.parametrize("prediction,golds", CASES)
def test_each_case_scores_as_the_official_script(prediction, golds):
  assert squad.normalize_answer(prediction) == official_normalize_answer(prediction)
  for gold in golds:
    assert squad.exact_match(prediction, gold) == official_exact_match_score(prediction, gold)
    assert squad.token_f1(prediction, gold) == official_f1_score(prediction, gold)


def test_scores_over_a_dataset_equal_the_official_script():
  """Best over the gold answers, mean over the examples, in percent; an unanswered question (the
  script's) is the empty prediction here."""
  dataset = [{"paragraphs": [{"qas": [
      {"id": str(i), "answers": [{"text": g} for g in golds]}
      for i, (_, golds) in enumerate(CASES)]}]}]
  predictions = {str(i): p for i, (p, _) in enumerate(CASES)}
  expected = official_evaluate(json.loads(json.dumps(dataset)), predictions)
  got = squad.squad_scores([p for p, _ in CASES], [golds for _, golds in CASES])
  assert got == pytest.approx(expected, abs=1e-12)
  assert 0 < got["exact_match"] < 100 and 0 < got["f1"] < 100
  assert squad.squad_scores(["x"], [["x"]]) == {"exact_match": 100.0, "f1": 100.0}
