"""GPT-2 (Hugging Face GPT2LMHeadModel / GPT2Model) <-> a roots_jax decoder.

Pre-LN with learned positions and biases everywhere; Conv1D weights are stored [in, out] and the
query, key and value projections are fused in one c_attn [D, 3D] (split here into q, k, v).
"gelu_new" is our tanh "gelu".
"""

import numpy as np

from roots_jax.errors import CheckpointError
from roots_jax.hf import fields
from roots_jax.hf.mapping import Layout, Rule, decoder_layout
from roots_jax.models.config import ModelConfig

NAME = "GPT-2"
MODEL_TYPES = ("gpt2",)
ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")
FAMILY = "decoder"
# The model fields that make a decoder GPT-2 rather than GPT-NeoX or Llama on export.
WRITES = dict(position="learned")
FRESH = ()  # every parameter must be in the checkpoint
_QKV = ("q", "k", "v")


def model_fields(hf: dict) -> dict:
  """The roots_jax `model` section of a GPT2Config (config.json); Hugging Face's defaults for
  missing keys."""
  fields.require(hf, "add_cross_attention", False, False, "GPT-2")
  fields.require(hf, "scale_attn_weights", True, True, "GPT-2")
  fields.require(hf, "scale_attn_by_inverse_layer_idx", False, False, "GPT-2")
  embed_dim = fields.get(hf, "n_embd", 768)
  return dict(
      family=FAMILY, vocab_size=fields.get(hf, "vocab_size", 50257),
      num_layers=fields.get(hf, "n_layer", 12), embed_dim=embed_dim,
      num_heads=fields.get(hf, "n_head", 12), num_kv_heads=0, head_dim=0,
      mlp_dim=fields.get(hf, "n_inner", 4 * embed_dim),
      mlp_activation=fields.activation(hf, "activation_function", "gelu_new", NAME),
      norm="layernorm", norm_eps=fields.get(hf, "layer_norm_epsilon", 1e-5), norm_placement="pre",
      position="learned", max_len=fields.get(hf, "n_positions", 1024), type_vocab_size=0,
      scale_embeddings=False, scaled_attention=True, use_bias=True,
      tie_embeddings=fields.get(hf, "tie_word_embeddings", True),
      dropout_rate=fields.get(hf, "resid_pdrop", 0.1),
      attention_dropout_rate=fields.get(hf, "attn_pdrop", 0.1))


def hf_config(m: ModelConfig) -> dict:
  """GPT2LMHeadModel's config.json for model section `m`; refuses what GPT-2 cannot express."""
  fields.refuse_all(m, NAME, position="learned", norm="layernorm", norm_placement="pre",
                    mlp_activation=tuple(fields.HF_ACTIVATIONS), use_bias=True,
                    scale_embeddings=False, scaled_attention=True)
  special = 50256 if m.vocab_size > 50256 else None  # GPT-2's <|endoftext|>
  return {
      "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": m.vocab_size,
      "n_positions": m.max_len, "n_embd": m.embed_dim, "n_layer": m.num_layers,
      "n_head": m.num_heads, "n_inner": m.mlp_dim,
      "activation_function": fields.HF_ACTIVATIONS[m.mlp_activation],
      "layer_norm_epsilon": m.norm_eps, "tie_word_embeddings": m.tie_embeddings,
      "resid_pdrop": m.dropout_rate, "embd_pdrop": m.dropout_rate,
      "attn_pdrop": m.attention_dropout_rate, "initializer_range": 0.02,
      "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
      "reorder_and_upcast_attn": False, "add_cross_attention": False, "use_cache": True,
      "bos_token_id": special, "eos_token_id": special,
  }


def layout(m: ModelConfig) -> Layout:
  h = "transformer.h.{i}."
  layer = [Rule(h + "ln_1.weight", "attention_norm/scale"),
           Rule(h + "ln_1.bias", "attention_norm/bias"),
           Rule(h + "attn.c_proj.weight", "attention/out/kernel", "conv1d2"),
           Rule(h + "attn.c_proj.bias", "attention/out/bias"),
           Rule(h + "ln_2.weight", "mlp_norm/scale"), Rule(h + "ln_2.bias", "mlp_norm/bias"),
           Rule(h + "mlp.c_fc.weight", "mlp/wi/kernel", "conv1d"),
           Rule(h + "mlp.c_fc.bias", "mlp/wi/bias"),
           Rule(h + "mlp.c_proj.weight", "mlp/wo/kernel", "conv1d"),
           Rule(h + "mlp.c_proj.bias", "mlp/wo/bias")]
  for q, ours in zip(_QKV, ("query", "key", "value")):
    layer += [Rule(f"{h}attn.{q}.weight", f"attention/{ours}/kernel", "conv1d"),
              Rule(f"{h}attn.{q}.bias", f"attention/{ours}/bias", "flat")]
  top = [Rule("transformer.wte.weight", "token_embed/embedding"),
         Rule("transformer.wpe.weight", "pos_embed/embedding"),
         Rule("transformer.ln_f.weight", "final_norm/scale"),
         Rule("transformer.ln_f.bias", "final_norm/bias")]
  ignored = [r"transformer\.h\.\d+\.attn\.(masked_)?bias"]  # causal-mask buffers of old files
  return decoder_layout(m, top, layer, ignored, "lm_head.weight")


def canonical(tensors: dict[str, np.ndarray], m: ModelConfig) -> dict[str, np.ndarray]:
  """Names as `layout` spells them: GPT2Model files lack the "transformer." prefix; c_attn is
  split into its q, k, v parts."""
  del m
  if not any(k.startswith("transformer.") for k in tensors):
    tensors = {k if k.startswith("lm_head.") else f"transformer.{k}": v for k, v in tensors.items()}
  out = {}
  for name, value in tensors.items():
    if ".attn.c_attn." in name:  # weight [D, 3D], bias [3D]: q, k, v side by side
      if value.shape[-1] % 3:
        raise CheckpointError(f"the checkpoint's {name} is {value.shape}, not three projections")
      for q, part in zip(_QKV, np.split(value, 3, axis=-1)):
        out[name.replace(".c_attn.", f".{q}.")] = part
    else:
      out[name] = value
  return out


def finish(tensors: dict[str, np.ndarray], m: ModelConfig) -> dict[str, np.ndarray]:
  """Inverse of `canonical` for GPT2LMHeadModel: q, k, v fused back into c_attn."""
  del m
  out = {k: v for k, v in tensors.items() if ".attn.q." not in k and ".attn.k." not in k
         and ".attn.v." not in k}
  for name in tensors:
    if ".attn.q." in name:
      parts = [tensors[name.replace(".attn.q.", f".attn.{q}.")] for q in _QKV]
      out[name.replace(".attn.q.", ".attn.c_attn.")] = np.concatenate(parts, axis=-1)
  return out
