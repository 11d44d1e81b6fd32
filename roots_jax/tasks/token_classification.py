"""Token classification (tagging, e.g. named entities): a tag per word.

Examples are {"words": [str], "tags": [raw tag]} from the lists in task.text_field and
task.label_field (in CSV/TSV, whitespace-separated strings). Words are tokenized one by one
(each after the first as " " + word, as in running text) inside the family's frame; rows are
the family's text layout for a token head (encoder_decoder: the encoder's only) [L], with tags
[L] = the word's tag id on its first piece and tag_weights [L] float32 1.0 there, 0.0 on other
pieces, specials and padding. Words that do not fit are dropped. Scored by token accuracy and
macro F1.
"""

import numpy as np

from roots_jax.data import supervised, task_rows
from roots_jax.errors import DataError
from roots_jax.tasks.base import TaskKind
from roots_jax.training.losses import class_loss


class TokenClassification(TaskKind):
  name = "token_classification"
  reads = "tokens"
  label_key = "tags"
  default_metric = "macro_f1"
  evaluator = "token_classification"

  def example(self, record, task, where):
    words = supervised.words(record, task.text_field, "task.text_field", where)
    tags = supervised.words(record, task.label_field, "task.label_field", where)
    if len(words) != len(tags) or not all(isinstance(w, str) for w in words):
      raise DataError(f"{where}: {len(words)} words in {task.text_field!r} but {len(tags)} tags "
                      f"in {task.label_field!r}; token_classification needs a list of word "
                      "strings and one tag per word (check task.text_field, task.label_field)")
    return {"words": words, "tags": tags}

  def labels_of(self, example):
    return example["tags"]

  def spec(self, family, max_len, target_len):
    return {**family.text_spec(max_len, self.reads), "tags": ((max_len,), np.int32),
            "tag_weights": ((max_len,), np.float32)}

  def encode(self, example, *, family, tokenizer, labels, max_len, target_len):
    specials = task_rows.specials(tokenizer)
    head, tail = (specials[role] for role in family.frame)
    budget = max_len - len(head) - len(tail)
    ids, tags, weights = list(head), [0] * len(head), [0.0] * len(head)
    for i, (word, tag) in enumerate(zip(example["words"], example["tags"])):
      pieces = tokenizer.encode(word if i == 0 else " " + word)
      if len(ids) - len(head) + len(pieces) > budget:
        break
      if pieces:  # a word without pieces (empty) has nowhere to put its tag
        ids += pieces
        tags += [labels.id(tag)] + [0] * (len(pieces) - 1)
        weights += [1.0] + [0.0] * (len(pieces) - 1)
    ids += tail
    return {**family.text_row(ids, max_len, self.reads),
            "tags": task_rows.padded(tags, max_len, np.int32),
            "tag_weights": task_rows.padded(weights, max_len, np.float32)}

  def loss(self, family, *, label_smoothing=0.0, class_weights=None):
    return class_loss(self._model_inputs, "tags", "tag_weights", self._example_fn(family),
                      label_smoothing=label_smoothing, class_weights=class_weights)


KIND = TokenClassification()
