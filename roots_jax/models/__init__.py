"""Transformer models as pure Linen modules, and the family objects that say what differs
between decoder, encoder and encoder-decoder (roots_jax.models.families)."""

import flax.linen as nn

from roots_jax.models import families
from roots_jax.models.config import ModelConfig
from roots_jax.models.decoder import Decoder
from roots_jax.models.encoder import Encoder
from roots_jax.models.encoder_decoder import EncoderDecoder


def build_model(config: ModelConfig) -> nn.Module:
  """The stack of config.family (model.family)."""
  return families.get(config.family).build(config)


def flops_per_token(config: ModelConfig, seq_len: int, target_len: int | None = None,
                    **head) -> float:
  """Training FLOPs per token of config.family's model, or of a fine-tuning `head` on it (see
  Family.flops_per_token, Family.matmuls)."""
  return families.get(config.family).flops_per_token(config, seq_len, target_len, **head)


def forward_flops_per_token(config: ModelConfig, seq_len: int, target_len: int | None = None,
                            **head) -> float:
  """FLOPs per token of config.family's model (or a fine-tuning `head` on it) run forward only
  (a distillation teacher), counted as flops_per_token counts."""
  family = families.get(config.family)
  return sum(m.forward for m in family.matmuls(config, seq_len, target_len, **head)) / seq_len


__all__ = ["Decoder", "Encoder", "EncoderDecoder", "ModelConfig", "build_model",
           "flops_per_token", "forward_flops_per_token"]
