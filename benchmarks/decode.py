"""Generation speed with and without the KV cache, for a config's model on this machine.

  python benchmarks/decode.py --config configs/quickstart.py [--batch 1,8] [--prompt_len 32]
      [--new_tokens 128] [--config.KEY=VALUE ...]

Random weights (speed does not depend on them) and no eos, so every row generates all
`new_tokens`; greedy, one jitted loop per setting, timed after a warm-up call. Prints a table.
"""

import argparse
import sys
import time

from roots_jax import host_memory

if __name__ == "__main__":  # as the commands run (roots_jax/host_memory.py)
  host_memory.tune_malloc()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
from flax import linen as nn

from roots_jax import config as config_lib, decoding, models
from roots_jax.errors import RootsError
from roots_jax.models import families


def measure(model, params, family, batch: int, prompt_len: int, new_tokens: int,
            use_cache: bool) -> tuple[float, float]:
  """(compile + first call seconds, tokens/s of the timed calls)."""
  rng = np.random.default_rng(0)
  tokens = rng.integers(4, model.config.vocab_size, (batch, prompt_len), dtype=np.int32)
  segments = np.ones_like(tokens)
  prompts = {f"{family.prompt_prefix}inputs": tokens,
             f"{family.prompt_prefix}segment_ids": segments}
  config = decoding.GenerationConfig(max_new_tokens=new_tokens)
  run = jax.jit(lambda p, b: decoding.generate(model, p, b, family=family, config=config,
                                               eos_id=-1, use_cache=use_cache).tokens)
  start = time.perf_counter()
  jax.block_until_ready(run(params, prompts))
  compile_s = time.perf_counter() - start
  repeats, start = 0, time.perf_counter()
  while repeats < 3 or time.perf_counter() - start < 2.0:
    jax.block_until_ready(run(params, prompts))
    repeats += 1
  return compile_s, batch * new_tokens * repeats / (time.perf_counter() - start)


def build(config) -> tuple:
  """(model, random parameters, family) of a config's generating model."""
  model_config = models.ModelConfig.from_config(config.model)
  family = families.get(model_config.family)
  if not family.generates:
    raise RootsError("an encoder (BERT) does not generate; benchmark a decoder or "
                     "encoder_decoder config")
  model = family.build(model_config)
  dummy = np.ones((1, 8), np.int32)
  variables = jax.jit(model.init)(jax.random.key(0), *family.init_args(dummy))
  return model, nn.meta.unbox(variables)["params"], family


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(usage=__doc__.splitlines()[2].strip())
  parser.add_argument("--config", required=True)
  parser.add_argument("--batch", default="1,8")
  parser.add_argument("--prompt_len", type=int, default=32)
  parser.add_argument("--new_tokens", type=int, default=128)
  args, overrides = parser.parse_known_args(argv)
  try:
    config = config_lib.load_config(args.config, [o.removeprefix("--config.") for o in overrides])
    model, params, family = build(config)
    model_config = model.config
    rows = []
    for batch in (int(b) for b in args.batch.split(",")):
      cached = measure(model, params, family, batch, args.prompt_len, args.new_tokens, True)
      full = measure(model, params, family, batch, args.prompt_len, args.new_tokens, False)
      rows.append((batch, *cached, *full))
  except RootsError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"| {args.config} | {family.name}, {model_config.num_layers} layers, "
        f"d={model_config.embed_dim}, prompt {args.prompt_len}, {args.new_tokens} new tokens, "
        f"greedy, {jax.devices()[0].platform} |")
  print("| batch | KV cache tokens/s | recompute tokens/s | speed-up "
        "| compile s (cache / recompute) |")
  print("|---|---|---|---|---|")
  for batch, c_compile, c_rate, f_compile, f_rate in rows:
    print(f"| {batch} | {c_rate:,.0f} | {f_rate:,.0f} | {c_rate / f_rate:.1f}x | "
          f"{c_compile:.1f} / {f_compile:.1f} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
