"""Logits parity with transformers, both ways, in float32 at max |diff| <= 1e-4 over the real
positions of padded batches: tiny random Hugging Face models imported (GPT-2, GPT-NeoX, Llama,
BERT with both heads, T5 v1.0 and v1.1), and random roots_jax runs exported and loaded with
from_pretrained, the quickstart GPT among them.

Run with -s to see the differences (a line per architecture and direction)."""

import os

import numpy as np
import pytest

import hf_models
from hf_models import (BERT, GPT2, LLAMA, LLAMA_BIAS, NEOX, NEOX_UNTIED, T5, T5_V11, torch,
                       transformers)
from roots_jax import config as config_lib
from roots_jax.runs import convert

pytestmark = pytest.mark.extra("hf")

TOLERANCE = 1e-4
FAMILY = {"gpt2": "decoder", "neox": "decoder", "llama": "decoder", "bert": "encoder",
          "t5": "encoder_decoder"}


@pytest.fixture(autouse=True, scope="module")
def quiet_transformers():
  transformers.logging.set_verbosity_error()
  torch.set_num_threads(2)


def hf_model(architecture: str, hf_config: dict, seed: int = 0):
  """A random transformers model of `hf_config`, every parameter (biases, norm scales too)
  moved off its initial value so each one's mapping is exercised."""
  torch.manual_seed(seed)
  config = transformers.AutoConfig.for_model(**{k: v for k, v in hf_config.items()
                                                if k != "architectures"})
  model = getattr(transformers, architecture)(config)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
    if architecture == "T5ForConditionalGeneration" and not hf_config["tie_word_embeddings"]:
      # transformers 5 ties T5's head to the shared table unless the file holds its own
      model.lm_head.weight = torch.nn.Parameter(0.1 * torch.randn_like(model.lm_head.weight))
  return model.eval()


def check(name: str, direction: str, ours: dict, theirs: dict, x: dict) -> None:
  diff = hf_models.max_diff(ours, theirs, x)
  scale = max(float(np.abs(v).max()) for v in theirs.values())
  print(f"\nparity {name} {direction}: max |diff| {diff:.2e} (max |logit| {scale:.2f})")
  assert scale > 0.5  # logits large enough for the comparison to mean something
  assert diff <= TOLERANCE


IMPORTS = {
    "gpt2_sharded": ("GPT2LMHeadModel", GPT2, "shards", ()),
    "gpt2_loop_bin": ("GPT2LMHeadModel", GPT2, "bin", ("model.scan_layers=false",)),
    "neox": ("GPTNeoXForCausalLM", NEOX, "safetensors", ()),
    "neox_untied_bin": ("GPTNeoXForCausalLM", NEOX_UNTIED, "bin", ()),
    "llama_gqa": ("LlamaForCausalLM", LLAMA, "safetensors", ()),
    "llama_bias_loop": ("LlamaForCausalLM", LLAMA_BIAS, "safetensors",
                        ("model.scan_layers=false",)),
    "bert": ("BertForPreTraining", BERT, "safetensors", ()),
    "t5_v1.0": ("T5ForConditionalGeneration", T5, "safetensors", ()),
    "t5_v1.1_loop": ("T5ForConditionalGeneration", T5_V11, "safetensors",
                     ("model.scan_layers=false",)),
}


@pytest.mark.parametrize("name", list(IMPORTS))
def test_import_matches_transformers(name, tmp_path):
  architecture, hf_config, weights, overrides = IMPORTS[name]
  model = hf_model(architecture, hf_config)
  hf_dir = str(tmp_path / "hf")
  if weights == "bin":  # the pickle .bin format (with the tied lm_head.weight copy in it)
    model.config.save_pretrained(hf_dir)
    torch.save(model.state_dict(), os.path.join(hf_dir, "pytorch_model.bin"))
  else:
    model.save_pretrained(hf_dir, max_shard_size="40KB" if weights == "shards" else "5GB")
    assert ("model.safetensors.index.json" in os.listdir(hf_dir)) == (weights == "shards")
  hf_models.add_tokenizer_file(hf_dir)
  convert.import_hf(hf_dir, str(tmp_path / "run"), overrides)
  model_config, params = hf_models.load_run(str(tmp_path / "run"))
  assert model_config.scan_layers == (not overrides)
  x = hf_models.inputs()
  family = FAMILY[name.split("_")[0]]
  check(name, "import", hf_models.ours(model_config, params, x), hf_models.theirs(model, family, x),
        x)


@pytest.mark.parametrize("architecture, fresh", [
    ("BertForMaskedLM", ["nsp_classifier", "pooler"]),
    ("BertModel", ["mlm_norm", "mlm_output", "mlm_transform", "nsp_classifier"]),
])
def test_bert_without_pretraining_heads(architecture, fresh, tmp_path):
  """The heads a checkpoint lacks are initialised fresh and named; what it has matches."""
  model = hf_model(architecture, {**BERT, "architectures": [architecture]})
  model.save_pretrained(str(tmp_path / "hf"))
  hf_models.add_tokenizer_file(str(tmp_path / "hf"))
  summary = convert.import_hf(str(tmp_path / "hf"), str(tmp_path / "run"))
  assert summary["fresh"] == fresh
  model_config, params = hf_models.load_run(str(tmp_path / "run"))
  x = hf_models.inputs()
  if architecture == "BertForMaskedLM":
    check(architecture, "import", hf_models.ours(model_config, params, x),
          hf_models.theirs(model, "encoder", x), x)
    return
  from roots_jax import models  # pylint: disable=g-import-not-at-top
  hidden, pooled = models.build_model(model_config).apply(
      {"params": params}, x["tokens"], token_types=x["token_types"], segment_ids=x["mask"],
      features=True)
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(x["tokens"]), attention_mask=torch.from_numpy(x["mask"]),
                token_type_ids=torch.from_numpy(x["token_types"]))
  check(architecture, "import (features)",
        {"hidden": np.asarray(hidden), "pooled": np.asarray(pooled)},
        {"hidden": out.last_hidden_state.numpy(), "pooled": out.pooler_output.numpy()}, x)


EXPORTS = {
    "gpt2": ("AutoModelForCausalLM", GPT2, ()),
    "gpt2_untied": ("AutoModelForCausalLM", {**GPT2, "tie_word_embeddings": False}, ()),
    "neox": ("AutoModelForCausalLM", NEOX, ()),
    "neox_untied": ("AutoModelForCausalLM", NEOX_UNTIED, ()),
    "llama_gqa": ("AutoModelForCausalLM", LLAMA, ()),
    "llama_bias_loop": ("AutoModelForCausalLM", LLAMA_BIAS, ("model.scan_layers=false",)),
    "bert": ("AutoModelForPreTraining", BERT, ()),
    "t5_v1.0": ("AutoModelForSeq2SeqLM", T5, ()),
    "t5_v1.1_loop": ("AutoModelForSeq2SeqLM", T5_V11, ("model.scan_layers=false",)),
}


@pytest.mark.parametrize("name", list(EXPORTS))
def test_export_loads_in_transformers(name, tmp_path):
  auto, hf_config, overrides = EXPORTS[name]
  run = hf_models.make_run(str(tmp_path / "run"), hf_config, overrides=overrides)
  convert.export_hf(run, str(tmp_path / "hf"))
  model = getattr(transformers, auto).from_pretrained(str(tmp_path / "hf")).eval()
  assert type(model).__name__ == hf_config["architectures"][0]
  model_config, params = hf_models.load_run(run)
  x = hf_models.inputs()
  check(name, "export", hf_models.ours(model_config, params, x),
        hf_models.theirs(model, model_config.family, x), x)


def test_quickstart_gpt_exports_as_gpt_neox(tmp_path):
  """configs/quickstart.py's GPT (RoPE, LayerNorm, tanh GELU, tied head) as it trains."""
  quickstart = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "quickstart.py")
  model = dict(config_lib.load_config(quickstart, []).model)
  run = hf_models.make_run_of(str(tmp_path / "run"), model)
  convert.export_hf(run, str(tmp_path / "hf"))
  hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
  assert type(hf).__name__ == "GPTNeoXForCausalLM"
  model_config, params = hf_models.load_run(run)
  assert (model_config.position, model_config.norm) == ("rope", "layernorm")
  x = hf_models.inputs()
  check("quickstart", "export", hf_models.ours(model_config, params, x),
        hf_models.theirs(hf, "decoder", x), x)
