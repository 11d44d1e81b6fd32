"""Full fine-tuning beside LoRA and QLoRA (int8, int4 weight-only base) on one task: trained
parameters, train-state bytes (what a checkpoint holds), the step's per-device memory and the
time of one train step, on the task's first real batch.

  python benchmarks/lora.py --config finetune/chat --init_from /tmp/qs --steps 20 [--rank 8]
      [--config.KEY=VALUE ...]

Every variant runs the same config (LoRA's on finetune.lora.modules, default the attention
projections); the step is compiled ahead of time as the fine-tune driver compiles it (the
jitted one for an int4 base on CPU, as runs.loop does), two warm steps, then `--steps` timed.
"""

import os
import sys
import tempfile
import time

from roots_jax import host_memory

if __name__ == "__main__":  # as the commands run (roots_jax/host_memory.py)
  host_memory.tune_malloc()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from flax import linen as nn

from roots_jax import cli, tasks
from roots_jax import config as config_lib
from roots_jax.data import load_tokenizer
from roots_jax.models import families
from roots_jax.runs import finetune, workdir as workdir_lib
from roots_jax.training import partitioning, profiling

VARIANTS = {"full": dict(rank=0, quantize=""), "LoRA": dict(quantize=""),
            "QLoRA int8": dict(quantize="int8_weight"), "QLoRA int4": dict(quantize="int4_weight")}


def benchmark(config, num_steps: int) -> dict:
  """One variant's row (config: a fine-tuning config with init_from and finetune.lora set)."""
  pretrained = workdir_lib.resolve_init_from(config.init_from)
  workdir_lib.merge_model(config, pretrained)
  config_lib.validate(config, jax.device_count())
  tokenizer = load_tokenizer(pretrained.tokenizer_path)
  with config.unlocked():
    config.init_from = os.path.join(pretrained.workdir, "checkpoints", str(pretrained.step))
  kind = tasks.get(config.task.kind)
  kind.prepare(config, tokenizer)
  mesh, rules = partitioning.make_mesh(config), partitioning.logical_rules(config)
  with tempfile.TemporaryDirectory() as workdir, jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    run = finetune.setup(config, workdir, mesh, tokenizer)
    parts = run.parts
    train = iter(kind.dataset(config, run.tokenizer, run.labels, run.examples("train"),
                              family=families.get(config.model.family), split="train"))
    try:
      batch = jax.device_put(next(train), parts.batch_sharding)
    finally:
      train.close()
    state = parts.init(jax.random.key(0))
    compiled = parts.train_step.lower(state, batch, *parts.step_constants).compile()
    memory = compiled.memory_analysis()
    step = parts.train_step if config.finetune.lora.quantize == "int4_weight" else compiled
    for _ in range(2):
      state, metrics = step(state, batch, *parts.step_constants)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(num_steps):
      state, metrics = step(state, batch, *parts.step_constants)
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - start) / num_steps
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
  return {"trained params": parts.num_params, "state MiB": state_bytes / 2**20,
          "arguments MiB": memory.argument_size_in_bytes / 2**20,
          "peak MiB": profiling.peak_bytes(memory) / 2**20, "step ms": step_s * 1e3}


def print_table(rows: dict[str, dict]) -> None:
  columns = list(next(iter(rows.values())))
  print("| variant | " + " | ".join(columns) + " |")
  print("|---|" + "---:|" * len(columns))
  for name, row in rows.items():
    print(f"| {name} | " + " | ".join(f"{v:,.4g}" if isinstance(v, float) else f"{v:,}"
                                      for v in row.values()) + " |")


def main() -> int:
  p = cli.ArgumentParser(prog="python benchmarks/lora.py", description=__doc__, overrides=True)
  p.add_argument("--config", required=True, metavar="NAME[:ARG]",
                 help=config_lib.config_argument_help())
  p.add_argument("--init_from", required=True, help="the base run")
  p.add_argument("--steps", type=int, required=True, help="timed steps")
  p.add_argument("--rank", type=int, default=8, help="LoRA's rank")

  def command():
    args = p.parse()
    rows = {}
    for name, lora in VARIANTS.items():
      config = config_lib.load_config(args.config, args.overrides)
      with config.unlocked():
        config.init_from = args.init_from
        config.finetune.lora.update({"rank": args.rank, **lora})
      rows[name] = benchmark(config, args.steps)
    print_table(rows)

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
