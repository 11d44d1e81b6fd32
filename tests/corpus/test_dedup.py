"""Deduplication end to end through datatrove's LocalPipelineExecutor on a planted corpus: exact
copies (case and whitespace changed), near-duplicate pairs at known word 5-gram Jaccard
similarities, boilerplate lines; two input ranks, as the prep's stages run them."""

import json
import os
import random
import shutil

import numpy as np
import pytest
import xxhash
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import MinhashDedupSignature
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.text import simplify_text

from roots_jax.corpus import dedup
from roots_jax.errors import ConfigError, DataError

WORDS_PER_LINE = 12
LENGTH = 204  # words of a near-duplicate pair's documents: 200 5-grams
BOILERPLATE = "Copyright (c) 2001 Python Software Foundation; All Rights Reserved"  # 66 chars
RARE = "This line is shared by a handful of documents only, not boilerplate"  # 5 documents
LATE = "Licensed under the Apache License, Version 2.0 (the License) here"
TARGETS = (0.95, 0.9, 0.8, 0.7, 0.5, 0.3)
PAIRS_PER_TARGET = 8


def _lines(words: list[str]) -> str:
  return "\n".join(" ".join(words[i:i + WORDS_PER_LINE]) for i in range(0, len(words), WORDS_PER_LINE))


def shingles(text: str) -> set[tuple[str, ...]]:
  words = text.lower().split()
  return {tuple(words[i:i + 5]) for i in range(len(words) - 4)}


def jaccard(a: str, b: str) -> float:
  sa, sb = shingles(a), shingles(b)
  return len(sa & sb) / len(sa | sb)


def planted_corpus():
  """(documents in corpus order, facts): ids are d0000...; the order interleaves every kind."""
  rng = random.Random(0)
  vocab = sorted({"".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9)))
                  for _ in range(6000)})

  def words(n):
    return rng.choices(vocab, k=n)

  docs, facts = [], {"exact": [], "near": [], "unique": [], "boilerplate": [], "rare": [], "late": []}

  def add(text, kind=None):
    doc_id = f"d{len(docs):04d}"
    docs.append({"id": doc_id, "text": text, "metadata": {"language": "en"}})
    if kind:
      facts[kind].append(doc_id)
    return doc_id

  for _ in range(150):  # unique documents, some with a boilerplate or rare line
    add(_lines(words(rng.randint(30, 150))), "unique")
  for i in range(0, 150, 10):  # 15 documents with the boilerplate line, some twice
    doc = docs[i]
    lines = doc["text"].split("\n")
    lines.insert(1, BOILERPLATE)
    if i % 20 == 0:
      lines.append(BOILERPLATE.replace("2001", "2007"))  # the same line once normalised
    doc["text"] = "\n".join(lines)
    facts["boilerplate"].append(doc["id"])
  for i in range(5, 30, 5):
    docs[i]["text"] += "\n" + RARE
    facts["rare"].append(docs[i]["id"])
  for i in range(10):  # exact copies: one, two or three of each, re-cased and re-spaced
    original = add(_lines(words(80)))
    text = docs[-1]["text"]
    for copy in range(1 + i % 3):
      variant = text.upper() if copy % 2 == 0 else "  " + text.replace(" ", "   \t") + "\n\n"
      facts["exact"].append((add(variant), original))
  for target in TARGETS:  # near pairs: a shared prefix of p words, then distinct tails
    shared = round(target * 2 * (LENGTH - 4) / (1 + target)) + 4
    for _ in range(PAIRS_PER_TARGET):
      prefix = words(shared)
      a = add(_lines(prefix + words(LENGTH - shared)))
      b = add(_lines(prefix + words(LENGTH - shared)))
      facts["near"].append((b, a, jaccard(docs[-2]["text"], docs[-1]["text"])))
  # A removed near copy is the first with LATE: its line is kept by the next document instead.
  base = add(_lines(words(LENGTH)))
  copy = add(docs[-1]["text"] + "\n" + LATE)
  facts["near"].append((copy, base, jaccard(docs[-2]["text"], docs[-1]["text"])))
  facts["late"].append(copy)
  for _ in range(11):
    facts["late"].append(add(_lines(words(40)) + "\n" + LATE))
  facts["only_boilerplate"] = add(BOILERPLATE + "\n" + LATE + "\n")
  facts["docs"] = {d["id"]: d["text"] for d in docs}
  return docs, facts


def run_stages(root: str, docs: list[dict], cfg: dedup.DedupConfig) -> None:
  """The prep's chain: input -> filtered (2 tasks), signatures, middle stages, final."""
  os.makedirs(os.path.join(root, "input"))
  for rank in range(2):
    with open(os.path.join(root, "input", f"{rank:05d}.jsonl"), "w") as f:
      for doc in docs[rank * len(docs) // 2:(rank + 1) * len(docs) // 2]:
        f.write(json.dumps(doc) + "\n")
  d, report = os.path.join(root, "dedup"), os.path.join(root, "report")
  filtered = os.path.join(root, "filtered")
  stages = [("filter", [JsonlReader(os.path.join(root, "input")),
                        JsonlWriter(filtered, output_filename="${rank}.jsonl.gz")], 2),
            ("signatures", [JsonlReader(filtered), *dedup.signature_steps(cfg, d)], 2),
            *dedup.middle_stages(cfg, d),
            ("final", [JsonlReader(filtered), *dedup.filter_steps(cfg, d, report),
                       JsonlWriter(os.path.join(root, "out"), output_filename="${rank}.jsonl",
                                   compression=None)], 2)]
  for name, pipeline, tasks in stages:
    LocalPipelineExecutor(pipeline, tasks=tasks, workers=1,
                          logging_dir=os.path.join(root, "logs", name)).run()


def outputs(root: str) -> dict[str, str]:
  texts = {}
  for name in sorted(os.listdir(os.path.join(root, "out"))):
    with open(os.path.join(root, "out", name)) as f:
      for line in f:
        doc = json.loads(line)
        texts[doc["id"]] = doc["text"]
  return texts


def parts(root: str, step: str) -> list[dict]:
  directory = os.path.join(root, "report", "parts", step)
  return [json.load(open(os.path.join(directory, n))) for n in sorted(os.listdir(directory))]


def snapshot(root: str) -> dict[str, bytes]:
  """Every file the stages wrote but the gzip intermediates (whose header holds a time)."""
  files = {}
  for directory, _, names in os.walk(root):
    for n in names:
      if not n.endswith(".gz") and "logs" not in directory:
        path = os.path.join(directory, n)
        files[os.path.relpath(path, root)] = open(path, "rb").read()
  return files


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
  """One run's folder, the files of an earlier run in the same folder, and the planted facts."""
  docs, facts = planted_corpus()
  root = str(tmp_path_factory.mktemp("run"))
  run_stages(root, docs, dedup.DedupConfig())
  first = snapshot(root)
  shutil.rmtree(root)
  run_stages(root, docs, dedup.DedupConfig())
  return (root, first), facts


def test_exact_duplicates_removed_and_recorded_with_their_kept_twin(planted):
  (root, _), facts = planted
  out = outputs(root)
  records = [json.loads(line) for line in open(os.path.join(root, "dedup", "duplicates.jsonl"))]
  exact = {r["removed"]: r for r in records if r["kind"] == "exact"}
  assert {k: (r["kept"], r["similarity"]) for k, r in exact.items()} == {
      copy: (original, 1.0) for copy, original in facts["exact"]}
  assert not set(exact) & set(out)
  assert all(original in out for _, original in facts["exact"])
  # Groups of 2, 3 and 4: the signal holds each member's group size.
  sizes = {}
  for _, original in facts["exact"]:
    sizes[original] = sizes.get(original, 1) + 1
  expected = sorted(n for n in sizes.values() for _ in range(n))
  got = sorted(v for p in parts(root, "exact_dedup")
               for v in p["signals"].get("duplicate_cluster_size", {}).get("en", []))
  assert got == expected
  removed = sum(p["languages"]["en"]["removed"].get("exact_duplicate", 0)
                for p in parts(root, "exact_dedup"))
  assert removed == len(facts["exact"]) == 19


def test_near_duplicates_recall_and_precision_by_jaccard(planted):
  (root, _), facts = planted
  out = outputs(root)
  records = {r["removed"]: r for r in map(json.loads, open(os.path.join(root, "dedup",
                                                                         "duplicates.jsonl")))
             if r["kind"] == "near"}
  found = {}
  for later, first, true_j in facts["near"]:
    assert first in out  # the first of a pair is never the one removed
    hit = later in records
    assert hit == (later not in out)
    if hit:
      assert records[later]["kept"] == first
      assert abs(records[later]["similarity"] - true_j) < 0.15  # 112 hashes: sd <= 0.05
    found.setdefault(min(TARGETS, key=lambda t: abs(t - true_j)), []).append(hit)
  recall = {j: sum(hits) / len(hits) for j, hits in found.items()}
  # 14 bands x 8 rows: P(candidate) = 1 - (1 - J^8)^14 = 1.0, 0.9996, 0.92, 0.47, 0.05, 0.001
  # for J = 0.95 ... 0.3; measured on these pairs: 1, 1, 1, 3/8, 0, 0.
  assert recall[0.95] == recall[0.9] == 1.0
  assert recall[0.8] >= 0.75
  assert 0.0 < recall[0.7] < 1.0
  assert recall[0.5] <= 0.25 and recall[0.3] == 0.0
  # Precision 1.0: every near removal is the later document of a planted pair.
  assert set(records) <= {later for later, _, _ in facts["near"]}
  assert all(u in out for u in facts["unique"])


def test_recorded_similarity_is_the_signatures_agreement(planted):
  """The similarity gathered from the band files equals one recomputed from the two texts."""
  (root, _), facts = planted
  records = [r for r in map(json.loads, open(os.path.join(root, "dedup", "duplicates.jsonl")))
             if r["kind"] == "near"]
  minhash = MinhashDedupSignature(os.path.join(root, "scratch"), dedup.DedupConfig().minhash)

  def signature(text):
    words = simplify_text(text).split()
    shingles = [xxhash.xxh64_intdigest(" ".join(words[i:i + 5]).encode())
                for i in range(len(words) - 4)]
    return np.concatenate(minhash.get_signature(np.array(shingles, np.uint64).reshape(-1, 1)))

  for r in records:
    a, b = (signature(facts["docs"][i]) for i in (r["removed"], r["kept"]))
    assert r["similarity"] == pytest.approx(float(np.mean(a == b)))


def test_boilerplate_lines_removed_except_in_the_first_document(planted):
  (root, _), facts = planted
  out = outputs(root)
  first, *rest = facts["boilerplate"]
  assert out[first] == facts["docs"][first]
  for doc_id in rest:
    expected = "".join(line for line in facts["docs"][doc_id].splitlines(keepends=True)
                       if "Python Software Foundation" not in line)
    assert out[doc_id] == expected
  for doc_id in facts["rare"]:  # in 5 documents, under line_min_docs = 10
    assert RARE in out[doc_id]
  removed_copy, keeper, *others = facts["late"]
  assert removed_copy not in out and out[keeper] == facts["docs"][keeper]
  assert all(LATE not in out[o] for o in others)
  assert facts["only_boilerplate"] not in out
  # By hand: 14 documents lose the line (5 of them twice, at i % 20 == 0 after the first), 10
  # lose LATE; the last document both.
  counts = {}
  for p in parts(root, "lines"):
    for k, v in p["counts"].items():
      counts[k] = counts.get(k, 0) + v
  doubled = sum(1 for d in rest if int(d[1:]) % 20 == 0)
  assert counts["lines_removed"] == len(rest) + doubled + len(others) + 2
  removed = sorted(v for p in parts(root, "lines") for v in p["signals"]["lines_removed"]["en"]
                   if v)
  assert removed == sorted([1] * (len(rest) - doubled) + [2] * doubled + [1] * len(others) + [2])
  reasons = sum(p["languages"]["en"]["removed"].get("boilerplate_only", 0)
                for p in parts(root, "lines"))
  assert reasons == 1


def test_unique_documents_untouched(planted):
  (root, _), facts = planted
  out = outputs(root)
  touched = set(facts["boilerplate"]) - {facts["boilerplate"][0]}
  for doc_id in facts["unique"]:
    if doc_id not in touched:
      assert out[doc_id] == facts["docs"][doc_id]


def test_two_runs_are_byte_identical(planted):
  (root, first), _ = planted
  second = snapshot(root)
  assert "dedup/duplicates.jsonl" in second and "report/parts/lines/00001.json" in second
  assert first.keys() == second.keys()
  assert [n for n in first if first[n] != second[n]] == []


def test_final_stage_reading_other_documents_is_refused(tmp_path):
  """A final stage whose rank does not hold the documents its signature rank held."""
  docs, _ = planted_corpus()
  cfg = dedup.DedupConfig(near=False, lines=False)
  run_stages(str(tmp_path), docs, cfg)
  reader = JsonlReader(os.path.join(tmp_path, "filtered"))
  filters = dedup.filter_steps(cfg, str(tmp_path / "dedup"), str(tmp_path / "report2"))
  with pytest.raises(DataError, match="never reached the exact_dedup step"):
    list(filters[0].run(reader.run(rank=0, world_size=2), rank=1, world_size=2))


def test_config_errors():
  with pytest.raises(ConfigError, match="line_min_docs"):
    dedup.DedupConfig(line_min_docs=1)
  with pytest.raises(ConfigError, match="tokenizer_language"):
    dedup.DedupConfig(tokenizer_language="xx")
