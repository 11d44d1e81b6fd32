"""Metric rows to the console, `metrics.jsonl` and TensorBoard (process 0 only)."""

import json
import logging
import math
import os

log = logging.getLogger("roots_jax")


class MetricWriter:
  """Writes one row per call: {"step": .., "split": "train"|"eval"|.., <name>: float, ...}.
  Appends to the run's metrics.jsonl, first dropping a last line cut short by a kill."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self._jsonl = None
    self._tb = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      self.path = os.path.join(workdir, "metrics.jsonl")
      _drop_partial_line(self.path)
      self._jsonl = open(self.path, "a")
      from tensorboardX import SummaryWriter  # heavy import, process 0 only
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=30)

  def write(self, step: int, split: str, values: dict, echo: bool = True) -> None:
    """One row; `echo` also shows it in the log."""
    if not self.enabled:
      return
    values = {k: float(v) for k, v in values.items()}
    self._jsonl.write(json.dumps({"step": step, "split": split, **values}) + "\n")
    self._jsonl.flush()
    for name, value in values.items():
      if math.isfinite(value):
        self._tb.add_scalar(f"{split}/{name}", value, step)
    if echo:
      log.info("%s step %d  %s", split, step, "  ".join(f"{k} {_fmt(v)}" for k, v in values.items()))

  def best(self, split: str, name: str) -> tuple[int, float] | None:
    """(step, value) of the lowest finite `name` in the run's `split` rows so far."""
    if not self.enabled:
      return None
    best = None
    with open(self.path) as f:
      for line in f:
        row = json.loads(line)
        value = row.get(name)
        if row["split"] == split and value is not None and math.isfinite(value) and (
            best is None or value < best[1]):
          best = (row["step"], value)
    return best

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


def _drop_partial_line(path: str) -> None:
  """A process killed mid-write leaves a line without its newline: cut it off."""
  if not os.path.exists(path):
    return
  with open(path, "rb+") as f:
    data = f.read()
    if data and not data.endswith(b"\n"):
      f.truncate(data.rfind(b"\n") + 1)


def _fmt(v: float) -> str:
  if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
    return f"{v:.3e}"
  return f"{v:.4f}"
