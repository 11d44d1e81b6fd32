"""The preparation report as one HTML page (roots_jax.corpus.report builds the report): inline
CSS, no script, the histograms by relative path, every text from the data escaped."""

import html
import json

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: 90%; }
th, td { border: 1px solid #ccc; padding: .2em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.total td { font-weight: bold; }
pre { white-space: pre-wrap; word-break: break-word; background: #f6f6f6; padding: .5em;
      border-left: 3px solid #c33; margin: .2em 0 1em; }
.meta { color: #555; font-size: 90%; }
.note { color: #a60; }
img { max-width: 100%; }
"""
REPORT_KEYS = ("steps", "summary", "notes")


def _e(value) -> str:
  return html.escape(str(value))


def _int(n: int) -> str:
  return f"{n:,}"


def _bytes(n: int) -> str:
  for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
    if n >= size:
      return f"{n / size:,.1f} {unit}"
  return f"{n} B"


def _percent(share) -> str:
  return "-" if share is None else f"{100 * share:.1f}%"


def _number(value) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return "-" if value is None else str(value)


def _table(header, rows, total=None) -> str:
  lines = ["<table>"]
  if header:
    lines.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>")
  lines += ["<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows]
  if total is not None:
    lines.append('<tr class="total">' + "".join(f"<td>{_e(c)}</td>" for c in total) + "</tr>")
  return "\n".join(lines + ["</table>"])


def _in_out_row(name, entry) -> list:
  return [name, _int(entry["docs_in"]), _int(entry["docs_out"]), _percent(entry["docs_kept"]),
          _bytes(entry["bytes_in"]), _bytes(entry["bytes_out"]), _percent(entry["bytes_kept"])]


IN_OUT = ["documents in", "documents out", "kept", "bytes in", "bytes out", "kept"]


def _summary(summary: dict) -> str:
  rows = [_in_out_row(lang, entry) for lang, entry in summary["languages"].items()]
  return (f"<h2>Summary</h2>\n<p class=\"meta\">Documents and bytes into the first step and out "
          f"of the last. Per language they count from the input of step "
          f"<b>{_e(summary['languages_from'])}</b>, the first that knows the documents' "
          f"languages.</p>\n" + _table(["language"] + IN_OUT, rows,
                                       _in_out_row("total", summary["total"])))


def _flat(value, prefix="") -> list:
  """A nested dict as (dotted key, value) rows."""
  if isinstance(value, dict) and value:
    return [row for key, v in value.items() for row in _flat(v, f"{prefix}{key}.")]
  text = value if isinstance(value, str) else json.dumps(value)
  return [(prefix.rstrip("."), text)]


def _extra(name: str, value) -> str:
  body = (_table(None, _flat(value)) if isinstance(value, dict)
          else f"<pre>{_e(json.dumps(value, indent=1))}</pre>")
  return f"<h2>{_e(name)}</h2>\n{body}"


def _step_row(name: str, counts: dict, removed: dict, reasons: list) -> list:
  kept = counts["docs_out"] / counts["docs_in"] if counts["docs_in"] else None
  return ([name, _int(counts["docs_in"]), _int(counts["docs_out"]), _percent(kept),
           _bytes(counts["bytes_in"]), _bytes(counts["bytes_out"])]
          + [_int(removed.get(reason, 0)) for reason in reasons])


def _step_table(entry: dict) -> str:
  """Per language: documents and bytes in and out, and what each reason removed."""
  reasons = list(entry["removed"])
  header = (["language", "documents in", "documents out", "kept", "bytes in", "bytes out"]
            + [f"removed: {reason}" for reason in reasons])
  rows = [_step_row(lang, counts, counts["removed"], reasons)
          for lang, counts in entry["languages"].items()]
  return _table(header, rows, _step_row("total", entry["totals"], entry["removed"], reasons))


def _threshold(threshold) -> str:
  if not threshold:
    return "-"
  low, high = threshold
  return {(True, True): f"{_number(low)} .. {_number(high)}", (True, False): f">= {_number(low)}",
          (False, True): f"<= {_number(high)}", (False, False): "-"}[low is not None,
                                                                     high is not None]


def _signal(entry: dict, signal: str, summaries: dict) -> str:
  thresholds = entry["thresholds"].get(signal, {})
  parts = [f"<h4>{_e(signal)}</h4>"]
  if signal in entry["plots"]:
    parts.append(f'<img src="{_e(entry["plots"][signal])}" alt="histogram of {_e(signal)}">')
  stats = ("count", "nonfinite", "mean", "min", "p10", "p50", "p90", "max")
  rows = [[lang] + [_number(summary[s]) for s in stats] + [_threshold(thresholds.get(lang))]
          for lang, summary in summaries.items()]
  parts.append(_table(["language", "values", "not finite", *stats[2:], "kept where"], rows))
  return "\n".join(parts)


def _samples(entry: dict) -> str:
  parts = ["<h3>Removed documents (samples)</h3>"]
  for reason, samples in entry["samples"].items():
    parts.append(f"<h4>{_e(reason)}: {_int(entry['removed'].get(reason, 0))} removed, "
                 f"the first {len(samples)}</h4>")
    for sample in samples:
      signals = ", ".join(f"{name} = {_number(v)}" for name, v in sample["signals"].items())
      meta = f'{sample["id"]} ({sample["language"]})' + (f": {signals}" if signals else "")
      parts.append(f'<div class="meta">{_e(meta)}</div>\n<pre>{_e(sample["text"])}</pre>')
  return "\n".join(parts)


def _step(entry: dict) -> str:
  parts = [f"<h2>Step {_e(entry['step'])}</h2>", f'<p class="meta">{entry["tasks"]} tasks</p>',
           _step_table(entry)]
  if entry["counts"]:
    parts.append(_table(["count", "n"], [(k, _int(n)) for k, n in entry["counts"].items()]))
  if entry["signals"]:
    parts.append("<h3>Signals</h3>")
    parts += [_signal(entry, signal, summaries) for signal, summaries in entry["signals"].items()]
  if entry["samples"]:
    parts.append(_samples(entry))
  return "\n".join(parts)


def render(report: dict) -> str:
  """The page: notes, the summary, the extra sections, then each step."""
  body = ["<h1>Corpus preparation report</h1>"]
  body += [f'<p class="note">{_e(note)}</p>' for note in report["notes"]]
  body.append(_summary(report["summary"]))
  body += [_extra(key, value) for key, value in report.items() if key not in REPORT_KEYS]
  body += [_step(entry) for entry in report["steps"]]
  return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
          "<title>Corpus preparation report</title>\n"
          f"<style>{CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
