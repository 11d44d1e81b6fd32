"""The benchmarks run and print their tables (versus_torch beside transformers); the data
benchmark shares rates between workers."""

import importlib.util
import os
import subprocess
import sys

import pytest


def test_train_throughput_prints_a_table():
  result = subprocess.run(
      [sys.executable, "benchmarks/train_throughput.py", "--config", "configs/gpt2.py:tiny",
       "--steps", "2", "--config.mesh.shape=2,2,2", "--config.mesh.parallelism=fsdp_tp"],
      capture_output=True, text=True, check=True)
  rows = dict(line.strip("| ").split(" | ") for line in result.stdout.splitlines())
  rows = {k.strip(): v.strip() for k, v in rows.items()}
  assert rows["devices"] == "8" and rows["mesh"] == "2x2x2" and rows["batch x seq"] == "16x128"
  assert float(rows["tokens/s"].replace(",", "")) > 0
  assert rows["MFU"].endswith("%") and 0 < float(rows["MFU"][:-1]) < 100


def test_decode_benchmark_prints_cached_and_recomputed_rates():
  result = subprocess.run(
      [sys.executable, "benchmarks/decode.py", "--config", "configs/t5.py:tiny", "--batch", "2",
       "--prompt_len", "8", "--new_tokens", "4"],
      capture_output=True, text=True, check=True)
  header, _, row = result.stdout.splitlines()[1:4]
  assert header.startswith("| batch | KV cache tokens/s | recompute tokens/s")
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert cells[0] == "2" and float(cells[1].replace(",", "")) > 0
  assert float(cells[2].replace(",", "")) > 0 and cells[3].endswith("x")


def test_data_throughput_shares_rates_between_workers():
  path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "data_throughput.py")
  spec = importlib.util.spec_from_file_location("data_throughput", path)
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  setting = dict(objective="causal", config="configs/gpt2.py:tiny", seq_len="1024", batch=64,
                 warmup_s=1.0)
  rows = [dict(setting, workers=0, batches=10.0, slots=655_360.0, real=600_000.0),
          dict(setting, workers=2, batches=12.0, slots=786_432.0, real=700_000.0),
          dict(setting, workers=1, batches=4.0, slots=262_144.0, real=250_000.0)]
  lines = bench.table(rows)
  cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
  assert [c[-1] for c in cells] == ["655,360", "393,216", "262,144"]  # total / workers
  assert [c[-2] for c in cells] == ["92", "89", "95"]                 # real %
  # The one-worker rate decides: ceil(600,000 / 262,144) = 3.
  assert bench.verdict("causal", rows, 600_000).startswith(
      "causal: one GPU consuming 600,000 tokens/s needs 3 workers (262,144 tokens/s per worker")
  assert "needs 1 worker (" in bench.verdict("causal", rows[:1], 600_000)


@pytest.mark.extra("hf")
def test_versus_torch_prints_both_sides_and_their_ratio():
  result = subprocess.run(
      [sys.executable, "benchmarks/versus_torch.py", "--shapes", "tiny", "--rounds", "2",
       "--steps", "1", "--new_tokens", "4", "--sample_seconds", "0"],
      capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  rows = [[c.strip() for c in line.strip("|").split("|")]
          for line in result.stdout.splitlines()[2:]]
  assert [r[1] for r in rows] == ["train step", "eval forward", "decode, batch 1",
                                  "decode, batch 8"], result.stdout
  for _, _, ours, theirs, ratio, _ in rows:
    ours, theirs = float(ours.replace(",", "")), float(theirs.replace(",", ""))
    # The table rounds the rates to whole tokens/s and the ratio (of the unrounded) to 0.01.
    assert ours > 0 and theirs > 0
    assert float(ratio[:-1]) == pytest.approx(ours / theirs, rel=0.01, abs=0.01)


def test_gpu_driver_sizes_runs_and_records_its_rows_on_a_cpu(tmp_path):
  subprocess.run(
      [sys.executable, "benchmarks/gpu.py", "--smoke", "--models", "gpt2-tiny", "--remat", "none",
       "--commit", "abc1234"],
      env={**os.environ, "OUT": str(tmp_path)}, capture_output=True, text=True, check=True)
  table = (tmp_path / "gpu_results.md").read_text()
  assert "commit abc1234" in table
  assert "| gpt2-tiny | cudnn | none | - |" in table and "skipped: cudnn attention needs" in table
  row = next(line for line in table.splitlines() if line.startswith("| gpt2-tiny | xla | none |"))
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert cells[4] == "8x128" and cells[10].startswith("fits ")  # the cap: 1024 tokens
  assert float(cells[5].replace(",", "")) > 0 and cells[6].endswith("%")
  decoded = [line for line in table.splitlines() if line.startswith("| gpt2-tiny | ")][-2:]
  assert [line.split(" | ")[1] for line in decoded] == ["1", "2"]


def test_prep_benchmark_prints_every_step(tmp_path):
  import raw_corpus  # pylint: disable=g-import-not-at-top
  raw_corpus.write(tmp_path / "raw.jsonl")
  raw_corpus.reference(tmp_path / "reference.txt")
  result = subprocess.run(
      [sys.executable, "benchmarks/prep.py", "--pipeline_workers", "1", "--documents", "10",
       f"--config.input.files={tmp_path / 'raw.jsonl'}",
       f"--config.ngram.reference_files={tmp_path / 'reference.txt'}",
       "--config.ngram.vocab_size=400", "--config.ngram.order=3"],
      capture_output=True, text=True, check=True)
  lines = result.stdout.splitlines()
  assert lines[0].startswith("| step | documents | MB | seconds | documents/s per core")
  rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in lines[2:]}
  assert list(rows) == ["whole pipeline, 1 worker", "normalize", "language",
                        "quality (no perplexity)", "quality: perplexity", "redact",
                        "decontaminate", "dedup signatures"]
  assert rows["whole pipeline, 1 worker"][0].strip() == "42"
  assert all(cells[0].strip() == "10" and float(cells[3].replace(",", "")) > 0
             for name, cells in rows.items() if name != "whole pipeline, 1 worker")


@pytest.mark.extra("quant")
def test_lora_benchmark_prints_full_lora_and_qlora(pretrained, task_files):
  """LoRA trains a small share of the parameters and keeps a small state; QLoRA's base is a
  smaller step argument than LoRA's float one."""
  train_file, _, _ = task_files["seq2seq"]
  result = subprocess.run(
      [sys.executable, "benchmarks/lora.py", "--config", "finetune/summary", "--init_from",
       pretrained["decoder"], "--steps", "1", "--rank", "4", "--config.task.source=files",
       f"--config.task.train_files={train_file}", "--config.task.max_len=16",
       "--config.task.target_len=8", "--config.train.batch_size=8"],
      capture_output=True, text=True, check=True)
  lines = result.stdout.splitlines()
  assert lines[0] == ("| variant | trained params | state MiB | arguments MiB | peak MiB | "
                      "step ms |")
  rows = {line.split("|")[1].strip(): [float(c.replace(",", "")) for c in line.split("|")[2:-1]]
          for line in lines[2:]}
  assert list(rows) == ["full", "LoRA", "QLoRA int8", "QLoRA int4"]
  full, lora, int8, int4 = rows.values()
  assert lora[0] == int8[0] == int4[0] < full[0] / 10 and lora[1] < full[1] / 5
  assert int4[2] <= int8[2] < lora[2] and all(row[4] > 0 for row in rows.values())
