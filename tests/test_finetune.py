"""The fine-tune and evaluate drivers end to end: every head on every family it fits, frozen and
full fine-tuning, loading from a pretraining run (also into another mesh), and the errors a
mismatched checkpoint gives."""

import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import linen as nn

from roots_jax import evaluate as evaluate_cli
from roots_jax import finetune as finetune_cli
from roots_jax import objectives
from roots_jax.data import load_tokenizer
from roots_jax.errors import ConfigError
from roots_jax.runs import finetune as finetune_lib
from roots_jax.runs import convert, evaluation, workdir as workdir_lib
from roots_jax.runs.evaluation import evaluate_run
from roots_jax.training import partitioning
from tiny_gpt import read_metrics, tiny_finetune_config as _config

# Each family's sequence and token features, regression once (it reads what classification
# reads), seq2seq on both families that generate.
KINDS = {
    "decoder": ("classification", "token_classification", "seq2seq"),
    "encoder": ("classification", "regression", "token_classification"),
    "encoder_decoder": ("classification", "token_classification", "seq2seq"),
}


def _params(workdir, subdir="checkpoints"):
  """The params tree of the newest checkpoint in workdir/subdir, as numpy."""
  manager = ocp.CheckpointManager(os.path.join(workdir, subdir), item_names=("state",))
  restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore()))
  return jax.tree.map(np.asarray, restored.state["params"])


EXPECTED = {
    "classification": ("accuracy", "macro_f1", "mcc", "loss"),
    "regression": ("pearson", "spearman", "mse", "loss"),
    "token_classification": ("accuracy", "macro_f1", "loss"),
    "seq2seq": ("perplexity", "exact_match", "bleu", "rouge1", "rouge2", "rougeL", "loss"),
}


@pytest.mark.parametrize("family,kind", [(f, k) for f, kinds in KINDS.items() for k in kinds])
def test_every_head_trains_and_evaluates(family, kind, pretrained, task_files, tmp_path):
  """Training logs every step and scores the validation split with the task's metrics (seq2seq:
  from greedy generations too)."""
  workdir = str(tmp_path)
  metric = {"classification": "accuracy", "regression": "pearson",
            "token_classification": "macro_f1", "seq2seq": "rougeL"}[kind]
  finetune_lib.finetune(_config(kind, pretrained[family], task_files, finetune__metric=metric),
                        workdir)
  train_rows = read_metrics(workdir)
  assert sorted(train_rows) == [1, 2, 3, 4]
  assert all(np.isfinite(row["loss"]) for row in train_rows.values())
  evaluations = read_metrics(workdir, "eval")
  assert sorted(evaluations) == [2, 4]
  for name in EXPECTED[kind]:
    assert name in evaluations[4], name
  # Every validation example (12), padding rows left out, and more than one token each.
  assert evaluations[4]["examples"] == 12 and evaluations[4]["tokens"] > 12
  if kind in ("classification", "token_classification"):
    with open(os.path.join(workdir, "labels.json")) as f:
      names = json.load(f)["names"]
    assert names == (["digits", "none"] if kind == "classification" else ["NUM", "O"])


@pytest.mark.parametrize("family,kind", [("encoder", "classification"),
                                         ("decoder", "seq2seq")])
def test_evaluate_writes_results(family, kind, pretrained, task_files, tmp_path):
  """The evaluate driver scores the best checkpoint on the test split into results.json; with
  another config's sections (the test file as validation) it scores the same."""
  workdir = str(tmp_path)
  finetune_lib.finetune(_config(kind, pretrained[family], task_files), workdir)
  results = evaluate_run(workdir, split="test")
  with open(os.path.join(workdir, "results.json")) as f:
    written = json.load(f)
  assert written["metrics"] == pytest.approx(results["metrics"], nan_ok=True)
  test_examples = [json.loads(line) for line in open(task_files[kind][2])]
  assert results["metrics"]["examples"] == len(test_examples) == 10
  if kind == "classification":
    per_class = written["per_class"]
    assert list(per_class) == ["digits", "none"]
    assert sum(c["support"] for c in per_class.values()) == 10
    assert per_class["digits"]["support"] == sum(e["label"] == "digits" for e in test_examples)
    assert "per class" in evaluation.format_table(results)
  else:
    assert [(s["input"], s["reference"]) for s in written["samples"]] == [
        (e["text"], e["label"]) for e in test_examples[:5]]
    assert all(isinstance(s["prediction"], str) for s in written["samples"])
  assert results["split"] == "test" and results["checkpoint_step"] in (2, 4)
  assert set(EXPECTED[kind]) <= set(results["metrics"])
  train_file, _, test_file = task_files[kind]
  spec = "configs/finetune/summary.py" if kind == "seq2seq" else "configs/finetune/package.py"
  other = evaluate_run(
      workdir, ["task.source=files", f"task.kind={kind}", f"task.train_files={train_file}",
                f"task.validation_files={test_file}", "task.target_len=8"], config_spec=spec)
  assert other["metrics"] == pytest.approx(results["metrics"], rel=1e-5)
  # Hugging Face has no classification head here, and ties GPT-2's LM head to its embeddings,
  # which this fine-tune trained apart (a merged LoRA run exports: tests/test_chat.py).
  with pytest.raises(ConfigError, match="trained an LM head apart" if kind == "seq2seq" else
                     "is fine-tuned for classification, whose head has no Hugging Face form"):
    convert.export_hf(workdir, str(tmp_path / "hf"))
  assert not os.path.exists(tmp_path / "hf")


def test_frozen_backbone_trains_only_the_head(pretrained, task_files, tmp_path):
  """The backbone stays bit-identical to the pretrained checkpoint, the optimizer holds state
  for the head alone, and the step computes no backbone gradients (far fewer FLOPs)."""
  config = _config("classification", pretrained["encoder"], task_files, finetune__mode="frozen")
  finetune_lib.finetune(config, str(tmp_path))
  before, after = _params(pretrained["encoder"]), _params(str(tmp_path))
  for path, leaf in jax.tree_util.tree_leaves_with_path(after["backbone"]):
    original = before
    for key in path:
      original = original[key.key]
    np.testing.assert_array_equal(leaf, original, err_msg=jax.tree_util.keystr(path))
  head_leaves = jax.tree.leaves(after["head"])
  assert head_leaves and all(np.abs(x).sum() > 0 for x in head_leaves)

  flops = {}
  for mode in ("full", "frozen"):
    config = _config("classification", pretrained["encoder"], task_files, finetune__mode=mode)
    pretrained_run = workdir_lib.resolve_init_from(config.init_from)
    workdir_lib.merge_model(config, pretrained_run)
    mesh = partitioning.make_mesh(config)
    with jax.set_mesh(mesh), nn.logical_axis_rules(partitioning.logical_rules(config)):
      tokenizer = load_tokenizer(pretrained_run.tokenizer_path)
      parts = finetune_lib.setup(config, str(tmp_path), mesh, tokenizer).parts
      batch = jax.tree.map(lambda x: np.zeros((8, *x.shape[1:]), x.dtype),
                           parts.loss.init_batch(24, 8))
      compiled = parts.train_step.lower(parts.abstract_state, batch).compile()
      flops[mode] = compiled.cost_analysis()["flops"]
      trained_leaves = jax.tree.leaves(parts.abstract_state.opt_state)
      if mode == "frozen":  # Adam's moments and count: the head's kernel and bias, twice
        assert sum(x.size for x in trained_leaves) < 3 * sum(
            x.size for x in jax.tree.leaves(parts.abstract_state.params["head"])) + 8
  assert flops["frozen"] < 0.5 * flops["full"], flops


def test_top_layers_train_with_a_frozen_backbone(pretrained, task_files, tmp_path):
  config = _config("classification", pretrained["decoder"], task_files, finetune__mode="frozen",
                   finetune__trainable_layers=1)
  finetune_lib.finetune(config, str(tmp_path))
  before, after = _params(pretrained["decoder"]), _params(str(tmp_path))
  layers_before, layers_after = before["layers"], after["backbone"]["layers"]
  for name in ("kernel",):
    kernel_before = layers_before["mlp"]["wi"][name]
    kernel_after = layers_after["mlp"]["wi"][name]
    np.testing.assert_array_equal(kernel_after[0], kernel_before[0])   # layer 1 of 2: frozen
    assert np.abs(kernel_after[1] - kernel_before[1]).max() > 0        # the top layer trains
  np.testing.assert_array_equal(after["backbone"]["token_embed"]["embedding"],
                                before["token_embed"]["embedding"])
  assert np.abs(after["backbone"]["final_norm"]["scale"] - before["final_norm"]["scale"]).max() > 0


def test_from_a_different_mesh_gives_the_same_losses(pretrained, task_files, tmp_path):
  """The pretraining run used 8 data-parallel devices; fine-tuning on (2,2,2) fsdp_tp restores
  its parameters into the new shardings and trains identically."""
  losses = []
  for shape, parallelism in (("8,1,1", "dp"), ("2,2,2", "fsdp_tp")):
    workdir = str(tmp_path / parallelism)
    finetune_lib.finetune(_config("classification", pretrained["encoder"], task_files,
                                  mesh__shape=shape, mesh__parallelism=parallelism,
                                  train__eval_every=100), workdir)
    losses.append([read_metrics(workdir)[s]["loss"] for s in range(1, 5)])
  np.testing.assert_allclose(losses[1], losses[0], rtol=2e-5)


def test_from_scratch_and_early_stopping(pretrained, task_files, tmp_path):
  """from_scratch re-initialises the backbone; with a zero learning rate the metric never
  improves after the first evaluation, so patience 1 stops at the second and keeps the first."""
  config = _config("classification", pretrained["encoder"], task_files, finetune__from_scratch=True,
                   finetune__patience=1, finetune__metric="loss", optimizer__learning_rate=0.0,
                   train__steps=10)
  finetune_lib.finetune(config, str(tmp_path))
  assert sorted(read_metrics(str(tmp_path), "eval")) == [2, 4]
  best = ocp.CheckpointManager(os.path.join(tmp_path, "best"), item_names=("state",))
  assert best.latest_step() == 2
  after, before = _params(str(tmp_path)), _params(pretrained["encoder"])
  assert not np.allclose(after["backbone"]["token_embed"]["embedding"],
                         before["token_embed"]["embedding"])
  # Rerunning does not train past the early stop.
  finetune_lib.finetune(config, str(tmp_path))
  assert max(read_metrics(str(tmp_path))) == 4


def test_mismatches_are_clear_errors(pretrained, task_files, tmp_path):
  bert = pretrained["encoder"]
  with pytest.raises(ConfigError, match=r"model.family is 'decoder' here but 'encoder'"):
    finetune_lib.finetune(_config("classification", bert, task_files, model__family="decoder"),
                          str(tmp_path / "a"))
  with pytest.raises(ConfigError, match=r"model.embed_dim is 32 here but 64"):
    finetune_lib.finetune(_config("classification", bert, task_files, model__embed_dim=32),
                          str(tmp_path / "b"))
  with pytest.raises(ConfigError, match="seq2seq needs a model that generates"):
    finetune_lib.finetune(_config("seq2seq", bert, task_files), str(tmp_path / "c"))
  with pytest.raises(ConfigError, match="does not exist"):
    finetune_lib.finetune(_config("classification", str(tmp_path / "none"), task_files),
                          str(tmp_path / "d"))
  # A copy of the run whose tokenizer is gone.
  copy = tmp_path / "no_tokenizer"
  shutil.copytree(bert, copy)
  shutil.rmtree(copy / "tokenizer")
  with open(copy / "config.json") as f:
    values = json.load(f)
  values["tokenizer"]["path"] = str(tmp_path / "missing.model")
  (copy / "config.json").write_text(json.dumps(values))
  with pytest.raises(ConfigError, match="has no tokenizer"):
    finetune_lib.finetune(_config("classification", str(copy), task_files), str(tmp_path / "e"))
  # A fine-tuning run is not a pretraining checkpoint.
  finetune_lib.finetune(_config("classification", bert, task_files, train__steps=1), str(tmp_path / "f"))
  with pytest.raises(ConfigError, match="is a fine-tuned model"):
    finetune_lib.finetune(_config("classification", str(tmp_path / "f"), task_files),
                          str(tmp_path / "g"))


def test_cli_errors_exit_2(pretrained, capsys, tmp_path):
  assert finetune_cli.main(["--config", "configs/finetune/package.py", "--workdir",
                            str(tmp_path)]) == 2
  assert "set init_from" in capsys.readouterr().err
  assert evaluate_cli.main(["--workdir", str(tmp_path / "nothing")]) == 2
  assert "not a roots_jax run" in capsys.readouterr().err
  assert evaluate_cli.main(["--workdir", pretrained["decoder"], "--checkpoint", "99"]) == 2
  assert "use best, latest or one of the steps" in capsys.readouterr().err


def test_evaluate_a_pretraining_run(pretrained):
  results = evaluate_run(pretrained["decoder"])
  m = results["metrics"]
  assert results["kind"] == "pretraining" and results["checkpoint_step"] == 3
  assert m["perplexity"] == pytest.approx(np.exp(m["nll"]), rel=1e-5)
  # The whole held-out split, where training's evaluation read its first train.eval_batches (2)
  # batches of 16 sequences.
  config = workdir_lib.read_config(pretrained["decoder"])
  tokenizer = load_tokenizer(workdir_lib.tokenizer_path(pretrained["decoder"], config))
  real = [b["segment_ids"] > 0 for b in objectives.dataset(config, tokenizer, "eval")]
  assert m["examples"] == sum(r.any(-1).sum() for r in real) > 2 * 16
  assert m["tokens"] == sum(r.sum() for r in real)
  during = read_metrics(pretrained["decoder"], "eval")[3]
  assert during["examples"] == 2 * 16 and during["tokens"] == sum(r.sum() for r in real[:2])
