"""What a fine-tuning task kind is: how it reads a record, lays out its rows for each model
family, what its head reads and outputs, its loss, and how it is scored."""

import functools
from typing import Any, Sequence

import grain
import ml_collections
import numpy as np

from roots_jax.data import builtin_tasks, supervised, task_rows
from roots_jax.data.supervised import LabelVocab
from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.errors import ConfigError, DataError
from roots_jax.models.families import Family
from roots_jax.training.losses import Loss, Spec


class TaskKind:
  """A task.kind: registered by name in roots_jax.tasks. Rows hold L = task.max_len input
  tokens (and T = task.target_len target tokens where the kind has targets)."""
  name: str
  reads: str                  # what the head reads: "pooled" | "tokens" | "lm" (models.families)
  scalar = False              # the head outputs one number per row ([B], float32): a score
  label_key: str | None = None  # the example's class (tag list) key, named by a LabelVocab
  default_metric: str         # the validation metric that picks the best checkpoint
  evaluator: str              # its roots_jax.evals evaluator

  def check_family(self, family: Family) -> None:
    """ConfigError when a model of `family` cannot do this task."""

  def validate(self, task: ml_collections.ConfigDict) -> None:
    """ConfigError for a `task` section this kind cannot use."""
    if task.source == "builtin" and builtin_tasks.KINDS.get(task.builtin) != self.name:
      fits = ", ".join(f"{name} with {kind}" for name, kind in builtin_tasks.KINDS.items())
      raise ConfigError(f"the built-in task {task.builtin!r} does not fit task.kind={self.name}: "
                        f"use task.builtin={fits}")
    if task.max_len < 4:
      raise ConfigError(f"task.max_len ({task.max_len}) must be at least 4")

  def prepare(self, config: ml_collections.ConfigDict, tokenizer: BaseTokenizer) -> None:
    """Fills what the run records about its task once the tokenizer is known (before the
    config is written)."""

  # Data.

  def example(self, record: dict[str, Any], task: ml_collections.ConfigDict,
              where: str) -> dict[str, Any]:
    """One record of a task file or TFDS split as an example (task.*_field name its fields;
    `where` names the record in a DataError)."""
    raise NotImplementedError

  def labels_of(self, example: dict[str, Any]) -> list:
    """The raw class names of an example (a labelled kind's)."""
    raise NotImplementedError

  def spec(self, family: Family, max_len: int, target_len: int) -> Spec:
    """{key: (shape without the batch dimension, dtype)} of a row."""
    raise NotImplementedError

  def encode(self, example: dict[str, Any], *, family: Family, tokenizer: BaseTokenizer,
             labels: LabelVocab | None, max_len: int, target_len: int) -> dict[str, np.ndarray]:
    """One example -> one padded row of `spec(family, max_len, target_len)`."""
    raise NotImplementedError

  def row_length(self, family: Family, max_len: int, target_len: int) -> int:
    """Tokens per row, for throughput and FLOPs."""
    del family, target_len
    return max_len

  def load_examples(self, task: ml_collections.ConfigDict, split: str) -> Sequence[dict]:
    """The examples of `split` ("train" | "validation" | "test") described by `task`."""
    return supervised.load_examples(task, split, self.example,
                                    labelled=self.label_key is not None)

  def dataset(self, config: ml_collections.ConfigDict, tokenizer: BaseTokenizer,
              labels: LabelVocab | None, examples: Sequence[dict], *, family: Family, split: str,
              process_index: int = 0, process_count: int = 1) -> grain.IterDataset:
    """This process's batches of `examples` (see data.task_rows.make_dataset); a label the
    vocabulary lacks fails first, naming the example."""
    task = config.task
    if self.label_key and not getattr(examples, "label_names", None):  # TFDS names are known
      for i, example in enumerate(examples):
        for raw in self.labels_of(example):
          try:
            labels.id(raw)
          except DataError as e:
            raise DataError(f"{split} example {i}: {e}") from None
    encode = functools.partial(self.encode, family=family, tokenizer=tokenizer, labels=labels,
                               max_len=task.max_len, target_len=task.target_len)
    zero = task_rows.zero_row(self.spec(family, task.max_len, task.target_len))
    return task_rows.make_dataset(examples, encode, zero, batch_size=config.train.batch_size,
                                  seed=config.seed, split=split, process_index=process_index,
                                  process_count=process_count)

  # The model.

  def num_outputs(self, labels: LabelVocab | None) -> int:
    """The head's outputs per position: classes or tags, 1 for a score; 0 for an LM head
    (the vocabulary)."""
    return len(labels) if labels is not None else 1

  def loss(self, family: Family, *, label_smoothing: float = 0.0, class_weights=None) -> Loss:
    """The Loss of a FinetuneModel, which takes the whole batch."""
    raise NotImplementedError

  def _model_inputs(self, batch):
    return (batch,), {}

  def _example_fn(self, family: Family):
    return lambda max_len, target_len: self.spec(family, max_len, target_len)


class SequenceTask(TaskKind):
  """A kind whose examples are a text (or a pair) and one label: its rows are the family's text
  layout for a pooled head [L] (see text_ids), label [] and label_weight [] float32 (1.0; 0.0 on
  padding rows)."""
  reads = "pooled"
  label_dtype: type          # of the row's label

  def label_value(self, raw, labels: LabelVocab | None):
    """An example's label as the row holds it."""
    raise NotImplementedError

  def spec(self, family, max_len, target_len):
    return {**family.text_spec(max_len, self.reads), "label": ((), self.label_dtype),
            "label_weight": ((), np.float32)}

  def encode(self, example, *, family, tokenizer, labels, max_len, target_len):
    ids, second = text_ids(example, family, tokenizer, max_len)
    return {**family.text_row(ids, max_len, self.reads, second),
            "label": self.label_dtype(self.label_value(example["label"], labels)),
            "label_weight": np.float32(1.0)}


def text_ids(example: dict[str, Any], family: Family, tokenizer: BaseTokenizer,
             max_len: int) -> tuple[list[int], int | None]:
  """The ids of an example's text (and text_pair) framed by the family's special tokens and
  truncated (a pair longest-first) to max_len: encoder [CLS] a [SEP] (b [SEP]), decoder
  [BOS] a ([SEP] b) [EOS], encoder-decoder a ([SEP] b) [EOS]; and where b begins (None
  without a pair)."""
  specials = task_rows.specials(tokenizer)
  head, tail = (specials[role] for role in family.frame)
  a = tokenizer.encode(example["text"])
  b = tokenizer.encode(example["text_pair"]) if "text_pair" in example else None
  middle = specials["sep"] if b is not None else []
  budget = max_len - len(head) - len(tail) - len(middle)
  a, b = task_rows.truncate_longest_first(a, b, budget) if b is not None else (a[:budget], [])
  second = len(head) + len(a) + len(middle) if middle else None
  return head + a + middle + b + tail, second


def text_example(record: dict[str, Any], task: ml_collections.ConfigDict,
                 where: str) -> dict[str, Any]:
  """{"text"} of a record, and "text_pair" with task.text_pair_field."""
  example = {"text": supervised.text(record, task.text_field, "task.text_field", where)}
  if task.text_pair_field:
    example["text_pair"] = supervised.text(record, task.text_pair_field, "task.text_pair_field",
                                           where)
  return example
