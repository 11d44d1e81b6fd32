"""Decontamination: 13-gram overlap on normalised words drops a document, 12 shared words do
not; the hashes match a plain-Python reference; the index and the evaluation readers."""

import hashlib
import json
import os
import pickle

import numpy as np
import pytest
from datatrove.data import Document

from roots_jax.corpus import decontaminate
from roots_jax.data import builtin_tasks
from roots_jax.data import sources
from roots_jax.errors import DataError

# 21 words: nine 13-grams.
EVAL = ("The quick brown fox jumps over the lazy dog while seven wizards quietly judge boxing "
        "matches near the old river bank.")
# Words 1-13 of EVAL, in other case and punctuation.
SHARES_13 = ('Our notes: THE Quick, brown FOX -- jumps over the "lazy" dog; while SEVEN wizards '
             "quietly! End of notes.")
# Words 1-12 only.
SHARES_12 = "Our notes: the quick brown fox jumps over the lazy dog while seven wizards. End."
# Words 1-14 (two 13-grams), and words 1-13 twice (one distinct 13-gram).
SHARES_14 = "the quick brown fox jumps over the lazy dog while seven wizards quietly judge"
TWICE_13 = ("the quick brown fox jumps over the lazy dog while seven wizards quietly, and again "
            "the quick brown fox jumps over the lazy dog while seven wizards quietly")


def reference_hashes(text, n):
  """The module docstring's hash, one n-gram at a time with Python integers."""
  ws = decontaminate.words(text)
  word = [int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
          for w in ws]
  out = []
  for j in range(len(ws) - n + 1):
    h = 0
    for x in word[j:j + n]:
      h = (h * 0x9E3779B97F4A7C15 + x) % 2**64
    out.append(h)
  return out


def test_words_and_hashes():
  assert decontaminate.words("Don't STOP: the END. -- «très» 3.5%") == [
      "dont", "stop", "the", "end", "très", "35"]
  assert decontaminate.ngram_hashes(EVAL).tolist() == reference_hashes(EVAL, 13)
  assert len(decontaminate.ngram_hashes(EVAL)) == 9
  assert decontaminate.ngram_hashes(EVAL, 20).tolist() == reference_hashes(EVAL, 20)
  assert len(decontaminate.ngram_hashes(SHARES_12, 13)) == 3  # 15 words
  assert len(decontaminate.ngram_hashes("eleven words are too few to make one thirteen gram ok",
                                        13)) == 0
  # Case and punctuation do not count.
  assert (decontaminate.ngram_hashes(SHARES_13)[2] == decontaminate.ngram_hashes(EVAL)[0])


def test_index_round_trip(tmp_path):
  path = str(tmp_path / "sub" / "index.npy")
  # A repeated text adds nothing, nor does one under 13 words.
  count = decontaminate.build_index([EVAL, EVAL.upper(), "too short to count"], path)
  assert count == 9
  index = np.load(path)
  assert index.dtype == np.uint64
  assert index.tolist() == sorted(set(reference_hashes(EVAL, 13)))
  assert decontaminate.build_index([EVAL], path, n=5) == 17
  with pytest.raises(DataError, match="no evaluation text has 13 words"):
    decontaminate.build_index(["too short"], path)


@pytest.mark.parametrize("text, min_matches, matches, dropped", [
    (SHARES_13, 1, 1, True),
    (SHARES_12, 1, 0, False),
    (SHARES_14, 2, 2, True),
    (SHARES_14, 3, 2, False),
    (TWICE_13, 2, 1, False),
])
def test_step(tmp_path, text, min_matches, matches, dropped):
  index = str(tmp_path / "index.npy")
  decontaminate.build_index([EVAL], index)
  step = decontaminate.Decontaminator(str(tmp_path), index_path=index, min_matches=min_matches)
  step = pickle.loads(pickle.dumps(step))
  docs = [Document(text, "a", metadata={"language": "en"}),
          Document("an unrelated document " * 10, "b", metadata={"language": "en"})]
  out = list(step.run(iter(docs)))
  assert [d.id for d in out] == (["b"] if dropped else ["a", "b"])
  assert docs[0].metadata["signals"] == {"contaminated_ngrams": matches}
  with open(os.path.join(tmp_path, "parts", "decontaminate", "00000.json")) as f:
    part = json.load(f)
  assert part["signals"] == {"contaminated_ngrams": {"en": [matches, 0]}}
  assert part["thresholds"] == {"contaminated_ngrams": {"en": [None, min_matches - 1]}}
  assert part["languages"]["en"]["removed"] == ({"contaminated": 1} if dropped else {})


def test_missing_index(tmp_path):
  step = decontaminate.Decontaminator(str(tmp_path), index_path=str(tmp_path / "none.npy"))
  with pytest.raises(DataError, match="build_index first"):
    step.matches(EVAL)
  np.save(tmp_path / "floats.npy", np.ones(3))
  step = decontaminate.Decontaminator(str(tmp_path), index_path=str(tmp_path / "floats.npy"))
  with pytest.raises(DataError, match="is no decontamination index"):
    step.matches(EVAL)


def test_file_eval_texts(tmp_path):
  (tmp_path / "qa.jsonl").write_text(
      '{"question": "Who?", "answers": ["Ada", "Grace"], "id": 1}\n'
      '{"question": "Why?", "answers": [], "id": 2}\n')
  (tmp_path / "nli.csv").write_text("premise,hypothesis\nA cat sat.,A cat rests.\n")
  (tmp_path / "notes.txt").write_text("line one\n\nline two\n")
  texts = list(decontaminate.file_eval_texts(str(tmp_path / "qa.jsonl"), ("question", "answers")))
  assert texts == ["Who?", "Ada", "Grace", "Why?"]
  texts = list(decontaminate.file_eval_texts(
      f"{tmp_path}/nli.csv,{tmp_path}/notes.txt", ("premise", "hypothesis")))
  assert texts == ["A cat sat.", "A cat rests.", "line one\n\nline two\n"]
  with pytest.raises(DataError, match="has no field 'answer'.*set eval.fields"):
    list(decontaminate.file_eval_texts(str(tmp_path / "qa.jsonl"), ("answer",),
                                       key="eval.fields"))
  (tmp_path / "x.parquet").write_bytes(b"PAR1")
  with pytest.raises(DataError, match="give .txt, .jsonl, .csv or .tsv"):
    list(decontaminate.file_eval_texts(str(tmp_path / "x.parquet")))


def test_builtin_eval_texts(tmp_path):
  texts = list(decontaminate.builtin_eval_texts())
  expected = [v for name in builtin_tasks.KINDS
              for e in builtin_tasks.load_examples(name, "test") for v in e.values()
              if isinstance(v, str)]
  assert texts == expected and len(texts) > 100
  assert all(isinstance(t, str) for t in texts)
  # The tasks are made of the stdlib's test modules: each such module contaminates.
  index = str(tmp_path / "index.npy")
  decontaminate.build_index(texts, index)
  step = decontaminate.Decontaminator(str(tmp_path), index_path=index)
  root, _ = sources.builtin_files()
  example = builtin_tasks.load_examples("summary", "test")[0]
  function = next(f for f in builtin_tasks.functions() if f.code == example["text"])
  with open(os.path.join(root, function.module), encoding="utf-8") as f:
    assert step.matches(f.read()) > 0
