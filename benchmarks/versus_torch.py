"""roots_jax beside Hugging Face transformers (PyTorch) on this machine's CPU, in one run.

  python benchmarks/versus_torch.py [--shapes 4x256,gpt2-small] [--rounds 3] [--steps 2]
      [--new_tokens 128] [--sample_seconds 2]

The same GPT-2-shaped model on both sides (learned positions, pre-LayerNorm, GELU, tied head,
float32, no dropout; random weights) at the same shapes: ours is configs/gpt2.py on one CPU
device, theirs GPT2LMHeadModel with torch's default CPU threads (one per core, as XLA's).
Measured, alternating the two sides (and which goes first) in every round, after a warm-up
call each (compilation); each sample is one untimed call, then the call repeated for at least
--sample_seconds:
  train   one optimizer step: AdamW (b2 0.95, weight decay 0.1), global-norm clipping at 1.0;
          torch's AdamW as a user gets it (its default implementation)
  eval    the forward pass with the loss, no gradients
  decode  greedy KV-cached generation of --new_tokens after a 32-token prompt, no eos; ours
          decoding.generate under jit, theirs model.generate (batch 1 and 8)
The table shows each side's median tokens/s (new tokens/s for decode) over the rounds and the
ratio ours / torch. Needs the hf extra (torch, transformers).
"""

import contextlib
import os
import statistics
import sys
import time

from roots_jax import host_memory

if __name__ == "__main__":  # as the commands run: both sides share the process's allocator
  host_memory.tune_malloc()
# One CPU device, as torch's one process: a simulated device count (XLA_FLAGS) would split the
# host's cores between devices.
os.environ["XLA_FLAGS"] = " ".join(
    f for f in os.environ.get("XLA_FLAGS", "").split()
    if not f.startswith("--xla_force_host_platform_device_count="))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
from flax import linen as nn

from roots_jax import cli, decoding
from roots_jax import config as config_lib
from roots_jax.errors import ConfigError
from roots_jax.runs import pretrain
from roots_jax.training import partitioning, steps

import train_throughput

SHAPES = {
    "tiny": dict(num_layers=2, embed_dim=64, num_heads=2, vocab_size=512, seq_len=32,
                 batch_size=2),  # a quick check that both sides run
    "4x256": dict(num_layers=4, embed_dim=256, num_heads=4, vocab_size=8192, seq_len=256,
                  batch_size=16),
    "gpt2-small": dict(num_layers=12, embed_dim=768, num_heads=12, vocab_size=50304,
                       seq_len=256, batch_size=4),
}
DEFAULT_SHAPES = ("4x256", "gpt2-small")
PROMPT_LEN = 32
DECODE_BATCHES = (1, 8)
LEARNING_RATE = 6e-4


def our_config(shape: dict):
  """configs/gpt2.py at `shape`, float32, its optimizer held at LEARNING_RATE."""
  s = shape
  overrides = [f"model.{k}={s[k]}" for k in ("num_layers", "embed_dim", "num_heads",
                                            "vocab_size")]
  overrides += [f"model.mlp_dim={4 * s['embed_dim']}", "model.dtype=float32",
                f"data.seq_len={s['seq_len']}", f"train.batch_size={s['batch_size']}",
                "train.steps=1000000", f"optimizer.learning_rate={LEARNING_RATE}",
                "optimizer.warmup_steps=0", "optimizer.schedule=constant"]
  return config_lib.load_config("gpt2:small", overrides)


class Ours:
  """The three measured calls on roots_jax, compiled once."""

  def __init__(self, shape: dict):
    config = our_config(shape)
    config_lib.validate(config, jax.device_count())
    self.mesh, self.rules = partitioning.make_mesh(config), partitioning.logical_rules(config)
    with self.context():
      self.parts = pretrain.build(config, self.mesh)
      self.state = self.parts.init(jax.random.key(0))
    self.batch = jax.device_put(train_throughput.synthetic_batch(self.parts.loss, config),
                                self.parts.batch_sharding)
    self.eval_step = jax.jit(steps.make_eval_step(self.parts.model, self.parts.loss))
    self._generators = {}

  @contextlib.contextmanager
  def context(self):
    """The mesh and logical-axis rules every call runs under."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      yield

  def train(self, n: int) -> None:
    for _ in range(n):
      self.state, metrics = self.parts.train_step(self.state, self.batch)
    jax.block_until_ready(metrics)

  def eval(self, n: int) -> None:
    for _ in range(n):
      out = self.eval_step(self.state.params, self.batch)
    jax.block_until_ready(out)

  def decode(self, prompts: np.ndarray, new_tokens: int) -> None:
    key = (prompts.shape, new_tokens)
    if key not in self._generators:
      gen = decoding.GenerationConfig(max_new_tokens=new_tokens)
      model, family = self.parts.model, self.parts.model_config.family
      self._generators[key] = jax.jit(lambda p, b: decoding.generate(
          model, p, b, family=family, config=gen, eos_id=-1).tokens)
    batch = {"inputs": prompts, "segment_ids": np.ones_like(prompts)}
    jax.block_until_ready(self._generators[key](self.state.params, batch))


class Torch:
  """The same three calls on Hugging Face's GPT2LMHeadModel."""

  def __init__(self, shape: dict):
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    self.torch = torch
    torch.manual_seed(0)
    hf = transformers.GPT2Config(
        vocab_size=shape["vocab_size"], n_positions=1024, n_embd=shape["embed_dim"],
        n_layer=shape["num_layers"], n_head=shape["num_heads"], n_inner=4 * shape["embed_dim"],
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=None, eos_token_id=None, pad_token_id=0, tie_word_embeddings=True)
    self.model = transformers.GPT2LMHeadModel(hf)
    self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=LEARNING_RATE,
                                       betas=(0.9, 0.95), weight_decay=0.1)
    rng = np.random.default_rng(0)
    self.batch = torch.from_numpy(rng.integers(
        0, shape["vocab_size"], (shape["batch_size"], shape["seq_len"])).astype(np.int64))

  def train(self, n: int) -> None:
    self.model.train()
    for _ in range(n):
      loss = self.model(input_ids=self.batch, labels=self.batch).loss
      loss.backward()
      self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
      self.optimizer.step()
      self.optimizer.zero_grad(set_to_none=True)

  def eval(self, n: int) -> None:
    self.model.eval()
    with self.torch.inference_mode():
      for _ in range(n):
        self.model(input_ids=self.batch, labels=self.batch)

  def decode(self, prompts: np.ndarray, new_tokens: int) -> None:
    self.model.eval()
    ids = self.torch.from_numpy(prompts.astype(np.int64))
    with self.torch.inference_mode():
      out = self.model.generate(ids, attention_mask=self.torch.ones_like(ids),
                                max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                do_sample=False, use_cache=True)
    assert out.shape[1] == prompts.shape[1] + new_tokens, out.shape


def rate(call, side, count: int, sample_s: float) -> float:
  """count / second of call(side), repeated back to back for at least sample_s after one
  untimed call: a short call alone (a decode of ~0.1 s) would time the cores waking up as much
  as the work, and the first calls after the other side's run slower (its memory, its caches)."""
  call(side)
  calls, start = 0, time.perf_counter()
  while (elapsed := time.perf_counter() - start) < sample_s or calls == 0:
    call(side)
    calls += 1
  return calls * count / elapsed


def compare(name: str, shape: dict, rounds: int, n_steps: int, new_tokens: int,
            sample_s: float) -> list[tuple]:
  """[(measure, our median, torch median, unit)] for one shape."""
  ours, theirs = Ours(shape), Torch(shape)
  tokens = shape["batch_size"] * shape["seq_len"]
  rng = np.random.default_rng(1)
  prompts = {b: rng.integers(4, shape["vocab_size"], (b, PROMPT_LEN)).astype(np.int32)
             for b in DECODE_BATCHES}
  # (measure, call(side), tokens per call, unit)
  measures = [("train step", lambda side: side.train(n_steps), n_steps * tokens, "tokens/s"),
              ("eval forward", lambda side: side.eval(n_steps), n_steps * tokens, "tokens/s")]
  measures += [(f"decode, batch {b}", lambda side, b=b: side.decode(prompts[b], new_tokens),
                b * new_tokens, "new tokens/s") for b in DECODE_BATCHES]
  with ours.context():
    for _, call, _, _ in measures:  # warm-up: compilation, allocation, caches
      call(ours)
      call(theirs)
    rates = {m[0]: ([], []) for m in measures}
    for r in range(rounds):
      for label, call, count, _ in measures:
        sides = (ours, theirs) if r % 2 == 0 else (theirs, ours)
        for side in sides:
          rates[label][side is theirs].append(rate(call, side, count, sample_s))
      print(f"  {name}: round {r + 1}/{rounds} done", file=sys.stderr)
  return [(label, statistics.median(rates[label][0]), statistics.median(rates[label][1]), unit)
          for label, _, _, unit in measures]


def main() -> int:
  p = cli.ArgumentParser(prog="python benchmarks/versus_torch.py", description=__doc__)
  p.add_argument("--shapes", default=",".join(DEFAULT_SHAPES), help=f"of {', '.join(SHAPES)}")
  p.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians over them")
  p.add_argument("--steps", type=int, default=2, help="train steps and eval passes per call")
  p.add_argument("--new_tokens", type=int, default=128, help="tokens each decode generates")
  p.add_argument("--sample_seconds", type=float, default=2.0,
                 help="each sample repeats its call for at least this long")

  def command():
    args = p.parse()
    names = args.shapes.split(",")
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
      raise ConfigError(f"--shapes: unknown {', '.join(unknown)}; choose from {', '.join(SHAPES)}")
    try:
      import torch  # pylint: disable=g-import-not-at-top
      import transformers  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError as e:
      raise ConfigError(f"this benchmark needs torch and transformers (the hf extra): {e}")
    malloc = " ".join(f"{k}={os.environ[k]}" for k in ("GLIBC_TUNABLES", "LD_PRELOAD")
                      if os.environ.get(k)) or "glibc malloc defaults"
    print(f"| shape | measure | roots_jax | torch | ratio |  ({os.cpu_count()} cores, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"jax {jax.__version__}, {malloc})")
    print("|---|---|---|---|---|")
    for name in names:
      s = SHAPES[name]
      desc = (f"{name} ({s['num_layers']}L d{s['embed_dim']} h{s['num_heads']} "
              f"v{s['vocab_size']}, {s['batch_size']}x{s['seq_len']})")
      for label, ours, theirs, unit in compare(name, s, args.rounds, args.steps,
                                               args.new_tokens, args.sample_seconds):
        print(f"| {desc} | {label} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f}x |  "
              f"{unit}", flush=True)

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
