"""Evaluation command: scores a run's checkpoint and writes WORKDIR/results.json.

  python -m roots_jax.evaluate --workdir RUN [--split SPLIT] [--checkpoint best|latest|STEP]
      [--config NAME[:ARG]] [--ngram DIR] [--config.KEY=VALUE ...]
  python -m roots_jax.evaluate --workdir RUN --tasks TASK[,TASK...] [--num_fewshot K]
      [--limit N] [--seed S] [--checkpoint ...]

The run's config.json is used, or --config's sections with the run's model and tokenizer (to
score the same model on another task's data or file); --config.KEY=VALUE overrides either.

A pretraining run gets its token-weighted perplexity and loss terms on its held-out split (score
another file with --config.data.source=files --config.data.train_files=X
--config.data.eval_files=X). A fine-tuning run gets its task's metrics on task.validation_split
(default) or --split test: accuracy, macro F1 and Matthews correlation (classification), Pearson
and Spearman (regression), token accuracy and macro F1 (token classification), perplexity and,
from greedy generations, exact match, BLEU and ROUGE-1/2/L (seq2seq). Each result says how
many examples and tokens it scored; results.json adds each class's precision, recall, F1 and
support (classification, token classification) or the first generations (seq2seq). --ngram DIR
adds to a pretraining run's the perplexity of the n-gram model in DIR (roots_jax.corpus.ngram,
trained on the run's tokenizer) on the same documents: the classical baseline.

--tasks scores a language model (a pretrained, converted, distilled or quantized decoder or
encoder-decoder run, or a Hugging Face model directory) zero- or few-shot on in-context tasks, as
EleutherAI's lm-evaluation-harness does: built-in ones from the standard library
(stdlib_next_line, stdlib_docstring_name, stdlib_cloze, stdlib_bpb) or task files (JSON over
local JSONL data; the format: roots_jax.evals.incontext_tasks). Each metric comes with its
bootstrap standard error; results.json's "incontext" adds each task's first prompts and answers.
The scoring itself: roots_jax.runs.evaluation and roots_jax.evals.
"""

import sys

from roots_jax import host_memory

if __name__ == "__main__":  # first: glibc reads its tunables when the process starts
  host_memory.tune_malloc()

from roots_jax import cli
from roots_jax import config as config_lib
from roots_jax.errors import ConfigError
from roots_jax.evals.incontext import DEFAULT_SEED
from roots_jax.runs import evaluation


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="python -m roots_jax.evaluate", description=__doc__,
                         overrides=True)
  p.add_argument("--workdir", required=True, metavar="RUN", help="the run to score")
  p.add_argument("--split", default="",
                 help="test, validation, ... (default: the run's held-out or validation split)")
  p.add_argument("--checkpoint", default="", metavar="best|latest|STEP",
                 help="default: a fine-tuning run's best, else the newest")
  p.add_argument("--config", default="", metavar="NAME[:ARG]",
                 help=config_lib.config_argument_help() + ", whose sections replace the run's "
                 "(its model and tokenizer stay the run's)")
  p.add_argument("--ngram", default="", metavar="DIR",
                 help="also score the held-out split with the n-gram model saved in DIR "
                 "(a pretraining run; trained on the run's tokenizer)")
  p.add_argument("--tasks", default="", metavar="TASK[,TASK...]",
                 help="in-context tasks: built-in names or task files (.json)")
  p.add_argument("--num_fewshot", type=int, default=0, metavar="K",
                 help="with --tasks: examples in each prompt (default 0)")
  p.add_argument("--limit", type=int, default=0, metavar="N",
                 help="with --tasks: score each task's first N documents (default: all)")
  p.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="S",
                 help="with --tasks: draws the few-shot examples and the bootstrap resamples")
  return p


def main(argv: list[str] | None = None) -> int:
  cli.log_to_console()

  def command():
    args = parser().parse(argv)
    if args.tasks:
      given = [f"--{k}" for k in ("split", "config", "ngram") if getattr(args, k)]
      if given or args.overrides:
        raise ConfigError(f"--tasks scores the run's model as it is: leave "
                          f"{', '.join(given) or '--config.KEY=VALUE'} out")
      results = evaluation.evaluate_incontext(
          args.workdir, [t.strip() for t in args.tasks.split(",") if t.strip()],
          num_fewshot=args.num_fewshot, limit=args.limit or None, seed=args.seed,
          checkpoint=args.checkpoint)
      print(evaluation.format_table(results))
      return
    results = evaluation.evaluate_run(args.workdir, args.overrides, split=args.split,
                                      checkpoint=args.checkpoint, config_spec=args.config,
                                      ngram=args.ngram)
    print(evaluation.format_table(results))

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
