"""Extractive question answering (SQuAD): the answer is a span of a context, found by a start
and an end logit per token (BertForQuestionAnswering), for encoder (BERT) models.

Records hold the question (task.text_field, e.g. "question"), the context (task.text_pair_field,
"context") and the gold answers (task.label_field, "answers"), as Hugging Face's squad dataset
and TFDS's squad: {"text": [...], "answer_start": [...]}, or a list of {"text", "answer_start"}
(the official SQuAD JSON's); an "id" is kept where there is one. Examples are {"id", "question",
"context", "answers": [(text, start character)]}; each answer must be the context's text at its
start. An example becomes one row per window of its context (data.qa_spans.windows, with
task.doc_stride and task.max_question_len): the encoder's text layout [L] with token types 0 for
[CLS] question [SEP] and 1 for context [SEP], start_positions [] and end_positions [] (the
first answer's tokens, or [CLS]'s 0 where the window lacks it, as HF's prepare_train_features),
answer_weight [] float32 (1; 0 on padding rows), offsets [L, 2] (each token's characters in the
context, -1 outside it) and example [] (the example's index in its split).

The head reads every token (models.heads, reads="tokens") and gives [B, L, 2] start and end
logits; the loss is the mean of the start and end cross-entropies over the row's real tokens.
Scored by SQuAD v1.1's exact match and F1 (evals.extractive_qa) of the best span over every
window of an example (data.qa_spans.best_span, at most task.max_answer_len tokens).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from roots_jax.data import qa_spans, supervised, task_rows
from roots_jax.errors import ConfigError, DataError
from roots_jax.tasks.base import TaskKind
from roots_jax.training.losses import Loss


class ExtractiveQA(TaskKind):
  name = "extractive_qa"
  reads = "tokens"
  default_metric = "f1"
  evaluator = "extractive_qa"

  def check_family(self, family):
    if family.name != "encoder":
      raise ConfigError(f"task.kind=extractive_qa needs an encoder (BERT) model, not a "
                        f"{family.name} one (model.family)")

  def validate(self, task):
    super().validate(task)
    for key in ("max_question_len", "max_answer_len"):
      if task[key] < 1:
        raise ConfigError(f"task.{key} ({task[key]}) must be at least 1")
    if task.doc_stride < 0:
      raise ConfigError(f"task.doc_stride ({task.doc_stride}) must be 0 or more (tokens shared "
                        "by consecutive windows)")
    if task.source != "builtin" and not task.text_pair_field:
      raise ConfigError("task.kind=extractive_qa reads the context from task.text_pair_field; "
                        "set it (SQuAD: text_field=question, text_pair_field=context, "
                        "label_field=answers)")

  def example(self, record, task, where):
    question = supervised.text(record, task.text_field, "task.text_field", where)
    context = supervised.text(record, task.text_pair_field, "task.text_pair_field", where)
    raw = supervised.field(record, task.label_field, "task.label_field", where)
    answers = squad_answers(raw, task.label_field, where)
    for text, start in answers:
      if context[start:start + len(text)] != text:
        raise DataError(f"{where}: answer {text!r} is not the context's text at its answer_start "
                        f"{start} (there: {context[start:start + len(text)]!r}); fix the record")
    return {"id": str(record.get("id", "")), "question": question, "context": context,
            "answers": answers}

  def spec(self, family, max_len, target_len):
    self.check_family(family)
    return {**family.text_spec(max_len, self.reads), "start_positions": ((), np.int32),
            "end_positions": ((), np.int32), "answer_weight": ((), np.float32),
            "offsets": ((max_len, 2), np.int32), "example": ((), np.int32)}

  def windows(self, example: dict[str, Any], *, tokenizer, max_len: int, doc_stride: int,
              max_question_len: int) -> list[qa_spans.Window]:
    """The example's windows (data.qa_spans), labelled with its first answer if any."""
    specials = task_rows.specials(tokenizer)
    answer = None
    if example.get("answers"):
      text, start = example["answers"][0]
      answer = (start, start + len(text))
    return qa_spans.windows(example["question"], example["context"], answer,
                            tokenizer=tokenizer, cls_id=specials["cls"][0],
                            sep_id=specials["sep"][0], max_len=max_len, doc_stride=doc_stride,
                            max_question_len=max_question_len)

  def row(self, window: qa_spans.Window, index: int, *, family, max_len: int) -> dict:
    """One window of example `index` as a row."""
    row = family.text_row(window.ids, max_len, self.reads)
    row["token_types"] = task_rows.padded(window.token_types, max_len, np.int32)
    offsets = np.full((max_len, 2), -1, np.int32)
    offsets[:len(window.offsets)] = window.offsets
    return {**row, "start_positions": np.int32(window.answer[0]),
            "end_positions": np.int32(window.answer[1]), "answer_weight": np.float32(1.0),
            "offsets": offsets, "example": np.int32(index)}

  def dataset(self, config, tokenizer, labels, examples, *, family, split, process_index=0,
              process_count=1):
    """Batches of every window of every example (training shuffles the windows, as HF's
    features); the windows are counted first."""
    task = config.task
    settings = dict(tokenizer=tokenizer, max_len=task.max_len, doc_stride=task.doc_stride,
                    max_question_len=task.max_question_len)
    items = [(i, w) for i, example in enumerate(examples)
             for w in range(len(self.windows(example, **settings)))]
    encode = functools.partial(_encode, self, examples, settings, family)
    zero = task_rows.zero_row(self.spec(family, task.max_len, task.target_len))
    return task_rows.make_dataset(items, encode, zero, batch_size=config.train.batch_size,
                                  seed=config.seed, split=split, process_index=process_index,
                                  process_count=process_count)

  def num_outputs(self, labels):
    return 2

  def loss(self, family, *, label_smoothing=0.0, class_weights=None):
    return Loss(model_inputs=self._model_inputs, terms=lambda logits, b, z: span_terms(logits, b),
                counts=lambda b: {"nll": b["answer_weight"].sum(),
                                  "accuracy": b["answer_weight"].sum()},
                loss_terms=("nll",), nll_term="nll", example=self._example_fn(family))


def _encode(kind: ExtractiveQA, examples, settings: dict, family, item: tuple[int, int]) -> dict:
  """Row of window w of example i (a module-level function: grain workers pickle it)."""
  i, w = item
  return kind.row(kind.windows(examples[i], **settings)[w], i, family=family,
                  max_len=settings["max_len"])


def masked_logits(logits: jax.Array, batch: dict) -> jax.Array:
  """[B, L, 2] start and end logits in float32, padding positions at -1e9 (never chosen)."""
  real = (batch["segment_ids"] > 0)[..., None]                                   # [B, L, 1]
  return jnp.where(real, logits.astype(jnp.float32), -1e9)


def span_terms(logits: jax.Array, batch: dict) -> dict:
  """Sums over the rows of the mean start and end cross-entropy (BertForQuestionAnswering's
  (start_loss + end_loss) / 2) and of exact span accuracy, weighted by answer_weight."""
  log_p = jax.nn.log_softmax(masked_logits(logits, batch), axis=1)              # [B, L, 2]
  labels = jnp.stack([batch["start_positions"], batch["end_positions"]], -1)    # [B, 2]
  picked = jnp.take_along_axis(log_p, labels[:, None, :], axis=1)[:, 0]         # [B, 2]
  nll = -picked.mean(-1)
  correct = (jnp.argmax(log_p, axis=1) == labels).all(-1).astype(jnp.float32)
  weights = batch["answer_weight"]
  return {"nll": (nll * weights).sum(), "accuracy": (correct * weights).sum()}


def squad_answers(raw: Any, field: str, where: str) -> list[tuple[str, int]]:
  """(text, answer_start) of each gold answer: {"text": [...], "answer_start": [...]} or
  [{"text", "answer_start"}, ...]."""
  if isinstance(raw, dict) and "text" in raw and "answer_start" in raw:
    texts, starts = raw["text"], raw["answer_start"]
    if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
      texts = starts = None
  elif isinstance(raw, list) and all(isinstance(a, dict) and "text" in a and "answer_start" in a
                                     for a in raw):
    texts, starts = [a["text"] for a in raw], [a["answer_start"] for a in raw]
  else:
    texts = starts = None
  if not texts or not all(isinstance(t, str) and t for t in texts) or not all(
      isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in starts):
    raise DataError(f"{where}: field {field!r} holds {str(raw)[:80]}, not SQuAD answers: "
                    "{\"text\": [answer, ...], \"answer_start\": [character, ...]} with at least "
                    "one answer (check task.label_field)")
  return list(zip(texts, starts))


KIND = ExtractiveQA()
