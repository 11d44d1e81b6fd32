"""A small GPT on the built-in corpus (the Python standard library): trains on a 2-core CPU in minutes.

  python -m roots_jax.train --config configs/quickstart.py --workdir /tmp/run
"""

from roots_jax.config import base_config


def get_config(arg=None):
  del arg
  c = base_config()
  c.model.update(vocab_size=4096, num_layers=4, embed_dim=256, num_heads=4, mlp_dim=1024,
                 position="rope", max_len=256)
  c.tokenizer.train_max_bytes = 4_000_000
  c.data.seq_len = 128
  c.train.update(batch_size=16, steps=300, log_every=25, eval_every=150, eval_batches=20,
                 checkpoint_every=100)
  c.optimizer.update(learning_rate=2e-3, warmup_steps=30, weight_decay=0.1)
  return c
