"""Pretraining command.

  python -m roots_jax.train --config quickstart --workdir /tmp/run
  python -m roots_jax.train --config gpt2:small --workdir DIR --config.train.batch_size=64
  python -m roots_jax.train --config gpt2:small --config.help   # the config keys and meanings

Running the same command again resumes from the newest complete checkpoint in the workdir.
The run itself: roots_jax.runs.pretrain.
"""

import sys

from roots_jax import host_memory

if __name__ == "__main__":  # first: glibc reads its tunables when the process starts
  host_memory.tune_malloc()

from roots_jax import cli
from roots_jax import config as config_lib
from roots_jax.runs import pretrain, workdir as workdir_lib


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="python -m roots_jax.train", description=__doc__, overrides=True,
                         keys_help=True)
  p.add_argument("--config", required=True, metavar="NAME[:ARG]",
                 help=config_lib.config_argument_help())
  p.add_argument("--workdir", required=True, metavar="DIR",
                 help="the run directory: created, or resumed from its newest checkpoint")
  return p


def main(argv: list[str] | None = None) -> int:
  cli.log_to_console()

  def command():
    args = parser().parse(argv)
    if args.config_help:
      print(config_lib.describe(config_lib.load_config(args.config, args.overrides)
                                if args.config else config_lib.base_config()))
      return 0
    config = config_lib.load_config(args.config, args.overrides)
    with workdir_lib.removed_on_error(args.workdir):
      result = pretrain.train(config, args.workdir)
    if result:
      cli.log.info("final eval: loss %.4f, perplexity %.2f", result["loss"], result["perplexity"])

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
