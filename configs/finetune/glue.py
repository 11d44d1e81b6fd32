"""GLUE tasks from a local TFDS directory (prepare it once with `tfds build glue/sst2 ...` on a
machine with TensorFlow, or copy its data_dir).

  python -m roots_jax.finetune --config configs/finetune/glue.py:sst2 --workdir DIR \
      --config.init_from=PRETRAIN_RUN --config.task.tfds_data_dir=/data/tfds

Args: sst2 (sentiment, accuracy), mrpc (paraphrase pairs, F1), stsb (similarity, regression,
Pearson). BERT's recipe (Devlin et al. 2019, section 4.1): AdamW 2e-5..5e-5, batch 32, 3 epochs,
10 % warmup.
"""

from roots_jax.config import finetune_config

TASKS = {
    "sst2": dict(kind="classification", text_field="sentence", metric="accuracy", epochs_steps=6300),
    "mrpc": dict(kind="classification", text_field="sentence1", text_pair_field="sentence2",
                 metric="macro_f1", epochs_steps=350),
    "stsb": dict(kind="regression", text_field="sentence1", text_pair_field="sentence2",
                 metric="pearson", epochs_steps=540),
}


def get_config(arg=None):
  name = arg or "sst2"
  if name not in TASKS:
    raise ValueError(f"glue.py takes one of {', '.join(TASKS)}; got {name!r}")
  spec = dict(TASKS[name])
  metric, steps = spec.pop("metric"), spec.pop("epochs_steps")
  c = finetune_config()
  c.task.update(spec, source="tfds", tfds_name=f"glue/{name}", label_field="label",
                # GLUE hides its test labels: report on validation.
                validation_split="validation", test_split="validation", max_len=128)
  c.finetune.update(mode="full", metric=metric, head_dropout=0.1)
  c.train.update(batch_size=32, steps=steps, log_every=50, eval_every=max(steps // 6, 50),
                 checkpoint_every=max(steps // 6, 50))
  c.optimizer.update(learning_rate=3e-5, warmup_steps=steps // 10, schedule="linear",
                     end_lr_fraction=0.0, weight_decay=0.01, b2=0.999, eps=1e-6)
  return c
