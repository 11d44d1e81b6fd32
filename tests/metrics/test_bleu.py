"""Parity of roots_jax.metrics.bleu with sacrebleu's corpus_bleu at its defaults."""

import random

import pytest
import sacrebleu
from random_text import characters, perturb, sentence
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from roots_jax.metrics import corpus_bleu
from roots_jax.metrics.bleu import tokenize_13a


def assert_matches_sacrebleu(hypotheses, references, reference_streams):
  ours = corpus_bleu(hypotheses, references)
  theirs = sacrebleu.corpus_bleu(hypotheses, reference_streams)
  assert ours["bleu"] == pytest.approx(theirs.score, abs=1e-6, rel=0)
  assert ours["precisions"] == pytest.approx(theirs.precisions, abs=1e-6, rel=0)
  assert ours["bp"] == pytest.approx(theirs.bp, abs=1e-9, rel=0)
  assert (ours["sys_len"], ours["ref_len"]) == (theirs.sys_len, theirs.ref_len)
  return ours


@pytest.mark.parametrize("seed", range(5))
def test_tokenizer_matches_13a(seed):
  rng = random.Random(seed)
  tokenizer = Tokenizer13a()
  for text in [sentence(rng) for _ in range(100)] + [characters(rng) for _ in range(100)]:
    # sacrebleu rstrips each segment before tokenizing.
    assert tokenize_13a(text) == tokenizer(text.rstrip()).split(), repr(text)


@pytest.mark.parametrize("seed", range(8))
def test_single_reference(seed):
  rng = random.Random(seed)
  references = [sentence(rng) for _ in range(rng.randint(1, 30))]
  hypotheses = [perturb(rng, ref) for ref in references]
  assert_matches_sacrebleu(hypotheses, references, [references])


@pytest.mark.parametrize("seed", range(5))
def test_multiple_references(seed):
  rng = random.Random(seed)
  num_refs = rng.randint(2, 4)
  references = [[sentence(rng) for _ in range(num_refs)] for _ in range(20)]
  # Half the hypotheses mix two references, so clipping by the max count over references
  # (not their sum) matters.
  hypotheses = [" ".join(perturb(rng, ref) for ref in rng.sample(refs, rng.randint(1, 2)))
                for refs in references]
  assert_matches_sacrebleu(hypotheses, references, [list(s) for s in zip(*references)])


def test_clips_by_max_count_over_references():
  result = assert_matches_sacrebleu(["the the the cat"], [["the cat", "the dog"]],
                                    [["the cat"], ["the dog"]])
  assert result["precisions"][0] == pytest.approx(50.0)


def test_variable_reference_count():
  rng = random.Random(0)
  references = [[sentence(rng) for _ in range(rng.randint(1, 3))] for _ in range(20)]
  hypotheses = [perturb(rng, refs[0]) for refs in references]
  # sacrebleu takes streams padded with None where a segment has fewer references.
  streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(3)]
  assert_matches_sacrebleu(hypotheses, references, streams)


def test_identical_is_100():
  rng = random.Random(1)
  references = [sentence(rng, max_words=20) + " and the cat sat" for _ in range(5)]
  result = assert_matches_sacrebleu(references, references, [references])
  assert result["bleu"] == pytest.approx(100)


def test_brevity_penalty_below_one():
  references = ["the cat sat on the mat today", "a dog barked loudly at night"]
  hypotheses = ["the cat sat on", "a dog barked"]
  assert assert_matches_sacrebleu(hypotheses, references, [references])["bp"] < 1


@pytest.mark.parametrize("hypotheses, references", [
    (["", ""], ["the cat sat", "a dog"]),  # no hypothesis tokens: bp 0, score 0
    (["cat", "dog barked"], ["the cat sat", "a dog barked"]),  # no 3/4-grams: loop stops early
    (["the mat sat cat on"], ["the cat sat on the mat"]),  # only unigram matches: smoothed
    (["x y z"], ["a b c"]),  # no matches at all
    (["&amp; <skipped>AT&T&quot;"], ["& AT&T\""]),
])
def test_edge_cases(hypotheses, references):
  assert_matches_sacrebleu(hypotheses, references, [references])


def test_length_mismatch_raises():
  with pytest.raises(ValueError):
    corpus_bleu(["a"], ["a", "b"])
