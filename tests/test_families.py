"""BERT (MLM + NSP) and encoder-decoder (span corruption, seq2seq) runs through the same train
driver as GPT: losses fall, do not depend on the mesh, and resume exactly."""

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from roots_jax import config as config_lib
from roots_jax.runs.pretrain import train
from tiny_gpt import read_metrics, tiny_overrides

FAMILIES = {
    "bert": ("configs/bert.py:tiny", {}),
    "t5": ("configs/t5.py:tiny", {"model__head_dim": 16, "optimizer__learning_rate": 3e-2}),
    "transformer": ("configs/transformer.py:tiny,span_corruption", {}),
}


def _config(family, corpus, **extra):
  spec, overrides = FAMILIES[family]
  return config_lib.load_config(spec, tiny_overrides(corpus, **{**overrides, **extra}))


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_falls(family, corpus, tmp_path):
  train(_config(family, corpus, train__steps=30, train__eval_every=30), str(tmp_path))
  rows = read_metrics(tmp_path)
  first = np.mean([rows[s]["loss"] for s in (1, 2, 3)])
  last = np.mean([rows[s]["loss"] for s in (28, 29, 30)])
  assert last < first - 1.0, (first, last)
  evaluation = read_metrics(tmp_path, "eval")[30]
  if family == "bert":
    for key in ("mlm_nll", "mlm_accuracy", "nsp_nll", "nsp_accuracy"):
      assert key in rows[30] and key in evaluation
    assert evaluation["perplexity"] == pytest.approx(np.exp(evaluation["mlm_nll"]), rel=1e-5)
    assert evaluation["loss"] == pytest.approx(evaluation["mlm_nll"] + evaluation["nsp_nll"], rel=1e-5)
  else:
    assert evaluation["perplexity"] == pytest.approx(np.exp(evaluation["nll"]), rel=1e-5)


# The 2017 Transformer shares T5's stack and objective: loss_falls covers it; the mesh and resume
# checks run on the two distinct pipelines.
@pytest.mark.parametrize("family", ["bert", "t5"])
def test_loss_does_not_depend_on_the_mesh(family, corpus, tmp_path):
  losses = []
  for shape, parallelism in (("8,1,1", "dp"), ("2,2,2", "fsdp_tp")):
    workdir = tmp_path / shape.replace(",", "")
    train(_config(family, corpus, train__steps=4, mesh__shape=shape, mesh__parallelism=parallelism),
          str(workdir))
    losses.append([read_metrics(workdir)[s]["loss"] for s in range(1, 5)])
  np.testing.assert_allclose(losses[1], losses[0], rtol=2e-5)


@pytest.mark.parametrize("family", ["bert", "t5"])
def test_resume_is_exact(family, corpus, tmp_path):
  extra = dict(optimizer__decay_steps=6, train__checkpoint_every=3)
  train(_config(family, corpus, train__steps=6, **extra), str(tmp_path / "unbroken"))
  train(_config(family, corpus, train__steps=3, **extra), str(tmp_path / "resumed"))
  train(_config(family, corpus, train__steps=6, **extra), str(tmp_path / "resumed"))
  unbroken, resumed = read_metrics(tmp_path / "unbroken"), read_metrics(tmp_path / "resumed")
  assert [unbroken[s]["loss"] for s in range(1, 7)] == [resumed[s]["loss"] for s in range(1, 7)]
  params = [ocp.StandardCheckpointer().restore(tmp_path / run / "checkpoints" / "6" / "state")["params"]
            for run in ("unbroken", "resumed")]
  jax.tree.map(np.testing.assert_array_equal, *params)


def test_seq2seq_pairs_train_end_to_end(corpus, tmp_path):
  """The 2017 Transformer on (input, target) JSONL pairs: the target is the input's first words."""
  pairs = tmp_path / "pairs.jsonl"
  with open(corpus / "train.jsonl") as src, open(pairs, "w") as out:
    for line in src:
      text = json.loads(line)["text"]
      out.write(json.dumps({"de": text, "en": " ".join(text.split()[:6])}) + "\n")
  config = config_lib.load_config("configs/transformer.py:tiny", tiny_overrides(
      corpus, data__objective="seq2seq", data__train_files=pairs, data__eval_files=pairs,
      data__input_field="de", data__target_field="en", data__target_len=16, train__steps=40,
      train__eval_every=40))
  train(config, str(tmp_path / "run"))
  rows = read_metrics(tmp_path / "run")
  first = np.mean([rows[s]["loss"] for s in (1, 2, 3)])
  assert np.mean([rows[s]["loss"] for s in (38, 39, 40)]) < first - 2.0
  assert read_metrics(tmp_path / "run", "eval")[40]["loss"] < first - 2.0
