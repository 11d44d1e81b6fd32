"""The corpus preparation end to end (python -m roots_jax.prep): a raw corpus with planted
duplicates, personal data, junk and an evaluation passage becomes per-language shards with a
manifest and a report; a killed prep resumes to the same output; training reads it."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import raw_corpus
from roots_jax import config as config_lib
from roots_jax import prep as prep_command
from roots_jax.errors import ConfigError
from roots_jax.runs import prep, prep_steps

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  root = tmp_path_factory.mktemp("raw")
  docs = raw_corpus.write(root / "raw.jsonl")
  raw_corpus.reference(root / "reference.txt")
  (root / "eval.jsonl").write_text(json.dumps({"text": raw_corpus.EVAL_PASSAGE}) + "\n")
  return root, docs


def overrides(root) -> list[str]:
  return [f"input.files={root / 'raw.jsonl'}", f"ngram.reference_files={root / 'reference.txt'}",
          "ngram.vocab_size=400", "ngram.order=3", "ngram.eval_fraction=0.0",
          f"decontaminate.eval_files={root / 'eval.jsonl'}", "dedup.line_min_docs=5",
          "executor.tasks=3", "executor.workers=1"]


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
  root, docs = raw
  workdir = tmp_path_factory.mktemp("prep") / "prep"
  config = config_lib.load_config("prep/roots", overrides(root))
  forks = []  # os.fork calls in this (multi-threaded) process during the prep
  fork = os.fork
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(os, "fork", lambda: forks.append(1) or fork())
    report = prep.prepare(config, str(workdir))
  return workdir, docs, report, forks


def shards(workdir) -> dict[str, list[dict]]:
  with open(workdir / "manifest.json") as f:
    manifest = json.load(f)
  out = {}
  for shard in manifest["shards"]:
    with open(workdir / shard["path"]) as f:
      out[shard["path"]] = [json.loads(line) for line in f]
  return out


def outcome(workdir, docs) -> dict[str, str]:
  """The kind of each raw document -> "kept" or why it was removed (from the report's samples
  and the duplicate pairs)."""
  with open(workdir / "report.json") as f:
    report = json.load(f)
  why = {}
  for step in report["steps"]:
    for reason, samples in step["samples"].items():
      for sample in samples:
        why[sample["id"]] = reason
  kept = {d["id"] for docs_ in shards(workdir).values() for d in docs_}
  result = {}
  for index, doc in enumerate(docs):
    key = f"raw.jsonl:{index}"
    result.setdefault(doc["kind"], []).append("kept" if key in kept else why.get(key, "?"))
  return result


def test_planted_documents_meet_their_steps(prepared):
  workdir, docs, _, _ = prepared
  kinds = outcome(workdir, docs)
  assert set(kinds["clean_en"]) == set(kinds["clean_fr"]) == set(kinds["clean_de"]) == {"kept"}
  # Of a pair, the first document (by task, then position) stays.
  assert sorted(kinds["exact_original"] + kinds["exact_duplicate"]) == ["exact_duplicate", "kept"]
  assert sorted(kinds["near_original"] + kinds["near_duplicate"]) == ["kept", "near_duplicate"]
  assert kinds["contaminated"] == ["contaminated"]
  assert kinds["repetition"] == ["character_repetition"]
  assert kinds["symbols"] == ["special_characters"]
  assert kinds["personal_data"] == ["kept"]
  texts = [d["text"] for docs_ in shards(workdir).values() for d in docs_]
  personal = [t for t in texts if "PI:EMAIL" in t]
  assert len(personal) == 1 and "PI:IP_ADDRESS" in personal[0]
  assert not any(raw_corpus.EMAIL in t or raw_corpus.IP in t for t in texts)
  # The footer stays in the first document that has it only.
  assert sum(raw_corpus.BOILERPLATE in t for t in texts) == 1
  with open(workdir / "dedup" / "duplicates.jsonl") as f:
    pairs = [json.loads(line) for line in f]
  assert sorted(p["kind"] for p in pairs) == ["exact", "near"]


def test_manifest_counts_what_the_shards_hold(prepared):
  workdir, _, _, _ = prepared
  with open(workdir / "manifest.json") as f:
    manifest = json.load(f)
  from roots_jax.data import load_tokenizer  # pylint: disable=g-import-not-at-top
  tokenizer = load_tokenizer(manifest["tokenizer"])
  held = shards(workdir)
  assert set(manifest["languages"]) == {"en", "fr", "de"}
  for shard in manifest["shards"]:
    docs = held[shard["path"]]
    assert shard["path"] == f"data/{shard['language']}/{shard['path'][-11:]}"
    assert {d["language"] for d in docs} == {shard["language"]}
    assert shard["documents"] == len(docs)
    assert shard["bytes"] == sum(len(d["text"].encode()) for d in docs)
    assert shard["tokens"] == sum(len(tokenizer.encode(d["text"])) for d in docs)
  assert manifest["documents"] == sum(map(len, held.values())) == 36 + 1
  assert manifest["tokens"] == sum(s["tokens"] for s in manifest["shards"])


def test_the_prep_forks_nothing_from_its_caller(prepared):
  """A child forked from a process whose other threads (XLA's) may hold malloc's lock can die
  on its first free(); the stages' processes come from the forkserver."""
  *_, forks = prepared
  assert not forks


def test_report_accounts_for_every_document(prepared):
  workdir, docs, report, _ = prepared
  assert report["summary"]["total"]["docs_in"] == len(docs)
  assert report["summary"]["total"]["docs_out"] == 37
  steps = [s["step"] for s in report["steps"]]
  assert steps == ["normalize", "language", "quality", "redact", "decontaminate", "exact_dedup",
                   "near_dedup", "lines", "output"]
  for before, after in zip(report["steps"], report["steps"][1:]):
    assert before["totals"]["docs_out"] == after["totals"]["docs_in"]
  quality = report["steps"][2]
  assert quality["thresholds"]["word_repetition"]["en"] == [None, 0.19]
  assert {"perplexity", "stopwords", "word_repetition"} <= set(quality["signals"])
  page = (workdir / "report.html").read_text()
  assert "word_repetition" in page and "buy now buy now" in page
  plots = os.listdir(workdir / "plots")
  assert "quality_perplexity.png" in plots and "language_language_score.png" in plots
  assert report["duplicates"]["exact"]["removed"] == 1
  assert set(report["stages"]) >= {"filter", "output", "references"}


def _outputs(workdir) -> dict:
  """What a prep wrote that must not depend on how it ran: the shards, the manifest's counts,
  the duplicate pairs and the report's numbers."""
  with open(workdir / "manifest.json") as f:
    manifest = json.load(f)
  with open(workdir / "report.json") as f:
    report = json.load(f)
  with open(workdir / "dedup" / "duplicates.jsonl") as f:
    pairs = f.read()
  return {"shards": shards(workdir), "pairs": pairs,
          "manifest": {k: manifest[k] for k in ("documents", "bytes", "tokens", "languages",
                                                 "shards")},
          "steps": [(s["step"], s["languages"], s["counts"]) for s in report["steps"]]}


def test_a_killed_prep_resumes_to_the_same_output(raw, prepared, tmp_path):
  root, _ = raw
  workdir = tmp_path / "prep"
  command = [sys.executable, "-m", "roots_jax.prep", "--workdir", str(workdir)] + [
      f"--config.{o}" for o in overrides(root)]
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
  first = workdir / "logs" / "filter" / "completions" / "00000"
  deadline = time.monotonic() + 300
  while not first.exists() and process.poll() is None and time.monotonic() < deadline:
    time.sleep(0.02)
  os.killpg(process.pid, signal.SIGKILL)
  process.wait()
  assert first.exists() and not (workdir / "manifest.json").exists()
  filter_done = len(os.listdir(workdir / "logs" / "filter" / "completions"))
  assert filter_done < 3  # killed mid-stage
  assert prep_command.main(["--workdir", str(workdir)] + [f"--config.{o}" for o in overrides(
      root)]) == 0
  assert _outputs(workdir) == _outputs(prepared[0])


def test_training_reads_the_prepared_corpus(prepared, tmp_path):
  from roots_jax.runs.pretrain import train  # pylint: disable=g-import-not-at-top
  from tiny_gpt import read_metrics  # pylint: disable=g-import-not-at-top
  workdir, _, _, _ = prepared
  with open(workdir / "manifest.json") as f:
    tokenizer = json.load(f)["tokenizer"]
  config = config_lib.load_config("configs/gpt2.py:tiny", [
      "data.source=prepared", f"data.prepared_dir={workdir}", "data.prepared_languages=en,fr",
      "data.eval_fraction=0.1", f"tokenizer.path={tokenizer}", "model.vocab_size=400",
      "model.num_layers=1", "model.embed_dim=32", "model.num_heads=2", "model.mlp_dim=64",
      "model.max_len=32", "data.seq_len=32", "train.batch_size=8", "train.steps=2",
      "train.log_every=1", "train.eval_every=2", "train.eval_batches=1",
      "train.checkpoint_every=1000"])
  result = train(config, str(tmp_path / "run"))
  assert len(read_metrics(tmp_path / "run")) == 2 and result["perplexity"] > 1


def test_user_mistakes_are_one_line_errors(raw, prepared, tmp_path, capsys):
  root, _ = raw
  missing = ["--workdir", str(tmp_path / "p"), "--config.input.files=/no/such/*.jsonl"]
  assert prep_command.main(missing) == 2
  assert capsys.readouterr().err.strip().startswith(
      "error: data file pattern '/no/such/*.jsonl' in input.files matches no file")
  config = config_lib.load_config("prep/roots", overrides(root) + ["dedup.ngram_size=4"])
  with pytest.raises(ConfigError, match=r"was prepared with another config \(dedup.ngram_size"):
    prep.prepare(config, str(prepared[0]))


def test_cluster_stages_chain_slurm_jobs(raw, tmp_path):
  root, _ = raw
  config = config_lib.load_config("prep/roots", overrides(root) + [
      "executor.kind=slurm", "executor.partition=cpu", "executor.time=02:00:00",
      "executor.sbatch_args=account=lm,constraint=amd", "executor.env_command=source venv/bin/activate"])
  layout = prep_steps.Layout(str(tmp_path / "prep"))
  prep.check_config(config, layout)
  plan = prep.stages(config, layout.root)
  executors = prep.cluster_executors(config.executor, plan, layout)
  assert [e.world_size for e in executors] == [tasks for _, _, tasks in plan] == [
      1, 3, 3, 14, 1, 1, 3, 1]
  assert executors[0].depends is None
  assert all(e.depends is before for before, e in zip(executors, executors[1:]))
  last = executors[-1]
  assert (last.partition, last.time, last.job_name) == ("cpu", "02:00:00", "prep_finalize")
  sbatch = last.get_sbatch_args()
  assert (sbatch["account"], sbatch["constraint"], sbatch["partition"]) == ("lm", "amd", "cpu")
  assert last.env_command == "source venv/bin/activate"
  assert last.logging_dir.path == layout.logs("finalize")
  if shutil.which("sbatch") is None:
    with pytest.raises(ConfigError, match="sbatch, which this machine lacks"):
      prep.prepare(config, layout.root)
