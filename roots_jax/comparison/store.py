"""The comparison directory: settings.json (the runs, prompts and generation settings),
generations.jsonl (one continuation per model and prompt) and votes.jsonl, an append-only log
of votes and undos from which each rater's effective votes are derived.

A vote is on disk (flushed and fsynced) before the request that cast it returns, so a crash
loses nothing acknowledged; a last line cut short by a crash was never acknowledged and is
dropped when the log is opened again."""

import json
import os
import threading
import time
from typing import Any

from roots_jax.errors import ConfigError, DataError

SETTINGS = "settings.json"
GENERATIONS = "generations.jsonl"
VOTES = "votes.jsonl"
# What a rater can answer: the left or right continuation is better, a tie, or both are bad.
CHOICES = ("left", "right", "tie", "both_bad")


def write_json(path: str, value: Any) -> None:
  """Writes `value` atomically: a crash leaves the old file or the new one, never half."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def read_jsonl(path: str) -> list[dict]:
  """The complete lines of a JSONL file ([] when it does not exist)."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    text = f.read()
  lines = text.split("\n")
  rows = []
  for number, line in enumerate(lines[:-1], 1):  # the last piece is "" or an unfinished line
    if line.strip():
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError as e:
        raise DataError(f"{path} line {number} is not JSON ({e.msg}): fix or remove it") from None
  return rows


def append_jsonl(path: str, rows: list[dict]) -> None:
  """Appends rows and waits until they are on disk."""
  with open(path, "a") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
    f.flush()
    os.fsync(f.fileno())


def load_generations(workdir: str) -> tuple[dict, dict[tuple[str, int], str]]:
  """(settings, {(model, prompt index): continuation}) of a comparison directory."""
  path = os.path.join(workdir, SETTINGS)
  if not os.path.exists(path):
    raise ConfigError(f"{workdir} has no {SETTINGS}: generate first (python -m roots_jax.compare "
                      "--runs RUN_A,RUN_B --prompts FILE --workdir DIR)")
  settings = read_json(path)
  texts = {(r["model"], r["prompt"]): r["text"]
           for r in read_jsonl(os.path.join(workdir, GENERATIONS))}
  missing = [r["name"] for r in settings["runs"]
             if any((r["name"], i) not in texts for i in range(len(settings["prompts"])))]
  if missing:
    raise ConfigError(f"{workdir} lacks generations of {', '.join(missing)}: rerun "
                      "python -m roots_jax.compare generate with the same settings")
  return settings, texts


class VoteLog:
  """votes.jsonl, with each rater's effective votes replayed from it (thread-safe).

  A vote row: {"rater", "pair", "left", "right" (the models, as shown), "choice" (one of
  CHOICES), "time"}. An undo row: {"rater", "undo": pair id, "time"} withdraws that rater's
  last effective vote."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, VOTES)
    self._lock = threading.Lock()
    self._drop_unfinished_line()
    self._effective: dict[str, list[dict]] = {}
    for row in read_jsonl(self.path):
      self._apply(row)

  def _drop_unfinished_line(self) -> None:
    if not os.path.exists(self.path):
      return
    with open(self.path, "rb+") as f:
      data = f.read()
      if data and not data.endswith(b"\n"):
        f.truncate(data.rfind(b"\n") + 1)

  def _apply(self, row: dict) -> None:
    votes = self._effective.setdefault(row["rater"], [])
    if "undo" in row:
      votes.pop()
    else:
      votes.append(row)

  def _append(self, row: dict) -> dict:
    append_jsonl(self.path, [row])
    self._apply(row)
    return row

  def votes(self, rater: str | None = None) -> list[dict]:
    """The effective votes, in the order cast: one rater's, or every rater's."""
    with self._lock:
      if rater is not None:
        return list(self._effective.get(rater, []))
      return [v for votes in self._effective.values() for v in votes]

  def raters(self) -> list[str]:
    with self._lock:
      return [r for r, votes in self._effective.items() if votes]

  def vote(self, rater: str, pair: dict, choice: str) -> dict | None:
    """Records `rater`'s choice on `pair` ({"id", "left", "right"}); None when that rater's
    vote on it already stands (a repeated request records nothing)."""
    if not rater.strip():
      raise ConfigError("a vote needs a rater name")
    if choice not in CHOICES:
      raise ConfigError(f"choice {choice!r} is not one of {', '.join(CHOICES)}")
    with self._lock:
      if any(v["pair"] == pair["id"] for v in self._effective.get(rater, [])):
        return None
      return self._append({"rater": rater, "pair": pair["id"], "left": pair["left"],
                           "right": pair["right"], "choice": choice, "time": time.time()})

  def undo(self, rater: str) -> dict | None:
    """Withdraws `rater`'s last effective vote; the vote withdrawn, None when there is none."""
    with self._lock:
      votes = self._effective.get(rater)
      if not votes:
        return None
      last = votes[-1]
      self._append({"rater": rater, "undo": last["pair"], "time": time.time()})
      return last
