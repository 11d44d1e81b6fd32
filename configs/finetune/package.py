"""Fine-tune on the built-in classification task: the top-level standard-library package (10
classes) that a function's docstring comes from. Splits hold out whole modules.

  python -m roots_jax.train --config configs/bert.py:tiny --workdir /tmp/bert
  python -m roots_jax.finetune --config configs/finetune/package.py --workdir /tmp/bert-package \
      --config.init_from=/tmp/bert
  python -m roots_jax.evaluate --workdir /tmp/bert-package --split test

Arg: full (default: every parameter trains) | frozen (a feature extractor: only the head).
Works from any family's checkpoint (BERT reads [CLS], GPT its last token, T5 its decoder's).
"""

from roots_jax.config import finetune_config


def get_config(arg=None):
  mode = arg or "full"
  if mode not in ("full", "frozen"):
    raise ValueError(f"package.py takes full or frozen; got {mode!r}")
  c = finetune_config()
  c.task.update(kind="classification", source="builtin", builtin="package", max_len=128)
  c.finetune.update(mode=mode, head_dropout=0.1)
  c.train.update(batch_size=32, steps=400, log_every=25, eval_every=100, checkpoint_every=100)
  # A fixed backbone tolerates (and a fresh head needs) a larger rate than the whole model.
  c.optimizer.update(learning_rate=3e-4 if mode == "full" else 3e-3, warmup_steps=40,
                     schedule="linear", end_lr_fraction=0.0, weight_decay=0.01)
  return c
