"""Distillation command: trains a student from a teacher run.

  python -m roots_jax.distill --config distill/gpt --workdir /tmp/student --config.teacher=/tmp/run
  python -m roots_jax.distill --config distill/bert --workdir DIR --config.teacher=BERT_RUN
  python -m roots_jax.distill --config distill/gpt --config.help   # the config keys and meanings

Running the same command again resumes (with the same teacher checkpoint only). The student is
used like a pretraining run: evaluate, generate, fine-tune (init_from), convert. The run itself:
roots_jax.runs.distill.
"""

import sys

from roots_jax import host_memory

if __name__ == "__main__":  # first: glibc reads its tunables when the process starts
  host_memory.tune_malloc()

from roots_jax import cli
from roots_jax import config as config_lib
from roots_jax.runs import distill, workdir as workdir_lib


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="python -m roots_jax.distill", description=__doc__, overrides=True,
                         keys_help=True)
  p.add_argument("--config", required=True, metavar="NAME[:ARG]",
                 help=config_lib.config_argument_help())
  p.add_argument("--workdir", required=True, metavar="DIR",
                 help="the student's run directory: created, or resumed from its newest "
                      "checkpoint")
  return p


def main(argv: list[str] | None = None) -> int:
  cli.log_to_console()

  def command():
    args = parser().parse(argv)
    if args.config_help:
      print(config_lib.describe(config_lib.load_config(args.config, args.overrides)
                                if args.config else config_lib.distill_config()))
      return 0
    config = config_lib.load_config(args.config, args.overrides)
    with workdir_lib.removed_on_error(args.workdir):
      result = distill.distill(config, args.workdir)
    if result and "task" not in config:  # a task's student logs its best validation itself
      cli.log.info("final eval: loss %.4f, perplexity %.2f", result["loss"], result["perplexity"])

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
