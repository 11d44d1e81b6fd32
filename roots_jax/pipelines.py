"""Hugging Face-style pipelines around a LanguageModel (roots_jax.api):

  generator = roots_jax.pipeline("text-generation", model="/tmp/run")
  generator("def ", max_length=40, num_return_sequences=2, do_sample=True)
  # [{"generated_text": "def ..."}, {"generated_text": "def ..."}]
  roots_jax.pipeline("fill-mask", model="/tmp/bert")("The [MASK] sat.", top_k=3)
  # [{"score": ..., "token": ..., "token_str": "cat", "sequence": "The cat sat."}, ...]
  roots_jax.pipeline("question-answering", model="/tmp/bert-qa")(question="...", context="...")
  # {"answer": ..., "score": ..., "start": ..., "end": ...}
"""

from typing import Sequence

from roots_jax.api import LanguageModel, as_texts
from roots_jax.errors import ConfigError


class _Pipeline:
  """A callable around `model`, as Hugging Face's pipelines are."""

  def __init__(self, lm: LanguageModel):
    self.model = lm


class TextGenerationPipeline(_Pipeline):
  """pipe("text", max_length=50, num_return_sequences=2, do_sample=True) ->
  [{"generated_text": ...}, ...], a list of such lists for a list of prompts. As Hugging
  Face's: the prompt followed by its continuation (return_full_text=False: the continuation
  alone, as always for an encoder-decoder or a fine-tuned seq2seq model, whose output is no
  continuation of its input)."""

  def __call__(self, text_inputs: str | Sequence[str], *, return_full_text: bool = True,
               **generate_kwargs):
    texts, single = as_texts(text_inputs, "text_inputs")
    outputs = self.model.generate(texts, **generate_kwargs)
    full = return_full_text and self.model.continues_prompts
    results = [[{"generated_text": (prompt if full else "") + c} for c in continuations]
               for prompt, continuations in zip(texts, outputs)]
    return results[0] if single else results


class FeatureExtractionPipeline(_Pipeline):
  """pipe("text") -> the pooled feature vector as a list of floats (LanguageModel.embed; unlike
  Hugging Face's, which returns every token's); a list of such lists for a list of texts."""

  def __call__(self, texts: str | Sequence[str], *, pooling: str | None = None):
    return self.model.embed(texts, pooling=pooling).tolist()


class TextClassificationPipeline(_Pipeline):
  """pipe("text") -> [{"label", "score"}] of the most likely class (a list of such dicts, one
  per text, for a list), from a model fine-tuned for classification."""

  def __call__(self, texts: str | Sequence[str]):
    probs = self.model.class_probabilities(texts)
    return [{"label": self.model.labels.names[int(p.argmax())], "score": float(p.max())}
            for p in probs]


class FillMaskPipeline(_Pipeline):
  """pipe("The [MASK] sat.", top_k=5, targets=None) -> [{"score", "token", "token_str",
  "sequence"}, ...] best first, as Hugging Face's, from a pretrained encoder (BERT): a list of
  such lists for a text with several masks, one result per text for a list
  (LanguageModel.fill_mask)."""

  def __call__(self, inputs: str | Sequence[str], *, top_k: int = 5,
               targets: str | Sequence[str] | None = None):
    return self.model.fill_mask(inputs, top_k=top_k, targets=targets)


class QuestionAnsweringPipeline(_Pipeline):
  """pipe(question="...", context="...") -> {"answer", "score", "start", "end"}, as Hugging
  Face's: the best span of the context (start and end are its characters there; score the
  start x end probability), from a model fine-tuned for extractive_qa
  (LanguageModel.answer). Also pipe({"question", "context"}), a list of such dicts, or
  question= and context= lists of one length: a list of answers."""

  def __call__(self, *args, question: str | Sequence[str] | None = None,
               context: str | Sequence[str] | None = None, max_answer_len: int | None = None):
    if args and (question is not None or context is not None or len(args) > 1):
      raise ConfigError("question-answering takes a {\"question\", \"context\"} dict (or a list "
                        "of them), or question= and context=")
    if args:
      items = args[0]
    elif isinstance(question, str) and isinstance(context, str):
      items = {"question": question, "context": context}
    elif isinstance(question, (list, tuple)) and isinstance(context, (list, tuple)):
      if len(question) != len(context):
        raise ConfigError(f"question-answering got {len(question)} questions but "
                          f"{len(context)} contexts")
      items = [{"question": q, "context": c} for q, c in zip(question, context)]
    else:
      raise ConfigError("question-answering needs question= and context= (str, or lists of one "
                        "length)")
    return self.model.answer(items, max_answer_len=max_answer_len)


PIPELINES = {"text-generation": TextGenerationPipeline,
             "feature-extraction": FeatureExtractionPipeline,
             "text-classification": TextClassificationPipeline,
             "fill-mask": FillMaskPipeline,
             "question-answering": QuestionAnsweringPipeline}


def pipeline(task: str, model: "str | LanguageModel | None" = None, *,
             checkpoint: int | str | None = None) -> _Pipeline:
  """A Hugging Face-style pipeline around a LanguageModel (or the run or model directory
  `model`, loaded with from_pretrained): text-generation, feature-extraction,
  text-classification, fill-mask or question-answering."""
  if task not in PIPELINES:
    raise ConfigError(f"unknown pipeline task {task!r}; supported: {', '.join(PIPELINES)}")
  if model is None:
    raise ConfigError("pipeline needs model=: a run directory, a Hugging Face model directory "
                      "or a LanguageModel")
  lm = model if isinstance(model, LanguageModel) else LanguageModel.from_pretrained(
      model, checkpoint=checkpoint)
  if task == "text-generation":
    lm.check_generates()
  if task == "fill-mask":
    lm.check_fills_masks()
  if task == "text-classification" and lm.task != "classification":
    raise ConfigError("text-classification needs a model fine-tuned for classification "
                      "(LanguageModel.finetune(..., kind='classification'))")
  if task == "question-answering" and lm.task != "extractive_qa":
    raise ConfigError("question-answering needs a model fine-tuned for extractive_qa (e.g. "
                      "configs/finetune/identifier.py)")
  return PIPELINES[task](lm)
