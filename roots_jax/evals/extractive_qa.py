"""Extractive question answering: SQuAD v1.1's exact match and F1 (metrics.squad, in percent as
the official script prints them) of each example's best span over all its windows
(data.qa_spans.best_span, scored by the start + end logit sum as HF's
postprocess_qa_predictions), against all its gold answers; results.json adds the first few
predictions beside their questions and answers."""

import collections

import numpy as np

from roots_jax.data import qa_spans
from roots_jax.evals.labelled import Labelled
from roots_jax.metrics import squad

# Predictions results.json shows.
SAMPLES = 5


class ExtractiveQA(Labelled):

  def predict(self, params, batch, outputs):
    """The start and end logits [B, L, 2] (a span is chosen among context tokens only)."""
    del params, batch
    return outputs.astype(np.float32)

  def answers(self, rows) -> dict[int, qa_spans.Span]:
    """Example index -> its best span, from the logits and offsets of its rows."""
    windows = collections.defaultdict(list)
    for logits, batch in rows:
      for r in np.flatnonzero(batch["answer_weight"] > 0):
        windows[int(batch["example"][r])].append(
            ((logits[r, :, 0], logits[r, :, 1]), batch["offsets"][r]))
    examples = self.split.examples
    return {i: qa_spans.best_span(examples[i]["context"], [w[0] for w in found],
                                  [w[1] for w in found],
                                  max_answer_len=self.task.max_answer_len)
            for i, found in sorted(windows.items())}

  def metrics(self, rows, sums):
    """EM and F1; "examples" counts the questions (each read in one or more windows)."""
    answers = self.answers(rows)
    examples = self.split.examples
    return {**squad.squad_scores([span.text for span in answers.values()],
                                 [[text for text, _ in examples[i]["answers"]] for i in answers]),
            "examples": len(answers)}

  def details(self, rows):
    examples = self.split.examples
    return {"samples": [{"question": examples[i]["question"],
                         "answers": [text for text, _ in examples[i]["answers"]],
                         "prediction": span.text}
                        for i, span in list(self.answers(rows).items())[:SAMPLES]]}
