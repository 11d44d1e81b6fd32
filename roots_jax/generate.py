"""Generation driver: prompts in, each prompt's continuations printed, numbered.

  python -m roots_jax.generate --workdir RUN --prompt "def add(a, b):" [--prompt ...] \
      [--max_length 50 | --max_new_tokens N] [--num_return_sequences 3] [--do_sample \
      --temperature T --top_k K --top_p P] [--repetition_penalty R] [--num_beams B \
      --length_penalty A] [--seed S] [--checkpoint best|latest|STEP] [--no_cache]

RUN is a pretraining run (its newest checkpoint), a fine-tuning run for seq2seq (its best one),
one of their checkpoints/<step> directories, or a Hugging Face model directory. Decoding is
greedy unless --do_sample or --num_beams > 1; the options mean what Hugging Face's generate
means by them (roots_jax.decoding). A pretrained decoder's output is printed after its prompt,
an encoder-decoder's (or a fine-tuned model's) on its own. Built on roots_jax.api.LanguageModel.
"""

import argparse
import sys

from roots_jax import host_memory

if __name__ == "__main__":  # first: glibc reads its tunables when the process starts
  host_memory.tune_malloc()

from roots_jax import cli
from roots_jax.api import LanguageModel


def parse_args(argv: list[str]) -> argparse.Namespace:
  p = cli.ArgumentParser(prog="python -m roots_jax.generate", description=__doc__)
  p.add_argument("--workdir", required=True, help="the run (or Hugging Face model) directory")
  p.add_argument("--prompt", action="append", required=True, help="a prompt; repeat for more")
  p.add_argument("--checkpoint", default=None, help="best | latest | a step (default: the run's)")
  p.add_argument("--max_length", type=int, default=None,
                 help="prompt + new tokens (decoder), decoder tokens (encoder-decoder)")
  p.add_argument("--max_new_tokens", type=int, default=None, help="default 20; wins over "
                 "--max_length")
  p.add_argument("--num_return_sequences", type=int, default=1)
  p.add_argument("--do_sample", action="store_true", help="sample instead of greedy search")
  p.add_argument("--temperature", type=float, default=1.0)
  p.add_argument("--top_k", type=int, default=0, help="0: no top-k filtering")
  p.add_argument("--top_p", type=float, default=1.0)
  p.add_argument("--repetition_penalty", type=float, default=1.0)
  p.add_argument("--num_beams", type=int, default=1)
  p.add_argument("--length_penalty", type=float, default=1.0)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--no_cache", action="store_true",
                 help="recompute the whole sequence at every step instead of using the KV cache")
  return p.parse(argv)


def format_outputs(prompts: list[str], outputs: list[list[str]], full_text: bool) -> str:
  """prompt i: TEXT, then [j] and each continuation (after its prompt when `full_text`)."""
  lines = []
  for i, (prompt, continuations) in enumerate(zip(prompts, outputs), 1):
    lines.append(f"prompt {i}: {prompt}")
    lines += [f"[{j}] {prompt * full_text}{text}" for j, text in enumerate(continuations, 1)]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:

  def command():
    args = parse_args(sys.argv[1:] if argv is None else argv)
    lm = LanguageModel.from_pretrained(args.workdir, checkpoint=args.checkpoint)
    outputs = lm.generate(
        args.prompt, max_length=args.max_length, max_new_tokens=args.max_new_tokens,
        num_return_sequences=args.num_return_sequences, do_sample=args.do_sample,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        repetition_penalty=args.repetition_penalty, num_beams=args.num_beams,
        length_penalty=args.length_penalty, seed=args.seed, use_cache=not args.no_cache)
    print(format_outputs(args.prompt, outputs, full_text=lm.continues_prompts))

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
