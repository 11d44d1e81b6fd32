"""Input-pipeline throughput per objective and worker count, against what one GPU consumes.

  python benchmarks/data_throughput.py [--objectives causal,mlm_nsp,span_corruption]
      [--workers 0,1,2] [--seconds 10] [--consume 600000] [--config.KEY=VALUE ...]

Builds each objective's training pipeline as a run does (objectives.dataset on the run's
trained or cached tokenizer, data.source as configured: the built-in corpus by default),
skips the first batches (worker start, shuffle window fill) and pulls batches for a fixed
time. Tokens are counted as the model is fed: B x T slots of the input (encoder) rows, the
unit of train_throughput.py's tokens/s and of MFU, and the real (non-padding) ones among
them. A run's workers each make whole batches, so a worker's share is the total over the
worker count. The last lines say how many workers keep up with `--consume` slots/s per GPU.
"""

import math
import sys
import tempfile
import time

from roots_jax import cli, objectives
from roots_jax import config as config_lib
from roots_jax.errors import ConfigError
from roots_jax.runs import pretrain

# Objective -> (config, overrides): the family's tiny model (the pipeline does not depend
# on its size) at the paper's sequence length, with one GPU's share of the paper's global
# batch on an 8-GPU host (GPT-2 512, BERT 256, T5 128; T5's targets are 114 long). Each
# tokenizer is the tiny configs' (4096 pieces, trained on 4 MB, cached for later runs).
PRESETS = {
    "causal": ("configs/gpt2.py:tiny", ["model.max_len=1024", "data.seq_len=1024",
                                        "train.batch_size=64",
                                        "tokenizer.train_max_bytes=4000000"]),
    "mlm_nsp": ("configs/bert.py:tiny", ["model.max_len=512", "data.seq_len=512",
                                         "train.batch_size=32"]),
    "span_corruption": ("configs/t5.py:tiny", ["data.seq_len=512", "train.batch_size=16"]),
}


def measure(config, tokenizer, num_workers: int, *, warmup: int, seconds: float) -> dict:
  """Batches/s, slots/s and real tokens/s of the train pipeline with `num_workers` workers."""
  with config.unlocked():
    config.data.num_workers = num_workers
  it = iter(objectives.dataset(config, tokenizer, "train"))
  try:
    start = time.perf_counter()
    for _ in range(warmup):
      next(it)
    warmup_s = time.perf_counter() - start
    batches = real = slots = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
      segment_ids = _segment_ids(next(it))    # [B, T]
      batches += 1
      real += int((segment_ids > 0).sum())
      slots += segment_ids.size
  finally:
    it.close()
  return {"warmup_s": warmup_s, "batches": batches / elapsed, "slots": slots / elapsed,
          "real": real / elapsed}


def _segment_ids(batch: dict):
  """The input (encoder) rows' segment ids: 0 on padding."""
  return batch["segment_ids"] if "segment_ids" in batch else batch["encoder_segment_ids"]


def worker_counts(text: str) -> list[int]:
  """--workers: "0,1,2" -> [0, 1, 2]."""
  return [int(w) for w in text.split(",")]


def per_worker(num_workers: int, rate: float) -> float:
  """A worker's share of `rate`; in-process (0 workers), the one process is the worker."""
  return rate / max(num_workers, 1)


def workers_needed(consume: float, rate_per_worker: float) -> int:
  """Workers that together make at least `consume` slots/s."""
  return math.ceil(consume / rate_per_worker)


def table(rows: list[dict]) -> list[str]:
  """The markdown table of `measure` results, each with its setting."""
  lines = ["| objective | config | seq_len | batch | workers | warm-up s | batches/s "
           "| tokens/s (B x T) | tokens/s (real) | real % | tokens/s (B x T) per worker |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(
        f"| {r['objective']} | {r['config']} | {r['seq_len']} | {r['batch']} | {r['workers']} "
        f"| {r['warmup_s']:.1f} | {r['batches']:,.1f} | {r['slots']:,.0f} | {r['real']:,.0f} "
        f"| {100 * r['real'] / r['slots']:.0f} | {per_worker(r['workers'], r['slots']):,.0f} |")
  return lines


def verdict(objective: str, rows: list[dict], consume: float) -> str:
  """How many workers feed one GPU, at the rate of the fewest-worker multiprocess setting
  (in-process when none was measured): a worker there has a core to itself."""
  r = min(rows, key=lambda r: (r["workers"] == 0, r["workers"]))
  rate = per_worker(r["workers"], r["slots"])
  needed = workers_needed(consume, rate)
  return (f"{objective}: one GPU consuming {consume:,.0f} tokens/s needs {needed} "
          f"worker{'s' * (needed != 1)} ({rate:,.0f} tokens/s per worker at "
          f"data.num_workers={r['workers']})")


def main() -> int:
  p = cli.ArgumentParser(prog="python benchmarks/data_throughput.py", description=__doc__,
                         overrides=True)
  p.add_argument("--objectives", default=",".join(PRESETS),
                 help="comma-separated, of: %(default)s")
  p.add_argument("--workers", default=[0, 1, 2], type=worker_counts,
                 help="data.num_workers settings, comma-separated (0: in-process; default 0,1,2)")
  p.add_argument("--seconds", type=float, default=10.0, help="timed seconds per setting")
  p.add_argument("--warmup", type=int, default=10, help="batches pulled before the timing")
  p.add_argument("--consume", type=float, default=600_000,
                 help="tokens/s (B x T) one GPU consumes (default: GPT-2 small at 45%% MFU on "
                      "one H100)")

  def command():
    args = p.parse()
    names = args.objectives.split(",")
    for name in names:
      if name not in PRESETS:
        raise ConfigError(f"--objectives: no preset for {name!r}; choose from "
                          f"{', '.join(PRESETS)}")
    rows, verdicts = [], []
    for name in names:
      spec, overrides = PRESETS[name]
      config = config_lib.load_config(spec, overrides + args.overrides)
      config_lib.validate(config, 1)
      with tempfile.TemporaryDirectory() as workdir:
        tokenizer = pretrain.load_or_train_tokenizer(config, workdir, process_index=0)
      target_len = objectives.target_len(config.data)
      setting = dict(objective=name, config=spec, batch=config.train.batch_size,
                     seq_len=f"{config.data.seq_len}" + (f"/{target_len}" if target_len else ""))
      measured = [dict(setting, workers=n, **measure(config, tokenizer, n, warmup=args.warmup,
                                                      seconds=args.seconds))
                  for n in args.workers]
      rows += measured
      verdicts.append(verdict(name, measured, args.consume))
    print("\n".join(table(rows)))
    print()
    print("\n".join(verdicts))

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
