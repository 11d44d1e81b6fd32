"""The benchmarks run and print their tables."""

import os
import subprocess
import sys


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
