"""Evaluation command: scores a run's checkpoint and writes WORKDIR/results.json.

  python -m roots_jax.evaluate --workdir RUN [--split SPLIT] [--checkpoint best|latest|STEP]
      [--config FILE.py[:ARG]] [--config.KEY=VALUE ...]

The run's config.json is used, or --config's sections with the run's model and tokenizer (to
score the same model on another task's data or file); --config.KEY=VALUE overrides either.

A pretraining run gets its token-weighted perplexity and loss terms on its held-out split (score
another file with --config.data.source=files --config.data.train_files=X
--config.data.eval_files=X). A fine-tuning run gets its task's metrics on task.validation_split
(default) or --split test: accuracy, macro F1 and Matthews correlation (classification), Pearson
and Spearman (regression), token accuracy and macro F1 (token classification), perplexity and,
from greedy generations, exact match, BLEU and ROUGE-1/2/L (seq2seq). The scoring itself:
roots_jax.runs.evaluation and roots_jax.evals.
"""

import sys

from roots_jax import cli
from roots_jax.runs import evaluation

USAGE = ("usage: python -m roots_jax.evaluate --workdir RUN [--split SPLIT] "
         "[--checkpoint best|latest|STEP] [--config FILE.py[:ARG]] "
         "[--config.SECTION.KEY=VALUE ...]")


def main(argv: list[str] | None = None) -> int:
  cli.log_to_console()

  def command():
    values, overrides = cli.parse_args(
        sys.argv[1:] if argv is None else argv, USAGE,
        names=("workdir", "split", "checkpoint", "config"), required=("workdir",))
    results = evaluation.evaluate_run(values["workdir"], overrides, split=values.get("split", ""),
                                      checkpoint=values.get("checkpoint", ""),
                                      config_spec=values.get("config", ""))
    print(evaluation.format_table(results))

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
