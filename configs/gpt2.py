"""GPT-2 sizes (Radford et al. 2019, Table 2): learned positions, pre-LN, GELU, tied embeddings.

  python -m roots_jax.train --config configs/gpt2.py:small --workdir DIR --config.data.source=files \
      --config.data.train_files='/data/owt/*.jsonl'

Variants: tiny (for tests and laptops), small (124M), medium (350M), large (774M).
Append ",runlocal" (e.g. `gpt2.py:small,runlocal`) for a few steps with a small batch on one machine.
"""

from roots_jax.config import base_config

# layers, width, heads: GPT-2 paper Table 2 (the 117M/345M/762M models, 124M/350M/774M as counted by HF).
VARIANTS = {
    "tiny": dict(num_layers=2, embed_dim=128, num_heads=4),
    "small": dict(num_layers=12, embed_dim=768, num_heads=12),
    "medium": dict(num_layers=24, embed_dim=1024, num_heads=16),
    "large": dict(num_layers=36, embed_dim=1280, num_heads=20),
}


def get_config(arg=None):
  variant, *flags = (arg or "small").split(",")
  if variant not in VARIANTS:
    raise ValueError(f"gpt2.py variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
  size = VARIANTS[variant]
  c = base_config()
  c.model.update(
      size, mlp_dim=4 * size["embed_dim"],
      vocab_size=50304,        # GPT-2's 50257 rounded up to a multiple of 128 (nanoGPT)
      max_len=1024, position="learned", norm="layernorm", mlp_activation="gelu",
      use_bias=True, tie_embeddings=True, dropout_rate=0.0,
      dtype="bfloat16", remat_policy="dots_no_batch" if variant == "large" else "none")
  c.tokenizer.train_max_bytes = 100_000_000
  c.data.seq_len = 1024
  # ~0.5M tokens per step with AdamW (b2=0.95, wd=0.1), 6e-4 peak, cosine to 10% (nanoGPT's recipe).
  c.train.update(batch_size=512, steps=600_000, log_every=100, eval_every=2000, eval_batches=50,
                 checkpoint_every=2000)
  c.optimizer.update(learning_rate=6e-4, b2=0.95, weight_decay=0.1, warmup_steps=2000)
  c.mesh.parallelism = "fsdp"
  if variant == "tiny":
    c.model.update(vocab_size=4096, max_len=256, dtype="float32")
    c.data.seq_len = 128
    c.train.update(batch_size=16, steps=200, log_every=20, eval_every=100, eval_batches=10,
                   checkpoint_every=100)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=20)
  if "runlocal" in flags:
    c.model.dtype = "float32"
    c.tokenizer.train_max_bytes = 4_000_000
    c.model.vocab_size = 8192
    c.data.seq_len = 128
    c.train.update(batch_size=8, steps=20, log_every=5, eval_every=10, eval_batches=2, checkpoint_every=10)
  return c
