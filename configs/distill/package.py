"""A student fine-tuned on the built-in package-classification task against a fine-tuned
teacher's class distribution: init_from gives the student's backbone (a smaller pretrained or
distilled run with the teacher's tokenizer), the teacher its soft targets and its labels.

  python -m roots_jax.finetune --config finetune/package --workdir /tmp/teacher-package \
      --config.init_from=/tmp/run
  python -m roots_jax.distill --config distill/package --workdir /tmp/student-package \
      --config.teacher=/tmp/teacher-package --config.init_from=/tmp/student
"""

from roots_jax.config import distill_config


def get_config(arg=None):
  del arg
  c = distill_config(task=True)
  c.task.update(kind="classification", source="builtin", builtin="package", max_len=128)
  c.finetune.update(mode="full", head_dropout=0.1)
  c.distill.update(alpha=0.5, temperature=2.0)
  c.train.update(batch_size=32, steps=400, log_every=25, eval_every=100, checkpoint_every=100)
  c.optimizer.update(learning_rate=3e-4, warmup_steps=40, schedule="linear", end_lr_fraction=0.0,
                     weight_decay=0.01)
  return c
