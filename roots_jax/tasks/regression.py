"""Regression: a text (or a pair) -> a score (e.g. GLUE's STS-B similarity).

Rows: classification's (tasks.base.SequenceTask), with a float32 label. The head outputs one
number per text [B]; the loss is the mean squared error; scored by Pearson and Spearman
correlation.
"""

import jax.numpy as jnp
import numpy as np

from roots_jax.data import supervised
from roots_jax.tasks.base import SequenceTask, text_example
from roots_jax.training.losses import Loss


class Regression(SequenceTask):
  name = "regression"
  scalar = True
  label_dtype = np.float32
  default_metric = "pearson"
  evaluator = "regression"

  def example(self, record, task, where):
    label = supervised.field(record, task.label_field, "task.label_field", where)
    return {**text_example(record, task, where),
            "label": supervised.score(label, task.label_field, where)}

  def label_value(self, raw, labels):
    return raw

  def loss(self, family, *, label_smoothing=0.0, class_weights=None):
    return Loss(
        model_inputs=self._model_inputs,
        terms=lambda scores, b, z: {
            "mse": (jnp.square(scores - b["label"]) * b["label_weight"]).sum()},
        counts=lambda b: {"mse": b["label_weight"].sum()},
        loss_terms=("mse",), nll_term="mse", example=self._example_fn(family))


KIND = Regression()
