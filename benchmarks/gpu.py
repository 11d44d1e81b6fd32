"""GPT-2 small and a ~1B decoder on one GPU, within a time budget: train-step tokens/s and MFU
per attention kernel and remat policy, each at the largest batch that fits, and KV-cached
decoding tokens/s. benchmarks/gpu.sh runs it on a lent GPU machine.

  python benchmarks/gpu.py [--budget 480] [--attention xla,cudnn] [--remat none,dots_no_batch]
      [--max_tokens 131072] [--decode_batch 1,64] [--commit SHA] [--smoke]

Batch sizing: every (model, attention, remat) train step is compiled up front at two small
batches, in parallel and without autotuning, for XLA's memory plan alone; a line through the two
peaks gives the largest batch under 92% of the allocator's limit (a multiple of 8 from 16 up and
of the device count, at most max_tokens per step). A row that still runs out of memory retries
at 85% of its batch (at half of it, from the cap, where no plan could be made).

Rows run most telling first (remat none with each kernel, then decoding, then the other remat
policies); a row whose expected time would end past the budget is skipped and says so. Prints a
markdown table, also written to $OUT/gpu_results.md after every row when $OUT is set. --smoke:
the same code path with test-sized models for a CPU (cudnn rows are skipped there).
"""

import argparse
import concurrent.futures
import datetime
import gc
import math
import os
import subprocess
import sys
import time

import jax

import decode
import train_throughput
from roots_jax import config as config_lib
from roots_jax.models import ModelConfig
from roots_jax.runs import pretrain
from roots_jax.training import profiling

# The ~1B decoder: Llama's choices (Touvron et al. 2023: RMSNorm, SwiGLU, RoPE, no biases, an
# untied head, a 32k vocabulary) at TinyLlama's width and MLP size, 16 heads of 128 and 18
# layers: 1.06B parameters, trained on 2048-token sequences in bf16 like gpt2:small.
LLAMA = ("model.norm=rmsnorm", "model.mlp_activation=swiglu", "model.position=rope",
         "model.use_bias=false", "model.tie_embeddings=false")
MODELS = {
    "gpt2-small": ("gpt2:small", ()),
    "decoder-1b": ("gpt2:small", LLAMA + (
        "model.vocab_size=32000", "model.num_layers=18", "model.embed_dim=2048",
        "model.num_heads=16", "model.mlp_dim=5632", "model.max_len=2048", "data.seq_len=2048")),
}
# --smoke: the same two architectures at test sizes.
SMOKE_MODELS = {
    "gpt2-tiny": ("gpt2:tiny", ()),
    "decoder-tiny": ("gpt2:tiny", LLAMA + ("model.mlp_dim=384",)),
}

MEMORY_USE = 0.92    # of the allocator's limit: XLA's plan leaves out fragmentation
OOM_RETRY = 0.85     # a planned batch that ran out of memory retries at this fraction (else half)
# Seconds a row is expected to take before one of its kind has run (compiles dominate).
FIRST_GUESS = {"train": 60.0, "decode": 40.0}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(usage=__doc__.split("\n\n")[1].strip())
  p.add_argument("--budget", type=float, default=480, help="seconds for the whole run")
  p.add_argument("--models", default="", help="comma-separated subset of the models")
  p.add_argument("--attention", default="xla,cudnn", help="model.attention_impl values")
  p.add_argument("--remat", default="none,dots_no_batch", help="model.remat_policy values")
  p.add_argument("--max_tokens", type=int, default=1 << 17, help="cap of a train step's tokens")
  p.add_argument("--steps", type=int, default=0, help="timed steps; 0: about 2 s of steps")
  p.add_argument("--decode_batch", default="1,64", help="batch sizes of the decoding rows; "
                 "empty: none")
  p.add_argument("--prompt_len", type=int, default=128)
  p.add_argument("--new_tokens", type=int, default=128)
  p.add_argument("--memory_gib", type=float, default=0,
                 help="memory to fill; 0: the allocator's limit (a CPU reports none: 1 GiB)")
  p.add_argument("--commit", default="", help="recorded in the table; default: git's HEAD")
  p.add_argument("--smoke", action="store_true", help="test-sized models, 2 steps, for a CPU")
  args = p.parse_args(argv)
  if args.smoke:
    args.max_tokens, args.steps, args.decode_batch = min(args.max_tokens, 1024), 2, "1,2"
    args.prompt_len, args.new_tokens = 8, 8
  deadline = time.monotonic() + args.budget
  models = SMOKE_MODELS if args.smoke else MODELS
  if args.models:
    models = {name: models[name] for name in args.models.split(",")}
  attentions, remats = args.attention.split(","), args.remat.split(",")
  cases = [(name, attention, remat) for name in models for attention in attentions
           for remat in remats]
  report = Report(args, argv if argv is not None else sys.argv[1:], cases)

  # Most telling first: the first remat policy with each kernel (cudnn first), decoding, then the
  # other policies.
  cases = sorted(cases, key=lambda c: (remats.index(c[2]), c[1] != "cudnn",
                                       attentions.index(c[1])))
  runnable = []
  for name, attention, remat in cases:
    if attention == "cudnn" and jax.default_backend() != "gpu":
      report.train(name, attention, remat, note="skipped: cudnn attention needs an NVIDIA GPU")
    else:
      runnable.append((name, attention, remat))
  stats = jax.devices()[0].memory_stats() or {}
  limit = MEMORY_USE * (args.memory_gib * 2**30 or stats.get("bytes_limit", 2**30))
  log(f"sizing {len(runnable)} train steps for {limit / 2**30:.1f} GiB")
  batches = fit_batches(models, runnable, limit, args.max_tokens)

  first = [c for c in runnable if c[2] == remats[0]]
  decodes = [("decode", (name,)) for name in models if args.decode_batch]
  jobs = ([("train", c) for c in first] + decodes
          + [("train", c) for c in runnable if c not in first])
  took = {}
  for kind, case in jobs:
    expected = took.get((kind, case[0]), FIRST_GUESS[kind])
    if time.monotonic() + expected > deadline:
      note = f"skipped: the budget ({args.budget:.0f} s) would run out"
      if kind == "train":
        report.train(*case, note=note)
      else:
        report.decode(case[0], note=note)
      continue
    began = time.monotonic()
    if kind == "train":
      run_train(report, models, *case, batches[case], args, deadline)
    else:
      run_decode(report, models, case[0], args)
    took[(kind, case[0])] = max(took.get((kind, case[0]), 0.0), time.monotonic() - began)
    gc.collect()
  print(report.markdown())
  return 0


def load(models, name: str, *overrides: str):
  spec, model_overrides = models[name]
  return config_lib.load_config(spec, [*model_overrides, *overrides])


def train_config(models, name, attention, remat, batch):
  return load(models, name, f"model.attention_impl={attention}", f"model.remat_policy={remat}",
              f"train.batch_size={batch}")


def fit_batches(models, cases, limit: float, max_tokens: int) -> dict:
  """case -> (batch to run, why, planned): the largest batch whose planned peak memory is under
  `limit`, from two compiles of each case's step; the cap, unplanned, where those failed."""
  lowered, caps, fitted = {}, {}, {}
  unit = jax.device_count()
  for case in cases:
    caps[case] = max(unit, round_batch(max_tokens // load(models, case[0]).data.seq_len))
    small = max(unit, round_batch(caps[case] // 16))
    try:
      for batch in (small, 4 * small):
        lowered[case, batch] = train_throughput.lowered_step(train_config(models, *case, batch))
    except Exception as e:  # the row itself will fail and say why; the others go on
      fitted[case] = (caps[case], f"memory plan failed ({first_line(e)})", False)
  # Autotuning picks kernels by timing them on the device: it would time them all at once here,
  # and the memory plan does not need it.
  options = {"xla_gpu_autotune_level": 0}
  with concurrent.futures.ThreadPoolExecutor(max(1, (os.cpu_count() or 2) // 2)) as pool:
    compiled = {key: pool.submit(step.compile, compiler_options=options)
                for key, step in lowered.items()}
    for case in cases:
      if case in fitted:
        continue
      try:
        peaks = {b: profiling.peak_bytes(compiled[c, b].result().memory_analysis())
                 for c, b in compiled if c == case}
      except Exception as e:  # as above
        fitted[case] = (caps[case], f"memory plan failed ({first_line(e)})", False)
        continue
      fitted[case] = (*fit_batch(peaks, limit, caps[case]), True)
      log(f"{' '.join(case)}: planned peak "
          f"{', '.join(f'{v / 2**30:.2f} GiB at {b}' for b, v in peaks.items())}: batch "
          f"{fitted[case][0]} ({fitted[case][1]})")
  return fitted


def fit_batch(peaks: dict, limit: float, cap: int) -> tuple[int, str]:
  """(batch, why) from {batch: planned peak bytes} at two batches: the line through them gives
  the most rows under `limit`, rounded (round_batch), at most `cap`."""
  (b1, p1), (b2, p2) = sorted(peaks.items())
  per_row = max((p2 - p1) / (b2 - b1), 1.0)
  fits = int((limit - p1) / per_row) + b1
  if fits >= cap:
    return cap, f"fits {fits}, capped"
  return round_batch(fits), f"fits {fits}"


def round_batch(batch: int) -> int:
  """Rounded down to a multiple of the device count, and of 8 from 16 up (whole tiles of rows)."""
  step = math.lcm(8 if batch >= 16 else 1, jax.device_count())
  return max(batch, 0) // step * step


def run_train(report, models, name, attention, remat, fitted, args, deadline) -> None:
  batch, why, planned = fitted
  while batch >= 1:
    config = train_config(models, name, attention, remat, batch)
    tokens = batch * config.data.seq_len
    flops = pretrain.flops_per_token(config, ModelConfig.from_config(config.model))
    peak = profiling.peak_flops_per_device(0) or 1e12
    steps = args.steps or min(20, max(3, math.ceil(2.0 / (tokens * flops / (0.4 * peak)))))
    try:
      result = train_throughput.benchmark(config, steps)
    except Exception as e:  # one failing row must not end a one-shot GPU run
      if not out_of_memory(e) or time.monotonic() > deadline:
        report.train(name, attention, remat, batch=batch, note=f"failed: {first_line(e)}")
        return
      log(f"{name} {attention} {remat}: batch {batch} ran out of memory")
      why += f"; out of memory at {batch}"
      batch = round_batch(int(batch * (OOM_RETRY if planned else 0.5)))
      gc.collect()
      continue
    report.train(name, attention, remat, batch=batch, result=result, note=why)
    return
  report.train(name, attention, remat, note=f"does not fit ({why})")


def run_decode(report, models, name, args) -> None:
  """KV-cached greedy decoding with bf16 weights, as served."""
  try:
    config = load(models, name, "model.param_dtype=bfloat16", "model.attention_impl=xla")
    model, params, family = decode.build(config)
    for batch in (int(b) for b in args.decode_batch.split(",")):
      compile_s, rate = decode.measure(model, params, family, batch, args.prompt_len,
                                       args.new_tokens, use_cache=True)
      report.decode(name, batch=batch, rate=rate, compile_s=compile_s)
  except Exception as e:  # as in run_train
    report.decode(name, note=f"failed: {first_line(e)}")


class Report:
  """The rows so far as one markdown document, rewritten to $OUT/gpu_results.md at each row so a
  run stopped early still leaves its numbers."""

  def __init__(self, args, argv, cases):
    device = jax.devices()[0]
    self.title = (f"{jax.device_count()} x {device.device_kind}, jax {jax.__version__}, commit "
                  f"{args.commit or git_commit()}, "
                  f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    self.command = " ".join(["python benchmarks/gpu.py", *argv])
    self.decode_setting = (f"prompt {args.prompt_len} + {args.new_tokens} new tokens, greedy, "
                           "bf16 weights, KV cache")
    self.order, self.trains, self.decodes = cases, [], []
    self.path = os.path.join(os.environ["OUT"], "gpu_results.md") if os.environ.get("OUT") else ""

  def train(self, name, attention, remat, *, batch=None, result=None, note=""):
    r = result or {}
    num = lambda key, fmt: format(r[key], fmt) if isinstance(r.get(key), float) else "-"
    self.trains.append((name, attention, remat, num("params (M)", ",.0f"),
                        r.get("batch x seq", batch or "-"),
                        num("tokens/s", ",.0f"), r.get("MFU", "-"), num("step (ms)", ".1f"),
                        num("peak memory (GiB)", ".1f"), num("compile (s)", ".0f"), note))
    self._row(self.trains[-1])

  def decode(self, name, *, batch=None, rate=None, compile_s=None, note=""):
    self.decodes.append((name, batch or "-", f"{rate:,.0f}" if rate else "-",
                         f"{batch / rate * 1e3:.2f}" if rate else "-",
                         f"{compile_s:.0f}" if compile_s is not None else "-", note))
    self._row(self.decodes[-1])

  def _row(self, row) -> None:
    log(" | ".join(map(str, row)))
    if self.path:
      with open(self.path, "w") as f:
        f.write(self.markdown() + "\n")

  def markdown(self) -> str:
    lines = [f"### {self.title}", "", f"`{self.command}`", "",
             "| model | attention | remat | params M | batch x seq | tokens/s | MFU | step ms "
             "| peak GiB | compile s | note |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [table_row(r) for r in sorted(self.trains, key=lambda r: self.order.index(r[:3]))]
    lines += ["", f"Decoding: {self.decode_setting}.", "",
              "| model | batch | tokens/s | ms per step | compile s | note |",
              "|---|---|---|---|---|---|"]
    lines += [table_row(r) for r in self.decodes]
    return "\n".join(lines)


def table_row(cells) -> str:
  return "| " + " | ".join(map(str, cells)) + " |"


def out_of_memory(e: Exception) -> bool:
  return "RESOURCE_EXHAUSTED" in str(e) or "out of memory" in str(e).lower()


def first_line(e: Exception) -> str:
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0][:160] if text else ''}".replace("|", "/")


def git_commit() -> str:
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


_STARTED = time.monotonic()


def log(message: str) -> None:
  print(f"[{time.monotonic() - _STARTED:5.0f} s] {message}", flush=True)


if __name__ == "__main__":
  sys.exit(main())
