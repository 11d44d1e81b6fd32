"""Sequence classification: a text (or a pair) -> one of the task's classes.

Rows (tasks.base.SequenceTask): the family's text layout for a pooled head (models.families:
encoder [CLS] a [SEP] (b [SEP]) with token_types, the head reading [CLS]; decoder [BOS] a
([SEP] b) [EOS], the head reading the eos; encoder-decoder a ([SEP] b) [EOS] in the encoder and
shifted right in the decoder) [L], label [] int32 (the class id) and label_weight []. The loss is
(label-smoothed, class-weighted) cross-entropy; scored by accuracy, macro F1 and Matthews
correlation.
"""

import numpy as np

from roots_jax.data import supervised
from roots_jax.errors import DataError
from roots_jax.tasks.base import SequenceTask, text_example
from roots_jax.training.losses import class_loss


class Classification(SequenceTask):
  name = "classification"
  label_key = "label"
  label_dtype = np.int32
  default_metric = "accuracy"
  evaluator = "classification"

  def example(self, record, task, where):
    label = supervised.field(record, task.label_field, "task.label_field", where)
    if not isinstance(label, (str, int, float)) or label == "":
      raise DataError(f"{where}: field {task.label_field!r} holds {label!r}, not a class "
                      "label; set task.label_field")
    return {**text_example(record, task, where), "label": label}

  def labels_of(self, example):
    return [example["label"]]

  def label_value(self, raw, labels):
    return labels.id(raw)

  def loss(self, family, *, label_smoothing=0.0, class_weights=None):
    return class_loss(self._model_inputs, "label", "label_weight", self._example_fn(family),
                      label_smoothing=label_smoothing, class_weights=class_weights)


KIND = Classification()
