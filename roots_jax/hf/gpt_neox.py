"""GPT-NeoX (Hugging Face GPTNeoXForCausalLM; Pythia) <-> a roots_jax decoder with RoPE and
LayerNorm: the quickstart GPT's architecture.

Pre-LN with biases everywhere. Our block is sequential (x + attn(ln1(x)), then + mlp(ln2(.))):
use_parallel_residual=False; Pythia's parallel residual has no counterpart here. RoPE rotates the
whole head (rotary_pct=1.0; Pythia's 0.25 is refused) in the rotate-half layout Hugging Face uses
too, so q and k need no permutation. query_key_value fuses q, k and v per head: its [3D, D]
weight is [N, 3, H, D], i.e. head n's q, k, v rows side by side (split here into q, k, v).
transformers 5 names the untied head lm_head, the files (and transformers 4) embed_out.
"""

import numpy as np

from roots_jax.errors import CheckpointError
from roots_jax.hf import fields
from roots_jax.hf.mapping import Layout, Rule, decoder_layout
from roots_jax.models.config import ModelConfig

NAME = "GPT-NeoX"
MODEL_TYPES = ("gpt_neox",)
ARCHITECTURES = ("GPTNeoXForCausalLM",)
FAMILY = "decoder"
# The model fields that make a decoder GPT-NeoX rather than GPT-2 or Llama on export.
WRITES = dict(position="rope", norm="layernorm")
FRESH = ()
_QKV = ("query", "key", "value")
_FUSED = ".attention.query_key_value."


def model_fields(hf: dict) -> dict:
  """The roots_jax `model` section of a GPTNeoXConfig (config.json)."""
  fields.require(hf, "use_parallel_residual", False, True, NAME)
  fields.require(hf, "attention_bias", True, True, NAME)
  return dict(
      family=FAMILY, vocab_size=fields.get(hf, "vocab_size", 50432),
      num_layers=fields.get(hf, "num_hidden_layers", 44),
      embed_dim=fields.get(hf, "hidden_size", 6144),
      num_heads=fields.get(hf, "num_attention_heads", 64), num_kv_heads=0, head_dim=0,
      mlp_dim=fields.get(hf, "intermediate_size", 24576),
      mlp_activation=fields.activation(hf, "hidden_act", "gelu", NAME),
      norm="layernorm", norm_eps=fields.get(hf, "layer_norm_eps", 1e-5), norm_placement="pre",
      position="rope", max_len=fields.get(hf, "max_position_embeddings", 2048),
      rope_theta=fields.rope_theta(hf, NAME, legacy_theta="rotary_emb_base",
                                   legacy_fraction="rotary_pct", fraction=0.25),
      type_vocab_size=0, scale_embeddings=False, scaled_attention=True, use_bias=True,
      tie_embeddings=fields.get(hf, "tie_word_embeddings", False),
      dropout_rate=fields.get(hf, "hidden_dropout", 0.0),
      attention_dropout_rate=fields.get(hf, "attention_dropout", 0.0))


def hf_config(m: ModelConfig) -> dict:
  """GPTNeoXForCausalLM's config.json for model section `m`; refuses what GPT-NeoX cannot
  express."""
  fields.refuse_all(m, NAME, note="; Llama takes RoPE with rmsnorm, swiglu and GQA",
                    position="rope", norm="layernorm", norm_placement="pre",
                    mlp_activation=tuple(fields.HF_ACTIVATIONS), use_bias=True,
                    scale_embeddings=False, scaled_attention=True)
  return {
      "architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox",
      "vocab_size": m.vocab_size, "hidden_size": m.embed_dim, "num_hidden_layers": m.num_layers,
      "num_attention_heads": m.num_heads, "intermediate_size": m.mlp_dim,
      "hidden_act": fields.HF_ACTIVATIONS[m.mlp_activation], "layer_norm_eps": m.norm_eps,
      "max_position_embeddings": m.max_len, "use_parallel_residual": False,
      "attention_bias": True, "tie_word_embeddings": m.tie_embeddings,
      # transformers 5 reads rope_parameters, transformers 4 rotary_pct and rotary_emb_base.
      "rope_parameters": {"rope_type": "default", "rope_theta": m.rope_theta,
                          "partial_rotary_factor": 1.0},
      "rotary_pct": 1.0, "rotary_emb_base": m.rope_theta,
      "hidden_dropout": m.dropout_rate, "attention_dropout": m.attention_dropout_rate,
      "initializer_range": 0.02, "use_cache": True,
  }


def layout(m: ModelConfig) -> Layout:
  h = "gpt_neox.layers.{i}."
  layer = [Rule(h + "input_layernorm.weight", "attention_norm/scale"),
           Rule(h + "input_layernorm.bias", "attention_norm/bias"),
           Rule(h + "attention.dense.weight", "attention/out/kernel", "linear2"),
           Rule(h + "attention.dense.bias", "attention/out/bias"),
           Rule(h + "post_attention_layernorm.weight", "mlp_norm/scale"),
           Rule(h + "post_attention_layernorm.bias", "mlp_norm/bias"),
           Rule(h + "mlp.dense_h_to_4h.weight", "mlp/wi/kernel", "linear"),
           Rule(h + "mlp.dense_h_to_4h.bias", "mlp/wi/bias"),
           Rule(h + "mlp.dense_4h_to_h.weight", "mlp/wo/kernel", "linear"),
           Rule(h + "mlp.dense_4h_to_h.bias", "mlp/wo/bias")]
  for name in _QKV:
    layer += [Rule(f"{h}attention.{name}.weight", f"attention/{name}/kernel", "linear"),
              Rule(f"{h}attention.{name}.bias", f"attention/{name}/bias", "flat")]
  top = [Rule("gpt_neox.embed_in.weight", "token_embed/embedding"),
         Rule("gpt_neox.final_layer_norm.weight", "final_norm/scale"),
         Rule("gpt_neox.final_layer_norm.bias", "final_norm/bias")]
  # Buffers of older files: the causal mask and the rotary frequencies.
  ignored = [r"gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)"]
  return decoder_layout(m, top, layer, ignored, "embed_out.weight")


def canonical(tensors: dict[str, np.ndarray], m: ModelConfig) -> dict[str, np.ndarray]:
  """Names as `layout` spells them: the head as embed_out; query_key_value split per head into
  q, k, v."""
  out = {}
  for name, value in tensors.items():
    if name == "lm_head.weight":
      out["embed_out.weight"] = value
    elif _FUSED in name:  # weight [N*3*H, D], bias [N*3*H]
      if value.shape[0] != 3 * m.num_heads * m.head_size:
        raise CheckpointError(f"the checkpoint's {name} is {value.shape}, not {m.num_heads} "
                              f"heads of query, key and value of size {m.head_size}")
      parts = value.reshape(m.num_heads, 3, m.head_size, *value.shape[1:])
      for i, q in enumerate(_QKV):
        out[name.replace(_FUSED, f".attention.{q}.")] = parts[:, i].reshape(-1, *value.shape[1:])
    else:
      out[name] = value
  return out


def finish(tensors: dict[str, np.ndarray], m: ModelConfig) -> dict[str, np.ndarray]:
  """Inverse of `canonical` for GPTNeoXForCausalLM: q, k, v fused back per head."""
  split = tuple(f".attention.{q}." for q in _QKV)
  out = {k: v for k, v in tensors.items() if not any(s in k for s in split)}
  for name in tensors:
    if split[0] in name:
      parts = [tensors[name.replace(split[0], s)] for s in split]
      heads = [p.reshape(m.num_heads, m.head_size, *p.shape[1:]) for p in parts]
      fused = np.stack(heads, axis=1)  # [N, 3, H, ...]
      out[name.replace(split[0], _FUSED)] = fused.reshape(-1, *parts[0].shape[1:])
  return out
