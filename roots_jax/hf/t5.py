"""T5 (Hugging Face T5ForConditionalGeneration, MT5ForConditionalGeneration) <-> a roots_jax
encoder-decoder.

Pre-LN RMSNorm without biases, one bucketed relative position bias per stack (kept in block 0),
no attention scaling, a shared token embedding. v1.0: ReLU MLP and a tied LM head applied to the
decoder output times D^-0.5; v1.1 / mT5: "gated-gelu" (our geglu, tanh GELU) and an untied head
without the rescaling. Hugging Face writes the latter as tie_word_embeddings=False (transformers
4) or scale_decoder_outputs=False (transformers 5, which keeps tie_word_embeddings=True and
unties the head only when the file holds its own lm_head.weight): either means our untied head.
"""

import numpy as np

from roots_jax.errors import ConfigError
from roots_jax.hf import fields
from roots_jax.hf.mapping import Layout, Rule, Stack
from roots_jax.models.config import ModelConfig

NAME = "T5"
MODEL_TYPES = ("t5", "mt5")
ARCHITECTURES = ("T5ForConditionalGeneration", "MT5ForConditionalGeneration")
FAMILY = "encoder_decoder"
WRITES = {}  # the one encoder-decoder architecture
FRESH = ()
# Relative positions have no table: 512 is what T5 was pretrained on (its inputs), a default for
# the data pipeline rather than a limit of the model.
MAX_LEN = 512
# feed_forward_proj <-> model.mlp_activation ("gated-gelu" is the tanh GELU: Hugging Face maps
# it to gelu_new; plain "gelu" is the exact one).
ACTIVATIONS = {"relu": "relu", "gated-gelu": "geglu", "gated-gelu_new": "geglu",
               "gated-silu": "swiglu", "gelu_new": "gelu", "gelu": "gelu_exact"}
HF_ACTIVATIONS = {"relu": "relu", "geglu": "gated-gelu", "swiglu": "gated-silu",
                  "gelu": "gelu_new", "gelu_exact": "gelu"}


def model_fields(hf: dict) -> dict:
  """The roots_jax `model` section of a T5Config (config.json)."""
  proj = fields.get(hf, "feed_forward_proj", "relu")
  if proj not in ACTIVATIONS:
    raise ConfigError(f"config.json feed_forward_proj={proj!r}: {NAME} supports "
                      f"{', '.join(ACTIVATIONS)}")
  num_layers = fields.get(hf, "num_layers", 6)
  decoder_layers = fields.get(hf, "num_decoder_layers", num_layers)
  scaled = hf["scale_decoder_outputs"] if "scale_decoder_outputs" in hf else fields.get(
      hf, "tie_word_embeddings", True)
  dropout = fields.get(hf, "dropout_rate", 0.1)  # T5 drops attention weights at the same rate
  return dict(
      family=FAMILY, vocab_size=fields.get(hf, "vocab_size", 32128), num_layers=num_layers,
      num_decoder_layers=0 if decoder_layers == num_layers else decoder_layers,
      embed_dim=fields.get(hf, "d_model", 512), num_heads=fields.get(hf, "num_heads", 8),
      num_kv_heads=0, head_dim=fields.get(hf, "d_kv", 64), mlp_dim=fields.get(hf, "d_ff", 2048),
      mlp_activation=ACTIVATIONS[proj], norm="rmsnorm",
      norm_eps=fields.get(hf, "layer_norm_epsilon", 1e-6), norm_placement="pre",
      position="relative", max_len=MAX_LEN,
      relative_buckets=fields.get(hf, "relative_attention_num_buckets", 32),
      relative_max_distance=fields.get(hf, "relative_attention_max_distance", 128),
      type_vocab_size=0, scale_embeddings=False, scaled_attention=False, use_bias=False,
      tie_embeddings=bool(scaled), dropout_rate=dropout, attention_dropout_rate=dropout)


def hf_config(m: ModelConfig) -> dict:
  """T5ForConditionalGeneration's config.json for model section `m`; refuses what T5 cannot
  express."""
  fields.refuse_all(m, NAME, position="relative", norm="rmsnorm", norm_placement="pre",
                    mlp_activation=tuple(HF_ACTIVATIONS), use_bias=False, scale_embeddings=False,
                    scaled_attention=False, any_head_dim=True)
  return {
      "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
      "vocab_size": m.vocab_size, "d_model": m.embed_dim, "d_kv": m.head_size, "d_ff": m.mlp_dim,
      "num_layers": m.num_layers, "num_decoder_layers": m.decoder_layers,
      "num_heads": m.num_heads, "relative_attention_num_buckets": m.relative_buckets,
      "relative_attention_max_distance": m.relative_max_distance,
      "dropout_rate": m.dropout_rate, "layer_norm_epsilon": m.norm_eps,
      "feed_forward_proj": HF_ACTIVATIONS[m.mlp_activation],
      "tie_word_embeddings": m.tie_embeddings, "scale_decoder_outputs": m.tie_embeddings,
      "initializer_factor": 1.0, "is_encoder_decoder": True, "use_cache": True,
      "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1,
  }


def _attention(prefix: str, ours: str) -> list[Rule]:
  rules = [Rule(f"{prefix}.o.weight", f"{ours}/out/kernel", "linear2")]
  return rules + [Rule(f"{prefix}.{q}.weight", f"{ours}/{name}/kernel", "linear")
                  for q, name in (("q", "query"), ("k", "key"), ("v", "value"))]


def _mlp(prefix: str, m: ModelConfig) -> list[Rule]:
  rules = [Rule(f"{prefix}.wo.weight", "mlp/wo/kernel", "linear")]
  if m.mlp_activation in ("geglu", "swiglu"):
    return rules + [Rule(f"{prefix}.wi_0.weight", "mlp/wi_gate/kernel", "linear"),
                    Rule(f"{prefix}.wi_1.weight", "mlp/wi_up/kernel", "linear")]
  return rules + [Rule(f"{prefix}.wi.weight", "mlp/wi/kernel", "linear")]


def layout(m: ModelConfig) -> Layout:
  e, d = "encoder.block.{i}.layer.", "decoder.block.{i}.layer."
  encoder = (_attention(e + "0.SelfAttention", "attention") + _mlp(e + "1.DenseReluDense", m)
             + [Rule(e + "0.layer_norm.weight", "attention_norm/scale"),
                Rule(e + "1.layer_norm.weight", "mlp_norm/scale")])
  decoder = (_attention(d + "0.SelfAttention", "attention")
             + _attention(d + "1.EncDecAttention", "cross_attention")
             + _mlp(d + "2.DenseReluDense", m)
             + [Rule(d + "0.layer_norm.weight", "attention_norm/scale"),
                Rule(d + "1.layer_norm.weight", "cross_attention_norm/scale"),
                Rule(d + "2.layer_norm.weight", "mlp_norm/scale")])
  bias = "block.0.layer.0.SelfAttention.relative_attention_bias.weight"
  top = [Rule("shared.weight", "token_embed/embedding"),
         Rule(f"encoder.{bias}", "encoder/relative_bias/embedding"),
         Rule(f"decoder.{bias}", "decoder/relative_bias/embedding"),
         Rule("encoder.final_layer_norm.weight", "encoder/final_norm/scale"),
         Rule("decoder.final_layer_norm.weight", "decoder/final_norm/scale")]
  # The stacks' embed_tokens are the shared table; cross-attention has no position bias.
  ignored = [r"(en|de)coder\.embed_tokens\.weight",
             r"decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight"]
  if m.tie_embeddings:
    ignored.append(r"lm_head\.weight")  # a copy of shared.weight in .bin files
  else:
    top.append(Rule("lm_head.weight", "lm_head/kernel", "linear"))
  return Layout(tuple(top), (Stack("encoder", m.num_layers, tuple(encoder)),
                             Stack("decoder", m.decoder_layers, tuple(decoder))), tuple(ignored))


def canonical(tensors: dict[str, np.ndarray], m: ModelConfig) -> dict[str, np.ndarray]:
  """Names as `layout` spells them: the shared table under shared.weight; an unscaled head
  saved tied (transformers 5 keeps one copy) reads the shared table."""
  tensors = dict(tensors)
  for alias in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
    if "shared.weight" not in tensors and alias in tensors:
      tensors["shared.weight"] = tensors[alias]
  if not m.tie_embeddings and "lm_head.weight" not in tensors and "shared.weight" in tensors:
    tensors["lm_head.weight"] = tensors["shared.weight"]
  return tensors


def finish(tensors: dict[str, np.ndarray], m: ModelConfig) -> dict[str, np.ndarray]:
  del m
  return tensors
