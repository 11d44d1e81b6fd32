"""Quantization with Qwix (roots_jax.runs.quantize, runs.quantized, training.quantization): a
tiny trained GPT quantized after training to int8 / int4 weights and int8 activations, its logits
against the float model's, its bytes, its use as a run, and quantization-aware training."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tiny_gpt import read_metrics, tiny_finetune_config, tiny_overrides
from roots_jax import LanguageModel, config as config_lib, quantize as quantize_cli
from roots_jax.errors import ConfigError
from roots_jax.runs import convert, evaluation, load, quantize
from roots_jax.runs.finetune import finetune
from roots_jax.runs.pretrain import train
from roots_jax.training import quantization

pytestmark = pytest.mark.extra("quant")

CONFIG = "configs/gpt2.py:tiny"
# The quantized matmuls on one token's path: query, key, value, out, wi, wo in each of 2 blocks.
QUANTIZED_MATMULS = 6 * 2
# The largest value each integer type's symmetric absmax scaling maps to (Qwix: qmax + 1/2).
QMAX = {"int8_weight": 127.5, "int4_weight": 7.5}


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
  """A tiny GPT (2 blocks, width 64) trained 10 steps on the corpus fixture."""
  workdir = str(tmp_path_factory.mktemp("float_run"))
  train(config_lib.load_config(CONFIG, tiny_overrides(corpus, train__steps=10)), workdir)
  return workdir


@pytest.fixture(scope="module")
def quantized_runs(run, tmp_path_factory):
  """scheme -> the run quantized to it (int8: static scales calibrated on 2 batches)."""
  root = tmp_path_factory.mktemp("quantized")
  runs = {}
  for scheme, batches in (("int8_weight", 0), ("int4_weight", 0), ("int8", 2)):
    runs[scheme] = quantize.quantize(run, str(root / scheme), scheme,
                                     calibration_batches=batches)
  return runs


def _ids(corpus, model, rows=4, length=32):
  text = open(corpus / "val.jsonl").read()
  ids = model.tokenizer.encode(text)[:rows * length]
  return np.asarray(ids, np.int32).reshape(rows, length)


def _kernels(params, prefix=()):
  """path -> kernel of the blocks' matmuls (a leading layer axis: the stack is scanned)."""
  out = {}
  for key, value in params.items():
    if key == "kernel" and "layers" in prefix:
      out[prefix] = value
    elif isinstance(value, dict):
      out.update(_kernels(value, prefix + (key,)))
  return out


@pytest.mark.parametrize("scheme", ["int8_weight", "int4_weight"])
def test_weight_only_logits_are_within_the_rounding_bound(scheme, run, quantized_runs, corpus):
  """Per-channel absmax scaling rounds each weight of output channel j by at most s_j / 2,
  s_j = max_i |w_ij| / qmax (qmax 127.5 for int8, 7.5 for int4). Rounding errors are uniform
  on [-s_j/2, s_j/2] (variance s_j^2 / 12) and independent of the inputs, so one matmul's
  output error has relative RMS (to the output's spread, sigma_j |x|)
      eps = (max|w_j| / sigma_j) / (qmax sqrt(12)),
  largest for the most peaked channel: c = max_j max|w_j| / sigma_j of the trained kernels.
  The n = 12 quantized matmuls on a token's path add independent errors, in quadrature, to the
  residual stream, which LayerNorm and the tied LM head carry to the logits with a gain of
  about 1: the logits' RMS error, relative to their spread over the vocabulary, is at most
  about sqrt(n) * eps. We allow twice that for the gain (about 2.4% for int8, 41% for int4 on
  this model). It bounds the worst case, where the logits come from the quantized matmuls alone;
  here the float embeddings carry most of them (measured: 0.03% for int8, 0.5% for int4), and
  the next test pins the arithmetic itself exactly."""
  float_model = LanguageModel.from_pretrained(run)
  model = LanguageModel.from_pretrained(quantized_runs[scheme]["out"])
  ids = _ids(corpus, float_model)
  expected, got = float_model.logits(ids), model.logits(ids)
  # [layer, input, output channel]: the attention output contracts heads and head dim.
  columns = [np.asarray(k).reshape(k.shape[0], -1, k.shape[-1]) if path[-1] == "out" else
             np.asarray(k).reshape(k.shape[0], k.shape[1], -1)
             for path, k in _kernels(jax.device_get(float_model.params)).items()]
  peak = max(float((np.abs(k).max(1) / k.std(1)).max()) for k in columns)
  bound = 2 * np.sqrt(QUANTIZED_MATMULS) * peak / (QMAX[scheme] * np.sqrt(12))
  spread = np.sqrt(np.mean((expected - expected.mean(-1, keepdims=True)) ** 2))
  error = np.sqrt(np.mean((got - expected) ** 2)) / spread
  assert error < bound, (error, bound)
  assert error > 0  # the weights were quantized
  assert (got.argmax(-1) == expected.argmax(-1)).mean() > (0.95 if scheme == "int8_weight" else 0.5)


def test_the_quantized_model_is_the_float_model_on_the_dequantized_weights(run, quantized_runs,
                                                                           corpus):
  """Every stored int8 weight rounds its float weight within half a step, and the quantized
  model computes the float model with those weights (nothing else changes)."""
  qwix = quantization.qwix()
  float_model = LanguageModel.from_pretrained(run)
  model = LanguageModel.from_pretrained(quantized_runs["int8_weight"]["out"])
  floats, quantized = jax.device_get(float_model.params), jax.device_get(model.params)
  dequantized = jax.tree.map(lambda x: qwix.dequantize(x.array) if hasattr(x, "how") else x,
                             quantized, is_leaf=lambda x: hasattr(x, "how"))
  for path, kernel in _kernels(quantized).items():
    w = _kernels(floats)[path]
    step = np.asarray(kernel.array.scale)
    assert kernel.array.qvalue.dtype == jnp.int8
    # Half a step, and float32's rounding of w / s and q * s (|q| <= 128: a few 1e-5 of it).
    assert np.all(np.abs(np.asarray(_kernels(dequantized)[path]) - w) <= step / 2 * (1 + 1e-4))
  ids = _ids(corpus, float_model)
  float_model.params = jax.device_put(dequantized, float_model._loaded.param_sharding)
  np.testing.assert_allclose(model.logits(ids), float_model.logits(ids), rtol=1e-4, atol=1e-4)


def test_checkpoints_hold_4x_and_8x_fewer_weight_bytes(run, quantized_runs, tmp_path):
  """The quantized kernels take 8 (4) bits a value plus one float32 scale per output channel of
  K inputs: 32 K / (b K + 32) times fewer bytes than float32, 3.8x / 7.1x for K = 64 here, about
  4x / 8x for wide models. On disk too, the kernels written alone, though less exactly: Orbax
  compresses its files, writes int4 values a byte each, and how it groups arrays into files
  varies from one write to the next (measured 3.6x for int8; 5.7x to 6.4x for int4)."""
  float_params = jax.device_get(load.load(run).params)
  on_disk = {}
  for scheme, ratio in (("int8_weight", (3.7, 4.0)), ("int4_weight", (7.0, 8.0))):
    summary = quantized_runs[scheme]
    assert ratio[0] < summary["bytes"].ratio < ratio[1], summary["bytes"]
    assert summary["bytes"].total < summary["float_bytes"].total
    params = jax.device_get(load.load(summary["out"]).params)
    written = {}
    for name, tree in (("float", float_params), ("quantized", params)):
      kernels = {"/".join(path): k for path, k in _kernels(tree).items()}
      convert.write_params(str(tmp_path / name / scheme), kernels)
      written[name] = _array_bytes_on_disk(tmp_path / name / scheme)
    on_disk[scheme] = written["float"] / written["quantized"]
  assert 3.0 < on_disk["int8_weight"] < 4.5, on_disk
  assert on_disk["int8_weight"] < on_disk["int4_weight"] < 11, on_disk


def _array_bytes_on_disk(run) -> int:
  """Bytes of the array data files of checkpoints/0 (Orbax's OCDBT data, without the tree's
  metadata files, which grow with the number of arrays rather than their size)."""
  root = run / "checkpoints" / "0" / "state"
  return sum(f.stat().st_size for d in root.glob("ocdbt.process_*/d") for f in d.iterdir())


def test_a_quantized_run_evaluates_generates_and_round_trips(run, quantized_runs, tmp_path):
  out = quantized_runs["int8_weight"]["out"]
  results = evaluation.evaluate_run(out)
  baseline = evaluation.evaluate_run(run)
  assert results["kind"] == "pretraining" and results["metrics"]["tokens"] > 0
  assert results["metrics"]["perplexity"] == pytest.approx(baseline["metrics"]["perplexity"],
                                                           rel=0.02)
  model = LanguageModel.from_pretrained(out)
  text = model.generate("ba ko", max_new_tokens=6)
  assert len(text) == 1 and isinstance(text[0], str) and text[0]
  assert model.generate("ba ko", max_new_tokens=6, use_cache=False) == text  # cache = no cache
  # Saved again and read back: the same quantized values.
  model.save_pretrained(str(tmp_path / "copy"))
  again = LanguageModel.from_pretrained(str(tmp_path / "copy"))
  assert again.config.kind == "quantized" and again.config.quantize.source == run
  same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))),
                      jax.device_get(model.params), jax.device_get(again.params))
  assert all(jax.tree.leaves(same))


def test_static_int8_activations_are_calibrated(run, quantized_runs, corpus):
  """int8 with calibration: one static scale per matmul input (per layer), and logits close
  to float's: the activations' rounding adds to the weights' (a looser check than above)."""
  summary = quantized_runs["int8"]
  model = LanguageModel.from_pretrained(summary["out"])
  assert model.config.quantize.calibration_batches == 2
  scales = [x for path, x in jax.tree_util.tree_leaves_with_path(jax.device_get(model.params))
            if "lhs_scale" in jax.tree_util.keystr(path)]
  assert len(scales) == 6 and all(s.shape[0] == 2 and s.size == 2 for s in scales)
  float_model = LanguageModel.from_pretrained(run)
  ids = _ids(corpus, float_model)
  expected, got = float_model.logits(ids), model.logits(ids)
  spread = np.sqrt(np.mean((expected - expected.mean(-1, keepdims=True)) ** 2))
  assert np.sqrt(np.mean((got - expected) ** 2)) / spread < 0.1
  assert model.generate("ba ko", max_new_tokens=4)[0]


def test_a_quantized_fine_tuned_model_keeps_its_task(run, task_files, tmp_path):
  """A classifier quantized: its config keeps the task, evaluate scores the task, predict
  gives labels; its predictions are the float classifier's (int8 weights)."""
  tuned = str(tmp_path / "tuned")
  finetune(tiny_finetune_config("classification", run, task_files), tuned)
  summary = quantize.quantize(tuned, str(tmp_path / "tuned-int8"), "int8_weight")
  results = evaluation.evaluate_run(summary["out"], split="test")
  expected = evaluation.evaluate_run(tuned, split="test")
  assert results["kind"] == "classification" and results["split"] == "test"
  assert results["metrics"]["accuracy"] == expected["metrics"]["accuracy"]
  model, float_model = (LanguageModel.from_pretrained(p) for p in (summary["out"], tuned))
  assert model.task == "classification" and model.config.quantize.source_kind == "finetune"
  texts = ["ba ko 7 mi", "tu ze lo", "42 pa ri"]
  assert model.predict(texts) == float_model.predict(texts)


@pytest.mark.parametrize("args,message", [
    (["--scheme", "int3"], "invalid choice: 'int3'"),
    (["--scheme", "int8_weight", "--calibration_batches", "2"], "--scheme int8"),
    (["--scheme", "int8_weight", "--out", "FILE"], "is not a roots_jax run"),
    (["--scheme", "int8_weight", "--run", "MISSING"], "does not exist"),
])
def test_bad_input_is_one_line_and_status_2(args, message, run, tmp_path, capsys):
  (tmp_path / "not_a_run").mkdir()
  (tmp_path / "not_a_run" / "notes.txt").write_text("mine")
  values = {"--run": run, "--out": str(tmp_path / "not_a_run" if "FILE" in args else
                                       tmp_path / "new")}
  argv = []
  for i, arg in enumerate(args):
    if arg in ("FILE", "MISSING"):
      argv[-1:] = [args[i - 1], str(tmp_path / "missing") if arg == "MISSING" else
                   values["--out"]]
      values.pop(args[i - 1])
    else:
      argv.append(arg)
  for key, value in values.items():
    argv += [key, value]
  assert quantize_cli.main(argv) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
  assert not os.path.exists(tmp_path / "new")


def test_quantization_aware_training_then_quantize(corpus, run, tmp_path):
  """quant.qat_scheme trains through fake quantization: a step's loss differs from float's (same
  data and initialisation), gradients stay finite, and the run quantizes to its scheme."""
  workdir = str(tmp_path / "qat")
  train(config_lib.load_config(CONFIG, tiny_overrides(
      corpus, train__steps=3, quant__qat_scheme="int8")), workdir)
  qat, plain = read_metrics(workdir), read_metrics(run)
  assert all(np.isfinite(qat[s]["grad_norm"]) and np.isfinite(qat[s]["loss"]) for s in (1, 2, 3))
  assert qat[1]["loss"] != plain[1]["loss"]
  assert abs(qat[1]["loss"] - plain[1]["loss"]) < 0.05  # the same model, rounded
  summary = quantize.quantize(workdir, str(tmp_path / "qat-int8"), "int8")
  model = LanguageModel.from_pretrained(summary["out"])
  assert model.config.quantize.scheme == "int8" and model.config.quant.qat_scheme == "int8"
  assert np.isfinite(model.logits(np.arange(1, 9, dtype=np.int32))).all()


def test_fp8_needs_a_gpu(corpus, tmp_path):
  if jax.default_backend() == "gpu":
    pytest.skip("fp8 is refused only where there is no GPU")
  config = config_lib.load_config(CONFIG, tiny_overrides(corpus, train__steps=1,
                                                         quant__fp8="true"))
  with pytest.raises(ConfigError, match="needs a GPU with fp8 matmuls"):
    train(config, str(tmp_path / "fp8"))


@pytest.mark.parametrize("family", ["encoder", "encoder_decoder"])
def test_bert_and_t5_quantize_evaluate_and_t5_generates(family, pretrained, tmp_path):
  """The other families: int8 weights keep the held-out perplexity within 2 %, and a
  quantized T5 decodes with its KV cache as without it."""
  summary = quantize.quantize(pretrained[family], str(tmp_path / "w8"), "int8_weight")
  assert 3.0 < summary["bytes"].ratio < 4.0
  results = evaluation.evaluate_run(summary["out"])
  baseline = evaluation.evaluate_run(pretrained[family])
  assert results["metrics"]["perplexity"] == pytest.approx(
      baseline["metrics"]["perplexity"], rel=0.02)
  if family == "encoder_decoder":
    model = LanguageModel.from_pretrained(summary["out"])
    text = model.generate("ba ko mi", max_new_tokens=5)
    assert text == model.generate("ba ko mi", max_new_tokens=5, use_cache=False)
