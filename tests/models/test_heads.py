"""Fine-tuning heads: what each family's head reads, and the seq2seq head's pretrained init."""

import jax
import numpy as np
import pytest

from roots_jax import models
from roots_jax.errors import ConfigError
from roots_jax.models import families
from roots_jax.models.heads import FinetuneModel
from tiny_models import random_params, tiny_config


def _batch(family, lengths=(5, 8), length=8):
  rows = len(lengths)
  tokens = np.zeros((rows, length), np.int32)
  for i, n in enumerate(lengths):
    tokens[i, :n] = 4 + np.arange(n) * 3 % 50
  real = (tokens > 0).astype(np.int32)
  positions = np.where(real, np.arange(length), 0).astype(np.int32)
  if family == "encoder_decoder":
    shifted = np.pad(tokens[:, :-1], ((0, 0), (1, 0)))
    return {"encoder_inputs": tokens, "encoder_segment_ids": real, "encoder_positions": positions,
            "decoder_inputs": shifted, "decoder_segment_ids": real, "decoder_positions": positions}
  batch = {"inputs": tokens, "segment_ids": real, "positions": positions}
  if family == "encoder":
    batch["token_types"] = np.zeros_like(tokens)
  return batch


def _decoder_features(config, params, batch):
  """The backbone's final hidden states [B, T, D], as a decoder head reads them."""
  return models.build_model(config).apply({"params": params["params"]["backbone"]},
                                          batch["inputs"], positions=batch["positions"],
                                          segment_ids=batch["segment_ids"], features=True)


@pytest.mark.parametrize("pooling", ["", "mean"])
@pytest.mark.parametrize("family", ["encoder", "decoder", "encoder_decoder"])
def test_sequence_head_ignores_padding(family, pooling):
  """Changing the padding of a row (its tokens after the last real one) leaves its logits."""
  config = tiny_config(family=family, type_vocab_size=2 if family == "encoder" else 0)
  model = FinetuneModel(config, "pooled", num_outputs=3, pooling=pooling)
  batch = _batch(family)
  params = random_params(model, batch)
  logits = model.apply(params, batch)                                   # [B, 3]
  assert logits.shape == (2, 3)
  noisy = {k: v.copy() for k, v in batch.items()}
  for key in noisy:
    if key.endswith("inputs"):
      noisy[key][0, 6:] = 9  # row 0 has 5 real tokens: positions 6, 7 are padding
  np.testing.assert_allclose(model.apply(params, noisy)[0], logits[0], atol=1e-6)


def test_decoder_head_reads_the_last_real_token():
  config = tiny_config(family="decoder")
  model = FinetuneModel(config, "pooled", num_outputs=1, scalar=True)
  batch = _batch("decoder")
  params = random_params(model, batch)
  hidden, head = _decoder_features(config, params, batch), params["params"]["head"]
  expected = hidden[np.arange(2), [4, 7]] @ head["kernel"][:, 0] + head["bias"][0]
  np.testing.assert_allclose(model.apply(params, batch), expected, atol=1e-5)


@pytest.mark.parametrize("family,overrides", [
    ("decoder", {}), ("decoder", {"tie_embeddings": False}),
    ("encoder_decoder", {"norm_placement": "pre"}),
    ("encoder_decoder", {"scale_embeddings": True}),
    ("encoder_decoder", {"tie_embeddings": False})])
def test_seq2seq_head_copied_from_the_lm_head_gives_the_pretrained_logits(family, overrides):
  config = tiny_config(family=family, **overrides)
  model = FinetuneModel(config, "lm")
  batch = _batch(family)
  backbone = models.build_model(config)
  if family == "decoder":
    args, kwargs = (batch["inputs"],), dict(positions=batch["positions"],
                                            segment_ids=batch["segment_ids"])
  else:
    args = (batch["encoder_inputs"], batch["decoder_inputs"])
    kwargs = {k: batch[k] for k in ("encoder_segment_ids", "decoder_segment_ids",
                                    "encoder_positions", "decoder_positions")}
  pretrained = random_params(backbone, *args, **kwargs)["params"]
  expected = backbone.apply({"params": pretrained}, *args, **kwargs)            # [B, T, V]
  params = {"backbone": pretrained,
            "head": {"kernel": families.get(family).output_kernel(config, pretrained)}}
  np.testing.assert_allclose(model.apply({"params": params}, batch), expected, atol=1e-5)


def test_mean_pooling_averages_real_tokens():
  config = tiny_config(family="decoder")
  model = FinetuneModel(config, "pooled", num_outputs=1, scalar=True, pooling="mean")
  batch = _batch("decoder")
  params = random_params(model, batch)
  hidden, head = _decoder_features(config, params, batch), params["params"]["head"]
  pooled = np.stack([hidden[0, :5].mean(0), hidden[1, :8].mean(0)])
  expected = pooled @ head["kernel"][:, 0] + head["bias"][0]
  np.testing.assert_allclose(model.apply(params, batch), expected, atol=1e-5)


def test_pooling_must_fit_the_family():
  with pytest.raises(ConfigError, match="use last or mean"):
    FinetuneModel(tiny_config(family="decoder"), "pooled", 3, pooling="first").init(
        jax.random.key(0), _batch("decoder"))
