"""Fine-tune a BERT for extractive question answering on the built-in task: which parameter a
function's docstring sentence names ("Return the ___ of the file.") as a span of the function's
code. Splits hold out whole modules; contexts longer than a window are read in overlapping
windows (task.doc_stride).

  python -m roots_jax.train --config configs/bert.py:tiny --workdir /tmp/bert
  python -m roots_jax.finetune --config configs/finetune/identifier.py --workdir /tmp/bert-qa \
      --config.init_from=/tmp/bert
  python -m roots_jax.evaluate --workdir /tmp/bert-qa --split test

SQuAD from TFDS instead, from a converted bert-base-uncased with the paper's settings (Devlin et
al. 2019: 384 tokens, stride 128, lr 3e-5, batch 32, 2 epochs): --config.task.source=tfds
--config.task.tfds_name=squad --config.task.text_field=question
--config.task.text_pair_field=context --config.task.label_field=answers
--config.task.test_split=validation --config.task.max_len=384 --config.task.doc_stride=128
--config.task.max_question_len=64 --config.optimizer.learning_rate=3e-5 --config.train.steps=5500.
"""

from roots_jax.config import finetune_config


def get_config(arg=None):
  del arg
  c = finetune_config()
  # 128 tokens: a 32-token question leaves 93 per window, consecutive ones sharing 32 (HF's
  # 128 of 384 scaled down).
  c.task.update(kind="extractive_qa", source="builtin", builtin="identifier", max_len=128,
                doc_stride=32, max_question_len=32, max_answer_len=30)
  c.finetune.update(mode="full", head_dropout=0.1)
  c.train.update(batch_size=32, steps=600, log_every=50, eval_every=200, checkpoint_every=200)
  c.optimizer.update(learning_rate=3e-4, warmup_steps=60, schedule="linear", end_lr_fraction=0.0,
                     weight_decay=0.01)
  return c
