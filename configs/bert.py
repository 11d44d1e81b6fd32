"""BERT (Devlin et al. 2019): a bidirectional encoder pretrained with masked LM + next sentence.

  python -m roots_jax.train --config configs/bert.py:tiny --workdir /tmp/bert
  python -m roots_jax.train --config configs/bert.py:base --workdir DIR --config.data.source=files \
      --config.data.train_files='/data/wiki/*.txt'

Variants: tiny (CPU), base (110M: 12 layers, 768 wide, 12 heads), large (340M: 24, 1024, 16).
Post-LN with an embedding LayerNorm, exact (erf) GELU, learned positions, token types, MLM head
tied to the word embeddings; set model.norm_placement=pre for the pre-LN variant.
"""

from roots_jax.config import base_config

# layers, width, heads: BERT paper section 3 (BERT-base, BERT-large); MLP is 4x the width.
VARIANTS = {
    "tiny": dict(num_layers=2, embed_dim=128, num_heads=4),
    "base": dict(num_layers=12, embed_dim=768, num_heads=12),
    "large": dict(num_layers=24, embed_dim=1024, num_heads=16),
}


def get_config(arg=None):
  variant = arg or "base"
  if variant not in VARIANTS:
    raise ValueError(f"bert.py variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
  size = VARIANTS[variant]
  c = base_config()
  c.model.update(
      size, family="encoder", mlp_dim=4 * size["embed_dim"], vocab_size=30522, max_len=512,
      position="learned", type_vocab_size=2, norm="layernorm", norm_eps=1e-12,
      norm_placement="post", mlp_activation="gelu_exact", use_bias=True, tie_embeddings=True,
      dropout_rate=0.1, attention_dropout_rate=0.1)
  c.data.update(objective="mlm_nsp", seq_len=512, mask_rate=0.15, next_sentence_prediction=True)
  c.tokenizer.train_max_bytes = 100_000_000
  # BERT: batch 256 x 512 tokens, AdamW lr 1e-4, wd 0.01, 10k warmup, linear decay, 1M steps.
  c.train.update(batch_size=256, steps=1_000_000, log_every=100, eval_every=5000, eval_batches=50,
                 checkpoint_every=5000)
  c.optimizer.update(learning_rate=1e-4, b2=0.999, eps=1e-6, weight_decay=0.01,
                     warmup_steps=10_000, schedule="linear", end_lr_fraction=0.0)
  if variant == "tiny":
    c.model.update(vocab_size=4096, max_len=128, dropout_rate=0.0, attention_dropout_rate=0.0)
    c.data.seq_len = 128
    c.tokenizer.train_max_bytes = 4_000_000
    c.train.update(batch_size=16, steps=300, log_every=25, eval_every=150, eval_batches=10,
                   checkpoint_every=100)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=30, end_lr_fraction=0.1)
  return c
