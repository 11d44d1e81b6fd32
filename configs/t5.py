"""T5 (Raffel et al. 2020), v1.0 architecture: encoder-decoder, pre-LN RMSNorm without biases,
ReLU MLP, bucketed relative position bias shared across layers, tied embeddings, no attention
scaling; pretrained with span corruption (noise density 0.15, mean span 3).

  python -m roots_jax.train --config configs/t5.py:tiny --workdir /tmp/t5
  python -m roots_jax.train --config configs/t5.py:small --workdir DIR --config.data.source=tfds \
      --config.data.tfds_name=c4 --config.data.tfds_data_dir=/data/tfds

Variants: tiny (CPU), small (60M: 6+6 layers, 512 wide, 8 heads, 2048 MLP), base (220M: 12+12,
768, 12, 3072). Append ",seq2seq" for supervised (input, target) pairs (data.input_field,
data.target_field) instead of span corruption.
"""

from roots_jax.config import base_config

# T5 paper Table 14 / the released T5 v1.0 configs.
VARIANTS = {
    "tiny": dict(num_layers=2, embed_dim=128, num_heads=4, mlp_dim=512),
    "small": dict(num_layers=6, embed_dim=512, num_heads=8, mlp_dim=2048),
    "base": dict(num_layers=12, embed_dim=768, num_heads=12, mlp_dim=3072),
}


def get_config(arg=None):
  variant, *flags = (arg or "small").split(",")
  if variant not in VARIANTS:
    raise ValueError(f"t5.py variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
  c = base_config()
  c.model.update(
      VARIANTS[variant], family="encoder_decoder", vocab_size=32128, head_dim=64,
      position="relative", relative_buckets=32, relative_max_distance=128, norm="rmsnorm",
      norm_eps=1e-6, norm_placement="pre", mlp_activation="relu", use_bias=False,
      tie_embeddings=True, scaled_attention=False, dropout_rate=0.1, max_len=512)
  # Inputs of 512 tokens give targets of 114 at density 0.15 and mean span 3 (T5's helper).
  c.data.update(objective="seq2seq" if "seq2seq" in flags else "span_corruption", seq_len=512,
                noise_density=0.15, mean_noise_span_length=3.0)
  c.tokenizer.train_max_bytes = 100_000_000
  # T5: Adafactor, 1/sqrt(step) after 10k constant warmup, batch 128 x 512, 2^19 steps.
  c.train.update(batch_size=128, steps=524_288, log_every=100, eval_every=5000, eval_batches=50,
                 checkpoint_every=5000)
  c.optimizer.update(name="adafactor", learning_rate=1e-2, warmup_steps=10_000,
                     schedule="inverse_sqrt", weight_decay=0.0, clip_norm=0.0)
  if variant == "tiny":
    c.model.update(vocab_size=4096, head_dim=32, dropout_rate=0.0)
    c.data.seq_len = 128
    c.tokenizer.train_max_bytes = 4_000_000
    c.train.update(batch_size=16, steps=300, log_every=25, eval_every=150, eval_batches=10,
                   checkpoint_every=100)
    # Adafactor's steps scale with each parameter's RMS: a tiny model needs a larger rate.
    c.optimizer.update(learning_rate=3e-2, warmup_steps=30)
  return c
