"""Fine-tuning command: a pretrained checkpoint of any family, a task head, and a task's data.

  python -m roots_jax.finetune --config finetune/package --workdir DIR \
      --config.init_from=PRETRAIN_WORKDIR_OR_CHECKPOINT
  python -m roots_jax.finetune --config finetune/package --config.help  # the keys, meanings
  python -m roots_jax.evaluate --workdir DIR --split test

The model (architecture and tokenizer) comes from init_from; finetune.mode=full trains
everything, frozen only the head (and finetune.trainable_layers top layers). The best validation
checkpoint is kept in DIR/best. Rerunning the command resumes. The run itself:
roots_jax.runs.finetune.
"""

import sys

from roots_jax import host_memory

if __name__ == "__main__":  # first: glibc reads its tunables when the process starts
  host_memory.tune_malloc()

from roots_jax import cli
from roots_jax import config as config_lib
from roots_jax.runs import finetune, workdir as workdir_lib


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="python -m roots_jax.finetune", description=__doc__,
                         overrides=True, keys_help=True)
  p.add_argument("--config", required=True, metavar="NAME[:ARG]",
                 help=config_lib.config_argument_help() + " (built on finetune_config())")
  p.add_argument("--workdir", required=True, metavar="DIR",
                 help="the fine-tuning run's directory: created, or resumed")
  return p


def main(argv: list[str] | None = None) -> int:
  cli.log_to_console()

  def command():
    args = parser().parse(argv)
    if args.config_help:
      print(config_lib.describe(config_lib.load_config(args.config, args.overrides)
                                if args.config else config_lib.finetune_config()))
      return 0
    config = config_lib.load_config(args.config, args.overrides)
    with workdir_lib.removed_on_error(args.workdir):
      finetune.finetune(config, args.workdir)

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
