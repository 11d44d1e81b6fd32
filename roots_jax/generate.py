"""Generation driver: prompts in, each prompt's continuations printed, numbered.

  python -m roots_jax.generate --workdir RUN --prompt "def add(a, b):" [--prompt ...] \
      [--max_length 50 | --max_new_tokens N] [--num_return_sequences 3] [--do_sample \
      --temperature T --top_k K --top_p P] [--repetition_penalty R] [--num_beams B \
      --length_penalty A] [--seed S] [--checkpoint best|latest|STEP] [--no_cache]
  python -m roots_jax.generate --workdir RUN --chat [--system TEXT] [--prompt MESSAGE ... |
      --messages CONVERSATION.json] [generation options]

RUN is a pretraining run (its newest checkpoint), a fine-tuning run for seq2seq (its best one),
one of their checkpoints/<step> directories, or a Hugging Face model directory. Decoding is
greedy unless --do_sample or --num_beams > 1; the options mean what Hugging Face's generate
means by them (roots_jax.decoding). A pretrained decoder's output is printed after its prompt,
an encoder-decoder's (or a fine-tuned model's) on its own. Built on roots_jax.api.LanguageModel.

--chat talks to the model through its chat template (LanguageModel.chat: a chat-tuned run's
template, as it trained; another model's tokenizer's, else the built-in one): each --prompt is a
user's message (after --system) answered on its own; --messages answers the conversation in a
JSON file (a list of {"role", "content"}); with neither, an interactive conversation reads a
user's message per line from standard input until its end, and prints each reply.
"""

import argparse
import json
import sys

from roots_jax import host_memory

if __name__ == "__main__":  # first: glibc reads its tunables when the process starts
  host_memory.tune_malloc()

from roots_jax import cli
from roots_jax.api import LanguageModel
from roots_jax.errors import ConfigError, DataError


def parse_args(argv: list[str]) -> argparse.Namespace:
  p = cli.ArgumentParser(prog="python -m roots_jax.generate", description=__doc__)
  p.add_argument("--workdir", required=True, help="the run (or Hugging Face model) directory")
  p.add_argument("--prompt", action="append", help="a prompt (--chat: a user's message); repeat "
                 "for more")
  p.add_argument("--chat", action="store_true", help="reply through the chat template")
  p.add_argument("--system", default="", help="--chat: a system message before each prompt")
  p.add_argument("--messages", default="", help="--chat: a JSON file holding a conversation")
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


def chat(lm: LanguageModel, args: argparse.Namespace, options: dict) -> None:
  """--chat: replies to each prompt, to the --messages conversation, or interactively."""
  system = [{"role": "system", "content": args.system}] if args.system else []
  replies = lambda messages: [lm.chat(messages, **options)] if args.num_return_sequences == 1 \
      else lm.chat(messages, **options)
  if args.messages:
    try:
      with open(args.messages, encoding="utf-8") as f:
        messages = json.load(f)
    except (OSError, ValueError) as e:
      raise DataError(f"cannot read the conversation {args.messages}: {e}; --messages takes a "
                      "JSON file holding a list of {\"role\", \"content\"} objects") from e
    print(format_outputs(["(conversation)"], [replies(system + messages)], full_text=False))
  elif args.prompt:
    outputs = [replies(system + [{"role": "user", "content": p}]) for p in args.prompt]
    print(format_outputs(args.prompt, outputs, full_text=False))
  else:
    messages = list(system)
    for line in sys.stdin:
      messages.append({"role": "user", "content": line.rstrip("\n")})
      reply = replies(messages)[0]
      messages.append({"role": "assistant", "content": reply})
      print(f"assistant: {reply}", flush=True)


def main(argv: list[str] | None = None) -> int:

  def command():
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.chat and (not args.prompt or args.system or args.messages):
      raise ConfigError("give --prompt (--system and --messages go with --chat)")
    if args.prompt and args.messages:
      raise ConfigError("--chat takes --prompt or --messages, not both")
    lm = LanguageModel.from_pretrained(args.workdir, checkpoint=args.checkpoint)
    options = dict(
        max_length=args.max_length, max_new_tokens=args.max_new_tokens,
        num_return_sequences=args.num_return_sequences, do_sample=args.do_sample,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        repetition_penalty=args.repetition_penalty, num_beams=args.num_beams,
        length_penalty=args.length_penalty, seed=args.seed, use_cache=not args.no_cache)
    if args.chat:
      chat(lm, args, options)
      return
    outputs = lm.generate(args.prompt, **options)
    print(format_outputs(args.prompt, outputs, full_text=lm.continues_prompts))

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
