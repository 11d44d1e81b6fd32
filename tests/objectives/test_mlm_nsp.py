"""The MLM+NSP objective: pair layout, masking statistics, NSP negatives, truncation, words."""

import numpy as np
import pytest

from roots_jax.errors import ConfigError
from roots_jax.objectives import mlm_nsp

SEQ_LEN = 64


def make(tokenizer, **kwargs):
  options = dict(mask_rate=0.15, whole_word_masking=False, next_sentence_prediction=True,
                 seed=0)
  options.update(kwargs)
  return mlm_nsp.MaskedLM(tokenizer, kwargs.pop("seq_len", SEQ_LEN), **options)


def synthetic_documents(tokenizer, n, seed=0):
  """Token ids of n documents of 2-29 sentences of 2-7 words, then "."; a word is a
  word-start piece ("▁...") and 0-2 inner pieces. Random pieces make a few consecutive
  tokens identify their document."""
  pieces = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
  starts = [i for i, p in enumerate(pieces) if p[:1] == "\u2581" and p[1:].isalpha()]
  inner = [i for i, p in enumerate(pieces) if p.isalpha()]
  period = pieces.index(".")
  rng = np.random.default_rng(seed)
  docs = []
  for _ in range(n):
    sentences = []
    for _ in range(rng.integers(2, 30)):
      words = [[rng.choice(starts), *rng.choice(inner, rng.integers(0, 3))]
               for _ in range(rng.integers(2, 8))]
      sentences.append(np.concatenate(words + [[period]]))
    docs.append(np.concatenate(sentences).astype(np.int32))
  return docs


def run(objective, docs):
  """Every document's rows, with the index of the document it was made from."""
  carry, out = objective.initial_carry(), []
  for d, tokens in enumerate(docs):
    rows, carry = objective.generate(tokens, carry)
    out += [(d, r) for r in rows]
  return out


def contains(haystack: np.ndarray, needle: np.ndarray) -> int:
  """The first index of `needle` in `haystack`, or -1."""
  n = len(needle)
  windows = np.lib.stride_tricks.sliding_window_view(haystack, n) if len(haystack) >= n else []
  hits = np.flatnonzero(np.all(windows == needle, axis=1)) if len(windows) else []
  return int(hits[0]) if len(hits) else -1


def unmasked(row):
  """The row's original ids: inputs, with the targets where a prediction is made."""
  return np.where(row["weights"] > 0, row["targets"], row["inputs"])


def sides(objective, row):
  ids = unmasked(row)
  n = int(row["segment_ids"].sum())
  b_start = int(np.argmax(row["token_types"]))
  return ids[1:b_start - 1], ids[b_start:n - 1]


@pytest.fixture(scope="module")
def rows(tokenizer):
  docs = synthetic_documents(tokenizer, 600)
  return make(tokenizer), docs, run(make(tokenizer), docs)


def test_row_layout_and_labels_only_on_masked_positions(rows, tokenizer):
  objective, docs, out = rows
  cls, sep = tokenizer.piece_id("[CLS]"), tokenizer.piece_id("[SEP]")
  for d, row in out:
    assert {k: (v.shape, v.dtype) for k, v in row.items()} == {
        **{k: ((SEQ_LEN,), np.int32) for k in
           ("inputs", "targets", "token_types", "segment_ids", "positions")},
        "weights": ((SEQ_LEN,), np.float32), "nsp_labels": ((), np.int32),
        "nsp_weights": ((), np.float32)}
    n = int(row["segment_ids"].sum())
    b_start = int(np.argmax(row["token_types"]))
    np.testing.assert_array_equal(row["segment_ids"], np.arange(SEQ_LEN) < n)
    np.testing.assert_array_equal(row["positions"], np.arange(SEQ_LEN))
    np.testing.assert_array_equal(row["token_types"],
                                  (np.arange(SEQ_LEN) >= b_start) & (np.arange(SEQ_LEN) < n))
    ids = unmasked(row)
    assert ids[0] == cls and ids[b_start - 1] == sep and ids[n - 1] == sep
    assert row["weights"][[0, b_start - 1, n - 1]].sum() == 0  # specials never masked
    assert not np.any(row["inputs"][n:]) and not np.any(row["weights"][n:])
    np.testing.assert_array_equal(row["targets"] != 0, row["weights"] > 0)
    # The targets are the original tokens: with them, A is a piece of the document.
    a, b = sides(objective, row)
    assert len(a) and len(b) and contains(docs[d], a) >= 0
    assert row["nsp_weights"] == 1.0


def test_masking_rate_and_80_10_10(rows, tokenizer):
  objective, _, out = rows
  maskable = sum(int(r["segment_ids"].sum()) - 3 for _, r in out)
  assert maskable > 20_000
  selected = np.concatenate([r["weights"] > 0 for _, r in out])
  inputs = np.concatenate([r["inputs"] for _, r in out])[selected]
  targets = np.concatenate([r["targets"] for _, r in out])[selected]
  assert selected.sum() / maskable == pytest.approx(0.15, abs=0.01)
  masked = inputs == tokenizer.piece_id("[MASK]")
  kept = inputs == targets
  assert masked.mean() == pytest.approx(0.8, abs=0.02)
  assert kept.mean() == pytest.approx(0.1, abs=0.02)
  assert (~masked & ~kept).mean() == pytest.approx(0.1, abs=0.02)
  replaced = inputs[~masked & ~kept]
  assert not any(tokenizer.is_special(int(i)) for i in replaced)
  assert len(np.unique(replaced)) > 100  # drawn from the whole vocabulary


def test_nsp_half_positive_and_negatives_from_other_documents(rows):
  objective, docs, out = rows
  labels = np.array([r["nsp_labels"] for _, r in out])
  assert len(labels) > 1500 and labels.mean() == pytest.approx(0.5, abs=0.05)
  trigrams = {}  # where each 3 tokens occur: candidates for the document of a negative B
  for e, doc in enumerate(docs):
    for i in range(len(doc) - 2):
      trigrams.setdefault(tuple(doc[i:i + 3]), set()).add(e)
  for d, row in out:
    a, b = sides(objective, row)
    start_a, start_b = contains(docs[d], a), contains(docs[d], b)
    if row["nsp_labels"] == 0:  # B continues A in the same document
      assert start_b >= start_a + len(a) > 0
    else:  # B is a piece of an earlier document, not of this one
      assert start_b < 0 and len(b) >= 3
      assert any(contains(docs[e], b) >= 0 for e in trigrams[tuple(b[:3])] if e < d)


def test_without_nsp_b_always_follows_and_nsp_has_no_weight(tokenizer):
  docs = synthetic_documents(tokenizer, 40, seed=1)
  objective = make(tokenizer, next_sentence_prediction=False)
  for d, row in run(objective, docs):
    a, b = sides(objective, row)
    assert row["nsp_labels"] == 0 and row["nsp_weights"] == 0.0
    assert contains(docs[d], b) >= contains(docs[d], a) + len(a) > 0


def test_truncate_seq_pair_trims_the_longer_side():
  rng = np.random.default_rng(0)
  a, b = mlm_nsp.truncate_seq_pair(np.arange(10), np.arange(100, 103), 8, rng)
  assert len(a) == 5 and b.tolist() == [100, 101, 102]
  assert contains(np.arange(10), a) >= 0
  a, b = mlm_nsp.truncate_seq_pair(np.arange(30), np.arange(100, 130), 9, rng)
  assert (len(a), len(b)) == (5, 4)


def test_long_segments_are_truncated_to_fill_rows(tokenizer):
  # One 500-token "sentence" per document: split in half for positives, trimmed to fit.
  rng = np.random.default_rng(0)
  docs = [rng.integers(300, 500, 500).astype(np.int32) for _ in range(6)]
  out = run(make(tokenizer), docs)
  assert len(out) == 6
  assert all(r["segment_ids"].sum() == SEQ_LEN for _, r in out)


def test_whole_word_masking_selects_every_piece_of_a_word(tokenizer):
  docs = synthetic_documents(tokenizer, 150, seed=2)
  objective = make(tokenizer, whole_word_masking=True)
  maskable = masked = 0
  for _, row in run(objective, docs):
    n = int(row["segment_ids"].sum())
    b_start = int(np.argmax(row["token_types"]))
    for lo, hi in ((1, b_start - 1), (b_start, n - 1)):
      ids, weights = unmasked(row)[lo:hi], row["weights"][lo:hi]
      starts = objective.word_starts(ids)
      starts[0] = True
      for word in np.split(weights, np.flatnonzero(starts)[1:]):
        assert word.min() == word.max()  # all pieces of a word or none
      maskable += hi - lo
      masked += weights.sum()
  assert masked / maskable == pytest.approx(0.15, abs=0.02)


def test_words_in_code_and_multibyte_text(tokenizer):
  objective = make(tokenizer)
  text = "def foo(x):\n    return é"
  ids = np.array(tokenizer.encode(text))
  starts = objective.word_starts(ids)
  words = [tokenizer.decode(w) for w in np.split(ids, np.flatnonzero(starts)[1:] if starts[0]
                                                    else np.flatnonzero(starts))]
  assert "".join(words) == text
  assert " foo(x):" in words and "é" in words and "\n" in words and "return" in words


def test_segments_are_lines_and_sentences(tokenizer):
  objective = make(tokenizer)
  text = "First one. Second one! x = a.b\n    y = 2\nlast"
  segments = [tokenizer.decode(s) for s in objective.segments(np.array(tokenizer.encode(text)))]
  assert segments == ["First one.", " Second one!", " x = a.b\n", "    y = 2\n", "last"]


def test_config_mistakes(tokenizer):
  with pytest.raises(ConfigError, match="mask_rate must be in"):
    make(tokenizer, mask_rate=1.5)
  with pytest.raises(ConfigError, match="too short"):
    mlm_nsp.MaskedLM(tokenizer, 4, mask_rate=0.15, whole_word_masking=False,
                     next_sentence_prediction=True, seed=0)
