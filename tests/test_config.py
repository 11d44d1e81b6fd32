"""Config loading, overrides and validation: user mistakes are one-line ConfigErrors."""

import json

import pytest

from roots_jax import config as config_lib
from roots_jax.errors import ConfigError
from roots_jax.training import partitioning


def test_family_presets():
  bert = config_lib.load_config("configs/bert.py:base").model
  assert (bert.num_layers, bert.embed_dim, bert.num_heads, bert.mlp_dim, bert.max_len) == (
      12, 768, 12, 3072, 512)
  t5 = config_lib.load_config("configs/t5.py:small")
  assert (t5.model.num_layers, t5.model.embed_dim, t5.model.num_heads, t5.model.mlp_dim,
          t5.model.relative_buckets, t5.data.objective) == (6, 512, 8, 2048, 32, "span_corruption")
  base = config_lib.load_config("configs/transformer.py:base", ["data.source=files",
                                                                 "data.train_files=x.jsonl"]).model
  assert (base.num_layers, base.num_decoder_layers, base.embed_dim, base.num_heads, base.mlp_dim,
          base.position) == (6, 6, 512, 8, 2048, "sinusoidal")


def test_presets_have_gpt2_sizes():
  sizes = {v: config_lib.load_config(f"configs/gpt2.py:{v}").model for v in ("small", "medium", "large")}
  assert [(m.num_layers, m.embed_dim, m.num_heads, m.mlp_dim) for m in sizes.values()] == [
      (12, 768, 12, 3072), (24, 1024, 16, 4096), (36, 1280, 20, 5120)]


def test_overrides_are_typed():
  c = config_lib.load_config("configs/quickstart.py", [
      "train.batch_size=64", "optimizer.learning_rate=1e-3", "model.use_bias=false",
      "mesh.shape=2,2,2", "mesh.rules=(('batch', ('data', 'fsdp')),)", "data.text_field=body"])
  assert c.train.batch_size == 64 and c.optimizer.learning_rate == 1e-3 and c.model.use_bias is False
  assert c.mesh.shape == (2, 2, 2) and c.mesh.rules == (("batch", ("data", "fsdp")),)
  assert partitioning.logical_rules(c) == (("batch", ("data", "fsdp")),)
  assert c.data.text_field == "body"


@pytest.mark.parametrize("override, message", [
    ("train.batchsize=3", "unknown config key 'train.batchsize'; did you mean train.batch_size"),
    ("trian.steps=3", "unknown config key 'trian'"),
    ("train.batch_size=big", "takes an integer"),
    ("model.use_bias=maybe", "takes true or false"),
    ("train=3", "is a section"),
    ("model.norm=batchnorm", "model.norm must be one of layernorm, rmsnorm"),
    ("model.num_heads=5", "must divide model.embed_dim"),
    ("model.num_kv_heads=3", "must divide model.num_heads"),
    ("train.grad_accum_steps=5", "must divide train.batch_size"),
    ("mesh.shape=2,2", "mesh.shape needs 3 sizes"),
    ("data.source=files", "needs data.train_files"),
    ("model.attention_dropout_rate=0.1 model.attention_impl=cudnn", "needs model.attention_impl=xla"),
    ("data.objective=seq2seq", "data.objective=seq2seq needs (input, target) pairs"),
])
def test_bad_overrides_are_one_line_errors(override, message):
  with pytest.raises(ConfigError, match=None) as e:
    config_lib.load_config("configs/quickstart.py", override.split())
  assert message in str(e.value) and "\n" not in str(e.value)


def test_device_dependent_checks():
  c = config_lib.load_config("configs/quickstart.py", ["train.batch_size=12", "mesh.shape=8,1,1"])
  with pytest.raises(ConfigError, match="divisible by the data-parallel size"):
    config_lib.validate(c, num_devices=8)
  with pytest.raises(ConfigError, match="needs 8 devices; there are 4"):
    config_lib.validate(c, num_devices=4)
  c = config_lib.load_config("configs/quickstart.py", ["mesh.shape=2,-1,2"])
  assert partitioning.mesh_shape(c, 8) == (2, 2, 2)
  with pytest.raises(ConfigError, match="does not fit 6 devices"):
    partitioning.mesh_shape(config_lib.load_config("configs/quickstart.py", ["mesh.shape=4,-1,1"]), 6)


def test_missing_file_and_bad_variant():
  with pytest.raises(ConfigError, match="does not exist"):
    config_lib.load_config("configs/nope.py")
  with pytest.raises(ConfigError, match="variant must be one of tiny, small, medium, large"):
    config_lib.load_config("configs/gpt2.py:huge")


def test_config_is_locked_and_saved(tmp_path):
  c = config_lib.load_config("configs/gpt2.py:tiny")
  with pytest.raises(AttributeError):
    c.train.new_key = 1
  config_lib.save_config(c, tmp_path / "config.json")
  assert json.loads((tmp_path / "config.json").read_text())["model"]["num_layers"] == 2
