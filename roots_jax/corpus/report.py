"""The preparation report: the steps' parts (roots_jax.corpus.steps) merged over tasks into
`report.json`, histograms of every signal as PNGs and one self-contained `report.html`, so a
user sees what each step and threshold did to each language before trusting the corpus.

  report = build(report_dir, out_dir, ["normalize", "language", "quality"], {"timings": {...}})
  print(format_summary(report))

report.json keeps summaries of the signals (count, mean, percentiles, histogram counts), never
the raw values. Per-language figures of the summary count from the input of the first step that
knows the documents' languages (the language step's own input counts under the languages it
identified; steps before it see "unknown"); the totals from the first step's input.
"""

import json
import logging
import math
import os
import re

import numpy as np

from roots_jax.corpus import report_html
from roots_jax.corpus.steps import MAX_SAMPLES, UNKNOWN, part_paths
from roots_jax.errors import ConfigError, DataError

log = logging.getLogger("roots_jax")

# Per signal and language: the values merged over tasks (in rank order) for the statistics.
MAX_MERGED_VALUES = 200_000
HISTOGRAM_BINS = 40
# A positive signal whose largest value is this many times its smallest (a perplexity: tens to
# tens of thousands) is binned and drawn on a log scale.
LOG_SCALE_RATIO = 100.0
# The languages a histogram draws: the ones with the most values.
PLOT_LANGUAGES = 8
TOP_REASONS = 3
NUMBERS = ("docs_in", "bytes_in", "docs_out", "bytes_out")
NO_MATPLOTLIB = "the histograms need matplotlib (pip install matplotlib): none were drawn"


def _read_part(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise DataError(f"{path}: unreadable report part ({e}): delete it and rerun its task") from e


def _add_counts(into: dict, counts: dict) -> None:
  for name, n in counts.items():
    into[name] = into.get(name, 0) + n


def _json_number(value):
  """A sample's signal value as strict JSON holds it: "inf" or "nan" as text."""
  return value if not isinstance(value, float) or math.isfinite(value) else str(value)


def merge_parts(report_dir: str, step: str) -> dict:
  """One step's parts summed over its tasks: the part's format (steps' docstring), without
  "rank" but with "tasks" (how many parts were merged); signal values concatenated in rank
  order up to MAX_MERGED_VALUES per language, the first MAX_SAMPLES samples per reason, each
  language's threshold from the first part that has one. Languages by documents in, most first."""
  paths = part_paths(report_dir, step)
  if not paths:
    raise DataError(f"no report parts in {os.path.join(report_dir, 'parts', step)}: step "
                    f"{step!r} has not run with this report_dir (run the prep first)")
  merged = {"step": step, "tasks": len(paths), "languages": {}, "signals": {}, "thresholds": {},
            "counts": {}, "samples": {}}
  for path in paths:
    part = _read_part(path)
    for lang, entry in part["languages"].items():
      into = merged["languages"].setdefault(lang, {**dict.fromkeys(NUMBERS, 0), "removed": {}})
      for key in NUMBERS:
        into[key] += entry[key]
      _add_counts(into["removed"], entry["removed"])
    for signal, by_language in part["signals"].items():
      for lang, values in by_language.items():
        kept = merged["signals"].setdefault(signal, {}).setdefault(lang, [])
        kept.extend(values[:MAX_MERGED_VALUES - len(kept)])
    for signal, by_language in part["thresholds"].items():
      for lang, threshold in by_language.items():  # an infinite side is an open one
        merged["thresholds"].setdefault(signal, {}).setdefault(
            lang, [v if v is not None and math.isfinite(v) else None for v in threshold])
    _add_counts(merged["counts"], part["counts"])
    for reason, samples in part["samples"].items():
      kept = merged["samples"].setdefault(reason, [])
      kept.extend({**sample, "signals": {name: _json_number(v) for name, v in
                                         sample["signals"].items()}}
                  for sample in samples[:MAX_SAMPLES - len(kept)])
  merged["languages"] = dict(sorted(merged["languages"].items(),
                                    key=lambda item: (-item[1]["docs_in"], item[0])))
  return merged


def _edges(values: np.ndarray) -> tuple[np.ndarray, str]:
  """Bins shared by every language of a signal (so their lines compare), log-spaced for a
  positive signal spanning orders of magnitude."""
  if not values.size:
    return np.array([0.0, 1.0]), "linear"
  low, high = float(values.min()), float(values.max())
  if low == high:
    return np.array([low - 0.5, high + 0.5]), "linear"
  if low > 0 and high / low >= LOG_SCALE_RATIO:
    edges = np.geomspace(low, high, HISTOGRAM_BINS + 1)
    edges[0], edges[-1] = low, high
    return edges, "log"
  return np.linspace(low, high, HISTOGRAM_BINS + 1), "linear"


def _signal_summary(values: list[float], edges: np.ndarray, scale: str) -> dict:
  array = np.asarray(values, dtype=np.float64)
  finite = array[np.isfinite(array)]
  counts, _ = np.histogram(finite, edges)
  summary = {"count": int(finite.size), "nonfinite": int(array.size - finite.size)}
  if finite.size:
    p10, p50, p90 = np.percentile(finite, [10, 50, 90])
    summary.update(mean=float(finite.mean()), p10=float(p10), p50=float(p50), p90=float(p90),
                   min=float(finite.min()), max=float(finite.max()))
  else:
    summary.update(dict.fromkeys(("mean", "p10", "p50", "p90", "min", "max")))
  summary["histogram"] = {"edges": edges.tolist(), "counts": counts.tolist(), "scale": scale}
  return summary


def _step_entry(merged: dict) -> dict:
  """A merged step as report.json holds it: totals, removals and signal summaries."""
  languages = merged["languages"]
  removed: dict[str, int] = {}
  for entry in languages.values():
    _add_counts(removed, entry["removed"])
  signals = {}
  for signal, by_language in merged["signals"].items():
    every = np.asarray([v for values in by_language.values() for v in values], dtype=np.float64)
    edges, scale = _edges(every[np.isfinite(every)])
    summaries = {lang: _signal_summary(values, edges, scale)
                 for lang, values in by_language.items()}
    signals[signal] = dict(sorted(summaries.items(), key=lambda item: -item[1]["count"]))
  return {"step": merged["step"], "tasks": merged["tasks"], "languages": languages,
          "totals": {key: sum(entry[key] for entry in languages.values()) for key in NUMBERS},
          "removed": dict(sorted(removed.items(), key=lambda item: -item[1])),
          "counts": merged["counts"], "signals": signals, "thresholds": merged["thresholds"],
          "samples": merged["samples"], "plots": {}}


def _share(part: int, whole: int) -> float | None:
  return part / whole if whole else None


def _in_out(docs_in, bytes_in, docs_out, bytes_out) -> dict:
  return {"docs_in": docs_in, "bytes_in": bytes_in, "docs_out": docs_out, "bytes_out": bytes_out,
          "docs_kept": _share(docs_out, docs_in), "bytes_kept": _share(bytes_out, bytes_in)}


def summarize(entries: list[dict]) -> dict:
  """Documents and bytes in (first step) and out (last step), per language and in total, with
  the share kept (None where nothing came in)."""
  first, last = entries[0], entries[-1]
  known = next((e for e in entries if any(lang != UNKNOWN and entry["docs_in"]
                                          for lang, entry in e["languages"].items())), first)
  nothing = dict.fromkeys(NUMBERS, 0)
  languages = {}
  for lang in {**known["languages"], **last["languages"]}:  # known's order, then the new ones
    came, went = known["languages"].get(lang, nothing), last["languages"].get(lang, nothing)
    languages[lang] = _in_out(came["docs_in"], came["bytes_in"], went["docs_out"],
                              went["bytes_out"])
  total = _in_out(first["totals"]["docs_in"], first["totals"]["bytes_in"],
                  last["totals"]["docs_out"], last["totals"]["bytes_out"])
  return {"languages_from": known["step"], "languages": languages, "total": total}


def _pyplot():
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return pyplot


def plot_name(step: str, signal: str) -> str:
  return "plots/" + re.sub(r"[^A-Za-z0-9_.-]", "_", f"{step}_{signal}") + ".png"


def _plot(plt, step: str, signal: str, summaries: dict, thresholds: dict, path: str) -> None:
  """One line per main language: the share of its documents per bin; its thresholds dashed."""
  fig, ax = plt.subplots(figsize=(7, 4))
  for lang, summary in list(summaries.items())[:PLOT_LANGUAGES]:
    if not summary["count"]:
      continue
    histogram = summary["histogram"]
    shares = np.asarray(histogram["counts"]) / summary["count"]
    line = ax.stairs(shares, histogram["edges"], label=f"{lang} ({summary['count']:,})")
    for value in thresholds.get(lang) or ():
      if value is not None:
        ax.axvline(value, color=line.get_edgecolor(), linestyle="--", linewidth=1)
  if next(iter(summaries.values()))["histogram"]["scale"] == "log":
    ax.set_xscale("log")
  ax.set_xlabel(signal + ("  (dashed: thresholds)" if thresholds else ""))
  ax.set_ylabel("share of the language's documents")
  ax.set_title(f"{step}: {signal}")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def build(report_dir: str, out_dir: str, steps: list[str], extra: dict) -> dict:
  """Merges the parts of `steps` (in pipeline order) under `report_dir` and writes report.json,
  plots/{step}_{signal}.png (with matplotlib) and report.html into `out_dir`; returns the report.
  `extra` (config, manifest, timings, duplicates ...) is added to the report's top level."""
  if not steps:
    raise ConfigError("the prep has no steps to report on: configure at least one step")
  entries = [_step_entry(merge_parts(report_dir, step)) for step in steps]
  notes = []
  plt = _pyplot()
  if plt is None:
    log.info(NO_MATPLOTLIB)
    notes.append(NO_MATPLOTLIB)
  elif any(entry["signals"] for entry in entries):
    os.makedirs(os.path.join(out_dir, "plots"), exist_ok=True)
    for entry in entries:
      for signal, summaries in entry["signals"].items():
        name = plot_name(entry["step"], signal)
        _plot(plt, entry["step"], signal, summaries, entry["thresholds"].get(signal, {}),
              os.path.join(out_dir, name))
        entry["plots"][signal] = name
  report = {"steps": entries, "summary": summarize(entries), "notes": notes, **extra}
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "report.json"), "w") as f:
    json.dump(report, f, indent=1, allow_nan=False)
  with open(os.path.join(out_dir, "report.html"), "w", encoding="utf-8") as f:
    f.write(report_html.render(report))
  return report


def _megabytes(n: int) -> str:
  return f"{n / 1e6:,.1f}"


def _percent(share: float | None) -> str:
  return "-" if share is None else f"{100 * share:.1f}%"


def format_summary(report: dict) -> str:
  """The table the command prints: per step, documents and MB in -> out, the top reasons."""
  header = ("step", "documents in -> out", "kept", "MB in -> out", "removed (most)")
  rows = [header]
  for entry in report["steps"]:
    totals = entry["totals"]
    reasons = ", ".join(f"{reason} {n:,}" for reason, n in
                        list(entry["removed"].items())[:TOP_REASONS])
    rows.append((entry["step"], f"{totals['docs_in']:,} -> {totals['docs_out']:,}",
                 _percent(_share(totals["docs_out"], totals["docs_in"])),
                 f"{_megabytes(totals['bytes_in'])} -> {_megabytes(totals['bytes_out'])}",
                 reasons or "-"))
  total = report["summary"]["total"]
  rows.append(("all steps", f"{total['docs_in']:,} -> {total['docs_out']:,}",
               _percent(total["docs_kept"]),
               f"{_megabytes(total['bytes_in'])} -> {_megabytes(total['bytes_out'])}", ""))
  widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
  lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
  return "\n".join(lines + report["notes"])
