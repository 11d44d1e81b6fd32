"""Llama (Hugging Face LlamaForCausalLM) <-> a roots_jax decoder with RoPE, RMSNorm and a gated
MLP.

Pre-LN RMSNorm (weight times x / rms(x), as ours), grouped-query attention
(num_key_value_heads), any head_dim, gate_proj/up_proj/down_proj as our wi_gate/wi_up/wo: silu is
our swiglu, the tanh GELU our geglu. attention_bias and mlp_bias are our one use_bias, so they
must agree; Llama has no dropout but on attention weights, so model.dropout_rate is not written.
Hugging Face's Llama rotates q and k in the rotate-half layout (dims i and i + H/2 pair up), as
ours does: the weights need no permutation (Meta's original checkpoints pair adjacent dims;
transformers' own conversion script permutes those into this layout).
"""

import numpy as np

from roots_jax.errors import ConfigError
from roots_jax.hf import fields
from roots_jax.hf.mapping import Layout, Rule, decoder_layout
from roots_jax.models.config import ModelConfig

NAME = "Llama"
MODEL_TYPES = ("llama",)
ARCHITECTURES = ("LlamaForCausalLM",)
FAMILY = "decoder"
# The model fields that make a decoder Llama rather than GPT-2 or GPT-NeoX on export.
WRITES = dict(position="rope", norm="rmsnorm")
FRESH = ()
# hidden_act (the gate's function) <-> model.mlp_activation.
ACTIVATIONS = {"silu": "swiglu", "gelu_pytorch_tanh": "geglu", "gelu_new": "geglu"}
HF_ACTIVATIONS = {"swiglu": "silu", "geglu": "gelu_pytorch_tanh"}


def model_fields(hf: dict) -> dict:
  """The roots_jax `model` section of a LlamaConfig (config.json)."""
  act = fields.get(hf, "hidden_act", "silu")
  if act not in ACTIVATIONS:
    raise ConfigError(f"config.json hidden_act={act!r}: {NAME} supports {', '.join(ACTIVATIONS)}")
  bias = fields.get(hf, "attention_bias", False)
  fields.require(hf, "mlp_bias", bias, False, f"{NAME} with attention_bias={bias!r}")
  embed_dim = fields.get(hf, "hidden_size", 4096)
  num_heads = fields.get(hf, "num_attention_heads", 32)
  kv_heads = fields.get(hf, "num_key_value_heads", num_heads)
  head_dim = fields.get(hf, "head_dim", embed_dim // num_heads)
  return dict(
      family=FAMILY, vocab_size=fields.get(hf, "vocab_size", 32000),
      num_layers=fields.get(hf, "num_hidden_layers", 32), embed_dim=embed_dim,
      num_heads=num_heads, num_kv_heads=0 if kv_heads == num_heads else kv_heads,
      head_dim=0 if head_dim == embed_dim // num_heads else head_dim,
      mlp_dim=fields.get(hf, "intermediate_size", 11008), mlp_activation=ACTIVATIONS[act],
      norm="rmsnorm", norm_eps=fields.get(hf, "rms_norm_eps", 1e-6), norm_placement="pre",
      position="rope", max_len=fields.get(hf, "max_position_embeddings", 2048),
      rope_theta=fields.rope_theta(hf, NAME), type_vocab_size=0, scale_embeddings=False,
      scaled_attention=True, use_bias=bias,
      tie_embeddings=fields.get(hf, "tie_word_embeddings", False), dropout_rate=0.0,
      attention_dropout_rate=fields.get(hf, "attention_dropout", 0.0))


def hf_config(m: ModelConfig) -> dict:
  """LlamaForCausalLM's config.json for model section `m`; refuses what Llama cannot express."""
  fields.refuse_all(m, NAME, any_head_dim=True, any_kv_heads=True,
                    note="; GPT-NeoX takes RoPE with layernorm and gelu", position="rope",
                    norm="rmsnorm", norm_placement="pre", mlp_activation=tuple(HF_ACTIVATIONS),
                    scale_embeddings=False, scaled_attention=True)
  return {
      "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": m.vocab_size,
      "hidden_size": m.embed_dim, "num_hidden_layers": m.num_layers,
      "num_attention_heads": m.num_heads, "num_key_value_heads": m.kv_heads,
      "head_dim": m.head_size, "intermediate_size": m.mlp_dim,
      "hidden_act": HF_ACTIVATIONS[m.mlp_activation], "rms_norm_eps": m.norm_eps,
      "max_position_embeddings": m.max_len, "attention_bias": m.use_bias,
      "mlp_bias": m.use_bias, "tie_word_embeddings": m.tie_embeddings,
      # transformers 5 reads rope_parameters, transformers 4 rope_theta.
      "rope_parameters": {"rope_type": "default", "rope_theta": m.rope_theta},
      "rope_theta": m.rope_theta, "attention_dropout": m.attention_dropout_rate,
      "initializer_range": 0.02, "use_cache": True,
  }


def layout(m: ModelConfig) -> Layout:
  h = "model.layers.{i}."
  layer = [Rule(h + "input_layernorm.weight", "attention_norm/scale"),
           Rule(h + "post_attention_layernorm.weight", "mlp_norm/scale"),
           Rule(h + "self_attn.o_proj.weight", "attention/out/kernel", "linear2")]
  projections = [("self_attn.q_proj", "attention/query"), ("self_attn.k_proj", "attention/key"),
                 ("self_attn.v_proj", "attention/value"), ("mlp.gate_proj", "mlp/wi_gate"),
                 ("mlp.up_proj", "mlp/wi_up"), ("mlp.down_proj", "mlp/wo")]
  layer += [Rule(f"{h}{hf}.weight", f"{ours}/kernel", "linear") for hf, ours in projections]
  if m.use_bias:
    layer += [Rule(f"{h}{hf}.bias", f"{ours}/bias", "flat")
              for hf, ours in projections + [("self_attn.o_proj", "attention/out")]]
  top = [Rule("model.embed_tokens.weight", "token_embed/embedding"),
         Rule("model.norm.weight", "final_norm/scale")]
  ignored = [r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq"]  # a buffer of older files
  return decoder_layout(m, top, layer, ignored, "lm_head.weight")


def canonical(tensors: dict[str, np.ndarray], m: ModelConfig) -> dict[str, np.ndarray]:
  del m
  return tensors


def finish(tensors: dict[str, np.ndarray], m: ModelConfig) -> dict[str, np.ndarray]:
  del m
  return tensors
