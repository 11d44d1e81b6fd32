"""A smaller GPT distilled from a GPT run (the quickstart's, or a converted GPT-2): half the
layers and half the width, trained on the teacher's soft targets and the data's next tokens.

  python -m roots_jax.train --config quickstart --workdir /tmp/run
  python -m roots_jax.distill --config distill/gpt --workdir /tmp/student --config.teacher=/tmp/run

Model fields left unset are the teacher's; the student reads the teacher's tokenizer.
"""

from roots_jax.config import distill_config


def get_config(arg=None):
  del arg
  c = distill_config()
  c.model.update(num_layers=2, embed_dim=128, num_heads=4, mlp_dim=512)
  c.data.update(objective="causal", seq_len=128)
  # On the quickstart's teacher, 300 steps: held-out perplexity 83.3 at alpha 0.9, T 1; 84.6 at
  # alpha 1 (soft targets alone); 85.3 at alpha 0.5, T 2; 85.7 for the student from scratch.
  c.distill.update(alpha=0.9, temperature=1.0)
  c.train.update(batch_size=16, steps=300, log_every=25, eval_every=150, eval_batches=20,
                 checkpoint_every=100)
  c.optimizer.update(learning_rate=2e-3, warmup_steps=30, weight_decay=0.1)
  return c
