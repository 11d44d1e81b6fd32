"""Progress and what a run shows: a bar on a terminal and plain lines otherwise, the log lines'
numbers, the cache of trained tokenizers, and the metric loggers (TensorBoard, Weights &
Biases)."""

import fcntl
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest

from tiny_gpt import log_messages, tiny_overrides
from roots_jax import config as config_lib, progress
from roots_jax.errors import ConfigError
from roots_jax.runs import pretrain
from roots_jax.training import metric_writer

# A log row of training as the console shows it.
TRAIN_LINE = re.compile(r"^\d\d:\d\d:\d\d step (\d+)/12  loss \d+\.\d{4}  lr \d\.\de-\d\d  "
                        r"grad_norm [\d.e+-]+  [\d,]+ tok/s  MFU \d+\.\d\d%  ETA \d+s$")


def _train_args(corpus, workdir) -> list[str]:
  overrides = tiny_overrides(corpus, train__steps=12, train__log_every=4, train__eval_every=12)
  return [sys.executable, "-m", "roots_jax.train", "--config", "configs/gpt2.py:tiny",
          "--workdir", str(workdir), *(f"--config.{o}" for o in overrides)]


def _run_in_terminal(args: list[str], rows: int = 40, columns: int = 160) -> str:
  """What `args` writes to a pseudo-terminal of this size (its "\\r\\n" read as "\\n")."""
  master, slave = pty.openpty()
  fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
  process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave)
  os.close(slave)
  chunks = []
  while True:
    try:
      data = os.read(master, 1 << 16)
    except OSError:  # EIO: every writer has closed the terminal
      break
    if not data:
      break
    chunks.append(data)
  os.close(master)
  assert process.wait(timeout=60) == 0, b"".join(chunks).decode(errors="replace")
  return b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def test_a_terminal_shows_a_bar_with_count_rate_and_time_left(corpus, tmp_path):
  out = _run_in_terminal(_train_args(corpus, tmp_path))
  # tqdm's bar: "train:  33%|███▎      | 4/12 [00:01<00:02,  3.50step/s, loss 6.1234]".
  bars = re.findall(r"train: +\d+%\|[^|]*\| *(\d+)/12 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+"
                    r"(?:step/s|s/step)", out)
  assert bars and max(int(n) for n in bars) > 0, out
  # The bar is cleared before each log line and drawn again after it: the lines stay whole.
  lines = [line.rsplit("\r", 1)[-1] for line in out.split("\n")]
  logged = [line for line in lines if " step " in line and "/12 " in line]
  assert [TRAIN_LINE.match(line).group(1) for line in logged] == ["4", "8", "12"], logged
  assert any(re.match(r"^\d\d:\d\d:\d\d eval step 12  loss \d+\.\d{4}  ppl [\d.]+", line)
             for line in lines), out


def test_an_unsized_terminal_gets_no_bar_that_would_stay_blank():
  # tqdm draws nothing on a pseudo-terminal of 0 rows (`docker run -t`, `script` without a
  # terminal of their own): such a terminal gets the plain lines, not a silent bar.
  work = [sys.executable, "-c", "from roots_jax import cli, progress\n"
          "cli.log_to_console(); progress.LOG_INTERVAL_S = 0.0\n"
          "for _ in progress.track(range(3), 'work', delay_s=0.0): pass"]
  sized = _run_in_terminal(work)
  assert re.search(r"work: +\d+%\|[^|]*\| \d/3", sized) and "work 3/3" not in sized, sized
  unsized = _run_in_terminal(work, rows=0, columns=0)
  assert "\r" not in unsized and re.search(r"work 3/3 it \(100%\)", unsized), unsized


def test_without_a_terminal_progress_is_plain_log_lines(corpus, tmp_path):
  result = subprocess.run(_train_args(corpus, tmp_path), capture_output=True, text=True,
                          check=True)
  assert "\r" not in result.stderr
  logged = [line for line in result.stderr.splitlines() if "/12 " in line]
  assert [TRAIN_LINE.match(line).group(1) for line in logged] == ["4", "8", "12"], result.stderr


def test_tokenizer_training_says_when_it_starts_reads_and_ends(corpus, tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "roots_jax.tokenizer", "train", "--input",
       str(corpus / "train.jsonl"), "--vocab_size", "400", "--output", str(tmp_path / "m.model")],
      capture_output=True, text=True, check=True)
  lines = [line.split(" ", 1)[1] for line in result.stderr.splitlines()]
  assert lines[0] == "tokenizer: training a unigram model of 400 pieces on up to 8.0 MB of text"
  assert re.fullmatch(r"tokenizer: read 600 lines \(0\.\d MB\) in \d+\.\d s; computing the pieces",
                      lines[1]), lines
  assert re.fullmatch(r"tokenizer: trained in \d+\.\d s", lines[2]), lines


def test_plain_progress_lines_come_every_interval(monkeypatch):
  monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
  with log_messages(logging.INFO) as lines:
    assert list(progress.track(range(4), "work", unit="batch")) == [0, 1, 2, 3]
    with progress.Progress("read", unit="B", unit_scale=True) as reading:
      reading.update(2_500_000)
  assert [line.split("  ")[0] for line in lines] == [
      "work 1/4 batch (25%)", "work 2/4 batch (50%)", "work 3/4 batch (75%)",
      "work 4/4 batch (100%)", "read 2.50M B"]
  assert re.fullmatch(r"work 2/4 batch \(50%\)  [\d.,]+ batch/s  ETA \d+s", lines[1])
  assert re.fullmatch(r"read 2.50M B  [\d.]+[kMG]? B/s", lines[-1])


def test_only_process_0_shows_progress(monkeypatch):
  monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
  monkeypatch.setattr(progress, "is_main_process", lambda: False)
  with log_messages(logging.INFO) as lines:
    assert list(progress.track(range(3), "work")) == [0, 1, 2]
  assert not lines


@pytest.mark.parametrize("seconds,text", [(0.4, "0s"), (45, "45s"), (125, "2m05s"),
                                          (3720, "1h02m")])
def test_format_seconds(seconds, text):
  assert progress.format_seconds(seconds) == text


def test_log_lines_show_the_loss_first_and_the_numbers_a_person_reads():
  row = {"accuracy": 0.1, "grad_norm": 1.234, "learning_rate": 3e-4, "loss": 5.12341,
         "mfu": 0.0312, "nll": 5.1, "param_norm": 40.0, "step_time": 0.2, "tokens": 512.0,
         "tokens_per_sec": 12345.4, "z_loss": 0.0}
  assert metric_writer.console_line(10, "train", row, 300, 125.0) == (
      "step 10/300  loss 5.1234  lr 3.0e-04  grad_norm 1.23  12,345 tok/s  MFU 3.12%  ETA 2m05s")
  assert metric_writer.console_line(1, "train", {"loss": 6.0, "skipped_steps": 2.0}) == (
      "step 1  loss 6.0000  skipped 2 steps")
  distilled = dict(row, loss=3.0, kd_kl=0.5, kd_hidden=0.25)  # the terms a distillation mixes
  assert metric_writer.console_line(10, "train", distilled, 300).startswith(
      "step 10/300  loss 3.0000  nll 5.1000  kd_kl 0.5000  kd_hidden 0.2500  lr 3.0e-04")
  evaluation = {"loss": 4.33, "perplexity": 75.94, "nll": 4.33, "accuracy": 0.25, "z_loss": 0.0,
                "tokens": 51200.0, "examples": 1000.0}
  assert metric_writer.console_line(300, "eval", evaluation) == (
      "eval step 300  loss 4.3300  ppl 75.94  accuracy 0.2500  1,000 examples  51,200 tokens")


# The tokenizer cache.


def _tokenizer_config(corpus, text, **extra):
  values = dict(tokenizer__path="", model__vocab_size=400, tokenizer__train_max_bytes=200_000,
                data__train_files=text, **extra)
  return config_lib.load_config("configs/gpt2.py:tiny", tiny_overrides(corpus, **values))


def test_a_trained_tokenizer_is_cached_by_corpus_and_settings(corpus, tmp_path, monkeypatch):
  monkeypatch.setenv("ROOTS_JAX_CACHE", str(tmp_path / "cache"))
  text = tmp_path / "text.jsonl"
  text.write_bytes((corpus / "train.jsonl").read_bytes())
  trained = []
  real = pretrain.train_tokenizer

  def train_tokenizer(documents, **settings):
    trained.append(settings)
    return real(documents, **settings)

  monkeypatch.setattr(pretrain, "train_tokenizer", train_tokenizer)
  load = lambda config, run: pretrain.load_or_train_tokenizer(config, str(tmp_path / run),
                                                              process_index=0)
  with log_messages(logging.INFO) as messages:
    load(_tokenizer_config(corpus, text), "a")
    load(_tokenizer_config(corpus, text), "b")  # a new workdir: from the cache
  assert len(trained) == 1 and any(m.startswith("tokenizer: trained in ") for m in messages)
  assert any(m.startswith("tokenizer: reused cached ") for m in messages), messages
  model = lambda run: (tmp_path / run / "tokenizer" / "spm.model").read_bytes()
  assert model("a") == model("b")
  cached = list((tmp_path / "cache" / "tokenizers").glob("*/spm.model"))
  assert [p.read_bytes() for p in cached] == [model("a")]

  load(_tokenizer_config(corpus, text, tokenizer__model_type="bpe"), "c")  # another setting
  load(_tokenizer_config(corpus, text, seed=1), "d")  # another order of the text
  assert len(trained) == 3
  with open(text, "a") as f:  # the text changed
    f.write('{"text": "one more document"}\n')
  load(_tokenizer_config(corpus, text), "e")
  assert len(trained) == 4 and len(list((tmp_path / "cache" / "tokenizers").iterdir())) == 4


# Metric loggers.


def test_loggers_none_writes_metrics_jsonl_only(tmp_path):
  writer = metric_writer.MetricWriter(str(tmp_path), loggers="none")
  writer.write(1, "train", {"loss": 2.0})
  writer.close()
  assert os.listdir(tmp_path) == ["metrics.jsonl"]


def test_an_unknown_logger_is_a_config_error(corpus):
  with pytest.raises(ConfigError, match="train.loggers takes a comma-separated list of "
                                        "tensorboard, wandb, none; got 'mlflow'"):
    config_lib.validate(config_lib.load_config(
        "configs/gpt2.py:tiny", tiny_overrides(corpus, train__loggers="tensorboard,mlflow")))


def test_wandb_not_installed_is_one_line(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
  with pytest.raises(ConfigError, match=r"wandb, which is not installed: pip install wandb"):
    metric_writer.MetricWriter(str(tmp_path), loggers="wandb")
  assert not os.path.exists(tmp_path / "metrics.jsonl")


@pytest.mark.extra("wandb")
def test_wandb_offline_logs_every_field(tmp_path, monkeypatch):
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
  monkeypatch.setenv("WANDB_SILENT", "true")
  (tmp_path / "wandb_dir").mkdir()
  writer = metric_writer.MetricWriter(str(tmp_path / "run"), loggers="tensorboard,wandb",
                                      run_config={"train": {"steps": 2}})
  writer.write(1, "train", {"loss": 2.5, "mfu": 0.01})
  writer.write(2, "eval", {"loss": 2.25, "perplexity": 9.49})
  writer.close()
  runs = list((tmp_path / "wandb_dir" / "wandb").glob("offline-run-*/run-*.wandb"))
  assert len(runs) == 1
  data = runs[0].read_bytes()
  assert all(name in data for name in (b"train/loss", b"train/mfu", b"eval/perplexity"))
  assert os.listdir(tmp_path / "run" / "tensorboard")
