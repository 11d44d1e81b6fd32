"""Sequence to sequence (summaries, translation): a text -> a target text, for the families that
generate.

Examples are {"text", "target"}, the target from task.label_field. Rows:
  encoder_decoder: the rows of the seq2seq objective: encoder_inputs = input[:L-1] [EOS] [L];
    decoder_targets = target[:T-1] [EOS], decoder_inputs (shifted right, start id 0),
    decoder_weights (float32) [T]; segment ids and positions of both.
  decoder: inputs = [BOS] input[:L-2] [SEP] target[:T-1] [EOS] [L+T]; targets = inputs shifted
    left; weights float32 1.0 where the target is a target token or the eos (loss on the
    target only); segment_ids, positions [L+T]; prompt_len [] = len([BOS] input [SEP]).
The head is an LM head of the task's own, initialised from the pretrained one; scored by
perplexity and, from greedy generations, exact match, BLEU and ROUGE-1/2/L.
"""

import numpy as np

from roots_jax.data import supervised, task_rows
from roots_jax.errors import ConfigError
from roots_jax.models.families import sequence_row, sequence_spec
from roots_jax.tasks.base import TaskKind
from roots_jax.training.losses import token_loss


class Seq2Seq(TaskKind):
  name = "seq2seq"
  reads = "lm"
  default_metric = "loss"
  evaluator = "generation"

  def check_family(self, family):
    if not family.generates:
      raise ConfigError("task.kind=seq2seq needs a model that generates text: it needs a decoder "
                        "or encoder_decoder model (model.family), not an encoder (BERT), which "
                        "fits classification, regression and token_classification")

  def validate(self, task):
    super().validate(task)
    if task.target_len < 2:
      raise ConfigError(f"task.target_len ({task.target_len}) must be at least 2: a token and eos")

  def example(self, record, task, where):
    return {"text": supervised.text(record, task.text_field, "task.text_field", where),
            "target": supervised.text(record, task.label_field, "task.label_field", where)}

  def spec(self, family, max_len, target_len):
    self.check_family(family)
    i32, f32 = np.int32, np.float32
    if family.has_encoder:
      return {**sequence_spec(max_len, "encoder_"), **sequence_spec(target_len, "decoder_"),
              "decoder_targets": ((target_len,), i32), "decoder_weights": ((target_len,), f32)}
    n = max_len + target_len
    return {"inputs": ((n,), i32), "targets": ((n,), i32), "weights": ((n,), f32),
            "segment_ids": ((n,), i32), "positions": ((n,), i32), "prompt_len": ((), i32)}

  def encode(self, example, *, family, tokenizer, labels, max_len, target_len):
    self.check_family(family)
    specials = task_rows.specials(tokenizer)
    source = tokenizer.encode(example["text"])
    target = tokenizer.encode(example["target"])[:target_len - 1] + specials["eos"]
    if family.has_encoder:
      row = sequence_row(source[:max_len - 1] + specials["eos"], max_len, "encoder_")
      row.update(sequence_row([0] + target[:-1], target_len, "decoder_"))
      row["decoder_targets"] = task_rows.padded(target, target_len, np.int32)
      row["decoder_weights"] = task_rows.padded([1.0] * len(target), target_len, np.float32)
      return row
    prompt = specials["bos"] + source[:max_len - len(specials["bos"]) - 1] + specials["sep"]
    ids = prompt + target
    length = max_len + target_len
    row = sequence_row(ids, length)
    row["targets"] = task_rows.padded(ids[1:], length, np.int32)
    # Position i predicts ids[i + 1]: from the [SEP] (predicting the first target token) to the
    # token before the eos (predicting the eos).
    row["weights"] = task_rows.padded([0.0] * (len(prompt) - 1) + [1.0] * len(target), length,
                                      np.float32)
    row["prompt_len"] = np.int32(len(prompt))
    return row

  def prompt_ids(self, text: str, *, family, tokenizer, max_len: int) -> list[int]:
    """What generation starts from for an input `text`, as the rows lay it out: a decoder's
    [BOS] input [SEP], an encoder-decoder's input [EOS]."""
    row = self.encode({"text": text, "target": ""}, family=family, tokenizer=tokenizer,
                      labels=None, max_len=max_len, target_len=1)
    if family.has_encoder:
      return row["encoder_inputs"][row["encoder_segment_ids"] > 0].tolist()
    return row["inputs"][:row["prompt_len"]].tolist()

  def row_length(self, family, max_len, target_len):
    return max_len + (0 if family.has_encoder else target_len)

  def num_outputs(self, labels):
    return 0

  def loss(self, family, *, label_smoothing=0.0, class_weights=None):
    prefix = "decoder_" if family.has_encoder else ""
    return token_loss(self._model_inputs, f"{prefix}targets", f"{prefix}weights",
                      self._example_fn(family))


KIND = Seq2Seq()
