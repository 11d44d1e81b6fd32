"""Instruction-tune a decoder on the built-in instructions task: questions about a standard-library
function's code (a one-line summary, its arguments, what it returns) answered by the assistant,
rendered with the run's chat template (the tokenizer's, else the built-in one), several
conversations packed per row, the loss on the assistant's tokens only.

  python -m roots_jax.train --config quickstart --workdir /tmp/qs
  python -m roots_jax.finetune --config configs/finetune/chat.py --workdir /tmp/qs-chat \\
      --config.init_from=/tmp/qs
  python -m roots_jax.generate --workdir /tmp/qs-chat --chat \\
      --prompt $'Which arguments does this function take?\\ndef area(w, h):\\n    return w * h'

Arg: full (default) | frozen. For decoder (GPT) and encoder-decoder (T5) checkpoints; your own
data: --config.task.source=files --config.task.train_files=chat.jsonl (records {"prompt",
"response"} or {"messages": [{"role", "content"}, ...]}).
"""

from roots_jax.config import finetune_config


def get_config(arg=None):
  mode = arg or "full"
  if mode not in ("full", "frozen"):
    raise ValueError(f"chat.py takes full or frozen; got {mode!r}")
  c = finetune_config()
  c.task.update(kind="chat", source="builtin", builtin="instructions", max_len=160, target_len=32,
                packing=True)
  c.finetune.update(mode=mode, metric="loss")
  c.train.update(batch_size=16, steps=300, log_every=25, eval_every=300, checkpoint_every=100)
  c.optimizer.update(learning_rate=5e-4, warmup_steps=30, schedule="linear", end_lr_fraction=0.0,
                     weight_decay=0.01)
  return c
