"""The preparation report (roots_jax.corpus.report): parts of two steps written by two tasks
each, merged into exact numbers, summarized, drawn and rendered with escaped samples."""

import html
import json
import math
import sys

import numpy as np
import pytest
from datatrove.data import Document

from roots_jax.corpus import report
from roots_jax.corpus.steps import MAX_SAMPLES, Record, Step, language
from roots_jax.errors import ConfigError, DataError

SCRIPT = "<script>alert(1)</script>"
THRESHOLDS = {"confidence": (0.5, None), "perplexity": (None, 1000.0)}


class Scripted(Step):
  """Does to each document what its metadata says: sets its language, records its signals
  (with THRESHOLDS), removes it for the reason given."""

  def __init__(self, report_dir: str, name: str):
    super().__init__(report_dir)
    self.name = name

  def apply(self, doc, record):
    if "to" in doc.metadata:
      doc.metadata["language"] = doc.metadata["to"]
    for signal, value in doc.metadata["signals"].items():
      record.signal(signal, language(doc), value, THRESHOLDS[signal])
    for name, n in doc.metadata.get("counts", {}).items():
      record.count(name, n)
    return doc.metadata.get("remove")


def run(report_dir, name, rank, docs):
  """docs: (id, text, metadata) of one task."""
  step = Scripted(str(report_dir), name)
  docs = (Document(text, id_, metadata=dict(meta)) for id_, text, meta in docs)
  return list(step.run(docs, rank))


# Bytes: "hello world" 11, "bonjour é" 10, "??" 2, "good morning" 12, SCRIPT 25.
LANGUAGE = {
    0: [("a", "hello world", {"to": "en", "signals": {"confidence": 0.9}}),
        ("b", "bonjour é", {"to": "fr", "signals": {"confidence": 0.8}}),
        ("c", "??", {"to": "en", "signals": {"confidence": 0.3}, "remove": "low_confidence"})],
    1: [("d", "good morning", {"to": "en", "signals": {"confidence": 0.95}}),
        ("e", SCRIPT, {"to": "fr", "signals": {"confidence": 0.1}, "remove": "low_confidence"})]}
QUALITY = {
    0: [("a", "hello world", {"language": "en", "signals": {"perplexity": 20.0},
                              "counts": {"rewritten": 2}}),
        ("b", "bonjour é", {"language": "fr", "signals": {"perplexity": 300.0}})],
    1: [("d", "good morning", {"language": "en", "signals": {"perplexity": 40000.0},
                               "remove": "perplexity", "counts": {"rewritten": 1}})]}
EXTRA = {"timings": {"language": 1.5, "quality": 2.25},
         "config": {"quality": {"max_perplexity": 1000.0}}}


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
  root = tmp_path_factory.mktemp("prep")
  for rank in (1, 0):  # the order tasks finish in does not matter
    run(root, "language", rank, LANGUAGE[rank])
    run(root, "quality", rank, QUALITY[rank])
  return root


@pytest.fixture(scope="module")
def built(prep):
  pytest.importorskip("matplotlib")
  out = prep / "out"
  return out, report.build(str(prep), str(out), ["language", "quality"], EXTRA)


def test_merge_sums_the_tasks_parts(prep):
  merged = report.merge_parts(str(prep), "language")
  assert merged["tasks"] == 2
  # The language step's input counts under the language it identified.
  assert merged["languages"] == {
      "en": {"docs_in": 3, "bytes_in": 25, "docs_out": 2, "bytes_out": 23,
             "removed": {"low_confidence": 1}},
      "fr": {"docs_in": 2, "bytes_in": 35, "docs_out": 1, "bytes_out": 10,
             "removed": {"low_confidence": 1}}}
  assert merged["signals"] == {"confidence": {"en": [0.9, 0.3, 0.95], "fr": [0.8, 0.1]}}
  assert merged["thresholds"] == {"confidence": {"en": [0.5, None], "fr": [0.5, None]}}
  assert [(s["id"], s["language"], s["text"], s["signals"])
          for s in merged["samples"]["low_confidence"]] == [
              ("c", "en", "??", {"confidence": 0.3}), ("e", "fr", SCRIPT, {"confidence": 0.1})]
  quality = report.merge_parts(str(prep), "quality")
  assert quality["counts"] == {"rewritten": 3}
  assert quality["languages"]["en"] == {"docs_in": 2, "bytes_in": 23, "docs_out": 1,
                                        "bytes_out": 11, "removed": {"perplexity": 1}}


def test_merge_caps_values_and_samples_in_rank_order(tmp_path, monkeypatch):
  monkeypatch.setattr(report, "MAX_MERGED_VALUES", 3)
  for rank, n in ((0, 2), (1, 4)):
    record = Record("s", rank)
    for i in range(n):
      doc = Document(f"{rank}-{i}", f"{rank}-{i}", metadata={"language": "en"})
      record.came_in("en", 3)
      record.removed(doc, "short", {"x": math.inf})
      record.signal("x", "en", 10 * rank + i, (-math.inf, 5.0))
    record.write(str(tmp_path))
  merged = report.merge_parts(str(tmp_path), "s")
  assert merged["signals"]["x"]["en"] == [0.0, 1.0, 10.0]
  assert [s["id"] for s in merged["samples"]["short"]] == ["0-0", "0-1", "1-0", "1-1", "1-2"]
  assert len(merged["samples"]["short"]) == MAX_SAMPLES
  # Strict JSON: an infinite threshold is an open side, an infinite sample value is text.
  assert merged["thresholds"]["x"]["en"] == [None, 5.0]
  assert merged["samples"]["short"][0]["signals"] == {"x": "inf"}
  assert merged["languages"]["en"]["removed"] == {"short": 6}


def test_signal_summaries_and_histograms(built):
  _, rep = built
  steps = {entry["step"]: entry for entry in rep["steps"]}
  confidence = steps["language"]["signals"]["confidence"]
  en = confidence["en"]
  assert (en["count"], en["nonfinite"], en["min"], en["max"]) == (3, 0, 0.3, 0.95)
  assert en["mean"] == pytest.approx(2.15 / 3) and en["p50"] == pytest.approx(0.9)
  assert en["p10"] == pytest.approx(0.3 + 0.2 * 0.6) and en["p90"] == pytest.approx(0.94)
  edges = np.asarray(en["histogram"]["edges"])
  assert en["histogram"]["scale"] == "linear" and len(edges) == report.HISTOGRAM_BINS + 1
  assert (edges[0], edges[-1]) == (0.1, 0.95)  # shared by the languages: fr's 0.1 is the lowest
  assert confidence["fr"]["histogram"]["edges"] == en["histogram"]["edges"]
  for summary in confidence.values():
    assert sum(summary["histogram"]["counts"]) == summary["count"]
  assert confidence["fr"]["histogram"]["counts"][0] == 1  # 0.1, the left edge
  assert confidence["fr"]["histogram"]["counts"][-1] == 0

  # Perplexity spans 20..40000: log-spaced bins; 300 lands in bin floor(40 log(15) / log(2000)).
  perplexity = steps["quality"]["signals"]["perplexity"]
  assert perplexity["en"]["histogram"]["scale"] == "log"
  counts_en = perplexity["en"]["histogram"]["counts"]
  counts_fr = perplexity["fr"]["histogram"]["counts"]
  assert counts_en[0] == 1 and counts_en[-1] == 1 and sum(counts_en) == 2
  assert counts_fr.index(1) == math.floor(40 * math.log(15) / math.log(2000)) == 14
  assert sum(counts_fr) == 1
  assert perplexity["en"]["p10"] == pytest.approx(20 + 0.1 * 39980)
  assert steps["quality"]["thresholds"] == {"perplexity": {"en": [None, 1000.0],
                                                           "fr": [None, 1000.0]}}


def test_nonfinite_values_are_counted_apart():
  edges = np.array([0.0, 1.0, 2.0])
  summary = report._signal_summary([1.5, math.inf, math.nan], edges, "linear")
  assert (summary["count"], summary["nonfinite"], summary["mean"]) == (1, 2, 1.5)
  assert summary["histogram"]["counts"] == [0, 1]


def test_steps_and_summary(built):
  out, rep = built
  language, quality = rep["steps"]
  assert language["totals"] == {"docs_in": 5, "bytes_in": 60, "docs_out": 3, "bytes_out": 33}
  assert language["removed"] == {"low_confidence": 2}
  assert quality["totals"] == {"docs_in": 3, "bytes_in": 33, "docs_out": 2, "bytes_out": 21}
  assert quality["counts"] == {"rewritten": 3}
  summary = rep["summary"]
  # Languages count from the language step's input, totals from the first step's.
  assert summary["languages_from"] == "language"
  assert summary["languages"] == {
      "en": {"docs_in": 3, "bytes_in": 25, "docs_out": 1, "bytes_out": 11, "docs_kept": 1 / 3,
             "bytes_kept": 11 / 25},
      "fr": {"docs_in": 2, "bytes_in": 35, "docs_out": 1, "bytes_out": 10, "docs_kept": 0.5,
             "bytes_kept": 10 / 35}}
  assert summary["total"] == {"docs_in": 5, "bytes_in": 60, "docs_out": 2, "bytes_out": 21,
                              "docs_kept": 0.4, "bytes_kept": 0.35}
  assert rep["timings"] == EXTRA["timings"] and rep["notes"] == []
  with open(out / "report.json") as f:
    assert json.load(f) == rep
  assert set(rep["steps"][1]["signals"]["perplexity"]["en"]) == {
      "count", "nonfinite", "mean", "p10", "p50", "p90", "min", "max", "histogram"}


def test_histograms_are_png(built):
  out, rep = built
  for entry, signal in ((rep["steps"][0], "confidence"), (rep["steps"][1], "perplexity")):
    name = entry["plots"][signal]
    assert name == f"plots/{entry['step']}_{signal}.png"
    assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_escapes_samples_and_shows_everything(built):
  out, _ = built
  page = (out / "report.html").read_text(encoding="utf-8")
  assert "<script" not in page
  assert html.escape(SCRIPT) in page
  assert 'src="plots/quality_perplexity.png"' in page
  assert "fr): confidence = 0.1" in page  # the removed sample with its signal
  assert ("<tr><td>fr</td><td>2</td><td>0</td><td>0.45</td><td>0.1</td><td>0.17</td><td>0.45</td>"
          "<td>0.73</td><td>0.8</td><td>&gt;= 0.5</td></tr>") in page  # confidence's statistics
  assert "<td>&lt;= 1000</td>" in page  # perplexity's threshold
  assert "<td>quality.max_perplexity</td><td>1000.0</td>" in page  # the extra's config
  assert "<th>removed: low_confidence</th>" in page
  assert '<tr class="total"><td>total</td><td>5</td><td>2</td><td>40.0%</td>' in page


def test_format_summary(built):
  lines = report.format_summary(built[1]).splitlines()
  assert lines[0].split() == ["step", "documents", "in", "->", "out", "kept", "MB", "in", "->",
                              "out", "removed", "(most)"]
  assert lines[1].split() == ["language", "5", "->", "3", "60.0%", "0.0", "->", "0.0",
                              "low_confidence", "2"]
  assert lines[2].split() == ["quality", "3", "->", "2", "66.7%", "0.0", "->", "0.0",
                              "perplexity", "1"]
  assert lines[3].split() == ["all", "steps", "5", "->", "2", "40.0%", "0.0", "->", "0.0"]
  assert len(lines) == 4


def test_without_matplotlib_the_rest_is_written(prep, tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
  rep = report.build(str(prep), str(tmp_path), ["language", "quality"], {})
  assert rep["notes"] == [report.NO_MATPLOTLIB]
  assert all(entry["plots"] == {} for entry in rep["steps"])
  assert not (tmp_path / "plots").exists()
  page = (tmp_path / "report.html").read_text(encoding="utf-8")
  assert report.NO_MATPLOTLIB in page and "<img" not in page
  assert rep["summary"]["total"]["docs_out"] == 2
  assert report.format_summary(rep).splitlines()[-1] == report.NO_MATPLOTLIB


def test_user_mistakes(prep, tmp_path):
  with pytest.raises(DataError, match="'dedup' has not run"):
    report.build(str(prep), str(tmp_path), ["language", "dedup"], {})
  with pytest.raises(ConfigError):
    report.build(str(prep), str(tmp_path), [], {})
  (tmp_path / "parts" / "s").mkdir(parents=True)
  (tmp_path / "parts" / "s" / "00000.json").write_text("{")
  with pytest.raises(DataError, match="unreadable report part"):
    report.merge_parts(str(tmp_path), "s")


def test_summary_of_the_language_step_alone(prep):
  entry = report._step_entry(report.merge_parts(str(prep), "language"))
  summary = report.summarize([entry])
  assert summary["languages_from"] == "language"
  assert summary["languages"]["en"] == {"docs_in": 3, "bytes_in": 25, "docs_out": 2,
                                        "bytes_out": 23, "docs_kept": 2 / 3,
                                        "bytes_kept": 23 / 25}
  assert summary["total"]["docs_kept"] == 0.6
