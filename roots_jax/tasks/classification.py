"""Sequence classification: a text (or a pair) -> one of the task's classes.

Rows: the family's text layout for a pooled head (models.families: encoder [CLS] a [SEP]
(b [SEP]) with token_types, the head reading [CLS]; decoder [BOS] a ([SEP] b) [EOS], the head
reading the eos; encoder-decoder a ([SEP] b) [EOS] in the encoder and shifted right in the
decoder) [L], label [] int32 and label_weight [] float32 (1.0; 0.0 on padding rows). The loss is
(label-smoothed, class-weighted) cross-entropy; scored by accuracy, macro F1 and Matthews
correlation.
"""

import numpy as np

from roots_jax.data import supervised
from roots_jax.errors import DataError
from roots_jax.tasks.base import TaskKind, text_example, text_ids
from roots_jax.training.losses import Loss, class_count, class_terms


class Classification(TaskKind):
  name = "classification"
  reads = "pooled"
  label_key = "label"
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

  def spec(self, family, max_len, target_len):
    return {**family.text_spec(max_len, self.reads), "label": ((), np.int32),
            "label_weight": ((), np.float32)}

  def encode(self, example, *, family, tokenizer, labels, max_len, target_len):
    ids, second = text_ids(example, family, tokenizer, max_len)
    return {**family.text_row(ids, max_len, self.reads, second),
            "label": np.int32(labels.id(example["label"])), "label_weight": np.float32(1.0)}

  def loss(self, family, *, label_smoothing=0.0, class_weights=None):
    cw = tuple(class_weights) if class_weights else None
    return Loss(
        model_inputs=self._model_inputs,
        terms=lambda logits, b, z: class_terms(logits, b["label"], b["label_weight"],
                                               label_smoothing=label_smoothing, class_weights=cw),
        counts=lambda b: {"nll": class_count(b["label"], b["label_weight"], cw),
                          "accuracy": b["label_weight"].sum()},
        loss_terms=("nll",), nll_term="nll", example=self._example_fn(family))


KIND = Classification()
