"""SQuAD's answer normalisation and token F1, as the official evaluate-v1.1.py script (Rajpurkar
et al. 2016) and the harness's f1 for generated answers compute them."""

import collections
import re
import string

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
