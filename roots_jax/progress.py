"""Progress of long work (training, tokenizer training, evaluation, generation, conversion): on
a terminal a tqdm bar with the count, rate and time left; otherwise a plain log line every
LOG_INTERVAL_S seconds. Only process 0 shows it. Log records written through `write` (the
console handler's way out) clear the bars first and redraw them after, so neither garbles the
other.

  for batch in progress.track(batches, "eval", total=10, unit="batch"):
    ...
"""

import logging
import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

import tqdm

log = logging.getLogger("roots_jax")

# Seconds between the plain progress lines written when stderr is not a terminal.
LOG_INTERVAL_S = 30.0

T = TypeVar("T")


def format_seconds(seconds: float) -> str:
  """45s, 2m05s, 1h02m."""
  s = int(round(seconds))
  if s < 60:
    return f"{s}s"
  if s < 3600:
    return f"{s // 60}m{s % 60:02d}s"
  return f"{s // 3600}h{s % 3600 // 60:02d}m"


def write(text: str, file=None) -> None:
  """Writes a line to `file` (default stderr) under any progress bars."""
  tqdm.tqdm.write(text, file=file or sys.stderr)


def _is_terminal(file) -> bool:
  """A terminal with a size: one of 0 rows or columns (a pseudo-terminal nobody sized, as
  `docker run -t` and `script` give without a terminal of their own) shows no tqdm bar at all,
  so it gets the plain lines."""
  try:
    size = os.get_terminal_size(file.fileno())
  except (AttributeError, OSError, ValueError):
    return False
  return file.isatty() and size.lines > 0 and size.columns > 0


def is_main_process() -> bool:
  """Process 0 of a multi-process run, or the only process. Does not start JAX's backend."""
  import jax  # pylint: disable=g-import-not-at-top
  return not jax.distributed.is_initialized() or jax.process_index() == 0


class Progress:
  """Counts work done: `update(n)` after each piece, `resume()` after a pause that is not the
  work's own (compilation, evaluation), `close()` (or a `with` block) at the end. A bar on a
  terminal (shown once the work has taken `delay_s`); otherwise, with `log_lines`, a log line
  "DESC 120/300 (40%)  3.10 step/s  ETA 58s" every LOG_INTERVAL_S seconds."""

  def __init__(self, desc: str, total: int | None = None, *, unit: str = "it", initial: int = 0,
               unit_scale: bool = False, delay_s: float = 1.0, log_lines: bool = True):
    self.desc, self.total, self.unit, self.unit_scale = desc, total, unit, unit_scale
    self.n = self._initial = initial
    self._began = self._last_line = self._last_update = time.perf_counter()
    self._paused = 0.0
    enabled = is_main_process()
    self._bar = None
    self._log_lines = enabled and log_lines
    if enabled and _is_terminal(sys.stderr):
      self._bar = tqdm.tqdm(total=total, initial=initial, desc=desc, unit=unit,
                            unit_scale=unit_scale, delay=delay_s, leave=False, file=sys.stderr,
                            dynamic_ncols=True)
      self._log_lines = False

  def __enter__(self) -> "Progress":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def update(self, n: int = 1, postfix: str | None = None) -> None:
    """`n` more done; `postfix` (e.g. "loss 5.12") is shown after the bar."""
    self.n += n
    self._last_update = time.perf_counter()
    if self._bar is not None:
      if postfix is not None:
        self._bar.set_postfix_str(postfix, refresh=False)
      self._bar.update(n)
    elif self._log_lines and self._last_update - self._last_line >= LOG_INTERVAL_S:
      self._last_line = self._last_update
      log.info("%s", self.line())

  def resume(self) -> None:
    """The time since the last update (compilation, evaluation) is not the work's: the rate
    and the time left leave it out."""
    now = time.perf_counter()
    self._paused += now - self._last_update
    self._last_update = now
    if self._bar is not None:
      self._bar.unpause()

  def elapsed(self) -> float:
    """Seconds since the start."""
    return time.perf_counter() - self._began

  def rate(self) -> float:
    """Units per second since the start, pauses left out."""
    elapsed = time.perf_counter() - self._began - self._paused
    return (self.n - self._initial) / elapsed if elapsed > 0 else 0.0

  def line(self) -> str:
    """"DESC 120/300 (40%)  3.10 step/s  ETA 58s", or without a total "DESC 1.2M B  5.3M B/s"."""
    rate = self.rate()
    fmt = lambda x: (tqdm.tqdm.format_sizeof(x, divisor=1000) if self.unit_scale
                     else f"{x:,.0f}" if x >= 100 else f"{x:.3g}")
    if self.total:
      parts = [f"{self.desc} {fmt(self.n)}/{fmt(self.total)} {self.unit} "
               f"({100 * self.n / self.total:.0f}%)", f"{fmt(rate)} {self.unit}/s"]
      if rate > 0:
        parts.append(f"ETA {format_seconds(max(self.total - self.n, 0) / rate)}")
    else:
      parts = [f"{self.desc} {fmt(self.n)} {self.unit}", f"{fmt(rate)} {self.unit}/s"]
    return "  ".join(parts)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None


def track(items: Iterable[T], desc: str, total: int | None = None, **kwargs) -> Iterator[T]:
  """`items`, counted by a Progress (keyword arguments: Progress's)."""
  if total is None and hasattr(items, "__len__"):
    total = len(items)
  with Progress(desc, total, **kwargs) as progress:
    for item in items:
      yield item
      progress.update()
