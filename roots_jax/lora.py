"""LoRA adapter runs: merging the adapters into a plain fine-tuning run.

  python -m roots_jax.lora merge --run ADAPTER_RUN --out DIR [--checkpoint best|latest|STEP]

An adapter run is a fine-tuning run with finetune.lora.rank > 0 (configs/finetune/, e.g.
--config.finetune.lora.rank=8): its checkpoints hold the adapters (and a new task head) only,
and loading it reads its base from init_from. merge folds W + (alpha / r) A B into every adapted
kernel (a QLoRA base dequantized to float32) and writes DIR, a fine-tuning run without adapters
whose outputs equal the adapter run's, usable without the base: evaluate, generate and
LanguageModel.from_pretrained read it like any fine-tuned run. An earlier run in DIR is replaced.
"""

import sys

from roots_jax import host_memory

if __name__ == "__main__":  # first: glibc reads its tunables when the process starts
  host_memory.tune_malloc()

from roots_jax import cli
from roots_jax.runs import lora_merge


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="python -m roots_jax.lora", description=__doc__)
  commands = p.add_subparsers(dest="command", required=True)
  merge = commands.add_parser("merge", help="fold an adapter run's adapters into a plain run")
  merge.add_argument("--run", required=True, metavar="ADAPTER_RUN",
                     help="the adapter run (or one of its checkpoints/<step> directories)")
  merge.add_argument("--out", required=True, metavar="DIR", help="the merged run's directory")
  merge.add_argument("--checkpoint", default=None, metavar="best|latest|STEP",
                     help="default: the run's best, else its newest")
  return p


def main(argv: list[str] | None = None) -> int:
  cli.log_to_console()

  def command():
    args = parser().parse(argv)
    s = lora_merge.merge(args.run, args.out, checkpoint=args.checkpoint)
    print(f"merged {s['kernels']} adapted kernels of {s['source']} step {s['step']} into "
          f"{s['out']} ({s['parameters']:,} parameters)")

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
