"""Classification and regression scores for downstream evaluation, in numpy.

Each function matches a reference implementation exactly (tests/metrics/test_scores.py):
accuracy, macro F1 and MCC follow sklearn.metrics, Pearson and Spearman scipy.stats.
Inputs are 1-D array-likes of equal, non-zero length; class ids may be any values numpy
can sort and compare (ints, strings).
"""

import math
import sys

import numpy as np

# exp() of anything above log(float max) ~ 709.78 overflows; see `perplexity`.
_MAX_EXPONENT = math.log(sys.float_info.max)


def _as_pair(predictions, labels, min_length: int = 1) -> tuple[np.ndarray, np.ndarray]:
  predictions = np.asarray(predictions).reshape(-1)
  labels = np.asarray(labels).reshape(-1)
  if predictions.shape != labels.shape:
    raise ValueError(f"{predictions.shape[0]} predictions but {labels.shape[0]} labels")
  if predictions.shape[0] < min_length:
    raise ValueError(f"need at least {min_length} examples, got {predictions.shape[0]}")
  return predictions, labels


def _confusion(predictions, labels) -> np.ndarray:
  """[true class, predicted class] counts over the sorted classes present in either side."""
  _, ids = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
  num_present = ids.max() + 1
  true_ids, pred_ids = ids[:labels.shape[0]], ids[labels.shape[0]:]
  counts = np.bincount(true_ids * num_present + pred_ids, minlength=num_present**2)
  return counts.reshape(num_present, num_present)


def accuracy(predictions, labels) -> float:
  """Fraction of predictions equal to their label (sklearn.metrics.accuracy_score)."""
  predictions, labels = _as_pair(predictions, labels)
  return float(np.mean(predictions == labels))


def macro_f1(predictions, labels, num_classes: int | None = None) -> float:
  """Unweighted mean of per-class F1 (sklearn f1_score(labels, predictions, average="macro")).

  Only classes present in labels or predictions count, so a class the evaluation set lacks
  does not drag the mean down; a present class with no true positive has F1 0.
  `num_classes`, if given, checks that integer ids lie in [0, num_classes): an id out of
  range means the predictions and labels disagree on the label space.
  """
  predictions, labels = _as_pair(predictions, labels)
  if num_classes is not None:
    for name, ids in (("predictions", predictions), ("labels", labels)):
      if ids.min() < 0 or ids.max() >= num_classes:
        raise ValueError(f"{name} hold ids outside [0, {num_classes}): "
                         f"{ids.min()}..{ids.max()}")
  confusion = _confusion(predictions, labels)
  true_positives = np.diag(confusion).astype(np.float64)
  # F1 = 2tp / (2tp + fp + fn) = 2tp / (true count + predicted count), sklearn's form;
  # the denominator is positive for every present class.
  denominator = confusion.sum(axis=1) + confusion.sum(axis=0)
  return float(np.mean(2 * true_positives / denominator))


def per_class(predictions, labels, classes) -> dict[str, np.ndarray]:
  """Precision, recall, F1 and support of each of `classes`, in their order, as
  sklearn.metrics.precision_recall_fscore_support(labels, predictions, labels=classes,
  zero_division=0): a class never predicted has precision 0, one never true recall 0."""
  predictions, labels = _as_pair(predictions, labels)
  classes = np.asarray(classes)[:, None]                                      # [C, 1]
  predicted, true = predictions[None] == classes, labels[None] == classes     # [C, N]
  hits = (predicted & true).sum(axis=1).astype(np.float64)
  predicted, support = predicted.sum(axis=1), true.sum(axis=1)
  ratio = lambda a, b: np.divide(a, b, out=np.zeros_like(a), where=b > 0)
  return {"precision": ratio(hits, predicted), "recall": ratio(hits, support),
          "f1": ratio(2 * hits, predicted + support), "support": support}


def matthews_corrcoef(predictions, labels) -> float:
  """Multiclass Matthews correlation (Gorodkin 2004), as sklearn; 0.0 when undefined.

  Undefined means all labels or all predictions are one class (a zero covariance).
  """
  predictions, labels = _as_pair(predictions, labels)
  confusion = _confusion(predictions, labels)
  true_sum = confusion.sum(axis=1, dtype=np.float64)
  pred_sum = confusion.sum(axis=0, dtype=np.float64)
  correct = np.trace(confusion, dtype=np.float64)
  samples = pred_sum.sum()
  cov_true_pred = correct * samples - np.dot(true_sum, pred_sum)
  cov_pred_pred = samples**2 - np.dot(pred_sum, pred_sum)
  cov_true_true = samples**2 - np.dot(true_sum, true_sum)
  if cov_pred_pred * cov_true_true == 0:
    return 0.0
  return float(cov_true_pred / np.sqrt(cov_pred_pred * cov_true_true))


def pearson(predictions, targets) -> float:
  """Pearson correlation (scipy.stats.pearsonr's statistic); nan if either side is constant.

  nan rather than 0.0, as scipy: a constant predictor has no defined correlation, and a
  0.0 would read as a real (uncorrelated) score. Needs at least 2 examples.
  """
  x, y = _as_pair(predictions, targets, min_length=2)
  x, y = x.astype(np.float64), y.astype(np.float64)
  if np.all(x == x[0]) or np.all(y == y[0]):
    return float("nan")
  x = x - x.mean()
  y = y - y.mean()
  # Dividing by the max first keeps the norms from overflowing (as scipy does).
  x_norm = np.abs(x).max() * np.linalg.norm(x / np.abs(x).max())
  y_norm = np.abs(y).max() * np.linalg.norm(y / np.abs(y).max())
  return float(np.clip(np.dot(x / x_norm, y / y_norm), -1.0, 1.0))


def _average_ranks(values: np.ndarray) -> np.ndarray:
  """1-based ranks with ties given their mean rank (scipy.stats.rankdata 'average')."""
  _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
  # A group of equal values occupying ranks start+1 .. start+count has mean rank
  # start + (count + 1) / 2.
  starts = np.cumsum(counts) - counts
  return (starts + (counts + 1) / 2.0)[inverse]


def spearman(predictions, targets) -> float:
  """Spearman rank correlation with average ranks for ties (scipy.stats.spearmanr).

  nan if either side is constant, as `pearson`. Needs at least 2 examples.
  """
  x, y = _as_pair(predictions, targets, min_length=2)
  return pearson(_average_ranks(x), _average_ranks(y))  # constant ranks -> nan there


def exact_match(predictions: list[str], references: list[str]) -> float:
  """Fraction of predictions equal to their reference after stripping surrounding whitespace."""
  if len(predictions) != len(references):
    raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
  if not predictions:
    raise ValueError("need at least 1 example")
  matches = sum(p.strip() == r.strip() for p, r in zip(predictions, references))
  return matches / len(predictions)


def perplexity(nll_sum: float, token_count: float) -> float:
  """exp(nll_sum / token_count): token-weighted perplexity over the non-padding tokens.

  The caller sums the per-token negative log-likelihood (nats) and counts the tokens over
  the whole evaluation set, so long and short examples weigh by their tokens. The exponent
  is capped at log(float max) ~ 709.8, so a diverged model (even an infinite nll) gives
  ~1.8e308 instead of an OverflowError or an inf that metric writers drop; nan propagates.
  """
  if not token_count > 0:
    raise ValueError(f"token_count must be positive, got {token_count}")
  return math.exp(min(nll_sum / token_count, _MAX_EXPONENT))
