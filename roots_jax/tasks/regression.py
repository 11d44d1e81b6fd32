"""Regression: a text (or a pair) -> a score (e.g. GLUE's STS-B similarity).

Rows: classification's, with a float32 label. The head outputs one number per text [B]; the
loss is the mean squared error; scored by Pearson and Spearman correlation.
"""

import jax.numpy as jnp
import numpy as np

from roots_jax.data import supervised
from roots_jax.tasks.base import TaskKind, text_example, text_ids
from roots_jax.training.losses import Loss


class Regression(TaskKind):
  name = "regression"
  reads = "pooled"
  scalar = True
  default_metric = "pearson"
  evaluator = "regression"

  def example(self, record, task, where):
    label = supervised.field(record, task.label_field, "task.label_field", where)
    return {**text_example(record, task, where),
            "label": supervised.score(label, task.label_field, where)}

  def spec(self, family, max_len, target_len):
    return {**family.text_spec(max_len, self.reads), "label": ((), np.float32),
            "label_weight": ((), np.float32)}

  def encode(self, example, *, family, tokenizer, labels, max_len, target_len):
    ids, second = text_ids(example, family, tokenizer, max_len)
    return {**family.text_row(ids, max_len, self.reads, second),
            "label": np.float32(example["label"]), "label_weight": np.float32(1.0)}

  def loss(self, family, *, label_smoothing=0.0, class_weights=None):
    return Loss(
        model_inputs=self._model_inputs,
        terms=lambda scores, b, z: {
            "mse": (jnp.square(scores - b["label"]) * b["label_weight"]).sum()},
        counts=lambda b: {"mse": b["label_weight"].sum()},
        loss_terms=("mse",), nll_term="mse", example=self._example_fn(family))


KIND = Regression()
