"""Corpus preparation throughput: documents/s and MB/s per core of each step, and of the whole
pipeline, on the built-in corpus.

  python benchmarks/prep.py [--config prep/roots] [--documents N] [--pipeline_workers 1,2]
      [--config.KEY=VALUE ...]

First the whole pipeline (python -m roots_jax.prep) runs once per --pipeline_workers setting,
in a fresh workdir each time, with executor.tasks=2: its wall time gives documents/s and MB/s of
the raw input, per core at one worker (the references stage, which trains the tokenizer, once,
into the user's cache, and the n-gram model and decontamination index each time, is timed
apart). Then each step runs alone, in this process, on the same N documents (default: all of
them, after normalisation), so the steps' rates compare: a filter step is measured on every
document, not only on those earlier filters let through. The references (n-gram model,
decontamination index) are the first pipeline run's; a step whose reference the config did not
build (no perplexity filter, no decontamination) is left out.
"""

import copy
import json
import os
import sys
import tempfile
import time

from datatrove.data import Document

from roots_jax import cli
from roots_jax import config as config_lib
from roots_jax.corpus import (decontaminate, dedup, language, ngram, normalize, quality, redact,
                              steps)
from roots_jax.errors import ConfigError
from roots_jax.runs import prep, prep_steps


def pipeline_row(config, workers: int, workdir: str) -> dict:
  """The whole prep with `workers` local workers: seconds in total and in the references."""
  with config.unlocked():
    config.executor.update(workers=workers, tasks=2)
  began = time.perf_counter()
  report = prep.prepare(config, workdir)
  seconds = time.perf_counter() - began
  with open(os.path.join(workdir, "logs", "references", "stats.json")) as f:
    references = sum(s["time_stats"]["total"] for s in json.load(f)
                     if isinstance(s["time_stats"], dict))
  total = report["summary"]["total"]
  return {"what": f"whole pipeline, {workers} worker{'s' * (workers != 1)}",
          "docs": total["docs_in"], "bytes": total["bytes_in"], "seconds": seconds,
          "cores": workers, "note": f"references {references:.1f} s of it; "
                                    f"{total['docs_out']} documents out"}


def step_instances(config, workdir: str) -> dict[str, object]:
  """Each step as the pipeline builds it, with the references of the prep in `workdir`."""
  layout = prep_steps.Layout(workdir)
  r = tempfile.mkdtemp(prefix="prep_bench_parts_")
  instances = {
      "normalize": normalize.Normalizer(r),
      "language": language.LanguageId(r),
      "quality (no perplexity)": quality.QualityFilter(
          r, filters=tuple(f for f in quality.FILTERS if f != "perplexity")),
      "quality: perplexity": None,
      "redact": redact.Redactor(r),
      "decontaminate": None,
      "dedup signatures": dedup.DedupSignatures(prep.dedup_config(config),
                                                tempfile.mkdtemp(prefix="prep_bench_dedup_")),
  }
  # The references a config built: an n-gram model with the perplexity filter on, an index with
  # decontamination on.
  if os.path.exists(os.path.join(layout.ngram_dir, "ngram.json")):
    scorer = ngram.PerplexityScorer(layout.ngram_dir, prep_steps.tokenizer_path(layout))
    instances["quality: perplexity"] = quality.QualityFilter(r, filters=("perplexity",),
                                                             perplexity=scorer)
  if os.path.exists(layout.decont_index):
    instances["decontaminate"] = decontaminate.Decontaminator(r, index_path=layout.decont_index)
  return {name: step for name, step in instances.items() if step is not None}


def step_rows(config, workdir: str, documents: int | None) -> list[dict]:
  reader = prep_steps.SourceReader(config.input.to_dict(), tempfile.mkdtemp(prefix="prep_bench_"))
  docs = list(reader.run())[:documents]
  docs = list(normalize.Normalizer(tempfile.mkdtemp(prefix="prep_bench_"))(iter(docs)))
  rows = []
  for name, step in step_instances(config, workdir).items():
    batch = [Document(d.text, d.id, metadata=copy.deepcopy(d.metadata)) for d in docs]
    if name.startswith(("quality", "decontaminate", "dedup")):  # they read the language
      for d in batch:
        d.metadata["language"] = "en"
    began = time.perf_counter()
    for _ in step.run(iter(batch), rank=0):
      pass
    rows.append({"what": name, "docs": len(batch), "cores": 1,
                 "bytes": sum(steps.utf8_len(d.text) for d in docs),
                 "seconds": time.perf_counter() - began, "note": ""})
  return rows


def table(rows: list[dict]) -> list[str]:
  lines = ["| step | documents | MB | seconds | documents/s per core | MB/s per core | |",
           "|---|---|---|---|---|---|---|"]
  for r in rows:
    per_core = r["seconds"] * r["cores"]
    lines.append(f"| {r['what']} | {r['docs']:,} | {r['bytes'] / 1e6:.2f} | {r['seconds']:.2f} "
                 f"| {r['docs'] / per_core:,.0f} | {r['bytes'] / 1e6 / per_core:.2f} "
                 f"| {r['note']} |")
  return lines


def main() -> int:
  p = cli.ArgumentParser(prog="python benchmarks/prep.py", description=__doc__, overrides=True)
  p.add_argument("--config", default="prep/roots", help="the prep config (default prep/roots)")
  p.add_argument("--documents", type=int, default=0,
                 help="documents each step alone is measured on (default 0: all)")
  p.add_argument("--pipeline_workers", default="1,2",
                 help="local workers of the whole-pipeline runs, comma-separated (default 1,2)")

  def command():
    args = p.parse()
    try:
      workers = [int(w) for w in args.pipeline_workers.split(",") if w.strip()]
    except ValueError:
      raise ConfigError(f"--pipeline_workers takes numbers, e.g. 1,2; got "
                        f"{args.pipeline_workers!r}") from None
    if not workers:
      raise ConfigError("--pipeline_workers needs at least one number, e.g. 1")
    config = config_lib.load_config(args.config, args.overrides)
    root = tempfile.mkdtemp(prefix="prep_bench_")
    rows = [pipeline_row(config, w, os.path.join(root, f"workers{w}")) for w in workers]
    rows += step_rows(config, os.path.join(root, f"workers{workers[0]}"),
                      args.documents or None)
    print("\n".join(table(rows)))

  cli.log_to_console()
  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
