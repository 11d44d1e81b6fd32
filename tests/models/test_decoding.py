"""Greedy decoding in one jitted loop equals taking the argmax of a full forward pass per step."""

import jax
import numpy as np
import pytest

from roots_jax import decoding
from roots_jax.models.heads import FinetuneModel
from tiny_models import random_params, tiny_config

EOS = 3


def _reference(model, params, prompt, family, max_new_tokens):
  """One row, step by step in Python: the model on the tokens so far, argmax, append."""
  generated = []
  for _ in range(max_new_tokens):
    if family == "decoder":
      tokens = np.array([list(prompt) + generated], np.int32)
      logits = model.apply(params, {"inputs": tokens, "segment_ids": np.ones_like(tokens),
                                    "positions": np.arange(tokens.shape[1])[None]})
    else:
      enc = np.array([prompt], np.int32)
      dec = np.array([[0] + generated], np.int32)
      logits = model.apply(params, {
          "encoder_inputs": enc, "encoder_segment_ids": np.ones_like(enc),
          "encoder_positions": np.arange(enc.shape[1])[None], "decoder_inputs": dec,
          "decoder_segment_ids": np.ones_like(dec), "decoder_positions": np.arange(dec.shape[1])[None]})
    token = int(np.argmax(logits[0, -1]))
    generated.append(token)
    if token == EOS:
      break
  return generated + [0] * (max_new_tokens - len(generated))


@pytest.mark.parametrize("family", ["decoder", "encoder_decoder"])
def test_greedy_equals_stepwise_argmax(family):
  config = tiny_config(family=family, vocab_size=16)  # small vocabulary: eos comes up
  model = FinetuneModel(config, "seq2seq")
  prompts = [[5, 6, 7], [8, 9, 10, 11, 12], [4]]
  width, new = 6, 7
  tokens = np.zeros((4, width + new if family == "decoder" else width), np.int32)  # + a pad row
  for i, p in enumerate(prompts):
    tokens[i, :len(p)] = p
  real = (tokens > 0).astype(np.int32)
  positions = np.where(real, np.arange(tokens.shape[1]), 0).astype(np.int32)
  if family == "decoder":
    batch = {"inputs": tokens, "segment_ids": real, "positions": positions,
             "prompt_len": real.sum(1).astype(np.int32)}
  else:
    batch = {"encoder_inputs": tokens, "encoder_segment_ids": real, "encoder_positions": positions}
  params = random_params(model, {**batch, **({} if family == "decoder" else {
      "decoder_inputs": tokens, "decoder_segment_ids": real, "decoder_positions": positions})})
  logits_fn = lambda b: model.apply(params, b)
  out = jax.jit(lambda b: decoding.greedy(logits_fn, b, family=family, max_new_tokens=new,
                                          eos_id=EOS))(batch)
  for i, prompt in enumerate(prompts):
    assert list(np.asarray(out[i])) == _reference(model, params, prompt, family, new)
  assert not np.asarray(out[3]).any()  # the padding row generates nothing
