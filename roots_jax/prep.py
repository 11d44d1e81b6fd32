"""Corpus preparation command: raw text to training shards, as the ROOTS corpus was built.

  python -m roots_jax.prep --workdir PREP                       # the built-in corpus
  python -m roots_jax.prep --config prep/roots --workdir PREP --config.input.files='raw/*.jsonl'
  python -m roots_jax.train --config gpt2:small --workdir RUN --config.data.source=prepared \\
      --config.data.prepared_dir=PREP
  python -m roots_jax.prep --config prep/roots --config.help    # the keys and their meanings

Normalises, identifies languages, applies the ROOTS quality filters (with an n-gram model's
perplexity), redacts personal data, drops documents that overlap evaluation sets, removes exact
and near duplicates and boilerplate lines, and writes per-language shards with PREP/manifest.json,
PREP/report.json and PREP/report.html (what each step removed, histograms, samples). Running the
same command again resumes: finished tasks are skipped. On a cluster: --config.executor.kind=slurm
(with executor.partition) or ray. The run itself: roots_jax.runs.prep.
"""

import sys

from roots_jax import cli
from roots_jax import config as config_lib
from roots_jax.errors import ConfigError


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="python -m roots_jax.prep", description=__doc__, overrides=True,
                         keys_help=True)
  p.add_argument("--config", default="prep/roots", metavar="NAME[:ARG]",
                 help=config_lib.config_argument_help() + " (default: prep/roots)")
  p.add_argument("--workdir", required=True, metavar="PREP",
                 help="where the shards, manifest and report go: created, or resumed")
  return p


def main(argv: list[str] | None = None) -> int:
  cli.log_to_console()

  def command():
    args = parser().parse(argv)
    config = config_lib.load_config(args.config, args.overrides)
    if args.config_help:
      print(config_lib.describe(config))
      return 0
    try:
      from roots_jax.corpus import report  # pylint: disable=g-import-not-at-top
      from roots_jax.runs import prep  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ConfigError(f"python -m roots_jax.prep needs the prep extra ({e.name} is missing): "
                        "pip install -e '.[prep]'") from e
    result = prep.prepare(config, args.workdir)
    if result is not None:
      print(report.format_summary(result))

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
