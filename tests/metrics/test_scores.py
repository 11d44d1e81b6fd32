"""Parity of roots_jax.metrics.scores with sklearn.metrics and scipy.stats."""

import math
import warnings

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from roots_jax.metrics import scores


def random_labels(seed):
  """Label/prediction pairs from several class counts, including degenerate ones."""
  rng = np.random.default_rng(seed)
  n = int(rng.integers(1, 60))
  num_classes = int(rng.integers(1, 8))
  labels = rng.integers(0, num_classes, n)
  predictions = np.where(rng.random(n) < 0.5, labels, rng.integers(0, num_classes + 2, n))
  return predictions, labels


LABEL_CASES = [random_labels(seed) for seed in range(30)] + [
    (np.array([0, 0, 0]), np.array([0, 0, 0])),  # one class, all correct
    (np.array([1, 1, 1]), np.array([0, 0, 0])),  # disjoint classes
    (np.array([2, 2, 2, 2]), np.array([0, 1, 2, 3])),  # constant predictions
    (np.array([0, 1, 2, 3]), np.array([3, 3, 3, 3])),  # constant labels
    (np.array([5, 9, 5, 9]), np.array([9, 5, 9, 5])),  # all wrong, sparse ids
    (np.array([1]), np.array([1])),
    (np.array(["b", "a", "c"]), np.array(["a", "a", "c"])),  # non-integer classes
]


def quiet(fn, *args, **kwargs):
  """Calls a reference function with its undefined-metric warnings silenced."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return fn(*args, **kwargs)


@pytest.mark.parametrize("predictions, labels", LABEL_CASES)
def test_classification_matches_sklearn(predictions, labels):
  assert scores.accuracy(predictions, labels) == pytest.approx(
      sklearn.metrics.accuracy_score(labels, predictions), abs=1e-9, rel=0)
  assert scores.macro_f1(predictions, labels) == pytest.approx(
      quiet(sklearn.metrics.f1_score, labels, predictions, average="macro"), abs=1e-9, rel=0)
  assert scores.matthews_corrcoef(predictions, labels) == pytest.approx(
      quiet(sklearn.metrics.matthews_corrcoef, labels, predictions), abs=1e-9, rel=0)


@pytest.mark.parametrize("predictions, labels", LABEL_CASES)
def test_per_class_matches_sklearn(predictions, labels):
  """Every class asked for, also one in neither labels nor predictions."""
  classes = np.unique(np.concatenate([labels, predictions]))
  classes = np.concatenate([classes, [classes.max() + 1 if classes.dtype.kind == "i" else "zz"]])
  figures = scores.per_class(predictions, labels, classes)
  reference = sklearn.metrics.precision_recall_fscore_support(labels, predictions, labels=classes,
                                                             zero_division=0)
  for name, expected in zip(("precision", "recall", "f1", "support"), reference):
    np.testing.assert_allclose(figures[name], expected, atol=1e-12, rtol=0, err_msg=name)


def test_macro_f1_checks_num_classes():
  assert scores.macro_f1([0, 1], [1, 1], num_classes=2) == pytest.approx(1 / 3)
  with pytest.raises(ValueError):
    scores.macro_f1([0, 2], [1, 1], num_classes=2)


def random_regression(seed):
  """Continuous, tied (rounded) and negatively related pairs."""
  rng = np.random.default_rng(seed)
  n = int(rng.integers(2, 50))
  targets = rng.normal(size=n) * 10 ** rng.uniform(-3, 3)
  predictions = float(rng.choice([-1, 1])) * targets + rng.normal(size=n) * rng.uniform(0, 5)
  if seed % 3 == 0:
    predictions, targets = np.round(predictions), np.round(targets)
  return predictions, targets


REGRESSION_CASES = [random_regression(seed) for seed in range(30)] + [
    (np.array([1.0, 2.0]), np.array([2.0, 1.0])),
    (np.array([1, 2, 2, 3]), np.array([1, 1, 2, 2])),  # integer inputs with ties
    (np.array([1e-300, 2e-300, 3e-300]), np.array([1.0, 3.0, 2.0])),
    (np.array([1e200, -1e200, 3e200]), np.array([1.0, 3.0, 2.0])),
]


@pytest.mark.parametrize("predictions, targets", REGRESSION_CASES)
def test_correlations_match_scipy(predictions, targets):
  if len(np.unique(predictions)) > 1 and len(np.unique(targets)) > 1:
    assert scores.pearson(predictions, targets) == pytest.approx(
        scipy.stats.pearsonr(predictions, targets).statistic, abs=1e-9, rel=0)
  assert scores.spearman(predictions, targets) == pytest.approx(
      quiet(scipy.stats.spearmanr, predictions, targets).statistic, abs=1e-9, rel=0, nan_ok=True)


@pytest.mark.parametrize("predictions, targets", [([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]),
                                                  ([1.0, 2.0, 3.0], [4.0, 4.0, 4.0])])
def test_correlations_nan_on_constant_input(predictions, targets):
  assert math.isnan(quiet(scipy.stats.pearsonr, predictions, targets).statistic)
  assert math.isnan(scores.pearson(predictions, targets))
  assert math.isnan(scores.spearman(predictions, targets))


def test_input_checks():
  with pytest.raises(ValueError):
    scores.accuracy([1, 2], [1])
  with pytest.raises(ValueError):
    scores.macro_f1([], [])
  with pytest.raises(ValueError):
    scores.pearson([1.0], [2.0])


def test_exact_match():
  predictions = [" Paris\n", "paris", "New York", "", "42 "]
  references = ["Paris", "Paris", "New  York", " ", "\t42"]
  assert scores.exact_match(predictions, references) == pytest.approx(3 / 5)
  with pytest.raises(ValueError):
    scores.exact_match(["a"], [])


def test_perplexity():
  assert scores.perplexity(0.0, 10) == 1.0
  assert scores.perplexity(math.log(7) * 12, 12) == pytest.approx(7.0, rel=1e-12)
  assert scores.perplexity(1e6, 1) == pytest.approx(1.7976931348623157e308)  # capped
  assert math.isfinite(scores.perplexity(math.inf, 1))
  assert math.isnan(scores.perplexity(math.nan, 1))
  for count in (0, -1):
    with pytest.raises(ValueError):
      scores.perplexity(1.0, count)
