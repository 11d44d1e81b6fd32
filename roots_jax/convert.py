"""Hugging Face checkpoints <-> roots_jax runs (GPT-2, GPT-NeoX, Llama, BERT, T5).

  python -m roots_jax.convert import HF_DIR RUN [--config.SECTION.KEY=VALUE ...]
  python -m roots_jax.convert export RUN HF_DIR [--step N]

import reads a local Hugging Face model directory (config.json and model.safetensors or
pytorch_model.bin, sharded or not; .bin files need torch: pip install 'roots_jax[hf]') of
GPT2LMHeadModel / GPT2Model, GPTNeoXForCausalLM, LlamaForCausalLM, BertForPreTraining /
BertForMaskedLM / BertModel (the heads those lack are initialised fresh, and the command says
which), T5ForConditionalGeneration (v1.0 and v1.1) or MT5ForConditionalGeneration. It writes a
new RUN laid out like a pretraining run: config.json (the base config with the model section
from Hugging Face's; overrides such as --config.model.scan_layers=false may change run-time
fields, not the architecture), checkpoints/0 (the parameters only: `restore_params` reads them)
and tokenizer/ (the Hugging Face tokenizer files, which tokenizer.path names). Fine-tune it
(--config.init_from=RUN), evaluate or generate from it; `roots_jax.train --workdir RUN` refuses
to resume it (there is no optimizer or data state to resume): pretrain further from a new
workdir.

export writes RUN's newest (or --step) parameters as config.json + model.safetensors that
transformers' from_pretrained loads (GPT2LMHeadModel for learned positions, GPTNeoXForCausalLM
for RoPE with LayerNorm, LlamaForCausalLM for RoPE with RMSNorm and a gated MLP,
BertForPreTraining, T5ForConditionalGeneration), with the run's tokenizer: its Hugging Face files,
or its sentencepiece model as tokenizer.json that AutoTokenizer loads (not for T5). A model none
of these classes can represent (GPT-NeoX with SwiGLU, GPT-2 with grouped-query attention, ...) is
refused with the config field that stands in the way.
"""

import sys

from roots_jax import host_memory

if __name__ == "__main__":  # first: glibc reads its tunables when the process starts
  host_memory.tune_malloc()

from roots_jax import cli
from roots_jax.errors import ConfigError
from roots_jax.runs import convert


def _import(args, overrides) -> None:
  summary = convert.import_hf(args.hf_dir, args.run, overrides)
  print(f"imported {summary['architecture']} ({summary['parameters']:,} parameters) into "
        f"{args.run}")
  if summary["fresh"]:
    print(f"note: the checkpoint has no {', '.join(summary['fresh'])}: initialised fresh "
          "(random); fine-tune before using those heads")
  if not summary["tokenizer_files"]:
    print(f"note: {args.hf_dir} has no tokenizer files; copy them into {args.run}/tokenizer")


def _export(args, overrides) -> None:
  if overrides:
    raise ConfigError(f"export takes no config overrides; got {overrides[0]}")
  summary = convert.export_hf(args.run, args.hf_dir, step=args.step)
  print(f"exported {args.run} step {summary['step']} as {summary['architecture']} into "
        f"{args.hf_dir}")
  if not summary["tokenizer_files"]:
    print(f"note: the run's tokenizer is not exported: {summary['tokenizer_note'] or 'none found'}")


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="python -m roots_jax.convert", description=__doc__, overrides=True)
  commands = p.add_subparsers(dest="command", required=True)
  imp = commands.add_parser("import", help="a Hugging Face model directory -> a new roots_jax run",
                            description="Imports a Hugging Face model directory as a new run.",
                            overrides=True)
  imp.add_argument("hf_dir", help="a local Hugging Face model directory")
  imp.add_argument("run", help="the new run directory")
  imp.set_defaults(run_command=_import)
  exp = commands.add_parser("export", help="a roots_jax run -> a new Hugging Face model directory",
                            description="Exports a run's parameters as a Hugging Face model.")
  exp.add_argument("run", help="the run directory")
  exp.add_argument("hf_dir", help="the new Hugging Face model directory")
  exp.add_argument("--step", type=int, default=None, help="the checkpoint step (default: newest)")
  exp.set_defaults(run_command=_export)
  return p


def main(argv: list[str] | None = None) -> int:
  cli.log_to_console()

  def command():
    args = parser().parse(argv)
    args.run_command(args, args.overrides)

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
