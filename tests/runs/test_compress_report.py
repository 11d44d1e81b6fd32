"""The compression report (runs.compress_report, python -m roots_jax.compress report): a tiny
GPT, its int8_weight quantization and a structurally pruned copy in one table, scored on the
same batches, with the files it writes."""

import json
import os

import pytest

from tiny_gpt import tiny_overrides
from roots_jax import compress as compress_cli, config as config_lib
from roots_jax.errors import ConfigError
from roots_jax.runs import compress_report, evaluation, load, prune, quantize
from roots_jax.runs.pretrain import train

pytestmark = pytest.mark.extra("quant")

# More batches than the held-out split has: the report scores all of it, as evaluate_run does.
ALL_BATCHES = 1000


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory):
  """(original, int8_weight quantized, pruned to 2 of 4 heads and 64 of 128 MLP units)."""
  root = tmp_path_factory.mktemp("compress")
  original = str(root / "gpt")
  train(config_lib.load_config("configs/gpt2.py:tiny", tiny_overrides(corpus, train__steps=3)),
        original)
  quantize.quantize(original, str(root / "gpt-w8"), "int8_weight")
  prune.prune_run(original, str(root / "gpt-pruned"), heads=2, mlp_units=64, num_batches=1)
  return original, str(root / "gpt-w8"), str(root / "gpt-pruned")


def _parameters(run):
  loaded = load.load(run)
  return compress_report._count(loaded)[0]  # pylint: disable=protected-access


def test_report_of_a_model_and_its_compressed_variants(runs, tmp_path, capfd):
  out = tmp_path / "report"
  assert compress_cli.main(["report", *runs, "--out", str(out), "--eval_batches",
                            str(ALL_BATCHES), "--decode_tokens", "4"]) == 0
  printed = capfd.readouterr().out
  report = json.loads((out / "report.json").read_text())
  rows = report["rows"]
  assert [r["run"] for r in rows] == list(runs)
  assert [r["kind"] for r in rows] == ["pretrain", "quantized", "converted"]
  assert "quantized int8_weight of " + runs[0] in rows[1]["made"]
  assert "pruned: heads 2/4, mlp 64/128" in rows[2]["made"]
  assert [r["parameters"] for r in rows] == [_parameters(r) for r in runs]
  assert rows[2]["parameters"] < rows[0]["parameters"] == rows[1]["parameters"]
  assert all(r["disk_bytes"] > 0 for r in rows)
  assert rows[1]["disk_bytes"] < rows[0]["disk_bytes"]
  # The weights: float32, int8 kernels with their scales (and float embeddings), fewer float32.
  assert rows[0]["weight_bytes"] == 4 * rows[0]["parameters"]
  assert rows[1]["weight_bytes"] < rows[0]["weight_bytes"]
  assert rows[2]["weight_bytes"] == 4 * rows[2]["parameters"]
  assert all(r["eval_tokens_per_s"] > 0 and r["decode_tokens_per_s"] > 0 for r in rows)
  assert all(r["metric"] == "perplexity" for r in rows)
  expected = evaluation.evaluate_run(runs[0])["metrics"]["perplexity"]
  assert rows[0]["value"] == pytest.approx(expected, rel=1e-6)
  assert (out / "quality_vs_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert (out / "report.md").read_text().count("\n") == 2 + len(runs)
  assert all(os.path.basename(r) in printed for r in runs)


def test_runs_must_share_the_tokenizer(runs, corpus, tmp_path):
  other = tmp_path / "spm"
  os.makedirs(other)
  from roots_jax.tokenizer import main as tokenizer_main  # pylint: disable=g-import-not-at-top
  assert tokenizer_main(["train", "--input", str(corpus / "val.jsonl"), "--vocab_size", "512",
                         "--output", str(other / "spm.model")]) == 0
  run = str(tmp_path / "other")
  train(config_lib.load_config("configs/gpt2.py:tiny", tiny_overrides(
      corpus, train__steps=1, tokenizer__path=other / "spm.model")), run)
  with pytest.raises(ConfigError, match="another tokenizer") as e:
    compress_report.report([runs[0], run], eval_batches=1, decode_tokens=1)
  assert "\n" not in str(e.value) and run in str(e.value)


def test_missing_run_is_exit_status_2(tmp_path, capfd):
  assert compress_cli.main(["report", str(tmp_path / "nothing"), "--out",
                            str(tmp_path / "out")]) == 2
  err = capfd.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1


def test_without_matplotlib_the_table_is_written_without_the_plot(tmp_path, monkeypatch):
  monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import fails
  row = compress_report.Row(run="/r", kind="pretrain", made="", parameters=1, nonzero=None,
                            weight_bytes=1, disk_bytes=1, metric="perplexity", value=1.0,
                            eval_tokens_per_s=1.0, decode_tokens_per_s=None)
  assert not compress_report.plot([row], str(tmp_path / "p.png"))
  assert not (tmp_path / "p.png").exists()
  assert compress_report.cells(row)[-1] == "-"
