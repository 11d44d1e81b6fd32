"""Extractive question answering's windows and spans, as Hugging Face's run_qa.py and question-
answering pipeline make them (Devlin et al. 2019, section 4.2):

- `windows`: [CLS] question [SEP] context-window [SEP] rows, the question truncated to
  max_question_len tokens, the context cut into windows of what is left of max_len, consecutive
  windows overlapping by doc_stride tokens (HF's `stride`); each token's character span in the
  context (-1, -1 outside it); the answer's first and last token in the window, or both at the
  [CLS] index 0 where the answer is not wholly inside it (prepare_train_features).
- `best_span`: the best valid span over all windows of an example (postprocess_qa_predictions):
  the n_best highest start and end logits of each window paired, a pair valid when both are
  context tokens, start <= end and the span is at most max_answer_len tokens; the answer is cut
  from the context by the tokens' character spans.
"""

from typing import NamedTuple, Sequence

import numpy as np

from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.errors import ConfigError

# HF's postprocess_qa_predictions: the start and end logits paired per window.
N_BEST = 20
NO_SPAN = (-1, -1)


class Window(NamedTuple):
  """One row's tokens: ids [CLS] q [SEP] c [SEP]; token_types 0 over [CLS] q [SEP], 1 after;
  offsets, each token's (start, end) characters in the context, NO_SPAN outside it; the
  answer's (start, end) token, (0, 0) ([CLS]) when it is not inside the window."""
  ids: list[int]
  token_types: list[int]
  offsets: list[tuple[int, int]]
  answer: tuple[int, int]


class Span(NamedTuple):
  text: str
  score: float
  start: int    # characters of the context
  end: int


def windows(question: str, context: str, answer: tuple[int, int] | None, *,
            tokenizer: BaseTokenizer, cls_id: int, sep_id: int, max_len: int, doc_stride: int,
            max_question_len: int) -> list[Window]:
  """The windows of one example; `answer` is its (start, end) characters in the context (None
  without one: labels at [CLS])."""
  q = tokenizer.encode(question.lstrip())[:max_question_len]  # HF strips the question's left
  c, spans = tokenizer.encode_offsets(context)
  size = max_len - len(q) - 3
  if size <= doc_stride:
    raise ConfigError(f"task.max_len={max_len} leaves {size} context tokens per window after a "
                      f"{len(q)}-token question, not more than task.doc_stride={doc_stride}: "
                      "raise max_len or lower doc_stride or max_question_len")
  head = [cls_id, *q, sep_id]
  out, start = [], 0
  while True:
    end = min(start + size, len(c))
    ids = head + c[start:end] + [sep_id]
    offsets = [NO_SPAN] * len(head) + spans[start:end] + [NO_SPAN]
    types = [0] * len(head) + [1] * (end - start + 1)
    out.append(Window(ids, types, offsets, _answer_tokens(spans, start, end, len(head), answer)))
    if end >= len(c):
      return out
    start = end - doc_stride


def _answer_tokens(spans: list[tuple[int, int]], start: int, end: int, first: int,
                   answer: tuple[int, int] | None) -> tuple[int, int]:
  """The row indices of the last context token starting at or before the answer's first
  character and the first ending at or after its end; (0, 0) unless the window holds it all."""
  if answer is None or start == end:
    return (0, 0)
  begin, finish = answer
  if not (spans[start][0] <= begin and spans[end - 1][1] >= finish):
    return (0, 0)
  s = max(i for i in range(start, end) if spans[i][0] <= begin)
  e = min(i for i in range(s, end) if spans[i][1] >= finish)
  return (first + s - start, first + e - start)


def best_span(context: str, window_logits: Sequence[tuple[np.ndarray, np.ndarray]],
              window_offsets: Sequence[Sequence[tuple[int, int]]], *, max_answer_len: int,
              probability: bool = False, n_best: int = N_BEST) -> Span:
  """The best valid span of one example over its windows: start [L] and end [L] logits and the
  offsets of each. Its score is the start + end logit sum (postprocess_qa_predictions), or with
  `probability` the product of the start and end probabilities, each a softmax over the
  window's context tokens and [CLS] (HF's question-answering pipeline), which also chooses the
  span then. No valid span: "" scored 0 at (0, 0)."""
  best = Span("", -np.inf, 0, 0)
  for (start_logits, end_logits), offsets in zip(window_logits, window_offsets):
    offsets = np.asarray(offsets).reshape(-1, 2)
    context_tokens = offsets[:, 0] >= 0
    scores = [np.asarray(x, np.float64) for x in (start_logits, end_logits)]
    if probability:
      allowed = context_tokens.copy()
      allowed[0] = True
      with np.errstate(divide="ignore"):  # log 0 outside: never chosen
        scores = [np.log(_softmax(x, allowed)) for x in scores]
    starts, ends = (np.argsort(-x, kind="stable")[:n_best] for x in scores)
    for s in starts:
      for e in ends:
        if not (context_tokens[s] and context_tokens[e]) or e < s or e - s + 1 > max_answer_len:
          continue
        score = scores[0][s] + scores[1][e]
        if score > best.score:
          a, b = int(offsets[s][0]), int(offsets[e][1])
          best = Span(context[a:b], float(score), a, b)
  if best.score == -np.inf:
    return Span("", 0.0, 0, 0)
  return best._replace(score=float(np.exp(best.score))) if probability else best


def _softmax(x: np.ndarray, allowed: np.ndarray) -> np.ndarray:
  x = np.where(allowed, x, -np.inf)
  p = np.exp(x - x.max())
  return p / p.sum()
