"""LoRA and QLoRA adapter runs (runs.lora, models.lora) end to end: only the adapters (and a new
head) train and are saved, the base stays the pretrained one, the merged run equals base +
adapters, QLoRA trains over a quantized base with less memory, resume is exact, and mistakes
are one-line errors."""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from roots_jax import lora as lora_cli
from roots_jax.api import LanguageModel
from roots_jax.errors import ConfigError
from roots_jax.models import families, lora as lora_model
from roots_jax.runs import finetune as finetune_lib
from roots_jax.runs import convert, load, lora, lora_merge
from roots_jax.training import quantization
from tiny_gpt import read_metrics, tiny_finetune_config as _config

RANK = 4
# Each family with a task whose head is new (classification) or copied from the base (seq2seq).
RUNS = {"decoder": "seq2seq", "encoder": "classification", "encoder_decoder": "seq2seq"}


def _saved_params(workdir, subdir="checkpoints"):
  manager = ocp.CheckpointManager(os.path.join(workdir, subdir), item_names=("state",))
  restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore()))
  return jax.tree.map(np.asarray, restored.state["params"]), restored.state.get("opt_state")


def _adapter_config(family, pretrained, task_files, **extra):
  extra.setdefault("finetune__lora__rank", RANK)
  return _config(RUNS[family], pretrained[family], task_files, **extra)


@pytest.fixture(scope="module")
def adapter_runs(pretrained, task_files, tmp_path_factory):
  """family -> a LoRA run of 4 steps (rank 4, attention and MLP, with dropout)."""
  runs = {}
  for family in RUNS:
    workdir = str(tmp_path_factory.mktemp(f"lora_{family}"))
    finetune_lib.finetune(_adapter_config(family, pretrained, task_files,
                                          finetune__lora__modules="all",
                                          finetune__lora__dropout=0.1), workdir)
    runs[family] = workdir
  return runs


def _leaves(tree, prefix=""):
  return {prefix + jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("family", list(RUNS))
def test_only_adapters_train_and_are_saved(family, adapter_runs, pretrained):
  """The checkpoint holds lora_a, lora_b (rank x each side of every attention and MLP kernel)
  and a new head, nothing else; B left zero, A its init; loaded, the base is the pretrained
  one bit for bit."""
  saved, opt_state = _saved_params(adapter_runs[family])
  names = _leaves(saved)
  head_trains = RUNS[family] != "seq2seq"
  adapters = {k: v for k, v in names.items() if "lora_" in k}
  assert set(names) - set(adapters) == ({k for k in names if k.startswith("['head']")}
                                        if head_trains else set())
  loaded = load.load(adapter_runs[family], checkpoint="latest")
  cfg = loaded.model_config
  n, h, d, f, layers = cfg.num_heads, cfg.head_size, cfg.embed_dim, cfg.mlp_dim, cfg.num_layers
  per_layer = 4 * RANK * (d + n * h) + RANK * (d + f) * (3 if cfg.mlp_activation in (
      "swiglu", "geglu") else 2)
  stacks = {"decoder": 1, "encoder": 1, "encoder_decoder": 2}[family]
  cross = 4 * RANK * (d + n * h) if family == "encoder_decoder" else 0
  assert sum(v.size for v in adapters.values()) == stacks * layers * per_layer + layers * cross
  assert all(np.abs(v).max() > 0 for k, v in adapters.items() if k.endswith("['lora_b']"))
  # Adam's two moments of every trained parameter and its count: nothing for the base.
  assert sum(x.size for x in jax.tree.leaves(opt_state)) <= 2 * sum(
      v.size for v in names.values()) + 4

  base, _ = _saved_params(pretrained[family])
  trained, frozen = lora.split(jax.tree.map(np.asarray, loaded.params), head_trains)
  frozen_backbone, base = _leaves(frozen["backbone"]), _leaves(base)
  assert len(frozen_backbone) > 10 and frozen_backbone.keys() <= base.keys()
  for key, value in frozen_backbone.items():  # (BERT's pretraining heads are not the backbone's)
    np.testing.assert_array_equal(value, base[key], err_msg=key)
  np.testing.assert_array_equal(_leaves(trained)[next(iter(adapters))],
                                adapters[next(iter(adapters))])


@pytest.mark.parametrize("family", list(RUNS))
def test_merged_run_equals_base_plus_adapters(family, adapter_runs, tmp_path, capsys):
  """python -m roots_jax.lora merge writes a plain run whose logits equal the adapter run's;
  its checkpoint is the whole model, the adapter run's a small part of it."""
  out = str(tmp_path / "merged")
  assert lora_cli.main(["merge", "--run", adapter_runs[family], "--out", out]) == 0
  if family == "decoder":  # 2 layers of query, key, value, out, wi and wo
    assert capsys.readouterr().out.startswith("merged 12 adapted kernels of ")
  adapted, merged = load.load(adapter_runs[family]), load.load(out)
  assert not lora.enabled(merged.config) and merged.config.init_from == adapted.config.init_from
  assert not any("lora_" in k for k in _leaves(merged.params))
  batch = jax.tree.map(lambda x: np.ones((8, *x.shape[1:]), x.dtype) * 3,
                       adapted.loss.init_batch(24, 8))
  args, kwargs = adapted.loss.model_inputs(batch)
  logits = {}
  for name, run in (("adapted", adapted), ("merged", merged)):
    with run.context():
      logits[name] = np.asarray(run.model.apply({"params": run.params}, *args, **kwargs))
  np.testing.assert_allclose(logits["merged"], logits["adapted"], rtol=1e-5, atol=1e-5)
  if RUNS[family] == "seq2seq":  # the API generates alike from both (KV-cache decoding)
    prompts = ["ba ko mi 7", "tu ze lo"]
    assert (LanguageModel.from_pretrained(adapter_runs[family]).generate(prompts, max_new_tokens=6)
            == LanguageModel.from_pretrained(out).generate(prompts, max_new_tokens=6))

  # What the adapter checkpoint holds: the trained parameters and their two Adam moments (and
  # the step counts), under half the bytes of the whole model, which the merged run holds.
  saved, opt_state = _saved_params(adapter_runs[family])
  trained_bytes = sum(x.nbytes for x in jax.tree.leaves(saved))
  saved_bytes = trained_bytes + sum(np.asarray(x).nbytes for x in jax.tree.leaves(opt_state))
  model_bytes = sum(x.nbytes for x in jax.tree.leaves(_saved_params(out)[0]))
  assert model_bytes == sum(v.nbytes for v in _leaves(merged.params).values())
  assert 3 * trained_bytes <= saved_bytes <= 3 * trained_bytes + 64
  assert saved_bytes < model_bytes / 2, (saved_bytes, model_bytes)


@pytest.mark.parametrize("family", list(RUNS))
def test_flops_count_no_weight_gradient_of_the_base(family, adapter_runs):
  """MFU's FLOPs under LoRA: full fine-tuning's less one matmul per base weight (its gradient,
  not computed), the LM head's included (frozen with the base); a new head's is computed."""
  loaded = load.load(adapter_runs[family])
  config, model, length = loaded.config, loaded.model, 24
  matmuls = families.get(family).matmuls(model.config, length, config.task.target_len,
                                         reads=model.reads, outputs=model.num_outputs,
                                         pooling=model.pooling)
  weights = sum(m.forward for m in matmuls[:-1] if m.trains)
  head = matmuls[-1].forward if RUNS[family] == "seq2seq" else 0.0
  assert weights > 0 and (head > 0) == (RUNS[family] == "seq2seq")
  assert finetune_lib.flops_per_token(config, model, length) * length == pytest.approx(
      families.step_flops(matmuls) - weights - head)


def test_merge_of_a_plain_run_is_an_error(pretrained, task_files, tmp_path, capsys):
  assert lora_cli.main(["merge", "--run", pretrained["decoder"], "--out",
                        str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err.strip()
  assert "is not an adapter run" in err and len(err.splitlines()) == 1


def test_an_adapter_run_is_saved_by_merging(adapter_runs, tmp_path):
  """Quantizing, pruning or save_pretrained of an adapter run would write its base as adapters:
  the message says to merge first."""
  with pytest.raises(ConfigError, match="merge them into a plain run first"):
    LanguageModel.from_pretrained(adapter_runs["encoder"]).save_pretrained(str(tmp_path / "x"))
  with pytest.raises(ConfigError, match="is an adapter run.*merge them first"):
    convert.export_hf(adapter_runs["decoder"], str(tmp_path / "hf"))


def _qlora_run(quantize, pretrained, task_files, workdir):
  finetune_lib.finetune(_adapter_config(
      "decoder", pretrained, task_files, finetune__lora__quantize=quantize, train__steps=12,
      train__eval_every=12, train__checkpoint_every=12, optimizer__learning_rate=3e-2,
      finetune__lora__modules="all"), workdir)
  return workdir


@pytest.fixture(scope="module")
def float_lora_run(pretrained, task_files, tmp_path_factory):
  """The QLoRA test's run over the float base."""
  return _qlora_run("", pretrained, task_files, str(tmp_path_factory.mktemp("float_lora")))


@pytest.mark.parametrize("scheme", ["int8_weight", "int4_weight"])
def test_qlora_trains_over_a_quantized_base_in_less_memory(scheme, float_lora_run, pretrained,
                                                           task_files, tmp_path):
  """The loss falls; the compiled step's arguments (state and frozen base) are smaller than
  over the float base; the merged run equals the QLoRA run (its base dequantized)."""
  runs = {"": float_lora_run,
          scheme: _qlora_run(scheme, pretrained, task_files, str(tmp_path / scheme))}
  drop = {}
  for quantize, workdir in runs.items():
    losses = [row["loss"] for _, row in sorted(read_metrics(workdir).items())]
    drop[quantize] = np.mean(losses[:3]) - np.mean(losses[-3:])
  # As much as over the float base, give or take a quarter.
  assert drop[""] > 0.2 and abs(drop[scheme] - drop[""]) < 0.25 * drop[""], drop
  memory = {q: read_metrics(w, "setup")[0]["argument_bytes"] for q, w in runs.items()}
  assert memory[scheme] < memory[""], memory
  loaded = load.load(runs[scheme])
  assert any(quantization.is_quantized(x) for x in jax.tree.leaves(
      loaded.params, is_leaf=quantization.is_quantized))
  merged = load.load(lora_merge.merge(runs[scheme], str(tmp_path / "merged"))["out"])
  batch = jax.tree.map(lambda x: np.ones((8, *x.shape[1:]), x.dtype) * 5,
                       loaded.loss.init_batch(24, 8))
  args, kwargs = loaded.loss.model_inputs(batch)
  with loaded.context():
    expected = np.asarray(loaded.model.apply({"params": loaded.params}, *args, **kwargs))
  with merged.context():
    got = np.asarray(merged.model.apply({"params": merged.params}, *args, **kwargs))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_resume_is_exact(adapter_runs, pretrained, task_files, tmp_path):
  """Interrupted after 2 steps and resumed, an adapter run logs the losses and evaluations of
  the unbroken one (the fixture's) and saves the same adapters."""
  unbroken, resumed = adapter_runs["encoder"], str(tmp_path / "resumed")
  for steps in (2, 4):
    finetune_lib.finetune(_adapter_config("encoder", pretrained, task_files, train__steps=steps,
                                          finetune__lora__modules="all",
                                          finetune__lora__dropout=0.1), resumed)
  a, b = read_metrics(unbroken), read_metrics(resumed)
  assert [a[s]["loss"] for s in range(1, 5)] == [b[s]["loss"] for s in range(1, 5)]
  assert read_metrics(unbroken, "eval")[4]["loss"] == read_metrics(resumed, "eval")[4]["loss"]
  for key, value in _leaves(_saved_params(unbroken)[0]).items():
    np.testing.assert_array_equal(_leaves(_saved_params(resumed)[0])[key], value, err_msg=key)


def test_fold_equals_the_adapter_layer():
  """fold(W, A, B, s) is the kernel x W + s (x A) B applies, for a scanned kernel with
  multi-dimensional sides."""
  rng = np.random.default_rng(0)
  kernel, a, b = (rng.normal(size=s).astype(np.float32) for s in
                  ((2, 4, 8, 16), (2, 4, 8, 3), (2, 3, 16)))
  x = rng.normal(size=(5, 4, 8)).astype(np.float32)
  folded = np.asarray(lora_model.fold(kernel, a, b, 0.5))
  for layer in range(2):
    expected = (np.einsum("tnh,nhd->td", x, kernel[layer])
                + 0.5 * np.einsum("tnh,nhr,rd->td", x, a[layer], b[layer]))
    np.testing.assert_allclose(np.einsum("tnh,nhd->td", x, folded[layer]), expected, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("overrides,message", [
    (dict(finetune__lora__rank=-1), "finetune.lora.rank must be >= 0"),
    (dict(finetune__mode="frozen"), "use it with finetune.mode=full"),
    (dict(finetune__lora__quantize="int3"), "finetune.lora.quantize must be"),
    (dict(finetune__lora__rank=0, finetune__lora__quantize="int8_weight"), "set finetune.lora.rank"),
    (dict(finetune__lora__modules="mlp/(wi"), "is not a regex"),
    (dict(finetune__lora__modules="mlp/fc"),
     "matches no dense layer of this model; use attention, all or a regex over the layers' "
     "paths (backbone/layers/attention/key, backbone/layers/attention/out"),
])
def test_mistakes_are_one_line_errors(overrides, message, pretrained, task_files, tmp_path):
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")) as e:
    finetune_lib.finetune(_adapter_config("encoder", pretrained, task_files, **overrides),
                          str(tmp_path))
  assert "\n" not in str(e.value)
