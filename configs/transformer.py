"""The original Transformer (Vaswani et al. 2017), base model: 6+6 layers, 512 wide, 8 heads,
2048 MLP, sinusoidal positions, post-LN, ReLU, shared and scaled embeddings, dropout 0.1.

  python -m roots_jax.train --config configs/transformer.py:base --workdir DIR \
      --config.data.source=files --config.data.train_files=/data/wmt/train.jsonl \
      --config.data.eval_files=/data/wmt/dev.jsonl --config.data.input_field=de \
      --config.data.target_field=en

Trained on (input, target) pairs (data.objective=seq2seq); ",span_corruption" pretrains it on
plain text instead, which is what runs with no data configured.
"""

from roots_jax.config import base_config


def get_config(arg=None):
  variant, *flags = (arg or "base").split(",")
  if variant not in ("base", "tiny"):
    raise ValueError(f"transformer.py variant must be base or tiny; got {variant!r}")
  c = base_config()
  c.model.update(
      family="encoder_decoder", num_layers=6, num_decoder_layers=6, embed_dim=512, num_heads=8, mlp_dim=2048,
      vocab_size=37000, position="sinusoidal", max_len=512, norm="layernorm", norm_eps=1e-6,
      norm_placement="post", mlp_activation="relu", use_bias=True, tie_embeddings=True,
      scale_embeddings=True, dropout_rate=0.1)
  c.data.update(objective="span_corruption" if "span_corruption" in flags else "seq2seq",
                seq_len=256, target_len=256)
  # Section 5.3: Adam (b2 0.98, eps 1e-9), lr = d^-0.5 min(step^-0.5, step warmup^-1.5), 4k warmup.
  c.train.update(batch_size=128, steps=100_000, log_every=100, eval_every=5000, eval_batches=50,
                 checkpoint_every=5000)
  c.optimizer.update(name="adamw", learning_rate=512 ** -0.5 * 4000 ** -0.5, b1=0.9, b2=0.98,
                     eps=1e-9, weight_decay=0.0, warmup_steps=4000, schedule="inverse_sqrt")
  if variant == "tiny":
    c.model.update(num_layers=2, num_decoder_layers=2, embed_dim=128, num_heads=4, mlp_dim=512,
                   vocab_size=4096, max_len=128, dropout_rate=0.0)
    c.data.update(seq_len=128, target_len=0)
    c.tokenizer.train_max_bytes = 4_000_000
    c.train.update(batch_size=16, steps=300, log_every=25, eval_every=150, eval_batches=10,
                   checkpoint_every=100)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=30)
  return c
