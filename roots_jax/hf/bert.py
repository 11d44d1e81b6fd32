"""BERT (Hugging Face BertForPreTraining / BertForMaskedLM / BertModel) <-> a roots_jax encoder.

Post-LN with an embedding LayerNorm, learned positions, token types, the MLM head (transform,
LayerNorm, tied decoder plus its own bias) and the NSP head (tanh pooler on [CLS], 2-way
classifier). BERT's "gelu" is the exact erf GELU: our "gelu_exact".

A BertForMaskedLM checkpoint has no pooler and no NSP classifier, a BertModel no MLM head: the
importer initialises those fresh (FRESH) and says so.
"""

import re

import numpy as np

from roots_jax.hf import fields
from roots_jax.hf.mapping import Layout, Rule, Stack
from roots_jax.models.config import ModelConfig

NAME = "BERT"
MODEL_TYPES = ("bert",)
ARCHITECTURES = ("BertForPreTraining", "BertForMaskedLM", "BertModel")
FAMILY = "encoder"
WRITES = {}  # the one encoder architecture
# Our modules a checkpoint may lack (the heads of BertForPreTraining that the others drop).
FRESH = ("pooler", "nsp_classifier", "mlm_transform", "mlm_norm", "mlm_output")


def model_fields(hf: dict) -> dict:
  """The roots_jax `model` section of a BertConfig (config.json)."""
  fields.require(hf, "is_decoder", False, False, NAME)
  fields.require(hf, "add_cross_attention", False, False, NAME)
  fields.require(hf, "position_embedding_type", "absolute", "absolute", NAME)
  return dict(
      family=FAMILY, vocab_size=fields.get(hf, "vocab_size", 30522),
      num_layers=fields.get(hf, "num_hidden_layers", 12),
      embed_dim=fields.get(hf, "hidden_size", 768),
      num_heads=fields.get(hf, "num_attention_heads", 12), num_kv_heads=0, head_dim=0,
      mlp_dim=fields.get(hf, "intermediate_size", 3072),
      mlp_activation=fields.activation(hf, "hidden_act", "gelu", NAME),
      norm="layernorm", norm_eps=fields.get(hf, "layer_norm_eps", 1e-12), norm_placement="post",
      position="learned", max_len=fields.get(hf, "max_position_embeddings", 512),
      type_vocab_size=fields.get(hf, "type_vocab_size", 2), scale_embeddings=False,
      scaled_attention=True, use_bias=True,
      tie_embeddings=fields.get(hf, "tie_word_embeddings", True),
      dropout_rate=fields.get(hf, "hidden_dropout_prob", 0.1),
      attention_dropout_rate=fields.get(hf, "attention_probs_dropout_prob", 0.1))


def hf_config(m: ModelConfig) -> dict:
  """BertForPreTraining's config.json for model section `m`; refuses what BERT cannot express."""
  fields.refuse_all(m, NAME, position="learned", norm="layernorm", norm_placement="post",
                    mlp_activation=tuple(fields.HF_ACTIVATIONS), use_bias=True,
                    scale_embeddings=False, scaled_attention=True)
  return {
      "architectures": ["BertForPreTraining"], "model_type": "bert", "vocab_size": m.vocab_size,
      "hidden_size": m.embed_dim, "num_hidden_layers": m.num_layers,
      "num_attention_heads": m.num_heads, "intermediate_size": m.mlp_dim,
      "hidden_act": fields.HF_ACTIVATIONS[m.mlp_activation], "layer_norm_eps": m.norm_eps,
      "max_position_embeddings": m.max_len,
      # Without token types, one all-zero type row adds nothing (BERT always has the table).
      "type_vocab_size": m.type_vocab_size or 1, "tie_word_embeddings": m.tie_embeddings,
      "hidden_dropout_prob": m.dropout_rate,
      "attention_probs_dropout_prob": m.attention_dropout_rate,
      "position_embedding_type": "absolute", "initializer_range": 0.02, "pad_token_id": 0,
      "is_decoder": False, "add_cross_attention": False,
  }


def layout(m: ModelConfig) -> Layout:
  h = "bert.encoder.layer.{i}."
  layer = [Rule(h + "attention.output.dense.weight", "attention/out/kernel", "linear2"),
           Rule(h + "attention.output.dense.bias", "attention/out/bias"),
           Rule(h + "attention.output.LayerNorm.weight", "attention_norm/scale"),
           Rule(h + "attention.output.LayerNorm.bias", "attention_norm/bias"),
           Rule(h + "intermediate.dense.weight", "mlp/wi/kernel", "linear"),
           Rule(h + "intermediate.dense.bias", "mlp/wi/bias"),
           Rule(h + "output.dense.weight", "mlp/wo/kernel", "linear"),
           Rule(h + "output.dense.bias", "mlp/wo/bias"),
           Rule(h + "output.LayerNorm.weight", "mlp_norm/scale"),
           Rule(h + "output.LayerNorm.bias", "mlp_norm/bias")]
  for name in ("query", "key", "value"):
    layer += [Rule(f"{h}attention.self.{name}.weight", f"attention/{name}/kernel", "linear"),
              Rule(f"{h}attention.self.{name}.bias", f"attention/{name}/bias", "flat")]
  top = [Rule("bert.embeddings.word_embeddings.weight", "token_embed/embedding"),
         Rule("bert.embeddings.position_embeddings.weight", "pos_embed/embedding"),
         Rule("bert.embeddings.LayerNorm.weight", "embed_norm/scale"),
         Rule("bert.embeddings.LayerNorm.bias", "embed_norm/bias"),
         Rule("bert.pooler.dense.weight", "pooler/kernel", "linear"),
         Rule("bert.pooler.dense.bias", "pooler/bias"),
         Rule("cls.predictions.transform.dense.weight", "mlm_transform/kernel", "linear"),
         Rule("cls.predictions.transform.dense.bias", "mlm_transform/bias"),
         Rule("cls.predictions.transform.LayerNorm.weight", "mlm_norm/scale"),
         Rule("cls.predictions.transform.LayerNorm.bias", "mlm_norm/bias"),
         Rule("cls.predictions.bias", "mlm_output/bias"),
         Rule("cls.seq_relationship.weight", "nsp_classifier/kernel", "linear"),
         Rule("cls.seq_relationship.bias", "nsp_classifier/bias")]
  if m.type_vocab_size:
    top.append(Rule("bert.embeddings.token_type_embeddings.weight", "token_type_embed/embedding"))
  # position_ids: a buffer; decoder.bias: a copy of cls.predictions.bias in .bin files.
  ignored = [r"bert\.embeddings\.position_ids", r"cls\.predictions\.decoder\.bias"]
  if m.tie_embeddings:
    ignored.append(r"cls\.predictions\.decoder\.weight")  # a copy of the word embeddings
  else:
    top.append(Rule("cls.predictions.decoder.weight", "mlm_output/kernel", "linear"))
  return Layout(tuple(top), (Stack("", m.num_layers, tuple(layer)),), tuple(ignored))


def canonical(tensors: dict[str, np.ndarray], m: ModelConfig) -> dict[str, np.ndarray]:
  """Names as `layout` spells them: BertModel files lack the "bert." prefix, and old (TF-era)
  ones call the LayerNorm parameters gamma and beta."""
  del m
  if not any(k.startswith("bert.") for k in tensors):
    tensors = {k if k.startswith("cls.") else f"bert.{k}": v for k, v in tensors.items()}
  rename = lambda k: re.sub(r"LayerNorm\.beta$", "LayerNorm.bias",
                            re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", k))
  return {rename(k): v for k, v in tensors.items()}


def finish(tensors: dict[str, np.ndarray], m: ModelConfig) -> dict[str, np.ndarray]:
  """BertForPreTraining's tensors: a model without token types gets one all-zero type row."""
  if not m.type_vocab_size:
    tensors = {**tensors, "bert.embeddings.token_type_embeddings.weight":
               np.zeros((1, m.embed_dim), np.float32)}
  return tensors
