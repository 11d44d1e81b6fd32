"""The Kneser-Ney n-gram model: NLTK's interpolated Kneser-Ney (one discount), a reference
implementation of modified Kneser-Ney written from the definitions with dicts, a bigram worked
by hand, normalisation, files (npz/json, ARPA), and the evaluate command's n-gram baseline."""

import collections
import functools
import json
import math
import os

import numpy as np
import pytest
from nltk.lm import KneserNeyInterpolated
from nltk.util import everygrams

from roots_jax import evaluate as evaluate_cli
from roots_jax.corpus import ngram
from roots_jax.corpus.ngram import NGramModel
from roots_jax.data import load_tokenizer, sources
from roots_jax.errors import ConfigError, DataError
from roots_jax.runs import workdir as workdir_lib

SENTENCES = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog",
             "the mat is on the log"]


def _corpus(vocab: int = 6, docs: int = 50, seed: int = 0) -> list[list[int]]:
  """A few hundred random ids from a small vocabulary, plus a few real sentences (as ids)."""
  rng = np.random.default_rng(seed)
  words = sorted({w for s in SENTENCES for w in s.split()})
  real = [[vocab + words.index(w) for w in s.split()] for s in SENTENCES]
  return [rng.integers(0, vocab, rng.integers(0, 12)).tolist() for _ in range(docs)] + real


def _vocab(docs) -> int:
  return max(max(d, default=0) for d in docs) + 1


def _sequences(model, docs) -> list[tuple]:
  return [(model.bos_id, *d, model.eos_id) for d in docs]


def _contexts(seqs, length: int) -> set:
  return {s[i - length:i] for s in seqs for i in range(length, len(s))}


def _predicted(model) -> list[int]:
  return [w for w in range(model.size) if w != model.bos_id]


@pytest.mark.parametrize("order", [2, 3, 4])
def test_matches_nltk_interpolated_kneser_ney(order):
  """NLTK: one discount, continuation counts below the top order, a plain continuation unigram
  (interpolate_unigrams=False). Contexts holding <s> differ by convention (KenLM: raw counts of
  n-grams starting with <s>) and are left out; every word of every other seen context is checked,
  and of a few unseen ones."""
  docs = _corpus()
  model = NGramModel.train(docs, _vocab(docs), order, discount=0.1, interpolate_unigrams=False)
  seqs = _sequences(model, docs)
  lm = KneserNeyInterpolated(order, discount=0.1)
  lm.fit([list(everygrams(tuple(map(str, s)), max_len=order)) for s in seqs],
         [str(w) for w in _predicted(model)])
  contexts = [c for n in range(1, order) for c in _contexts(seqs, n) if model.bos_id not in c]
  contexts += [(), (0, 0, 0)[:order - 1], (5, 4, 3)[:order - 1]]
  assert len(contexts) > 15 * (order - 1)
  for context in contexts:
    ours = np.exp(model.context_log_probs(context))
    theirs = [lm.unmasked_score(str(w), tuple(map(str, context)) or None)
              for w in _predicted(model)]
    np.testing.assert_allclose(ours[_predicted(model)], theirs, rtol=1e-6, atol=0,
                               err_msg=str(context))


def _modified_kn(seqs, order: int, size: int, bos: int, interpolate: bool):
  """(p(w, context), discounts by order) of modified Kneser-Ney as Chen & Goodman and KenLM
  define it, from dicts of n-gram tuples."""
  counts = {k: collections.Counter(s[i:i + k] for s in seqs for i in range(len(s) - k + 1))
            for k in range(1, order + 1)}
  del counts[1][(bos,)]
  adjusted = {order: counts[order]}
  for k in range(order - 1, 0, -1):
    before = collections.Counter(g[1:] for g in counts[k + 1])
    adjusted[k] = {g: c if g[0] == bos else before[g] for g, c in counts[k].items()}
  discounts = {}
  for k, a in adjusted.items():
    n = collections.Counter(a.values())
    y = n[1] / (n[1] + 2 * n[2])
    discounts[k] = (0.0, 1 - 2 * y * n[2] / n[1], 2 - 3 * y * n[3] / n[2],
                    3 - 4 * y * n[4] / n[3])
  words = [w for w in range(size) if w != bos]
  following = collections.defaultdict(dict)  # context -> {w: a(context w)}
  for a in adjusted.values():
    for g, c in a.items():
      following[g[:-1]][g[-1]] = c

  @functools.cache
  def p(w, context):
    if w == bos:
      return 0.0
    k = len(context) + 1
    seen = following.get(context)
    if not seen:
      return p(w, context[1:])
    d = discounts[k]
    total = sum(seen.values())
    gamma = sum(d[min(c, 3)] for c in seen.values()) / total
    if k == 1 and not interpolate:
      return seen.get(w, 0) / total
    mine = max(seen.get(w, 0) - d[min(seen.get(w, 0), 3)], 0.0) / total
    lower = 1 / len(words) if k == 1 else p(w, context[1:])
    return mine + gamma * lower

  return p, discounts


@pytest.mark.parametrize("interpolate", [True, False])
def test_modified_kneser_ney_matches_its_definition(interpolate):
  """Zipf-distributed ids, so that every order has counts (of adjusted counts) 1 to 4."""
  rng = np.random.default_rng(1)
  zipf = 1 / np.arange(1, 101)
  docs = [rng.choice(100, rng.integers(0, 10), p=zipf / zipf.sum()).tolist() for _ in range(400)]
  order = 3
  model = NGramModel.train(docs, _vocab(docs), order, interpolate_unigrams=interpolate)
  seqs = _sequences(model, docs)
  p, discounts = _modified_kn(seqs, order, model.size, model.bos_id, interpolate)
  for k in range(1, order + 1):
    np.testing.assert_allclose(model.discounts[k], discounts[k][1:], rtol=1e-12)
  assert all(0 < d < r + 1 for k in discounts for r, d in enumerate(discounts[k][1:]))
  # Contexts starting with <s> (raw counts) included.
  contexts = [c for n in range(order - 1) for c in _contexts(seqs, n)]
  longest = sorted(_contexts(seqs, order - 1))
  contexts += longest[::10] + [c for c in longest if c[0] == model.bos_id] + [(2, 2)]
  for context in contexts:
    ours = np.exp(model.context_log_probs(context))
    np.testing.assert_allclose(ours, [p(w, context) for w in range(model.size)], rtol=1e-9,
                               atol=1e-15, err_msg=str(context))


def test_discounts_fall_back_on_tiny_corpora():
  """One sentence: every count is 1, n2 = 0, so every order takes KenLM's fallback."""
  model = NGramModel.train([[0, 1, 2]], 3, 3)
  assert model.discounts[1:] == [list(ngram.FALLBACK_DISCOUNTS)] * 3
  assert NGramModel.train([[0, 1, 2]], 3, 2, discount=0.25).discounts[2] == [0.25] * 3


def test_a_bigram_worked_by_hand():
  """Ids a=0, b=1, c=2; <s>=3 and </s>=4 reserved; discount 0.5, unigrams interpolated.

  Sequences: <s> a b </s>, <s> a c </s>, <s> b </s>. Unigram continuation counts: a 1, b 2,
  c 1, </s> 2 (total 6), so gamma() = 4 * 0.5 / 6 = 1/3 spread over the 4 predictable ids:
  p(a) = 0.5/6 + 1/12 = 1/6, p(b) = 1.5/6 + 1/12 = 1/3, p(c) = 1/6, p(</s>) = 1/3.
  Bigrams: <s> -> a 2, b 1 (gamma 1/3); a -> b 1, c 1 (gamma 1/2); b -> </s> 2 (gamma 1/4);
  c -> </s> 1 (gamma 1/2).
  """
  model = NGramModel.train([[0, 1], [0, 2], [1]], 3, 2, discount=0.5)
  assert (model.bos_id, model.eos_id, model.size) == (3, 4, 5)
  p_unigram = [1 / 6, 1 / 3, 1 / 6, 0, 1 / 3]
  np.testing.assert_allclose(np.exp(model.context_log_probs([])), p_unigram, rtol=1e-12)
  np.testing.assert_allclose(np.exp(model.context_log_probs([3])),
                             [5 / 9, 5 / 18, 1 / 18, 0, 1 / 9], rtol=1e-12)
  np.testing.assert_allclose(np.exp(model.context_log_probs([0])),
                             [1 / 12, 5 / 12, 1 / 3, 0, 1 / 6], rtol=1e-12)
  # a b </s>: p(a|<s>) p(b|a) p(</s>|b); c a </s>: p(c|<s>) p(a|c) = 1/2 p(a), p(</s>|a).
  np.testing.assert_allclose(model.log_probs([0, 1]),
                             np.log([5 / 9, 5 / 12, 1.5 / 2 + 1 / 4 * 1 / 3]), rtol=1e-12)
  np.testing.assert_allclose(model.log_probs([2, 0]), np.log([1 / 18, 1 / 12, 1 / 6]),
                             rtol=1e-12)
  ppl, tokens = model.perplexity([[0, 1], [2, 0]])
  assert tokens == 6
  assert ppl == pytest.approx((5 / 9 * 5 / 12 * 5 / 6 * 1 / 18 * 1 / 12 * 1 / 6) ** (-1 / 6))


@pytest.mark.parametrize("discount", ["modified", 0.7])
@pytest.mark.parametrize("interpolate", [True, False])
def test_every_context_sums_to_one(discount, interpolate):
  docs = _corpus(docs=80, seed=2)
  model = NGramModel.train(docs, _vocab(docs), 4, discount=discount,
                           interpolate_unigrams=interpolate)
  for k in range(1, 4):
    for context in model.ngram_ids(k):
      total = np.exp(model.context_log_probs(context)).sum()
      assert total == pytest.approx(1.0, abs=1e-6), context
  assert np.exp(model.context_log_probs([])).sum() == pytest.approx(1.0, abs=1e-12)
  unigram = np.exp(model.context_log_probs([]))
  assert unigram[model.bos_id] == 0
  if interpolate:
    assert np.all(unigram[_predicted(model)] > 0)


def test_unigram_interpolation_mass():
  """With interpolation the uniform share of every id is gamma() / (V' - 1): exactly what an id
  never predicted gets. Without, such an id has probability 0 and a text holding it -inf."""
  docs = [[0, 1, 1, 2], [1, 2]]
  interpolated = NGramModel.train(docs, 5, 3)
  p = np.exp(interpolated.context_log_probs([]))
  d1, d2, d3 = interpolated.discounts[1]
  # Continuation counts: 0 -> 1 (<s> 0), 1 -> 3 (0 1, 1 1, <s> 1), 2 -> 1, </s> -> 1.
  a = {0: 1, 1: 3, 2: 1, interpolated.eos_id: 1}
  total = sum(a.values())
  gamma = sum({1: d1, 2: d2}.get(c, d3) for c in a.values()) / total
  assert p[3] == p[4] == pytest.approx(gamma / (interpolated.size - 1), rel=1e-12)
  assert p[1] == pytest.approx((3 - d3) / total + gamma / (interpolated.size - 1), rel=1e-12)
  plain = NGramModel.train(docs, 5, 3, interpolate_unigrams=False)
  assert np.exp(plain.context_log_probs([]))[[0, 1, 2, 3, 4, 6]] == pytest.approx(
      [1 / 6, 3 / 6, 1 / 6, 0, 0, 1 / 6])
  assert plain.log_probs([4])[0] == -np.inf
  assert np.isfinite(interpolated.log_probs([4])).all()


def test_scoring_is_the_context_lookup_and_per_document():
  docs = _corpus(seed=3)
  model = NGramModel.train(docs, _vocab(docs), 5)
  test = _corpus(seed=4)
  for doc in test[:10]:
    seq = [model.bos_id, *doc, model.eos_id]
    expected = [model.context_log_probs(seq[max(0, i - 4):i])[seq[i]] for i in range(1, len(seq))]
    np.testing.assert_allclose(model.log_probs(doc), expected, rtol=1e-12)
  sums, counts = model.score_documents(test)
  np.testing.assert_allclose(sums, [model.log_probs(d).sum() for d in test], rtol=1e-12)
  assert list(counts) == [len(d) + 1 for d in test]
  ppl, tokens = model.perplexity(test)
  assert tokens == sum(counts) and ppl == pytest.approx(np.exp(-sums.sum() / tokens))


def test_tokenizer_boundaries_and_errors():
  model = NGramModel.train([[0, 1]], 4, 2, bos_id=2, eos_id=3)
  assert (model.bos_id, model.eos_id, model.size) == (2, 3, 4)
  assert NGramModel.train([[0, 1]], 4, 2, bos_id=-1, eos_id=3).bos_id == 4
  assert NGramModel.train([[0, 1]], 4, 2, bos_id=3, eos_id=3).bos_id == 4  # one id for both
  with pytest.raises(DataError, match="corpus is empty"):
    NGramModel.train([], 4, 2)
  with pytest.raises(DataError, match="ids outside"):
    NGramModel.train([[0, 2]], 4, 2, bos_id=2, eos_id=3)
  with pytest.raises(ConfigError, match="discount"):
    NGramModel.train([[0]], 4, 2, discount=1.5)


def test_save_and_load_give_the_same_model(tmp_path):
  docs = _corpus(seed=5)
  model = NGramModel.train(docs, _vocab(docs), 4, tokenizer={"path": "x", "fingerprint": "f"})
  model.save(str(tmp_path))
  meta = json.loads((tmp_path / "ngram.json").read_text())
  assert meta["order"] == 4 and meta["ngrams"]["4"] == len(model.keys[4])
  assert meta["discounts"]["2"] == model.discounts[2] and meta["tokenizer"]["fingerprint"] == "f"
  loaded = NGramModel.load(str(tmp_path))
  for doc in _corpus(seed=6):
    np.testing.assert_array_equal(loaded.log_probs(doc), model.log_probs(doc))
  with pytest.raises(DataError, match="ngram.json"):
    NGramModel.load(str(tmp_path / "nothing"))


def _read_arpa(path) -> tuple[dict, dict]:
  """ARPA text -> ({ngram: log10 p}, {ngram: log10 backoff}), words as written."""
  probs, backoffs = {}, {}
  with open(path) as f:
    lines = f.read().split("\n")
  header = [line for line in lines if line.startswith("ngram ")]
  section = 0
  for line in lines:
    if line.startswith("\\") and line.endswith("-grams:"):
      section = int(line[1:line.index("-")])
    elif line.startswith("\\end"):
      section = 0
    elif section and line:
      fields = line.split("\t")
      words = tuple(fields[1].split(" "))
      assert len(words) == section
      probs[words] = float(fields[0])
      if len(fields) == 3:
        backoffs[words] = float(fields[2])
  counts = collections.Counter(len(w) for w in probs)
  assert header == [f"ngram {k}={counts[k]}" for k in sorted(counts)]
  return probs, backoffs


def test_arpa_round_trip(tmp_path):
  """The ARPA file's backoff scoring (as KenLM's query does it) gives the model's log probs."""
  docs = _corpus(seed=7)
  model = NGramModel.train(docs, _vocab(docs), 3)
  model.write_arpa(str(tmp_path / "lm.arpa"))
  probs, backoffs = _read_arpa(tmp_path / "lm.arpa")
  assert probs[("<s>",)] == -99 and ("<s>",) in backoffs  # context only
  name = {model.bos_id: "<s>", model.eos_id: "</s>"}

  def log10p(words):
    if words in probs:
      return probs[words]
    return backoffs.get(words[:-1], 0.0) + log10p(words[1:])

  for doc in _corpus(seed=8)[:20]:
    seq = [name.get(w, str(w)) for w in (model.bos_id, *doc, model.eos_id)]
    arpa = [log10p(tuple(seq[max(0, i - 2):i + 1])) for i in range(1, len(seq))]
    np.testing.assert_allclose(arpa, model.log_probs(doc) / math.log(10), rtol=1e-6, atol=1e-6)


def test_texts_and_lines(tokenizer):
  texts = ["def f(x):\n  return x\n\n", "import os\nprint(os.sep)\n"] * 3
  whole = ngram.train_from_texts(texts, tokenizer, 3)
  assert whole.tokenizer["fingerprint"] == ngram.tokenizer_fingerprint(tokenizer)
  assert whole.tokens == sum(len(tokenizer.encode(t)) + 1 for t in texts)
  lines = ngram.train_from_texts(texts, tokenizer, 3, split_lines=True)
  assert lines.tokens == sum(len(tokenizer.encode(line)) + 1 for t in texts
                             for line in t.split("\n") if line.strip())
  with pytest.raises(DataError, match="empty"):
    ngram.train_from_texts([], tokenizer, 3)


def test_evaluate_reports_the_ngram_baseline(pretrained, tokenizer, tmp_path, capsys):
  """The n-gram model of the run's tokenizer scores the documents of the run's held-out split;
  one of another tokenizer is refused with what to do."""
  run = pretrained["decoder"]
  config = workdir_lib.read_config(run)
  run_tokenizer = load_tokenizer(workdir_lib.tokenizer_path(run, config))
  model = ngram.train_on_source(sources.make_source(config.data, "train"), run_tokenizer, 3)
  model.save(str(tmp_path / "ngram"))
  assert evaluate_cli.main(["--workdir", run, "--ngram", str(tmp_path / "ngram")]) == 0
  assert "ngram perplexity" in capsys.readouterr().out
  with open(os.path.join(run, "results.json")) as f:
    results = json.load(f)["ngram"]
  texts = list(ngram.source_texts(sources.make_source(config.data, "eval")))
  assert len(texts) == 60
  ppl, tokens = model.perplexity(run_tokenizer.encode(t) for t in texts)
  assert results == {"perplexity": pytest.approx(ppl, rel=1e-12), "tokens": tokens,
                     "documents": 60, "order": 3,
                     "dir": str(tmp_path / "ngram")}
  assert 1 < ppl < run_tokenizer.vocab_size

  other = ngram.train_from_texts(texts, tokenizer, 2)
  other.save(str(tmp_path / "other"))
  assert evaluate_cli.main(["--workdir", run, "--ngram", str(tmp_path / "other")]) == 2
  err = capsys.readouterr().err
  assert "trained with another tokenizer" in err and "ngram.tokenizer=" in err
