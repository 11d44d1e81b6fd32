"""ROUGE-1, ROUGE-2 and ROUGE-L (Lin 2004), a port of Google's rouge-score package.

Equal to the mean over examples of
`rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
.score(reference, prediction)[...].fmeasure`, times 100 (tests/metrics/test_rouge.py).
ROUGE-L here is the sentence-level LCS score, not the newline-split "rougeLsum" that
summarization papers often report.
"""

import collections
import re

import numpy as np

# rouge_score.tokenize: lowercase, then anything but [a-z0-9] separates tokens, so
# non-ASCII letters and punctuation vanish and "don't" becomes "don", "t".
_NON_ALPHANUM = re.compile(r"[^a-z0-9]+")
_SPACES = re.compile(r"\s+")
_VALID_TOKEN = re.compile(r"^[a-z0-9]+$")


def tokenize(text: str) -> list[str]:
  """rouge-score's default tokenizer without stemming."""
  tokens = _SPACES.split(_NON_ALPHANUM.sub(" ", text.lower()))
  return [token for token in tokens if _VALID_TOKEN.match(token)]


def _fmeasure(precision: float, recall: float) -> float:
  if precision + recall > 0:
    return 2 * precision * recall / (precision + recall)
  return 0.0


def _ngram_fmeasure(reference: list[str], prediction: list[str], n: int) -> float:
  reference_ngrams = collections.Counter(
      tuple(reference[i:i + n]) for i in range(len(reference) - n + 1))
  prediction_ngrams = collections.Counter(
      tuple(prediction[i:i + n]) for i in range(len(prediction) - n + 1))
  overlap = sum((reference_ngrams & prediction_ngrams).values())
  precision = overlap / max(sum(prediction_ngrams.values()), 1)
  recall = overlap / max(sum(reference_ngrams.values()), 1)
  return _fmeasure(precision, recall)


def _lcs_length(a: list[str], b: list[str]) -> int:
  """Longest common subsequence length by the usual O(len(a) * len(b)) table, one row kept."""
  previous = [0] * (len(b) + 1)
  for token_a in a:
    current = [0]
    for j, token_b in enumerate(b):
      current.append(previous[j] + 1 if token_a == token_b else max(previous[j + 1], current[j]))
    previous = current
  return previous[-1]


def _lcs_fmeasure(reference: list[str], prediction: list[str]) -> float:
  if not reference or not prediction:
    return 0.0
  lcs = _lcs_length(reference, prediction)
  return _fmeasure(lcs / len(prediction), lcs / len(reference))


def rouge(predictions: list[str], references: list[str]) -> dict:
  """Mean ROUGE F-measures in percent: {"rouge1": .., "rouge2": .., "rougeL": ..}.

  One reference per prediction. An example whose prediction or reference has no tokens
  scores 0.
  """
  if len(predictions) != len(references):
    raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
  if not predictions:
    raise ValueError("need at least 1 example")
  scores = {"rouge1": [], "rouge2": [], "rougeL": []}
  for prediction, reference in zip(predictions, references):
    prediction, reference = tokenize(prediction), tokenize(reference)
    scores["rouge1"].append(_ngram_fmeasure(reference, prediction, 1))
    scores["rouge2"].append(_ngram_fmeasure(reference, prediction, 2))
    scores["rougeL"].append(_lcs_fmeasure(reference, prediction))
  return {name: 100 * float(np.mean(values)) for name, values in scores.items()}
