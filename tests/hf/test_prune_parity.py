"""A head-pruned BERT (python -m roots_jax.prune) exported to Hugging Face: config.json lists
each layer's removed heads as pruned_heads, the weights have the kept heads only, and
transformers' BERT built from that config gives our logits (float32, max |diff| <= 1e-4 at real
positions, as tests/hf/test_parity.py); the export imports back to the same logits.

transformers 5 dropped head pruning (BertModel.prune_heads and the config's use of pruned_heads),
so the model is built as transformers 4's from_pretrained did: BertForPreTraining(config), each
layer's attention pruned of pruned_heads (prune_linear_layer's row and column cuts), then the
exported weights loaded."""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file

import hf_models
from hf_models import BERT, torch, transformers
from roots_jax.errors import ConfigError
from roots_jax.hf import bert
from roots_jax.runs import convert, prune

pytestmark = pytest.mark.extra("hf")

TOLERANCE = 1e-4


def pruned_bert(hf_dir: str):
  """BertForPreTraining of the exported directory, pruned as its pruned_heads say."""
  config = transformers.AutoConfig.from_pretrained(hf_dir)
  model = transformers.BertForPreTraining(config)
  heads, size = config.num_attention_heads, config.hidden_size // config.num_attention_heads
  for layer, removed in config.pruned_heads.items():
    attention = model.bert.encoder.layer[int(layer)].attention
    kept = [h for h in range(heads) if h not in removed]
    rows = torch.cat([torch.arange(h * size, (h + 1) * size) for h in kept])
    for name in ("query", "key", "value"):
      old = getattr(attention.self, name)
      new = torch.nn.Linear(old.in_features, len(rows))
      setattr(attention.self, name, new)
    attention.output.dense = torch.nn.Linear(len(rows), config.hidden_size)
    attention.self.num_attention_heads = len(kept)
    attention.self.all_head_size = len(rows)
  state = {k: torch.from_numpy(v) for k, v in load_file(os.path.join(hf_dir,
                                                                     "model.safetensors")).items()}
  missing, unexpected = model.load_state_dict(state, strict=False)
  assert not unexpected and set(missing) <= {"cls.predictions.decoder.weight",
                                             "cls.predictions.decoder.bias"}, (missing, unexpected)
  model.tie_weights()
  return model.eval()


def test_head_pruned_bert_exports_with_pruned_heads(corpus, tmp_path):
  torch.set_num_threads(2)
  fields = {**bert.model_fields({**BERT, "vocab_size": 512}), "dropout_rate": 0.0,
            "attention_dropout_rate": 0.0}
  run = hf_models.make_run_of(str(tmp_path / "run"), fields, overrides=(
      f"tokenizer.path={corpus / 'spm.model'}", "data.source=files",
      f"data.train_files={corpus / 'train.jsonl'}", "data.seq_len=32", "train.batch_size=8",
      "data.shuffle_window=64"))
  summary = prune.prune_run(run, str(tmp_path / "pruned"), heads=2, mlp_units=48, num_batches=2)
  kept = summary["kept_heads"]
  assert len(kept) == 2 and all(len(row) == 2 for row in kept)

  convert.export_hf(str(tmp_path / "pruned"), str(tmp_path / "hf"))
  with open(tmp_path / "hf" / "config.json") as f:
    hf_config = json.load(f)
  assert hf_config["num_attention_heads"] == 4 and hf_config["intermediate_size"] == 48
  assert hf_config["pruned_heads"] == {str(i): sorted(set(range(4)) - set(row))
                                       for i, row in enumerate(kept)}
  x = hf_models.inputs()
  model_config, params = hf_models.load_run(str(tmp_path / "pruned"))
  ours = hf_models.ours(model_config, params, x)
  theirs = hf_models.theirs(pruned_bert(str(tmp_path / "hf")), "encoder", x)
  diff = hf_models.max_diff(ours, theirs, x)
  print(f"\nparity head-pruned BERT export: max |diff| {diff:.2e}")
  assert max(float(np.abs(v).max()) for v in theirs.values()) > 0.5
  assert diff <= TOLERANCE

  hf_models.add_tokenizer_file(str(tmp_path / "hf"))
  convert.import_hf(str(tmp_path / "hf"), str(tmp_path / "back"))
  back_config, back = hf_models.load_run(str(tmp_path / "back"))
  assert (back_config.num_heads, back_config.head_dim) == (2, 8)
  with open(tmp_path / "back" / "config.json") as f:
    assert json.load(f)["prune"]["kept_heads"] == [list(row) for row in kept]
  assert hf_models.max_diff(hf_models.ours(back_config, back, x), ours, x) == 0.0


def test_unequally_pruned_layers_are_refused():
  with pytest.raises(ConfigError, match="prunes the layers unequally"):
    bert.model_fields({**BERT, "pruned_heads": {"0": [1, 2], "1": [3]}})
  assert bert.kept_heads({**BERT, "pruned_heads": {"0": [1], "1": [3]}}) == ((0, 2, 3), (0, 1, 2))
