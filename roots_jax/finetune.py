"""Fine-tuning command: a pretrained checkpoint of any family, a task head, and a task's data.

  python -m roots_jax.finetune --config configs/finetune/package.py --workdir DIR \
      --config.init_from=PRETRAIN_WORKDIR_OR_CHECKPOINT
  python -m roots_jax.evaluate --workdir DIR --split test

The model (architecture and tokenizer) comes from init_from; finetune.mode=full trains
everything, frozen only the head (and finetune.trainable_layers top layers). The best validation
checkpoint is kept in DIR/best. Rerunning the command resumes. The run itself:
roots_jax.runs.finetune.
"""

import sys

from roots_jax import cli
from roots_jax import config as config_lib
from roots_jax.runs import finetune

USAGE = ("usage: python -m roots_jax.finetune --config FILE.py[:ARG] --workdir DIR "
         "--config.init_from=PRETRAIN_RUN [--config.SECTION.KEY=VALUE ...]")


def main(argv: list[str] | None = None) -> int:
  cli.log_to_console()

  def command():
    values, overrides = cli.parse_args(sys.argv[1:] if argv is None else argv, USAGE)
    finetune.finetune(config_lib.load_config(values["config"], overrides), values["workdir"])

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
