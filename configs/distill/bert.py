"""DistilBERT (Sanh et al. 2019): a BERT student of half the teacher's layers, started from every
other teacher layer (and its embeddings), trained on masked LM with the teacher's soft targets
(temperature 2) and a cosine loss between the last hidden states.

  python -m roots_jax.train --config bert:tiny --workdir /tmp/bert
  python -m roots_jax.distill --config distill/bert --workdir /tmp/distilbert \
      --config.teacher=/tmp/bert

DistilBERT drops next sentence prediction and the token types; here the objective is the
teacher's (mlm_nsp on the built-in corpus), and the NSP head is distilled like the MLM's.
Its loss weights the soft targets 5, the MLM loss 2 and the cosine loss 1: alpha = 5/7 and a
hidden weight of 1/7 of the total keep those proportions.
"""

from roots_jax.config import distill_config


def get_config(arg=None):
  del arg
  c = distill_config()
  c.data.update(objective="mlm_nsp", seq_len=128)
  c.distill.update(alpha=5 / 7, temperature=2.0, hidden_loss="cosine", hidden_weight=1 / 7,
                   init_layers="every_other")
  c.train.update(batch_size=16, steps=300, log_every=25, eval_every=150, eval_batches=10,
                 checkpoint_every=100)
  c.optimizer.update(learning_rate=5e-4, warmup_steps=30, weight_decay=0.01, schedule="linear",
                     end_lr_fraction=0.1)
  return c
