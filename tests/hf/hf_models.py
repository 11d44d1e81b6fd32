"""Tiny random Hugging Face models and roots_jax runs for the conversion tests, and the logits
both sides give on padded batches (a plain module, imported by name like tests/models' helpers).

Hugging Face's attention_mask (1 real, 0 padding) is our segment_ids; rows are right-padded, so
positions agree, and only real positions are compared (padding attends differently: ours sees only
padding, Hugging Face's sees the real tokens).
"""

import functools
import os

import jax
import numpy as np

from roots_jax import config as config_lib
from roots_jax import models
from roots_jax.hf import architectures
from roots_jax.models.config import ModelConfig
from roots_jax.runs import convert, workdir
from roots_jax.runs.workdir import resolve_init_from
from roots_jax.training import checkpoints

try:  # The hf extra: tests using these are marked extra("hf") (see tests/conftest.py).
  import torch
  import transformers
except ImportError:
  torch = transformers = None

# Tiny Hugging Face configs (config.json contents) of each supported architecture.
GPT2 = dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_layer=2, n_embd=32, n_head=4,
            vocab_size=99, n_positions=64)
BERT = dict(model_type="bert", architectures=["BertForPreTraining"], num_hidden_layers=2,
            hidden_size=32, num_attention_heads=4, intermediate_size=64, vocab_size=99,
            max_position_embeddings=64)
T5 = dict(model_type="t5", architectures=["T5ForConditionalGeneration"], vocab_size=99, d_model=32,
          d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=3, num_heads=4,
          feed_forward_proj="relu", tie_word_embeddings=True)
# GPT-NeoX as the quickstart GPT is (RoPE, LayerNorm, tanh GELU, tied head) and untied with the
# exact GELU; Llama with grouped-query attention, and with biases, a larger head_dim and GeGLU.
NEOX = dict(model_type="gpt_neox", architectures=["GPTNeoXForCausalLM"], num_hidden_layers=2,
            hidden_size=32, num_attention_heads=4, intermediate_size=64, vocab_size=99,
            max_position_embeddings=64, hidden_act="gelu_new", use_parallel_residual=False,
            rotary_pct=1.0, tie_word_embeddings=True)
NEOX_UNTIED = {**NEOX, "hidden_act": "gelu", "rotary_emb_base": 500.0,
               "tie_word_embeddings": False}
LLAMA = dict(model_type="llama", architectures=["LlamaForCausalLM"], num_hidden_layers=2,
             hidden_size=32, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
             vocab_size=99, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=500.0)
LLAMA_BIAS = {**LLAMA, "num_key_value_heads": 4, "head_dim": 16, "attention_bias": True,
              "mlp_bias": True, "tie_word_embeddings": True, "hidden_act": "gelu_pytorch_tanh"}
T5_V11 = {**T5, "num_decoder_layers": 2, "feed_forward_proj": "gated-gelu",
          "tie_word_embeddings": False}

B, T, S = 3, 12, 10           # batch, (decoder) length, encoder length
LENGTHS = (12, 7, 3)          # real tokens per row (right padding)
ENCODER_LENGTHS = (10, 4, 6)
VOCAB = 99


def padding_mask(lengths, length) -> np.ndarray:
  return (np.arange(length)[None, :] < np.array(lengths)[:, None]).astype(np.int64)  # [B, T]


def inputs(seed: int = 0) -> dict:
  """Random token ids with their masks (numpy int64, as torch wants them)."""
  rng = np.random.default_rng(seed)
  mask, encoder_mask = padding_mask(LENGTHS, T), padding_mask(ENCODER_LENGTHS, S)
  return dict(tokens=rng.integers(0, VOCAB, (B, T)) * mask, mask=mask,
              token_types=(np.arange(T)[None, :] >= 4).astype(np.int64) * mask,
              encoder_tokens=rng.integers(0, VOCAB, (B, S)) * encoder_mask,
              encoder_mask=encoder_mask)


def load_run(run_dir: str):
  """(model config, params) of a run, read the way the fine-tune driver reads a pretraining run."""
  run = resolve_init_from(run_dir)
  model_config = ModelConfig.from_config(run.config.model)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          convert.abstract_params(model_config))
  manager = workdir.checkpoint_manager(run.workdir)
  return model_config, jax.device_get(checkpoints.restore_params(manager, run.step, abstract))


@functools.cache
def _forward(model_config: ModelConfig):
  """Compiled once per config (compiling costs more than the tests' conversions)."""
  model = models.build_model(model_config)

  def forward(params, x):
    if model_config.family == "decoder":
      return dict(lm=model.apply({"params": params}, x["tokens"], segment_ids=x["mask"]))
    if model_config.family == "encoder":
      mlm, nsp = model.apply({"params": params}, x["tokens"], token_types=x["token_types"],
                             segment_ids=x["mask"])
      return dict(mlm=mlm, nsp=nsp)
    return dict(lm=model.apply({"params": params}, x["encoder_tokens"], x["tokens"],
                               encoder_segment_ids=x["encoder_mask"],
                               decoder_segment_ids=x["mask"]))

  return jax.jit(forward)


def ours(model_config: ModelConfig, params, x: dict) -> dict:
  """Our logits {name: [B, ...] float32} for the batch `x`."""
  return jax.tree.map(np.asarray, _forward(model_config)(params, x))


def theirs(hf_model, family: str, x: dict) -> dict:
  """The same logits from a transformers model (eval mode, float32)."""
  t = {k: torch.from_numpy(v) for k, v in x.items()}
  with torch.no_grad():
    if family == "decoder":
      return dict(lm=hf_model(input_ids=t["tokens"], attention_mask=t["mask"]).logits.numpy())
    if family == "encoder":
      out = hf_model(input_ids=t["tokens"], attention_mask=t["mask"],
                     token_type_ids=t["token_types"])
      logits = dict(mlm=(out.prediction_logits if hasattr(out, "prediction_logits")
                         else out.logits).numpy())
      if hasattr(out, "seq_relationship_logits"):
        logits["nsp"] = out.seq_relationship_logits.numpy()
      return logits
    return dict(lm=hf_model(input_ids=t["encoder_tokens"], attention_mask=t["encoder_mask"],
                            decoder_input_ids=t["tokens"],
                            decoder_attention_mask=t["mask"]).logits.numpy())


def max_diff(a: dict, b: dict, x: dict) -> float:
  """Max |a - b| over the logits both have, at real positions only (NSP: every row)."""
  real = x["mask"].astype(bool)
  diffs = [np.abs(a[k] - b[k])[real].max() if a[k].ndim == 3 else np.abs(a[k] - b[k]).max()
           for k in a.keys() & b.keys()]
  return float(max(diffs))


def random_params(model_config: ModelConfig, seed: int = 0):
  """Parameters shaped like the model's, drawn by numpy (no compiled initialisers: fast): norm
  scales 1 + N(0, 0.1^2), an encoder-decoder's token table N(0, 1) (T5's, whose tied head
  rescales by D^-0.5), the rest N(0, 0.1^2)."""
  rng = np.random.default_rng(seed)
  unit = model_config.family == "encoder_decoder"

  def draw(path, leaf):
    keys = [p.key for p in path]
    std = 1.0 if unit and keys[0] == "token_embed" else 0.1
    return (std * rng.normal(size=leaf.shape) + (keys[-1] == "scale")).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, convert.abstract_params(model_config))


def add_tokenizer_file(directory: str) -> None:
  """A stand-in tokenizer file (the drivers want a run's tokenizer directory non-empty; these
  tests never tokenize)."""
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
    f.write("{}")


def make_run(run_dir: str, hf_config: dict, *, overrides=(), seed: int = 0) -> str:
  """A roots_jax run of the model the converter makes of `hf_config`, with random parameters
  (what a pretraining run of that architecture would hold)."""
  module, _ = architectures.for_hf_config(hf_config, "config.json")
  return make_run_of(run_dir, module.model_fields(hf_config), overrides=overrides, seed=seed)


def make_run_of(run_dir: str, model_fields: dict, *, overrides=(), seed: int = 0) -> str:
  """A roots_jax run with the model section `model_fields` and random parameters; its tokenizer
is a stand-in unless an override names a sentencepiece model (tokenizer.path=...)."""
  config = convert.run_config(model_fields, os.path.join(run_dir, "tokenizer"), overrides)
  if not os.path.isfile(config.tokenizer.path):
    add_tokenizer_file(config.tokenizer.path)
  convert.write_params(run_dir, random_params(ModelConfig.from_config(config.model), seed))
  config_lib.save_config(config, os.path.join(run_dir, "config.json"))
  return run_dir
