"""EleutherAI's lm-evaluation-harness command with roots_jax models registered: the harness
finds models only in its own registry (it reads no entry points), so this imports our adapter
(runs.lm_eval_adapter, the model `roots_jax`) and hands the arguments to the harness's CLI
unchanged.

  python -m roots_jax.lm_eval run --model roots_jax --model_args path=RUN,batch_size=32 \\
      --tasks TASK [--include_path DIR_OF_TASK_YAMLS] [--num_fewshot K] [--limit N]

Needs the lmeval extra (pip install -e '.[lmeval]'). Task data must be local (the harness's
`dataset_path: json` with `dataset_kwargs: {data_files: ...}`); set HF_DATASETS_OFFLINE=1 to
make sure nothing is fetched.
"""

import importlib
import sys

from roots_jax import cli
from roots_jax.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
  def command():
    try:
      from lm_eval.__main__ import cli_evaluate  # pylint: disable=import-outside-toplevel
      importlib.import_module("roots_jax.runs.lm_eval_adapter")  # registers "roots_jax"
    except ImportError as e:
      raise ConfigError(f"python -m roots_jax.lm_eval needs lm-eval ({e}): pip install -e "
                        "'.[lmeval]'") from e
    sys.argv = ["lm_eval", *(sys.argv[1:] if argv is None else argv)]
    cli_evaluate()
  cli.log_to_console()
  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
