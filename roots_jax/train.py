"""Pretraining command.

  python -m roots_jax.train --config configs/quickstart.py --workdir /tmp/run
  python -m roots_jax.train --config configs/gpt2.py:small --workdir DIR --config.train.batch_size=64

Running the same command again resumes from the newest complete checkpoint in the workdir.
The run itself: roots_jax.runs.pretrain.
"""

import sys

from roots_jax import cli
from roots_jax import config as config_lib
from roots_jax.runs import pretrain

USAGE = ("usage: python -m roots_jax.train --config FILE.py[:ARG] --workdir DIR "
         "[--config.SECTION.KEY=VALUE ...]")


def main(argv: list[str] | None = None) -> int:
  cli.log_to_console()

  def command():
    values, overrides = cli.parse_args(sys.argv[1:] if argv is None else argv, USAGE)
    result = pretrain.train(config_lib.load_config(values["config"], overrides), values["workdir"])
    if result:
      cli.log.info("final eval: loss %.4f, perplexity %.2f", result["loss"], result["perplexity"])

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
