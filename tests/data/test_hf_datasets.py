"""data.source=hf: Hugging Face datasets saved with save_to_disk (random access) or streamed from
local data files, never from the hub; documents, resumable positions, a training run that resumes
mid-stream, and the user's mistakes."""

import json
import shutil
import sys

import numpy as np
import pytest

from roots_jax import config as config_lib
from roots_jax import objectives
from roots_jax.data import sources
from roots_jax.errors import ConfigError, DataError
from roots_jax.runs.pretrain import train
from tiny_gpt import read_metrics, tiny_overrides

needs_datasets = pytest.mark.extra("datasets")


def _records(path) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def hf_dirs(corpus, tmp_path_factory):
  """{"files": a directory of JSONL files (train in two shards), "saved": the same splits
  written by save_to_disk}, and the train and validation documents in file order."""
  import datasets  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("hf")
  train, validation = _records(corpus / "train.jsonl"), _records(corpus / "val.jsonl")
  (root / "files").mkdir()
  for name, rows in (("train-0", train[:350]), ("train-1", train[350:]),
                     ("validation", validation)):
    (root / "files" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  datasets.DatasetDict({
      "train": datasets.Dataset.from_list(train),
      "validation": datasets.Dataset.from_list(validation),
  }).save_to_disk(str(root / "saved"))
  return ({"files": str(root / "files"), "saved": str(root / "saved")},
          [r["text"] for r in train], [r["text"] for r in validation])


def _data(make_config, path, streaming):
  return make_config(source="hf", hf_path=path, hf_streaming=streaming).data


@needs_datasets
@pytest.mark.parametrize("kind, streaming", [("saved", False), ("files", True)])
def test_reads_the_splits_and_resumes_from_a_position(make_config, hf_dirs, kind, streaming):
  paths, train_docs, validation_docs = hf_dirs
  data = _data(make_config, paths[kind], streaming)
  source = sources.make_source(data, "train")
  assert source.streaming == streaming
  assert source.num_units == (2 if streaming else len(train_docs))  # shards, or records
  assert list(sources.DocumentStream(source, repeat=False, seed=None)) == train_docs
  assert list(sources.DocumentStream(sources.make_source(data, "eval"), repeat=False,
                                     seed=None)) == validation_docs

  stream = sources.DocumentStream(source, repeat=True, seed=3)
  it = iter(stream)
  for _ in range(400):  # inside the second shard of the first epoch
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  unbroken = [next(it) for _ in range(300)]  # into the next epoch
  resumed = iter(stream)
  resumed.set_state(state)
  assert [next(resumed) for _ in range(300)] == unbroken
  assert sorted(unbroken[200:] + [next(resumed) for _ in range(500)]) == sorted(train_docs)


@needs_datasets
@pytest.mark.parametrize("kind, streaming", [("saved", False), ("files", True)])
def test_pipeline_resumes_exactly(make_config, tokenizer, hf_dirs, kind, streaming):
  config = make_config(source="hf", hf_path=hf_dirs[0][kind], hf_streaming=streaming)
  it = iter(objectives.dataset(config, tokenizer, "train"))
  for _ in range(23):
    next(it)
  state = json.loads(json.dumps(it.get_state()))  # what grain's checkpoint handler stores
  unbroken = [next(it) for _ in range(10)]
  resumed = iter(objectives.dataset(config, tokenizer, "train"))
  resumed.set_state(state)
  for want, got in zip(unbroken, [next(resumed) for _ in range(10)]):
    assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want)


@needs_datasets
def test_training_resumes_mid_stream_as_an_unbroken_run(corpus, hf_dirs, tmp_path):
  overrides = lambda steps: tiny_overrides(
      corpus, data__source="hf", data__hf_path=hf_dirs[0]["files"], data__hf_streaming=True,
      data__train_files="", data__eval_files="", train__steps=steps, train__checkpoint_every=3)
  train(config_lib.load_config("configs/gpt2.py:tiny", overrides(6)), str(tmp_path / "unbroken"))
  train(config_lib.load_config("configs/gpt2.py:tiny", overrides(3)), str(tmp_path / "broken"))
  train(config_lib.load_config("configs/gpt2.py:tiny", overrides(6)), str(tmp_path / "broken"))
  assert sorted(read_metrics(tmp_path / "broken", "setup")) == [0, 3]  # resumed at step 3
  want, got = read_metrics(tmp_path / "unbroken"), read_metrics(tmp_path / "broken")
  assert [want[s]["loss"] for s in range(1, 7)] == [got[s]["loss"] for s in range(1, 7)]


@needs_datasets
def test_user_mistakes_are_one_line_data_errors(make_config, hf_dirs, tmp_path):
  paths = hf_dirs[0]
  with pytest.raises(DataError, match="has no column 'body'.*set data.text_field"):
    sources.make_source(make_config(source="hf", hf_path=paths["saved"], text_field="body").data,
                        "train")
  with pytest.raises(DataError, match="has splits train, validation; set data.train_split"):
    sources.make_source(make_config(source="hf", hf_path=paths["saved"],
                                    eval_split="test").data, "eval")
  with pytest.raises(DataError, match="cannot open Hugging Face dataset .* split 'test'"):
    sources.make_source(make_config(source="hf", hf_path=paths["files"], hf_streaming=True,
                                    eval_split="test").data, "eval")
  shutil.copytree(paths["saved"] + "/train", tmp_path / "one_split")
  with pytest.raises(DataError, match="holds one saved split; save a DatasetDict"):
    sources.make_source(make_config(source="hf", hf_path=str(tmp_path / "one_split")).data,
                        "train")


def test_without_the_datasets_package_or_a_path(make_config, monkeypatch):
  config = make_config(source="hf")
  with pytest.raises(ConfigError, match="data.source=hf needs data.hf_path"):
    config_lib.validate(config)
  monkeypatch.setitem(sys.modules, "datasets", None)  # import fails
  config.data.hf_path = "some/dataset"
  with pytest.raises(DataError, match=r"needs the datasets package: pip install "
                                      r"'roots_jax\[datasets\]'"):
    sources.make_source(config.data, "train")
