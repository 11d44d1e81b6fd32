"""Distillation runs: the teacher's soft targets and hidden states in the student's loss, the
teacher untouched and out of the student's checkpoints, exact resume, one teacher per run, and a
teacher that runs forward only (the compiled step's FLOPs)."""

import json
import os

import jax
import numpy as np
import pytest
from flax import linen as nn

from roots_jax import config as config_lib
from roots_jax import distill as distill_command
from roots_jax.errors import ConfigError
from roots_jax.runs import distill, evaluation, load, pretrain
from roots_jax.runs import finetune as finetune_lib
from roots_jax.training import checkpoints, partitioning, steps
from roots_jax.training.distillation import PROJECTION
from hf import hf_models
from tiny_gpt import read_metrics, tiny_finetune_args, tiny_overrides

# What tiny_overrides sets that a student takes from its teacher.
_TEACHERS = ("model.vocab_size", "tokenizer.path")


def distill_config(corpus, teacher, spec="configs/distill/gpt.py", **extra):
  """A 1-layer, 32-wide GPT student of 4 steps on the corpus fixture; `extra` adds
  `section__key=value` overrides."""
  base = [o for o in tiny_overrides(corpus)
          if o.split("=")[0] not in _TEACHERS and not o.startswith("model.")]
  values = {"teacher": teacher, "model.num_layers": 1, "model.embed_dim": 32, "model.num_heads": 2,
            "model.mlp_dim": 64, "train.steps": 4}
  values.update({k.replace("__", "."): v for k, v in extra.items()})
  return config_lib.load_config(spec, base + [f"{k}={v}" for k, v in values.items()])


def saved_params(workdir, step=None):
  """The parameters a run saved (numpy), from its checkpoint files."""
  manager = checkpoints.make_manager(str(workdir), keep=1, read_only=True)
  step = manager.latest_step() if step is None else step
  tree = checkpoints._saved_tree(manager, step)["params"]  # pylint: disable=protected-access
  abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree)
  params = checkpoints.restore_params(manager, step, abstract)
  manager.close()
  return jax.tree.map(np.asarray, params)


@pytest.fixture(scope="module")
def gpt_student(corpus, pretrained, tmp_path_factory):
  """A narrower GPT student of 4 steps with an MSE hidden loss (so a projection), and the
  teacher's saved parameters before it ran."""
  teacher = pretrained["decoder"]
  before = saved_params(teacher)
  workdir = tmp_path_factory.mktemp("student")
  config = distill_config(corpus, teacher, distill__hidden_loss="mse")
  distill.distill(config, str(workdir))
  return str(workdir), before


def test_loss_is_the_weighted_terms(gpt_student):
  workdir, _ = gpt_student
  config = config_lib.read_config(os.path.join(workdir, "config.json"))
  a, w = config.distill.alpha, config.distill.hidden_weight
  for row in read_metrics(workdir).values():
    assert {"kd_kl", "kd_hidden", "nll", "z_loss"} <= set(row)
    assert row["kd_kl"] > 0 and row["kd_hidden"] > 0
    expected = (1 - a) * (row["nll"] + row["z_loss"]) + a * row["kd_kl"] + w * row["kd_hidden"]
    np.testing.assert_allclose(row["loss"], expected, rtol=1e-5)


def test_teacher_untouched_and_absent_from_checkpoints(gpt_student, pretrained):
  workdir, before = gpt_student
  after = saved_params(pretrained["decoder"])
  jax.tree.map(np.testing.assert_array_equal, after, before)
  saved = saved_params(workdir)
  teacher_leaves = {x.shape for x in jax.tree.leaves(before)}
  student = load.load(workdir)  # the distilled run is used like a pretraining run
  assert set(saved) == set(student.params) | {PROJECTION}
  assert saved[PROJECTION]["kernel"].shape == (32, 64)  # student width -> teacher width
  assert not any(x.shape in teacher_leaves and x.ndim > 1 for x in jax.tree.leaves(
      {k: v for k, v in saved.items() if k != "token_embed"}))
  n_saved = sum(x.size for x in jax.tree.leaves(saved))
  n_student = sum(x.size for x in jax.tree.leaves(student.params))
  assert n_saved == n_student + 32 * 64


def test_resume_is_exact(corpus, pretrained, gpt_student, tmp_path):
  workdir, _ = gpt_student
  broken = str(tmp_path / "broken")
  for steps_ in (2, 4):
    config = distill_config(corpus, pretrained["decoder"], train__steps=steps_,
                            train__checkpoint_every=2, distill__hidden_loss="mse")
    distill.distill(config, broken)
  jax.tree.map(np.testing.assert_array_equal, saved_params(broken), saved_params(workdir))
  assert read_metrics(broken)[4]["loss"] == read_metrics(workdir)[4]["loss"]


def test_refuses_another_teacher(corpus, pretrained, gpt_student, tmp_path):
  other = tmp_path / "other_teacher"
  pretrain.train(config_lib.load_config("configs/gpt2.py:tiny", tiny_overrides(
      corpus, train__steps=2, seed=1)), str(other))
  config = distill_config(corpus, str(other), train__steps=6)
  with pytest.raises(ConfigError, match="was distilled from the teacher checkpoint"):
    distill.distill(config, gpt_student[0])


def test_a_converted_teacher(corpus, tmp_path):
  """A teacher converted from Hugging Face (kind "converted": parameters only) teaches."""
  teacher = hf_models.make_run_of(
      str(tmp_path / "converted"), dict(family="decoder", vocab_size=512, num_layers=2,
                                        embed_dim=64, num_heads=4, mlp_dim=128, max_len=64),
      overrides=[f"tokenizer.path={corpus / 'spm.model'}"])
  distill.distill(distill_config(corpus, teacher, train__steps=2), str(tmp_path / "student"))
  assert np.isfinite(read_metrics(tmp_path / "student")[2]["kd_kl"])
  assert load.load(str(tmp_path / "student")).config.teacher.endswith("checkpoints/0")


def test_teacher_runs_forward_only(corpus, pretrained):
  """The distillation step costs the student's step plus one forward pass of the teacher: a
  teacher differentiated too would add twice its forward pass."""
  config = distill_config(corpus, pretrained["decoder"])
  teacher = distill.resolve_teacher(config.teacher)
  distill.merge_teacher(config, teacher)
  mesh, rules = partitioning.make_mesh(config), partitioning.logical_rules(config)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    taught = distill.load_teacher(config, teacher)
    parts, student = distill.build(config, mesh, taught)
    alone = pretrain.build(config, mesh)
    batch = jax.tree.map(lambda x: np.repeat(x, 16, 0), student.init_batch)
    state = jax.eval_shape(parts.init, jax.random.key(0))
    flops = lambda f, *a: f.lower(*a).compile().cost_analysis()["flops"]
    both = flops(parts.train_step, state, batch, taught.params)
    student_only = flops(alone.train_step, jax.eval_shape(alone.init, jax.random.key(0)), batch)
    forward = flops(jax.jit(steps.make_eval_step(taught.model, taught.loss)), taught.params, batch)
  assert forward > 0.2 * student_only  # the teacher is big enough to tell
  np.testing.assert_allclose(both - student_only, forward, rtol=0.15)


def test_every_other_layer_start(corpus, pretrained, tmp_path):
  """DistilBERT's start: the student holds the teacher's embeddings and its layers 0, 2, ..."""
  config = config_lib.load_config("configs/distill/bert.py", [
      f"teacher={pretrained['encoder']}", "data.source=files",
      f"data.train_files={corpus / 'train.jsonl'}", f"data.eval_files={corpus / 'val.jsonl'}",
      "data.seq_len=32", "train.batch_size=16", "train.steps=2", "train.eval_batches=1"])
  teacher = distill.resolve_teacher(config.teacher)
  distill.merge_teacher(config, teacher)
  assert config.model.num_layers == 1  # half the teacher's 2
  mesh, rules = partitioning.make_mesh(config), partitioning.logical_rules(config)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    taught = distill.load_teacher(config, teacher)
    parts, _ = distill.build(config, mesh, taught)
    state = distill.initial_state(config, parts, taught)
  start, theirs = jax.device_get(state.params), jax.device_get(taught.params)
  jax.tree.map(np.testing.assert_array_equal, start["layers"],
               jax.tree.map(lambda x: x[:1], theirs["layers"]))
  np.testing.assert_array_equal(start["token_embed"]["embedding"],
                                theirs["token_embed"]["embedding"])
  result = distill.distill(config, str(tmp_path / "distilbert"))
  row = read_metrics(tmp_path / "distilbert")[2]
  assert {"kd_mlm_kl", "kd_nsp_kl", "kd_hidden"} <= set(row) and np.isfinite(result["loss"])


def test_t5_student_in_bfloat16_teacher(corpus, pretrained, tmp_path):
  config = config_lib.load_config("configs/distill/t5.py", [
      f"teacher={pretrained['encoder_decoder']}", "data.source=files",
      f"data.train_files={corpus / 'train.jsonl'}", f"data.eval_files={corpus / 'val.jsonl'}",
      "data.seq_len=32", "train.batch_size=16", "train.steps=2", "train.eval_batches=1",
      "model.embed_dim=32", "model.mlp_dim=64", "distill.teacher_dtype=bfloat16"])
  result = distill.distill(config, str(tmp_path / "t5"))
  row = read_metrics(tmp_path / "t5")[2]
  assert np.isfinite([row["kd_kl"], row["kd_hidden"], result["loss"]]).all()


@pytest.mark.parametrize("override, message", [
    ("data.objective=mlm_nsp", "trains another family"),
    ("model.vocab_size=300", "shares its teacher's family and vocabulary"),
    ("distill.hidden_layers=(0, 5)", "must name, for each"),
    ("distill.init_layers=0,1,2", "names 3 teacher layers"),
])
def test_what_cannot_be_distilled(corpus, pretrained, tmp_path, override, message):
  config = distill_config(corpus, pretrained["decoder"], train__steps=1)
  config_lib.apply_override(config, override)
  if "hidden_layers" in override:
    config_lib.apply_override(config, "distill.hidden_loss=cosine")
  with pytest.raises(ConfigError, match=message):
    distill.distill(config, str(tmp_path / "student"))
  assert not os.path.exists(tmp_path / "student" / "checkpoints")


def test_command(corpus, pretrained, tmp_path, capsys):
  args = ["--config", "configs/distill/gpt.py", "--workdir", str(tmp_path / "cli")] + [
      f"--config.{o}" for o in tiny_overrides(corpus, train__steps=2, model__embed_dim=32)
      if o.split("=")[0] not in _TEACHERS and o.split("=")[0] != "model.vocab_size"]
  assert distill_command.main(args + [f"--config.teacher={pretrained['decoder']}"]) == 0
  assert os.path.isfile(tmp_path / "cli" / "checkpoints" / "2" / "commit_success.txt")
  capsys.readouterr()
  assert distill_command.main(args) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "--config.teacher=RUN" in err[0]


def test_task_student_of_a_fine_tuned_teacher(corpus, pretrained, task_files, tmp_path):
  """A classifier distilled from a fine-tuned one: the teacher's labels and class distribution,
  and a student used like any fine-tuned run."""
  spec, overrides = tiny_finetune_args("classification", pretrained["decoder"], task_files)
  finetune_lib.finetune(config_lib.load_config(spec, overrides), str(tmp_path / "teacher"))
  config = config_lib.load_config("configs/distill/package.py",
                                  overrides + [f"teacher={tmp_path / 'teacher'}"])
  distill.distill(config, str(tmp_path / "student"))
  rows = read_metrics(tmp_path / "student")
  assert all(row["kd_kl"] >= 0 and np.isfinite(row["loss"]) for row in rows.values())
  labels = lambda run: json.loads((tmp_path / run / "labels.json").read_text())
  assert labels("student") == labels("teacher")
  results = evaluation.evaluate_run(str(tmp_path / "student"), split="test")
  assert results["kind"] == "classification" and 0 <= results["metrics"]["accuracy"] <= 1
  with pytest.raises(ConfigError, match="is a fine-tuned model: distil it with a task's"):
    distill.distill(distill_config(corpus, str(tmp_path / "teacher")), str(tmp_path / "x"))
