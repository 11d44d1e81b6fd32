"""BERT (Hugging Face BertForPreTraining / BertForMaskedLM / BertModel) <-> a roots_jax encoder.

Post-LN with an embedding LayerNorm, learned positions, token types, the MLM head (transform,
LayerNorm, tied decoder plus its own bias) and the NSP head (tanh pooler on [CLS], 2-way
classifier). BERT's "gelu" is the exact erf GELU: our "gelu_exact".

A BertForMaskedLM checkpoint has no pooler and no NSP classifier, a BertModel no MLM head: the
importer initialises those fresh (FRESH) and says so.

Head-pruned BERT (Michel et al. 2019; roots_jax.runs.prune): BertConfig keeps the original
num_attention_heads and lists each layer's removed heads as pruned_heads ({layer: [heads]}),
the weights having the kept heads only (transformers 4's prune_heads; transformers 5 dropped
head pruning). Ours keeps the same count in every layer: num_heads the kept count, head_dim
explicit, and prune.kept_heads the original indices each layer kept.
"""

import re

import numpy as np

from roots_jax.errors import ConfigError
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


def kept_heads(hf: dict) -> tuple[tuple[int, ...], ...]:
  """Per layer, the heads a BertConfig's pruned_heads leave (empty: none pruned); refuses
  layers pruned unequally (our layers share one head count)."""
  pruned = {int(k): set(v) for k, v in (fields.get(hf, "pruned_heads", {}) or {}).items()}
  if not any(pruned.values()):
    return ()
  heads, layers = fields.get(hf, "num_attention_heads", 12), fields.get(hf, "num_hidden_layers", 12)
  kept = tuple(tuple(h for h in range(heads) if h not in pruned.get(i, ())) for i in range(layers))
  if len({len(row) for row in kept}) > 1:
    raise ConfigError(f"config.json pruned_heads {fields.get(hf, 'pruned_heads', {})} prunes "
                      "the layers unequally: roots_jax converts BERT with the same number of heads "
                      "pruned in every layer")
  return kept


def model_fields(hf: dict) -> dict:
  """The roots_jax `model` section of a BertConfig (config.json); a head-pruned one's heads are
  those kept (kept_heads)."""
  fields.require(hf, "is_decoder", False, False, NAME)
  fields.require(hf, "add_cross_attention", False, False, NAME)
  fields.require(hf, "position_embedding_type", "absolute", "absolute", NAME)
  heads, kept = fields.get(hf, "num_attention_heads", 12), kept_heads(hf)
  hidden = fields.get(hf, "hidden_size", 768)
  return dict(
      family=FAMILY, vocab_size=fields.get(hf, "vocab_size", 30522),
      num_layers=fields.get(hf, "num_hidden_layers", 12),
      embed_dim=hidden,
      num_heads=len(kept[0]) if kept else heads, num_kv_heads=0,
      head_dim=hidden // heads if kept else 0,
      mlp_dim=fields.get(hf, "intermediate_size", 3072),
      mlp_activation=fields.activation(hf, "hidden_act", "gelu", NAME),
      norm="layernorm", norm_eps=fields.get(hf, "layer_norm_eps", 1e-12), norm_placement="post",
      position="learned", max_len=fields.get(hf, "max_position_embeddings", 512),
      type_vocab_size=fields.get(hf, "type_vocab_size", 2), scale_embeddings=False,
      scaled_attention=True, use_bias=True,
      tie_embeddings=fields.get(hf, "tie_word_embeddings", True),
      dropout_rate=fields.get(hf, "hidden_dropout_prob", 0.1),
      attention_dropout_rate=fields.get(hf, "attention_probs_dropout_prob", 0.1))


def hf_config(m: ModelConfig, kept_heads=()) -> dict:
  """BertForPreTraining's config.json for model section `m`, whose layers kept the original
  heads `kept_heads` (per layer; empty: not pruned); refuses what BERT cannot express."""
  fields.refuse_all(m, NAME, position="learned", norm="layernorm", norm_placement="post",
                    mlp_activation=tuple(fields.HF_ACTIVATIONS), use_bias=True,
                    scale_embeddings=False, scaled_attention=True, any_head_dim=bool(kept_heads))
  heads, pruned = m.num_heads, {}
  if kept_heads:
    heads = m.embed_dim // m.head_size  # BERT's heads before pruning: hidden_size / head size
    if (heads * m.head_size != m.embed_dim or len(kept_heads) != m.num_layers
        or any(len(row) != m.num_heads or not set(row) <= set(range(heads))
               for row in kept_heads)):
      raise ConfigError(f"prune.kept_heads {kept_heads} does not describe {m.num_heads} of "
                        f"{heads} heads (embed_dim {m.embed_dim} / head_dim {m.head_size}) in "
                        f"each of {m.num_layers} layers")
    pruned = {"pruned_heads": {str(i): sorted(set(range(heads)) - set(row))
                               for i, row in enumerate(kept_heads)}}
  return {**pruned,
      "architectures": ["BertForPreTraining"], "model_type": "bert", "vocab_size": m.vocab_size,
      "hidden_size": m.embed_dim, "num_hidden_layers": m.num_layers,
      "num_attention_heads": heads, "intermediate_size": m.mlp_dim,
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
