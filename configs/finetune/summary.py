"""Fine-tune on the built-in summarisation task: a standard-library function's code (docstring
removed) -> the first line of its docstring. Splits hold out whole modules.

  python -m roots_jax.train --config configs/t5.py:tiny --workdir /tmp/t5
  python -m roots_jax.finetune --config configs/finetune/summary.py --workdir /tmp/t5-summary \
      --config.init_from=/tmp/t5
  python -m roots_jax.evaluate --workdir /tmp/t5-summary --split test

Arg: full (default) | frozen (the backbone fixed; the task's own output layer, initialised from
the pretrained LM head, trains). For encoder-decoder (T5) and decoder (GPT) checkpoints.
"""

from roots_jax.config import finetune_config


def get_config(arg=None):
  mode = arg or "full"
  if mode not in ("full", "frozen"):
    raise ValueError(f"summary.py takes full or frozen; got {mode!r}")
  c = finetune_config()
  c.task.update(kind="seq2seq", source="builtin", builtin="summary", max_len=128, target_len=32)
  c.finetune.update(mode=mode, metric="loss")
  c.train.update(batch_size=32, steps=400, log_every=25, eval_every=100, checkpoint_every=100)
  c.optimizer.update(learning_rate=1e-3, warmup_steps=40, schedule="linear", end_lr_fraction=0.0,
                     weight_decay=0.01)
  return c
