"""Transformer models as pure Linen modules: `build_model(config)` per family, FLOPs for MFU."""

import flax.linen as nn

from roots_jax.errors import ConfigError
from roots_jax.models.config import ModelConfig
from roots_jax.models.decoder import Decoder
from roots_jax.models.encoder import Encoder
from roots_jax.models.encoder_decoder import EncoderDecoder
from roots_jax.models.flops import flops_per_token

FAMILIES = {"decoder": Decoder, "encoder": Encoder, "encoder_decoder": EncoderDecoder}


def build_model(config: ModelConfig) -> nn.Module:
  """The model for config.family (model.family)."""
  if config.family not in FAMILIES:
    raise ConfigError(f"model.family must be one of {', '.join(FAMILIES)}; got {config.family!r}")
  return FAMILIES[config.family](config)


__all__ = ["Decoder", "Encoder", "EncoderDecoder", "ModelConfig", "build_model",
           "flops_per_token"]
