"""Sequence to sequence: perplexity of the targets and, from greedy generations, exact match,
BLEU and ROUGE-1/2/L against the examples' target texts; results.json adds the first few
generations beside their inputs and references."""

import functools

import jax
import jax.numpy as jnp

from roots_jax import decoding, metrics
from roots_jax.data import chat_template
from roots_jax.evals.labelled import Labelled

# The metrics that need generations (expensive): without them only perplexity is computed.
METRICS = ("exact_match", "bleu", "rouge1", "rouge2", "rougeL")
# Generations results.json shows.
SAMPLES = 5


class Generation(Labelled):

  @property
  def predicts(self) -> bool:
    return self.generate

  @functools.cached_property
  def stop_id(self) -> int:
    return stop_id(self.task, self.tokenizer)

  def predict(self, params, batch, outputs):
    """Greedy generations [B, N] of the rows' inputs (roots_jax.tasks.seq2seq's layout): a
    decoder's prompt, inputs[:prompt_len], is moved to the right end of a row of the input
    width."""
    del outputs
    model, max_new_tokens = self.scorer.model, self.target_len
    if self.family.has_encoder:
      prompts = {k: v for k, v in batch.items() if k.startswith("encoder_")}
    else:
      width = batch["inputs"].shape[1] - max_new_tokens
      source = jnp.arange(width)[None] - (width - batch["prompt_len"])[:, None]  # [B, W]
      prompts = {"inputs": jnp.take_along_axis(batch["inputs"], jnp.maximum(source, 0), axis=1),
                 "segment_ids": (source >= 0).astype(jnp.int32)}
    config = decoding.GenerationConfig(max_new_tokens=max_new_tokens)
    return decoding.generate(model, params, prompts, family=self.family, config=config,
                             eos_id=self.stop_id, pad_id=self.tokenizer.pad_id,
                             method=model.lm_logits).tokens[:, 0]

  def metrics(self, rows, sums):
    result = {"perplexity": metrics.perplexity(sums.sums["nll"], max(sums.counts["nll"], 1.0))}
    if self.generate:
      result.update(generation_metrics(rows, self.split.examples, self.tokenizer,
                                       jax.process_count(), self.stop_id))
    return result


  def details(self, rows):
    if not self.generate:
      return {}
    examples = self.split.examples
    shown = sorted(generations(rows, examples, self.tokenizer, jax.process_count(),
                               self.stop_id))[:SAMPLES]
    return {"samples": [{"input": examples[i]["text"], "reference": examples[i]["target"],
                         "prediction": prediction} for i, prediction in shown]}


def stop_id(task, tokenizer) -> int:
  """Where a generation ends: a chat run's end of turn (its template's: ChatML's <|im_end|>),
  else eos."""
  if task is not None and task.kind == "chat":
    return chat_template.ChatFormat(task.chat_template, tokenizer).end_of_turn_id
  return tokenizer.eos_id


def generations(rows, examples, tokenizer, process_count: int,
                stop_id: int) -> list[tuple[int, str]]:
  """(example index, generated text up to stop_id) of each example. Batch b's global row r is row
  j = r % local of process p = r // local, which holds shard example b * local + j of
  examples[p::process_count]."""
  texts = []
  for b, (generated, batch) in enumerate(rows):
    local = len(generated) // process_count
    for r, ids in enumerate(generated):
      p, j = divmod(r, local)
      index = p + process_count * (b * local + j)
      if index >= len(examples) or index % process_count != p:
        continue
      ids = list(ids)
      ids = ids[:ids.index(stop_id)] if stop_id in ids else ids
      # Generated pad is no text; it is 0 but for GPT-2, whose 0 is "!" and whose pad is eos.
      texts.append((index, tokenizer.decode([i for i in ids if i != tokenizer.pad_id])))
  return texts


def generation_metrics(rows, examples, tokenizer, process_count: int, stop_id: int) -> dict:
  """Each generation (see `generations`) scored against its example's target text."""
  texts = generations(rows, examples, tokenizer, process_count, stop_id)
  predictions = [text for _, text in texts]
  references = [examples[index]["target"] for index, _ in texts]
  bleu = metrics.corpus_bleu(predictions, references)["bleu"]
  return {"exact_match": metrics.exact_match(predictions, references), "bleu": bleu,
          **metrics.rouge(predictions, references)}
