"""Train or try a sentencepiece tokenizer outside a run.

  python -m roots_jax.tokenizer train --builtin --vocab_size 8192 --output spm.model
  python -m roots_jax.tokenizer train --input 'corpus/*.jsonl' --vocab_size 32000 \\
      --model_type bpe --output spm.model
  python -m roots_jax.tokenizer encode --model spm.model "def f(x):\\n\\treturn x"
  python -m roots_jax.tokenizer encode --model RUN/tokenizer "a converted run's tokenizer"

A model trained here is what a run trains into workdir/tokenizer; pass it with
--config.tokenizer.path=spm.model (and model.vocab_size equal to its size). `encode` also reads
a directory of Hugging Face tokenizer files (GPT-2, BERT, T5), as tokenizer.path does.
"""

import argparse
import sys

from roots_jax import cli
from roots_jax.config import base_config
from roots_jax.data import load_tokenizer, sources
from roots_jax.data.sentencepiece import train_tokenizer
from roots_jax.data.tokenizers import write_atomically


def _train(args: argparse.Namespace) -> None:
  data = base_config().data
  if args.builtin:
    data.source = "builtin"
  else:
    data.source, data.train_files, data.format = "files", args.input, args.format
    data.text_field, data.eval_fraction = args.text_field, 0.0
  stream = sources.DocumentStream(sources.make_source(data, "train"), repeat=False, seed=0)
  write_atomically(args.output, train_tokenizer(
      stream, vocab_size=args.vocab_size, model_type=args.model_type,
      max_bytes=int(args.max_bytes), sentinels=args.sentinels))
  print(f"wrote {args.output} ({load_tokenizer(args.output).vocab_size} pieces)")


def _encode(args: argparse.Namespace) -> None:
  print(" ".join(map(str, load_tokenizer(args.model).encode(args.text))))


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="python -m roots_jax.tokenizer", description=__doc__)
  commands = p.add_subparsers(dest="command", required=True)
  train = commands.add_parser("train", help="train a model on files or the built-in corpus",
                              description="Trains a sentencepiece model.")
  corpus = train.add_mutually_exclusive_group(required=True)
  corpus.add_argument("--input", help="comma-separated paths or globs (.txt, .jsonl, .parquet)")
  corpus.add_argument("--builtin", action="store_true",
                      help="the Python standard library's sources (training modules)")
  train.add_argument("--vocab_size", type=int, required=True)
  train.add_argument("--model_type", choices=("unigram", "bpe"), default="unigram")
  train.add_argument("--max_bytes", type=float, default=8e6, help="text sampled for training")
  train.add_argument("--sentinels", type=int, default=0,
                     help="T5's sentinels <extra_id_N> reserved on top (span corruption: 100)")
  train.add_argument("--format", choices=("auto", "text", "jsonl", "parquet"), default="auto")
  train.add_argument("--text_field", default="text", help="JSONL/Parquet field with the text")
  train.add_argument("--output", required=True, help="where to write the .model file")
  train.set_defaults(run=_train)
  encode = commands.add_parser("encode", help="print the ids of a text",
                               description="Prints the token ids of a text.")
  encode.add_argument("--model", required=True,
                      help="a .model file or a Hugging Face tokenizer directory")
  encode.add_argument("text")
  encode.set_defaults(run=_encode)
  return p


def main(argv: list[str] | None = None) -> int:
  cli.log_to_console()

  def command():
    args = parser().parse(argv)
    args.run(args)

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
