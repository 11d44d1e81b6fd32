"""python -m roots_jax.convert without transformers: export -> import round trips for every
architecture and both layer layouts, the run directory the drivers read, refusals and CLI errors
(one line, exit 2, no traceback). Logits against transformers: test_parity.py."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from flax import traverse_util

from roots_jax import convert as convert_cli
from roots_jax import train as train_cli
from roots_jax.hf import safetensors
from roots_jax.runs import convert

import hf_models
from hf_models import BERT, GPT2, LLAMA, LLAMA_BIAS, NEOX, NEOX_UNTIED, T5, T5_V11

ARCHITECTURES = {"gpt2": GPT2, "gpt2_untied": {**GPT2, "tie_word_embeddings": False},
                 "neox": NEOX, "neox_untied": NEOX_UNTIED, "llama": LLAMA,
                 "llama_bias": LLAMA_BIAS,
                 "bert": BERT, "bert_untied": {**BERT, "tie_word_embeddings": False},
                 "t5": T5, "t5_v11": T5_V11}


def read_hf(hf_dir) -> tuple[dict, dict]:
  with open(os.path.join(hf_dir, "config.json")) as f:
    return json.load(f), safetensors.read(os.path.join(hf_dir, "model.safetensors"))


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_export_import_round_trip_across_layer_layouts(name, tmp_path):
  """scanned run -> HF -> looped run -> HF: the same tensors; HF -> scanned run: the same params."""
  run = hf_models.make_run(str(tmp_path / "run"), ARCHITECTURES[name])
  convert.export_hf(run, str(tmp_path / "hf"))
  hf_config, tensors = read_hf(tmp_path / "hf")
  assert hf_config["architectures"] == ARCHITECTURES[name]["architectures"]

  convert.import_hf(str(tmp_path / "hf"), str(tmp_path / "looped"), ["model.scan_layers=false"])
  looped_config, looped = hf_models.load_run(str(tmp_path / "looped"))
  assert not looped_config.scan_layers
  assert "layers_1" in (looped["decoder"] if "decoder" in looped else looped)
  convert.export_hf(str(tmp_path / "looped"), str(tmp_path / "hf2"))
  hf_config2, tensors2 = read_hf(tmp_path / "hf2")
  assert hf_config2 == hf_config and tensors2.keys() == tensors.keys()
  for key in tensors:
    np.testing.assert_array_equal(tensors2[key], tensors[key], err_msg=key)

  convert.import_hf(str(tmp_path / "hf"), str(tmp_path / "scanned"))
  _, original = hf_models.load_run(run)
  _, back = hf_models.load_run(str(tmp_path / "scanned"))
  flat, flat_back = traverse_util.flatten_dict(original), traverse_util.flatten_dict(back)
  assert flat.keys() == flat_back.keys()
  for key in flat:
    np.testing.assert_array_equal(flat_back[key], flat[key], err_msg=str(key))


def test_run_directory_and_tokenizer_files(tmp_path):
  """RUN is laid out like a pretraining run; the Hugging Face tokenizer files go both ways."""
  convert.export_hf(hf_models.make_run(str(tmp_path / "run"), GPT2), str(tmp_path / "hf"))
  for name, text in (("vocab.json", "{}"), ("merges.txt", "#version: 0.2\n"),
                     ("tokenizer_config.json", "{}")):
    (tmp_path / "hf" / name).write_text(text)
  (tmp_path / "hf" / "README.md").write_text("not a tokenizer file")
  summary = convert.import_hf(str(tmp_path / "hf"), str(tmp_path / "imported"))
  run = tmp_path / "imported"
  assert sorted(os.listdir(run)) == ["checkpoints", "config.json", "tokenizer"]
  assert os.listdir(run / "checkpoints") == ["0"]
  assert sorted(os.listdir(run / "tokenizer")) == ["merges.txt", "tokenizer_config.json",
                                                   "vocab.json"]
  assert summary["fresh"] == [] and summary["architecture"] == "GPT2LMHeadModel"
  config = json.loads((run / "config.json").read_text())
  assert config["tokenizer"]["path"] == str(run / "tokenizer")
  assert config["model"]["max_len"] == config["data"]["seq_len"] == 64
  assert config["data"]["objective"] == "causal"

  convert.export_hf(str(run), str(tmp_path / "hf2"))
  assert {"vocab.json", "merges.txt", "tokenizer_config.json"} <= set(os.listdir(tmp_path / "hf2"))


def test_older_and_headless_name_layouts(tmp_path):
  """GPT2Model files have no "transformer." prefix and old ones causal-mask buffers; BertModel
  files no "bert." prefix and no heads (initialised fresh), TF-era ones LayerNorm gamma/beta."""
  for name, config in (("gpt2", GPT2), ("bert", BERT)):
    convert.export_hf(hf_models.make_run(str(tmp_path / f"{name}_run"), config),
                      str(tmp_path / name))
    _, tensors = read_hf(tmp_path / name)
    if name == "gpt2":
      renamed = {k.removeprefix("transformer."): v for k, v in tensors.items()}
      renamed["h.0.attn.masked_bias"] = np.ones(1, np.float32)
    else:
      renamed = {k.removeprefix("bert.").replace("LayerNorm.weight", "LayerNorm.gamma")
                 .replace("LayerNorm.bias", "LayerNorm.beta"): v
                 for k, v in tensors.items() if not k.startswith("cls.")}
    safetensors.write(str(tmp_path / name / "model.safetensors"), renamed)
    architecture = {"gpt2": "GPT2Model", "bert": "BertModel"}[name]
    write_hf_dir(tmp_path / name, {**config, "architectures": [architecture]}, weights=False)
    summary = convert.import_hf(str(tmp_path / name), str(tmp_path / f"{name}_back"))
    assert summary["architecture"] == architecture
    _, original = hf_models.load_run(str(tmp_path / f"{name}_run"))
    _, back = hf_models.load_run(str(tmp_path / f"{name}_back"))
    flat, flat_back = traverse_util.flatten_dict(original), traverse_util.flatten_dict(back)
    fresh = {k for k in flat if k[0] in summary["fresh"]}
    assert {k[0] for k in fresh} == ({"mlm_transform", "mlm_norm", "mlm_output", "nsp_classifier"}
                                     if name == "bert" else set())
    for key in flat.keys() - fresh:
      np.testing.assert_array_equal(flat_back[key], flat[key], err_msg=str(key))
    np.testing.assert_array_equal(flat_back.get(("mlm_output", "bias"), 0), 0)  # fresh: zeros


def test_bert_without_token_types_exports_a_zero_type_table(tmp_path):
  run = hf_models.make_run(str(tmp_path / "run"), BERT)
  config = json.loads((tmp_path / "run" / "config.json").read_text())
  config["model"]["type_vocab_size"] = 0
  (tmp_path / "run" / "config.json").write_text(json.dumps(config))
  convert.export_hf(run, str(tmp_path / "hf"))  # the checkpoint's extra table is not read
  hf_config, tensors = read_hf(tmp_path / "hf")
  assert hf_config["type_vocab_size"] == 1
  np.testing.assert_array_equal(tensors["bert.embeddings.token_type_embeddings.weight"],
                                np.zeros((1, 32)))


def run_cli(capsys, *argv) -> tuple[int, str]:
  code = convert_cli.main(list(argv))
  captured = capsys.readouterr()
  return code, captured.err


def write_hf_dir(path, config: dict, weights: bool = True):
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f)
  if weights:
    safetensors.write(os.path.join(path, "model.safetensors"), {"x": np.zeros(1, np.float32)})
  return str(path)


@pytest.mark.parametrize("config, weights, message", [
    (dict(model_type="opt", architectures=["OPTForCausalLM"]), True,
     "OPTForCausalLM is not supported; roots_jax converts GPT2LMHeadModel"),
    ({**BERT, "architectures": ["BertForSequenceClassification"]}, True,
     "BertForSequenceClassification is not supported; for BERT roots_jax converts"),
    ({**T5, "feed_forward_proj": "gated-tanh"}, True, "feed_forward_proj='gated-tanh'"),
    ({**GPT2, "activation_function": "silu"}, True, "activation_function='silu'"),
    ({**GPT2, "scale_attn_by_inverse_layer_idx": True}, True, "scale_attn_by_inverse_layer_idx"),
    ({**BERT, "position_embedding_type": "relative_key"}, True, "position_embedding_type"),
    ({**NEOX, "use_parallel_residual": True}, True, "use_parallel_residual=True: roots_jax "
     "implements GPT-NeoX only with use_parallel_residual=False"),
    ({k: v for k, v in NEOX.items() if k != "rotary_pct"}, True, "rotary_pct=0.25: roots_jax "
     "implements GPT-NeoX only with RoPE on the whole head"),
    ({**NEOX, "rope_parameters": {"rope_theta": 1e4, "partial_rotary_factor": 0.5}}, True,
     "rope_parameters.partial_rotary_factor=0.5"),
    ({**LLAMA, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, True,
     "rope_type='llama3': roots_jax implements Llama only with unscaled RoPE"),
    ({**LLAMA, "attention_bias": True}, True, "mlp_bias=False: roots_jax implements Llama with "
     "attention_bias=True only with mlp_bias=True"),
    ({**LLAMA, "hidden_act": "relu"}, True, "hidden_act='relu': Llama supports silu"),
    (GPT2, False, "has no weights: expected model.safetensors or pytorch_model.bin"),
    (GPT2, True, "lacks 36 of the weights of GPT2LMHeadModel: transformer.wte.weight"),
])
def test_import_errors(config, weights, message, tmp_path, capsys):
  hf_dir = write_hf_dir(tmp_path / "hf", config, weights)
  code, err = run_cli(capsys, "import", hf_dir, str(tmp_path / "run"))
  assert code == 2 and err.startswith("error: ") and message in err, err
  assert not os.path.exists(tmp_path / "run")


def test_import_argument_errors(tmp_path, capsys):
  code, err = run_cli(capsys, "import", str(tmp_path / "nowhere"), str(tmp_path / "run"))
  assert code == 2 and "is not a directory" in err
  convert.export_hf(hf_models.make_run(str(tmp_path / "run"), GPT2), str(tmp_path / "hf"))
  code, err = run_cli(capsys, "import", str(tmp_path / "hf"), str(tmp_path / "run"))
  assert code == 2 and "already exists; give a new directory" in err
  code, err = run_cli(capsys, "import", str(tmp_path / "hf"), str(tmp_path / "new"),
                      "--config.model.num_layers=3")
  assert code == 2 and "model.num_layers comes from the checkpoint's config.json" in err
  code, err = run_cli(capsys, "import", str(tmp_path / "hf"), str(tmp_path / "new"), "--scan")
  assert code == 2 and "unknown argument '--scan'" in err
  weights = str(tmp_path / "hf" / "model.safetensors")
  tensors = dict(safetensors.read(weights))
  safetensors.write(weights, {**tensors, "transformer.h.0.attn.q_attn.weight": np.ones(1)})
  code, err = run_cli(capsys, "import", str(tmp_path / "hf"), str(tmp_path / "new"))
  assert code == 2 and "does not use, e.g. transformer.h.0.attn.q_attn.weight" in err
  del tensors["transformer.h.1.mlp.c_fc.bias"]
  safetensors.write(weights, tensors)
  code, err = run_cli(capsys, "import", str(tmp_path / "hf"), str(tmp_path / "new"))
  assert code == 2 and "lacks 1 of the weights of GPT2LMHeadModel: transformer.h.1.mlp.c_fc.bias" \
      in err
  os.rename(tmp_path / "hf" / "model.safetensors", tmp_path / "hf" / "pytorch_model.bin")
  (tmp_path / "hf" / "pytorch_model.bin").write_bytes(b"not a pickle")
  code, err = run_cli(capsys, "import", str(tmp_path / "hf"), str(tmp_path / "new"))
  assert code == 2 and "pytorch_model.bin" in err


@pytest.mark.parametrize("config, model, message", [
    (GPT2, dict(position="sinusoidal"), "model.position='sinusoidal', model.norm='layernorm' has "
     "no Hugging Face architecture here: GPT-2 needs position='learned'; GPT-NeoX needs "
     "position='rope', norm='layernorm'; Llama needs position='rope', norm='rmsnorm'"),
    (GPT2, dict(num_kv_heads=2), "model.num_kv_heads=2 cannot be written as GPT-2"),
    (GPT2, dict(mlp_activation="swiglu"), "model.mlp_activation='swiglu' cannot be written"),
    (GPT2, dict(norm_placement="post"), "model.norm_placement='post' cannot be written"),
    (NEOX, dict(mlp_activation="swiglu"), "model.mlp_activation='swiglu' cannot be written as "
     "GPT-NeoX, which needs 'gelu' or 'gelu_exact' or 'relu'; Llama takes RoPE with rmsnorm"),
    (NEOX, dict(num_kv_heads=2), "model.num_kv_heads=2 cannot be written as GPT-NeoX"),
    (NEOX, dict(use_bias=False), "model.use_bias=False cannot be written as GPT-NeoX"),
    (LLAMA, dict(mlp_activation="gelu"), "model.mlp_activation='gelu' cannot be written as Llama, "
     "which needs 'swiglu' or 'geglu'; GPT-NeoX takes RoPE with layernorm"),
    (LLAMA, dict(norm_placement="post"), "model.norm_placement='post' cannot be written as Llama"),
    (BERT, dict(norm_placement="pre"), "model.norm_placement='pre' cannot be written as BERT"),
    (T5, dict(use_bias=True), "model.use_bias=True cannot be written as T5"),
])
def test_export_refuses_what_hugging_face_cannot_represent(config, model, message, tmp_path,
                                                            capsys):
  run = hf_models.make_run(str(tmp_path / "run"), config)
  values = json.loads((tmp_path / "run" / "config.json").read_text())
  values["model"].update(model)  # the config of a run trained so (its checkpoint is not read)
  (tmp_path / "run" / "config.json").write_text(json.dumps(values))
  code, err = run_cli(capsys, "export", run, str(tmp_path / "hf"))
  assert code == 2 and err.startswith("error: ") and message in err, err
  assert not os.path.exists(tmp_path / "hf")


def test_export_argument_errors(tmp_path, capsys):
  code, err = run_cli(capsys, "export", str(tmp_path / "nowhere"), str(tmp_path / "hf"))
  assert code == 2 and "is not a roots_jax run" in err
  run = hf_models.make_run(str(tmp_path / "run"), T5)
  code, err = run_cli(capsys, "export", run, str(tmp_path / "hf"), "--step", "5")
  assert code == 2 and "--step 5: " in err and "has steps [0]" in err
  os.makedirs(tmp_path / "full")
  (tmp_path / "full" / "x").write_text("")
  code, err = run_cli(capsys, "export", run, str(tmp_path / "full"))
  assert code == 2 and "already exists" in err


def test_command_line_without_torch(tmp_path):
  """The real CLI: safetensors need neither torch nor transformers, a .bin file says to install
  them, and errors are one line with exit status 2."""
  convert.export_hf(hf_models.make_run(str(tmp_path / "run"), BERT), str(tmp_path / "hf"))
  os.makedirs(tmp_path / "bin")
  (tmp_path / "bin" / "config.json").write_text(json.dumps(BERT))
  (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"")
  write_hf_dir(tmp_path / "opt", dict(model_type="opt", architectures=["OPTForCausalLM"]))
  script = textwrap.dedent("""
      import contextlib, io, sys
      sys.modules["torch"] = sys.modules["transformers"] = None  # import fails
      from roots_jax.convert import main
      for args in [a.split(",") for a in sys.argv[1:]]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
          code = main(args)
        print(code, repr(out.getvalue()), repr(err.getvalue()))
  """)
  cases = [("import", str(tmp_path / "hf"), str(tmp_path / "imported")),
           ("import", str(tmp_path / "bin"), str(tmp_path / "x")),
           ("import", str(tmp_path / "opt"), str(tmp_path / "y"))]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  done = subprocess.run([sys.executable, "-c", script, *(",".join(c) for c in cases)],
                        capture_output=True, text=True, env=env, check=True)
  lines = done.stdout.splitlines()
  assert [line.split()[0] for line in lines] == ["0", "2", "2"], done.stdout
  assert "imported BertForPreTraining" in lines[0]
  assert "needs torch: pip install 'roots_jax[hf]'" in lines[1]
  assert "OPTForCausalLM is not supported" in lines[2]
  assert "Traceback" not in done.stdout + done.stderr
  # The module's own entry point: the exit status and one line on stderr.
  cli = subprocess.run([sys.executable, "-m", "roots_jax.convert", *cases[2]], capture_output=True,
                       text=True, env=env)
  assert cli.returncode == 2 and cli.stderr.startswith("error: ") and cli.stderr.count("\n") == 1


def test_train_refuses_to_resume_a_converted_run(corpus, tmp_path, capsys):
  """A converted run has parameters only: `train --workdir RUN` stops with a one-line error, and
  the checkpoint and config.json stay as they were."""
  convert.export_hf(hf_models.make_run(str(tmp_path / "run"), {**GPT2, "vocab_size": 512}),
                    str(tmp_path / "hf"))
  run = str(tmp_path / "imported")
  convert.import_hf(str(tmp_path / "hf"), run)
  config_file = tmp_path / "continue.py"
  config_file.write_text(textwrap.dedent(f"""
      from roots_jax import config as config_lib
      def get_config(arg=None):
        c = config_lib.read_config({os.path.join(run, "config.json")!r})
        c.tokenizer.path = {str(corpus / "spm.model")!r}
        c.data.update(source="files", train_files={str(corpus / "train.jsonl")!r}, seq_len=32)
        c.train.update(batch_size=8, steps=2)
        return c
  """))
  written = (tmp_path / "imported" / "config.json").read_text()
  code = train_cli.main(["--config", str(config_file), "--workdir", run])
  err = capsys.readouterr().err
  assert code == 2 and "error: checkpoint step 0" in err and "Traceback" not in err, err
  assert (tmp_path / "imported" / "config.json").read_text() == written  # left as it was
  hf_models.load_run(run)
