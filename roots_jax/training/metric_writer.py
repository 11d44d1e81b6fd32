"""Metric rows to the console (the few numbers a person reads), `metrics.jsonl` and the
configured loggers, TensorBoard and Weights & Biases (every field; process 0 only)."""

import json
import logging
import math
import os

from roots_jax.errors import ConfigError
from roots_jax.progress import format_seconds
from roots_jax.training import profiling

log = logging.getLogger("roots_jax")

# The values of train.loggers (a comma-separated list).
LOGGERS = ("tensorboard", "wandb", "none")


def parse_loggers(value: str) -> list[str]:
  """train.loggers -> the logger names, checked."""
  names = [n.strip() for n in value.split(",") if n.strip()]
  for name in names:
    if name not in LOGGERS:
      raise ConfigError(f"train.loggers takes a comma-separated list of {', '.join(LOGGERS)}; "
                        f"got {name!r}")
  return [n for n in names if n != "none"]


class MetricWriter:
  """Writes one row per call: {"step": .., "split": "train"|"eval"|.., <name>: float, ...}.
  Appends to the run's metrics.jsonl, first dropping a last line cut short by a kill, and
  sends the row to `loggers` (train.loggers); `run_config` is what Weights & Biases records."""

  def __init__(self, workdir: str, enabled: bool = True, loggers: str = "tensorboard",
               run_config: dict | None = None):
    self.enabled = enabled
    self._jsonl = None
    self._tb = self._wandb = None
    if enabled:
      names = parse_loggers(loggers)
      if "wandb" in names:
        self._wandb = _start_wandb(workdir, run_config)
      os.makedirs(workdir, exist_ok=True)
      self.path = os.path.join(workdir, "metrics.jsonl")
      _drop_partial_line(self.path)
      self._jsonl = open(self.path, "a")
      if "tensorboard" in names:
        from tensorboardX import SummaryWriter  # heavy import, process 0 only
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=30)

  def write(self, step: int, split: str, values: dict, echo: bool = True, *,
            total_steps: int | None = None, eta_s: float | None = None) -> None:
    """One row; `echo` also shows its main numbers in the log (with `total_steps` and the
    time left `eta_s`, which only the log shows)."""
    if not self.enabled:
      return
    values = {k: float(v) for k, v in values.items()}
    self._jsonl.write(json.dumps({"step": step, "split": split, **values}) + "\n")
    self._jsonl.flush()
    finite = {f"{split}/{k}": v for k, v in values.items() if math.isfinite(v)}
    if self._tb is not None:
      for name, value in finite.items():
        self._tb.add_scalar(name, value, step)
    if self._wandb is not None:
      self._wandb.log(finite, step=step)
    if echo:
      log.info("%s", console_line(step, split, values, total_steps, eta_s))

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
      if self._tb is not None:
        self._tb.close()
      if self._wandb is not None:
        import wandb  # pylint: disable=g-import-not-at-top
        self._wandb.finish()
        wandb.teardown()  # waits until the run is on disk (offline) or sent


def _start_wandb(workdir: str, run_config: dict | None):
  """A Weights & Biases run named after the workdir, its files in $WANDB_DIR or the workdir;
  WANDB_MODE=offline (or `wandb offline`) keeps it on disk, for `wandb sync` later."""
  try:
    import wandb  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ConfigError("train.loggers includes wandb, which is not installed: pip install wandb "
                      "(or leave wandb out of train.loggers)") from e
  workdir = os.path.abspath(workdir)
  try:
    return wandb.init(project=os.environ.get("WANDB_PROJECT") or "roots_jax",
                      name=os.path.basename(workdir), config=run_config,
                      dir=os.environ.get("WANDB_DIR") or workdir)
  except wandb.errors.Error as e:  # e.g. no API key
    raise ConfigError(f"Weights & Biases: {str(e).strip().rstrip('.')}; or set WANDB_MODE=offline, "
                      "or leave wandb out of train.loggers") from e


# What a log line shows of a train row, in this order; every field still goes to the files.
_TRAIN_SHOWN = {
    "loss": lambda v: f"loss {v:.4f}",
    "learning_rate": lambda v: f"lr {v:.1e}",
    "grad_norm": lambda v: f"grad_norm {v:.3g}",
    "tokens_per_sec": lambda v: f"{v:,.0f} tok/s",
    "mfu": lambda v: f"MFU {profiling.format_mfu(v)}",
}
# Counts an eval row may carry, shown last.
_EVAL_COUNTS = ("examples", "tokens")


def console_line(step: int, split: str, values: dict, total_steps: int | None = None,
                 eta_s: float | None = None) -> str:
  """The numbers of a row a person reads, the loss first: "step 10/300  loss 5.1234  lr 3.0e-04
  grad_norm 1.23  12,345 tok/s  MFU 3.12%  ETA 2m05s"; "eval step 300  loss 4.3300  ppl 76.01
  accuracy 0.4100  1,000 examples  51,200 tokens"; other splits show every value."""
  head = f"step {step}" + (f"/{total_steps}" if total_steps else "")
  if split == "train":
    shown = [f(values[k]) for k, f in _TRAIN_SHOWN.items() if k in values]
    if any(k.startswith("kd_") for k in values):  # a distillation: the terms it mixes, after it
      shown[1:1] = [f"{k} {values[k]:.4f}" for k in values
                    if k.startswith("kd_") or k.endswith("nll")]
    if values.get("skipped_steps"):
      shown.append(f"skipped {values['skipped_steps']:.0f} steps")
    if eta_s is not None:
      shown.append(f"ETA {format_seconds(eta_s)}")
    return "  ".join([head, *shown])
  if split != "eval":
    return "  ".join([f"{split} {head}", *(f"{k} {_fmt(v)}" for k, v in values.items())])
  shown = [f"loss {values['loss']:.4f}"] if "loss" in values else []
  if "perplexity" in values:
    shown.append(f"ppl {values['perplexity']:.2f}")
  # The task's metrics and the accuracies; the loss terms (nll, z-loss) make up the loss.
  shown += [f"{k} {_fmt(v)}" for k, v in values.items()
            if k not in ("loss", "perplexity", *_EVAL_COUNTS) and not k.endswith(("nll", "z_loss"))]
  shown += [f"{values[k]:,.0f} {k}" for k in _EVAL_COUNTS if k in values]
  return "  ".join([f"eval {head}", *shown])


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
