"""Parity of roots_jax.metrics.rouge with Google's rouge-score package."""

import random

import numpy as np
import pytest
from random_text import characters, perturb, sentence
from rouge_score import rouge_scorer, tokenize

from roots_jax.metrics import rouge
from roots_jax.metrics.rouge import tokenize as rouge_tokenize

TYPES = ("rouge1", "rouge2", "rougeL")


def reference_rouge(predictions, references):
  scorer = rouge_scorer.RougeScorer(list(TYPES), use_stemmer=False)
  scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references)]
  return {t: 100 * float(np.mean([s[t].fmeasure for s in scores])) for t in TYPES}


def assert_matches_rouge_score(predictions, references):
  ours = rouge(predictions, references)
  theirs = reference_rouge(predictions, references)
  assert ours.keys() == theirs.keys()
  for name in TYPES:
    assert ours[name] == pytest.approx(theirs[name], abs=1e-9, rel=0), name
  return ours


@pytest.mark.parametrize("seed", range(5))
def test_tokenizer_matches_rouge_score(seed):
  rng = random.Random(seed)
  for text in [sentence(rng) for _ in range(100)] + [characters(rng) for _ in range(100)]:
    assert rouge_tokenize(text) == tokenize.tokenize(text, None), repr(text)


@pytest.mark.parametrize("seed", range(8))
def test_random_corpora(seed):
  rng = random.Random(seed)
  references = [sentence(rng, max_words=25) for _ in range(rng.randint(1, 30))]
  predictions = [perturb(rng, ref) for ref in references]
  assert_matches_rouge_score(predictions, references)


def test_unrelated_text():
  rng = random.Random(0)
  assert_matches_rouge_score([characters(rng) for _ in range(20)],
                             [characters(rng) for _ in range(20)])


def test_identical_is_100():
  texts = ["The cat sat on the mat.", "A dog -- barked, loudly!"]
  assert assert_matches_rouge_score(texts, texts) == pytest.approx(
      {t: 100.0 for t in TYPES}, abs=1e-9)


@pytest.mark.parametrize("predictions, references", [
    ([""], ["the cat"]),
    (["the cat"], [""]),
    (["... !!"], ["café 東京"]),  # no tokens on either side
    (["cat"], ["the cat sat"]),  # no bigrams in the prediction
    (["the mat sat on the cat"], ["the cat sat on the mat"]),
])
def test_edge_cases(predictions, references):
  assert_matches_rouge_score(predictions, references)
