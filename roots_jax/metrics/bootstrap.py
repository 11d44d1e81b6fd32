"""Bootstrap standard errors (Efron & Tibshirani 1993): how much a metric moves when the
evaluated examples are drawn again, with replacement, from those scored.

The harness (lm-evaluation-harness) bootstraps with 100,000 resamples by default, but only 100
for corpus-level BLEU; we default to 1,000 (a standard error's own relative error is then about
1/sqrt(2 * 1000) ~ 2 %) and the caller passes fewer for costly statistics.
"""

from typing import Callable

import numpy as np

ITERATIONS = 1000


def resample_indices(n: int, iterations: int = ITERATIONS, seed: int = 0) -> np.ndarray:
  """[iterations, n] indices into n examples, drawn uniformly with replacement."""
  return np.random.default_rng(seed).integers(0, n, size=(iterations, n))


def stderr_of_mean(values, iterations: int = ITERATIONS, seed: int = 0) -> float:
  """The bootstrap standard error of the mean of `values` (about std / sqrt(n))."""
  values = np.asarray(values, np.float64)
  means = values[resample_indices(len(values), iterations, seed)].mean(axis=1)  # [iterations]
  return float(means.std(ddof=1))


def stderr(statistic: Callable[..., float], columns: tuple, iterations: int = ITERATIONS,
           seed: int = 0) -> float:
  """The bootstrap standard error of `statistic(*columns)`, each column a sequence over the same
  examples (e.g. (log-likelihoods, byte counts) for bits per byte, a ratio of sums); every
  resample takes the same examples from each column."""
  n = len(columns[0])
  arrays = [np.asarray(c, dtype=object) if isinstance(c[0], str) else np.asarray(c)
            for c in columns]
  replicates = [statistic(*[a[i] for a in arrays])
                for i in resample_indices(n, iterations, seed)]
  return float(np.std(replicates, ddof=1))
