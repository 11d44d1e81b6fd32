"""Structured pruning command: a run's model cut to fewer attention heads and MLP units per layer.

  python -m roots_jax.prune --run RUN --out DIR --heads K --mlp_units F [--batches N]

Scores every head and MLP unit of RUN (a run, one of its checkpoints/<step>, or a Hugging Face
model directory) by |d loss / d mask| over N batches of its training data (Michel et al. 2019),
keeps the K and F most important of each layer, and writes the smaller model as the run DIR
(parameters only, like a converted run; a fine-tuned run stays a fine-tuned run). Its outputs are
those of RUN with the other heads and units masked out; fine-tune it to recover what they gave.
A BERT pruned of heads exports with `python -m roots_jax.convert export` (pruned_heads).

Unstructured pruning (magnitude, 2:4) happens while training: the prune.* config keys of
roots_jax.train and roots_jax.finetune. The library: roots_jax.runs.prune.
"""

import sys

from roots_jax import host_memory

if __name__ == "__main__":  # first: glibc reads its tunables when the process starts
  host_memory.tune_malloc()

from roots_jax import cli
from roots_jax.runs import prune


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="python -m roots_jax.prune", description=__doc__)
  p.add_argument("--run", required=True, metavar="RUN",
                 help="a run, one of its checkpoints/<step>, or a Hugging Face model directory")
  p.add_argument("--out", required=True, metavar="DIR", help="the pruned run's new directory")
  p.add_argument("--heads", required=True, type=int, metavar="K",
                 help="attention heads kept in every layer")
  p.add_argument("--mlp_units", required=True, type=int, metavar="F",
                 help="MLP hidden units kept in every layer")
  p.add_argument("--batches", type=int, default=8, metavar="N",
                 help="training batches the importance is summed over (default 8)")
  return p


def main(argv: list[str] | None = None) -> int:
  cli.log_to_console()

  def command():
    args = parser().parse(argv)
    summary = prune.prune_run(args.run, args.out, heads=args.heads, mlp_units=args.mlp_units,
                              num_batches=args.batches)
    print(f"pruned {args.run} into {args.out}: {summary['parameters_before']:,} -> "
          f"{summary['parameters_after']:,} parameters")

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
