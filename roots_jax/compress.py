"""Compression report: one table comparing a model with its distilled, quantized and pruned
variants, and a plot of quality against size.

  python -m roots_jax.compress report RUN [RUN ...] [--out DIR] [--eval_batches N]
      [--decode_tokens N]

Example:

  python -m roots_jax.quantize --run /tmp/run --out /tmp/run-w8 --scheme int8_weight
  python -m roots_jax.prune --run /tmp/run --out /tmp/run-pruned --heads 2 --mlp_units 64
  python -m roots_jax.compress report /tmp/run /tmp/run-w8 /tmp/run-pruned

For each RUN (a pretraining, converted, distilled, quantized, pruned or fine-tuning run, one of
its checkpoints/<step> directories, or a Hugging Face model directory): its kind and how it was
made (from its config.json), its parameters (and nonzero ones for a run trained with unstructured
sparsity), the bytes on disk of its checkpoint, its metric on the first run's split (perplexity;
a fine-tuned run's task metric), and eval and decode tokens/s on this machine. Every run is
scored with the first run's data section on its first --eval_batches batches (after one untimed
batch), so the runs must share its tokenizer; decode tokens/s is greedy generation of
--decode_tokens new tokens for one prompt from the split, after one untimed call ("-" for a
model that does not generate, such as BERT).

The table is printed and written to DIR (default ./compress_report) as report.json and
report.md, with quality_vs_size.png: the metric against bytes on disk, log x, one point per
run (needs matplotlib: pip install matplotlib).
"""

import dataclasses
import json
import logging
import os
import sys

from roots_jax import host_memory

if __name__ == "__main__":  # first: glibc reads its tunables when the process starts
  host_memory.tune_malloc()

from roots_jax import cli
from roots_jax.runs import compress_report

log = logging.getLogger("roots_jax")


def _report(args) -> None:
  rows = compress_report.report(args.runs, eval_batches=args.eval_batches,
                                decode_tokens=args.decode_tokens)
  print(compress_report.format_table(rows))
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "report.json"), "w") as f:
    json.dump({"eval_batches": args.eval_batches, "decode_tokens": args.decode_tokens,
               "rows": [dataclasses.asdict(r) for r in rows]}, f, indent=2)
  with open(os.path.join(args.out, "report.md"), "w") as f:
    f.write(compress_report.markdown(rows))
  plotted = compress_report.plot(rows, os.path.join(args.out, "quality_vs_size.png"))
  log.info("wrote report.json, report.md%s in %s", " and quality_vs_size.png" if plotted else "",
           os.path.abspath(args.out))


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="python -m roots_jax.compress", description=__doc__)
  commands = p.add_subparsers(dest="command", required=True)
  rep = commands.add_parser("report", help="compare runs: size, quality and speed",
                            description="Compares runs: parameters, bytes on disk, the metric "
                            "on the first run's split, eval and decode tokens/s.")
  rep.add_argument("runs", nargs="+", metavar="RUN", help="the runs, the first the reference")
  rep.add_argument("--out", default="compress_report", metavar="DIR",
                   help="where report.json, report.md and quality_vs_size.png go "
                   "(default ./compress_report)")
  rep.add_argument("--eval_batches", type=int, default=20, metavar="N",
                   help="batches of the split scored per run (default 20)")
  rep.add_argument("--decode_tokens", type=int, default=32, metavar="N",
                   help="new tokens generated for decode tokens/s (default 32)")
  rep.set_defaults(run_command=_report)
  return p


def main(argv: list[str] | None = None) -> int:
  cli.log_to_console()

  def command():
    args = parser().parse(argv)
    args.run_command(args)

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
