"""The commands as a user meets them: --help, the config key listing, shipped configs by name,
and bad input (one line on stderr, exit status 2, no traceback, an existing run untouched)."""

import dataclasses
import hashlib
import os
import re
import shutil

import pytest
import setuptools  # noqa: F401  (distutils, as setuptools provides it)
from distutils.core import run_setup

from roots_jax import config as config_lib
from roots_jax import (compress, convert, distill, evaluate, finetune, generate, lora, prune,
                       quantize, tokenizer, train)
from roots_jax.api import LanguageModel
from roots_jax.errors import CheckpointError, ConfigError
from roots_jax.models.config import ModelConfig

COMMANDS = {"train": train, "finetune": finetune, "evaluate": evaluate, "generate": generate,
            "convert": convert, "tokenizer": tokenizer, "distill": distill, "quantize": quantize,
            "prune": prune, "compress": compress, "lora": lora}


def _call(capfd, command: str, argv: list[str]) -> tuple[int, str, str]:
  status = COMMANDS[command].main(argv)
  out, err = capfd.readouterr()
  return status, out, err


@pytest.mark.parametrize("command, argv, flags", [
    ("train", [], ["--config", "--workdir", "--config.help", "quickstart"]),
    ("finetune", [], ["--config", "--workdir", "--config.help", "finetune/package"]),
    ("evaluate", [], ["--workdir", "--split", "--checkpoint", "--config"]),
    ("generate", [], ["--workdir", "--prompt", "--num_beams", "--do_sample"]),
    ("convert", [], ["import", "export"]),
    ("convert", ["import"], ["hf_dir", "run", "--config.SECTION.KEY=VALUE"]),
    ("convert", ["export"], ["--step"]),
    ("tokenizer", [], ["train", "encode"]),
    ("tokenizer", ["train"], ["--vocab_size", "--builtin", "--output"]),
    ("distill", [], ["--config", "--workdir", "--config.SECTION.KEY=VALUE"]),
    ("quantize", [], ["--run", "--out", "--scheme", "--calibration_batches", "int4_weight"]),
    ("prune", [], ["--run", "--out", "--heads", "--mlp_units", "--batches"]),
    ("compress", [], ["report"]),
    ("compress", ["report"], ["RUN", "--out", "--eval_batches", "--decode_tokens"]),
    ("lora", [], ["merge"]),
    ("lora", ["merge"], ["--run", "--out", "--checkpoint"]),
])
def test_every_command_helps_itself(capfd, command, argv, flags):
  status, out, err = _call(capfd, command, argv + ["--help"])
  assert status == 0 and err == ""
  assert out.startswith(f"usage: python -m roots_jax.{' '.join([command] + argv)} ")
  assert all(flag in out for flag in flags), out
  if not argv:  # what the command does: its docstring
    assert COMMANDS[command].__doc__.strip() in out


def _leaf_keys(config, prefix=""):
  for key, value in config.items():
    if hasattr(value, "items"):
      yield from _leaf_keys(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}"


@pytest.mark.parametrize("schema", [config_lib.base_config, config_lib.finetune_config,
                                    config_lib.distill_config, config_lib.quantized_config])
def test_every_key_has_a_meaning(schema):
  meanings = config_lib.meanings()
  keys = list(_leaf_keys(schema()))
  assert keys and [k for k in keys if not meanings.get(k, "").strip()] == []
  assert {f"model.{f.name}" for f in dataclasses.fields(ModelConfig)} <= set(keys)


def _listing(text: str) -> dict[str, list[str]]:
  """key -> [type, value, meaning] of --config.help's lines."""
  rows = {}
  for line in text.splitlines():
    key, kind, rest = line.split(None, 2)
    rows[key] = [kind] + rest.split("  ", 1)
  return rows


@pytest.mark.parametrize("command, argv, schema", [
    ("train", [], config_lib.base_config),
    ("finetune", [], config_lib.finetune_config),
])
def test_config_help_lists_keys_types_defaults_and_meanings(capfd, command, argv, schema):
  status, out, err = _call(capfd, command, argv + ["--config.help"])
  assert status == 0 and err == ""
  rows, meanings = _listing(out), config_lib.meanings()
  config = schema()
  assert sorted(rows) == sorted(_leaf_keys(config))
  for key, (kind, value, meaning) in rows.items():
    *sections, name = key.split(".")
    node = config
    for section in sections:  # finetune.lora.rank: a section in a section
      node = node[section]
    assert kind == node.get_type(name).__name__ and value.strip() == repr(node[name]), key
    assert meaning.strip() == meanings[key]


def test_config_help_shows_the_given_configs_values(capfd):
  status, out, _ = _call(capfd, "train", ["--config", "gpt2:small", "--config.help",
                                          "--config.train.batch_size=48"])
  rows = _listing(out)
  assert status == 0
  assert rows["model.embed_dim"][:2] == ["int", "768"]
  assert rows["train.batch_size"][1].strip() == "48"
  assert rows["model.num_layers"][2].strip() == "blocks; encoder_decoder: the encoder's"


def test_shipped_configs_go_by_name_from_anywhere(tmp_path, monkeypatch):
  by_path = config_lib.load_config("configs/gpt2.py:small").to_dict()
  by_file = {name: config_lib.load_config(f"configs/{name}.py").to_dict()
             for name in ("quickstart", "finetune/package")}
  monkeypatch.chdir(tmp_path)
  assert config_lib.load_config("gpt2:small").to_dict() == by_path
  for name, values in by_file.items():
    assert config_lib.load_config(name).to_dict() == values
  assert config_lib.shipped_configs() == [
      "bert", "distill/bert", "distill/gpt", "distill/package", "distill/t5", "finetune/chat",
      "finetune/glue", "finetune/identifier", "finetune/package", "finetune/summary", "gpt2",
      "prep/roots", "quickstart", "t5", "transformer"]
  with pytest.raises(ConfigError) as e:
    config_lib.load_config("configs/quickstart.py")  # a path is a path: not here
  assert "config 'configs/quickstart.py' does not exist" in str(e.value)
  assert "(bert, distill/bert, distill/gpt, distill/package, distill/t5, " in str(e.value)
  (tmp_path / "quickstart.py").write_text(
      "from roots_jax.config import base_config\n\n"
      "def get_config(arg=None):\n  c = base_config()\n  c.seed = 7\n  return c\n")
  assert config_lib.load_config("quickstart.py").seed == 7  # a file of that name is the file


def test_the_package_installs_the_shipped_configs(monkeypatch):
  """setup.py maps configs/ into roots_jax/configs: what build_py puts in a wheel."""
  monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  build_py = run_setup("setup.py", stop_after="config").get_command_obj("build_py")
  build_py.ensure_finalized()
  modules = {f"{package}.{module}" for package, module, _ in build_py.find_all_modules()}
  assert {f"roots_jax.configs.{name.replace('/', '.')}"
          for name in config_lib.shipped_configs()} <= modules


def _hashes(root) -> dict[str, str]:
  return {os.path.relpath(os.path.join(d, f), root):
          hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
          for d, _, files in os.walk(root) for f in files}


@pytest.fixture(scope="module")
def paths(pretrained, tmp_path_factory):
  """RUN: a copy of a pretraining run; FILE: a text file; PY: a broken config; MISSING and NEW:
  paths that do not exist."""
  root = tmp_path_factory.mktemp("cli")
  shutil.copytree(pretrained["decoder"], root / "run")
  (root / "file.txt").write_text("not a config, a model or a run\n")
  (root / "broken.py").write_text("def get_config(arg=None)\n  return None\n")
  return {"RUN": str(root / "run"), "FILE": str(root / "file.txt"),
          "PY": str(root / "broken.py"), "MISSING": str(root / "missing" / "x"),
          "NEW": str(root / "new" / "dir")}


BAD = [
    # train: missing, malformed and mistyped arguments, bad paths.
    ("train", []),
    ("train", ["--config"]),
    ("train", ["--workdir", "RUN"]),
    ("train", ["--config", "quickstart"]),
    ("train", ["--config", "quickstart", "--workdir", "RUN", "--steps", "3"]),
    ("train", ["--config", "quickstart", "--workdir", "RUN", "extra"]),
    ("train", ["--config", "quikstart", "--workdir", "NEW"]),
    ("train", ["--config", "MISSING", "--workdir", "NEW"]),
    ("train", ["--config", "FILE", "--workdir", "NEW"]),
    ("train", ["--config", "PY", "--workdir", "NEW"]),
    ("train", ["--config", "RUN", "--workdir", "NEW"]),
    ("train", ["--config", "gpt2:huge", "--workdir", "NEW"]),
    ("train", ["--config", "quickstart", "--workdir", "RUN", "--config.train.batchsize=3"]),
    ("train", ["--config", "quickstart", "--workdir", "RUN", "--config.train.batch_size=big"]),
    ("train", ["--config", "quickstart", "--workdir", "RUN", "--config.train.steps"]),
    ("train", ["--config", "quickstart", "--workdir", "RUN", "--config.train=3"]),
    ("train", ["--config", "quickstart", "--workdir", "RUN", "--config.model.norm=batchnorm"]),
    ("train", ["--config", "quickstart", "--workdir", "FILE"]),
    ("train", ["--config", "quickstart", "--workdir", "FILE/run"]),
    ("train", ["--config", "quickstart", "--workdir", "s3://bucket/run"]),
    ("train", ["--config", "finetune/package", "--workdir", "RUN"]),
    # finetune
    ("finetune", []),
    ("finetune", ["--config", "finetune/package", "--workdir", "RUN"]),
    ("finetune", ["--config", "finetune/package", "--workdir", "NEW",
                  "--config.init_from=MISSING"]),
    ("finetune", ["--config", "finetune/package", "--workdir", "NEW", "--config.init_from=FILE"]),
    ("finetune", ["--config", "finetune/package", "--workdir", "NEW", "--config.init_from=RUN",
                  "--config.task.kind=ranking"]),
    ("finetune", ["--config", "quickstart", "--workdir", "NEW", "--config.init_from=RUN"]),
    ("finetune", ["--config", "finetune/package", "--workdir", "FILE", "--config.init_from=RUN"]),
    # evaluate
    ("evaluate", []),
    ("evaluate", ["--workdir"]),
    ("evaluate", ["--workdir", "MISSING"]),
    ("evaluate", ["--workdir", "FILE"]),
    ("evaluate", ["--workdir", "RUN", "--checkpoint", "99"]),
    ("evaluate", ["--workdir", "RUN", "--checkpoint", "-1"]),
    ("evaluate", ["--workdir", "RUN", "--split", "nope"]),
    ("evaluate", ["--workdir", "RUN", "--bogus"]),
    ("evaluate", ["--workdir", "RUN", "--config", "finetune/package"]),
    ("evaluate", ["--workdir", "RUN", "--config", "FILE"]),
    ("evaluate", ["--workdir", "RUN", "--config.train.eval_batches=x"]),
    ("evaluate", ["--workdir", "RUN", "--config.model.mlp_dim=96"]),
    ("evaluate", ["--workdir", "RUN", "--config.model.num_layers=3"]),
    # generate
    ("generate", []),
    ("generate", ["--workdir", "RUN"]),
    ("generate", ["--workdir", "MISSING", "--prompt", "x"]),
    ("generate", ["--workdir", "FILE", "--prompt", "x"]),
    ("generate", ["--workdir", "RUN", "--prompt", "x", "--max_length", "ten"]),
    ("generate", ["--workdir", "RUN", "--prompt", "x", "--checkpoint", "99"]),
    ("generate", ["--workdir", "RUN", "--prompt", "x", "--config.model.dtype=bfloat16"]),
    ("generate", ["--workdir", "RUN", "--prompt", "x", "--do_sample", "--temperature", "0"]),
    ("generate", ["--workdir", "RUN", "--prompt", "x", "--num_return_sequences", "2"]),
    # convert
    ("convert", []),
    ("convert", ["import"]),
    ("convert", ["merge", "RUN", "NEW"]),
    ("convert", ["import", "MISSING", "NEW"]),
    ("convert", ["import", "FILE", "NEW"]),
    ("convert", ["import", "RUN", "NEW"]),
    ("convert", ["import", "MISSING", "NEW", "--scan"]),
    ("convert", ["export", "MISSING", "NEW"]),
    ("convert", ["export", "RUN", "RUN"]),
    ("convert", ["export", "RUN", "NEW", "--step", "x"]),
    ("convert", ["export", "RUN", "NEW", "--step", "99"]),
    ("convert", ["export", "RUN", "NEW", "--config.model.dtype=bfloat16"]),
    # tokenizer
    ("tokenizer", []),
    ("tokenizer", ["train"]),
    ("tokenizer", ["train", "--builtin", "--vocab_size", "ten", "--output", "NEW"]),
    ("tokenizer", ["train", "--input", "MISSING", "--vocab_size", "100", "--output", "NEW"]),
    ("tokenizer", ["train", "--input", "x", "--builtin", "--vocab_size", "100", "--output", "NEW"]),
    ("tokenizer", ["encode", "x"]),
    ("tokenizer", ["encode", "--model", "MISSING", "x"]),
    ("tokenizer", ["encode", "--model", "FILE", "x"]),
    ("tokenizer", ["encode", "--model", "RUN", "x"]),
    # prune
    ("prune", ["--run", "RUN"]),
    ("prune", ["--run", "MISSING", "--out", "NEW", "--heads", "2", "--mlp_units", "8"]),
    ("prune", ["--run", "RUN", "--out", "NEW", "--heads", "9", "--mlp_units", "8"]),
    ("prune", ["--run", "RUN", "--out", "NEW", "--heads", "two", "--mlp_units", "8"]),
]


def test_bad_input_is_one_line_status_2_and_leaves_runs_alone(paths, capfd):
  """Every case in BAD: exactly one line on stderr, exit status 2, no traceback, the existing
  run's files unchanged and no new path left behind."""
  before = _hashes(paths["RUN"])
  capfd.readouterr()
  failures = []
  for command, argv in BAD:
    argv = [_substitute(a, paths) for a in argv]
    status, _, err = _call(capfd, command, argv)
    if (status != 2 or err.count("\n") != 1 or not err.startswith("error: ")
        or "Traceback" in err or _hashes(paths["RUN"]) != before
        or os.path.exists(os.path.dirname(paths["NEW"]))):
      failures.append((command, argv, status, err[-2000:]))
  assert failures == []


def _substitute(arg: str, paths: dict[str, str]) -> str:
  return re.sub(r"\b(RUN|FILE|PY|MISSING|NEW)\b", lambda m: paths[m.group(1)], arg)


def test_a_checkpoint_of_another_model_size_names_the_parameter(paths, capfd):
  status, _, err = _call(capfd, "evaluate", ["--workdir", paths["RUN"],
                                             "--config.model.mlp_dim=96"])
  assert status == 2 and err == (
      f"error: parameter layers/mlp/wi/bias is (2, 128) in checkpoint step 3 in {paths['RUN']}/"
      "checkpoints but this model needs (2, 96); use the model config the checkpoint was "
      "written with\n")
  config = os.path.join(paths["RUN"], "config.json")
  edited = os.path.join(os.path.dirname(paths["RUN"]), "bigger")
  shutil.copytree(paths["RUN"], edited)
  text = open(config).read().replace('"num_layers": 2', '"num_layers": 3')
  assert text != open(config).read()
  with open(os.path.join(edited, "config.json"), "w") as f:
    f.write(text)
  with pytest.raises(CheckpointError, match=r"^parameter layers/attention/key/bias is \(2, 4, 16\) "
                     r"in checkpoint step 3 .* but this model needs \(3, 4, 16\)"):
    LanguageModel.from_pretrained(edited)


def test_a_run_that_fails_before_training_removes_what_it_created(paths, corpus, tmp_path, capfd):
  argv = ["--config", "gpt2:tiny", "--config.data.source=files",
          f"--config.data.train_files={tmp_path / 'nothing.jsonl'}",
          f"--config.tokenizer.path={corpus / 'spm.model'}", "--config.model.vocab_size=512"]
  status, _, err = _call(capfd, "train", argv + ["--workdir", str(tmp_path / "new" / "run")])
  assert status == 2 and "matches no file" in err.splitlines()[-1] and "Traceback" not in err
  assert os.listdir(tmp_path) == []
  (tmp_path / "mine").mkdir()  # a directory that was there is left, and what is in it
  (tmp_path / "mine" / "notes.txt").write_text("keep")
  status, _, err = _call(capfd, "train", argv + ["--workdir", str(tmp_path / "mine")])
  assert status == 2 and "matches no file" in err
  assert os.listdir(tmp_path) == ["mine"] and os.listdir(tmp_path / "mine") == ["notes.txt"]
  # Fine-tuning writes config.json and the tokenizer before it reads the task's data.
  status, _, err = _call(capfd, "finetune", [
      "--config", "finetune/package", "--workdir", str(tmp_path / "ft" / "run"),
      f"--config.init_from={paths['RUN']}", "--config.task.source=files",
      f"--config.task.train_files={tmp_path / 'nothing.jsonl'}"])
  assert status == 2 and "matches no file" in err.splitlines()[-1]
  assert os.listdir(tmp_path) == ["mine"]
