"""A T5 student distilled on span corruption: one encoder and one decoder layer of half the
teacher's width, trained on the teacher's soft targets over the corrupted spans and an MSE loss
between the decoders' last hidden states (a learned projection bridges the widths).

  python -m roots_jax.train --config t5:tiny --workdir /tmp/t5
  python -m roots_jax.distill --config distill/t5 --workdir /tmp/t5-student --config.teacher=/tmp/t5

Append ":seq2seq" for supervised (input, target) pairs instead (data.source=files with
data.input_field and data.target_field), distilling a seq2seq teacher.
"""

from roots_jax.config import distill_config


def get_config(arg=None):
  c = distill_config()
  c.model.update(num_layers=1, num_decoder_layers=1, embed_dim=64, num_heads=2, mlp_dim=256)
  c.data.update(objective="seq2seq" if arg == "seq2seq" else "span_corruption", seq_len=128,
                noise_density=0.15, mean_noise_span_length=3.0)
  c.distill.update(alpha=0.5, temperature=2.0, hidden_loss="mse", hidden_weight=1.0)
  c.train.update(batch_size=16, steps=300, log_every=25, eval_every=150, eval_batches=10,
                 checkpoint_every=100)
  c.optimizer.update(name="adafactor", learning_rate=3e-2, warmup_steps=30,
                     schedule="inverse_sqrt", weight_decay=0.0, clip_norm=0.0)
  return c
