"""SQuAD's answer normalisation, exact match and token F1, as the official evaluate-v1.1.py script
(Rajpurkar et al. 2016) and the harness's f1 for generated answers compute them."""

import collections
import re
import string
from typing import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
  """Lower case, punctuation removed, articles a/an/the removed, whitespace collapsed."""
  text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
  return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
  """F1 of the normalised tokens shared by prediction and reference (a bag of words); 0 when
  none are."""
  predicted, true = normalize_answer(prediction).split(), normalize_answer(reference).split()
  shared = sum((collections.Counter(predicted) & collections.Counter(true)).values())
  if shared == 0:
    return 0.0
  precision, recall = shared / len(predicted), shared / len(true)
  return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> bool:
  """Equal once normalised (the script's exact_match_score)."""
  return normalize_answer(prediction) == normalize_answer(reference)


def squad_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
  """{"exact_match", "f1"} as evaluate-v1.1.py reports them: each prediction's best over its
  gold answers (metric_max_over_ground_truths), averaged over the examples, in percent."""
  if len(predictions) != len(references):
    raise ValueError(f"{len(predictions)} predictions for {len(references)} examples")
  if not predictions:
    return {"exact_match": 0.0, "f1": 0.0}
  em = sum(max(exact_match(p, g) for g in golds) for p, golds in zip(predictions, references))
  f1 = sum(max(token_f1(p, g) for g in golds) for p, golds in zip(predictions, references))
  return {"exact_match": 100.0 * em / len(predictions), "f1": 100.0 * f1 / len(predictions)}
