"""Evaluation metrics in plain numpy/python, each matching a reference package exactly.

Scores follow sklearn.metrics and scipy.stats, BLEU sacrebleu's defaults and ROUGE
Google's rouge-score, so numbers compare with published ones without those dependencies
at evaluation time (the tests check parity against them); token F1 follows SQuAD's evaluation
script (metrics.squad), and metrics.bootstrap gives any metric's bootstrap standard error.
"""

from roots_jax.metrics.bleu import corpus_bleu
from roots_jax.metrics.rouge import rouge
from roots_jax.metrics.scores import (accuracy, exact_match, macro_f1, matthews_corrcoef,
                                      per_class, pearson, perplexity, spearman)
