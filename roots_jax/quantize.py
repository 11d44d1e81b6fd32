"""Post-training quantization command: writes a run whose checkpoint holds quantized weights.

  python -m roots_jax.quantize --run RUN --out DIR --scheme int8_weight|int8|int4_weight
      [--calibration_batches N] [--checkpoint best|latest|STEP]

Examples:

  python -m roots_jax.quantize --run /tmp/run --out /tmp/run-w8 --scheme int8_weight
  python -m roots_jax.quantize --run /tmp/run --out /tmp/run-w4 --scheme int4_weight
  python -m roots_jax.quantize --run /tmp/run --out /tmp/run-a8 --scheme int8 \
      --calibration_batches 8
  python -m roots_jax.evaluate --workdir /tmp/run-w8
  python -m roots_jax.generate --workdir /tmp/run-w8 --prompt "def add(a, b):"

RUN is a pretraining, converted or fine-tuning run (its default checkpoint: the newest, a
fine-tuned model's best), one of its checkpoints/<step> directories, or a Hugging Face model
directory. The matmul kernels of the Transformer blocks (attention and MLP) are quantized with
Qwix (pip install 'roots_jax[quant]'), one scale per output channel; embeddings, LM and task
heads, norms and biases stay float32:

  int8_weight   int8 weights, float activations
  int8          int8 weights and int8 matmul inputs: scaled per token at run time, or with
                --calibration_batches N by static scales calibrated on N batches of the run's
                training data
  int4_weight   int4 weights, float activations

DIR becomes a run of kind "quantized" (config.json records the scheme and the source run and
step) that evaluate, generate, LanguageModel.from_pretrained and pipeline use like the run it
was made from; an earlier run in DIR is replaced. The command prints the bytes of the weights
and of the whole checkpoint, quantized against float32. Quantization-aware training is a
config setting of training runs instead (--config.quant.qat_scheme=int8, see --config.help).
"""

import sys

from roots_jax import host_memory

if __name__ == "__main__":  # first: glibc reads its tunables when the process starts
  host_memory.tune_malloc()

from roots_jax import cli
from roots_jax.runs import quantize
from roots_jax.training import quantization


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="python -m roots_jax.quantize", description=__doc__)
  p.add_argument("--run", required=True, metavar="RUN", help="the run (or checkpoint, or Hugging "
                 "Face model directory) to quantize")
  p.add_argument("--out", required=True, metavar="DIR", help="the quantized run's directory")
  p.add_argument("--scheme", required=True, choices=tuple(quantization.SCHEMES),
                 help="what is quantized, to which type")
  p.add_argument("--calibration_batches", type=int, default=0, metavar="N",
                 help="int8: calibrate static activation scales on N training batches "
                 "(default 0: dynamic, per-token scales)")
  p.add_argument("--checkpoint", default=None, metavar="best|latest|STEP",
                 help="default: a fine-tuning run's best, else the newest")
  return p


def _size(n: int) -> str:
  return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def main(argv: list[str] | None = None) -> int:
  cli.log_to_console()

  def command():
    args = parser().parse(argv)
    s = quantize.quantize(args.run, args.out, args.scheme,
                          calibration_batches=args.calibration_batches,
                          checkpoint=args.checkpoint)
    q, f = s["bytes"], s["float_bytes"]
    print(f"quantized {s['source']} step {s['step']} to {s['scheme']} into {s['out']}")
    print(f"quantized weights: {_size(q.quantized)} ({_size(q.quantized_float)} as float32, "
          f"{q.ratio:.2f}x smaller)")
    print(f"all parameters:    {_size(q.total)} ({_size(f.total)} unquantized, "
          f"{f.total / q.total:.2f}x smaller); checkpoint on disk {_size(s['disk_bytes'])}")

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
