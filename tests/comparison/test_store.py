"""The votes log: append-only, undo, several raters, resume, and what a crash leaves."""

import json
import os

import pytest

import fake_comparison
from roots_jax.comparison import pairs as pairs_lib
from roots_jax.comparison import store
from roots_jax.errors import ConfigError, DataError


@pytest.fixture
def comparison(tmp_path):
  directory = fake_comparison.make(tmp_path / "cmp")
  made = pairs_lib.make_pairs(fake_comparison.MODELS, len(fake_comparison.PROMPTS), 0)
  return directory, made


def _lines(directory):
  with open(os.path.join(directory, store.VOTES)) as f:
    return [json.loads(l) for l in f]


def test_votes_and_undos_are_appended_and_replayed(comparison):
  directory, made = comparison
  log = store.VoteLog(directory)
  log.vote("ann", made[0], "left")
  log.vote("bob", made[0], "tie")
  log.vote("ann", made[1], "both_bad")
  assert log.undo("ann")["pair"] == made[1]["id"]
  log.vote("ann", made[1], "right")
  assert log.vote("ann", made[1], "left") is None  # a repeated request changes nothing
  lines = _lines(directory)
  assert [(l["rater"], l.get("choice", "undo")) for l in lines] == [
      ("ann", "left"), ("bob", "tie"), ("ann", "both_bad"), ("ann", "undo"), ("ann", "right")]
  assert lines[0]["left"] == made[0]["left"] and lines[0]["right"] == made[0]["right"]
  assert lines[0]["pair"] == made[0]["id"] and isinstance(lines[0]["time"], float)
  effective = [(v["pair"], v["choice"]) for v in log.votes("ann")]
  assert effective == [(made[0]["id"], "left"), (made[1]["id"], "right")]
  assert [v["choice"] for v in log.votes("bob")] == ["tie"]
  assert sorted(log.raters()) == ["ann", "bob"] and len(log.votes()) == 3
  # Reopened: the same effective votes, from the file alone; undo keeps working across.
  again = store.VoteLog(directory)
  assert again.votes("ann") == log.votes("ann") and again.votes("bob") == log.votes("bob")
  assert again.undo("ann")["pair"] == made[1]["id"] and again.undo("ann")["pair"] == made[0]["id"]
  assert again.undo("ann") is None and again.votes("ann") == []
  assert store.VoteLog(directory).votes("bob") == log.votes("bob")
  assert len(_lines(directory)) == 7  # nothing rewritten, two undos appended


def test_a_vote_is_on_disk_when_vote_returns(comparison, monkeypatch):
  directory, made = comparison
  synced = []
  fsync = os.fsync
  monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), fsync(fd)))
  store.VoteLog(directory).vote("ann", made[2], "right")
  assert len(synced) == 1
  assert store.VoteLog(directory).votes("ann")[0]["pair"] == made[2]["id"]


def test_a_line_cut_short_by_a_crash_is_dropped(comparison):
  directory, made = comparison
  log = store.VoteLog(directory)
  log.vote("ann", made[0], "left")
  with open(log.path, "a") as f:
    f.write('{"rater": "ann", "pair": "000')  # a crash in the middle of the next write
  reopened = store.VoteLog(directory)
  assert [v["pair"] for v in reopened.votes("ann")] == [made[0]["id"]]
  reopened.vote("ann", made[1], "tie")
  assert [l["pair"] for l in _lines(directory)] == [made[0]["id"], made[1]["id"]]


def test_bad_votes_and_a_corrupt_log_are_refused(comparison):
  directory, made = comparison
  log = store.VoteLog(directory)
  with pytest.raises(ConfigError, match="choice 'maybe' is not one of left, right"):
    log.vote("ann", made[0], "maybe")
  with pytest.raises(ConfigError, match="needs a rater name"):
    log.vote(" ", made[0], "left")
  with open(log.path, "a") as f:
    f.write("not json\n")
  with pytest.raises(DataError, match="votes.jsonl line 1 is not JSON"):
    store.VoteLog(directory)


def test_generations_are_checked(tmp_path):
  with pytest.raises(ConfigError, match="has no settings.json: generate first"):
    store.load_generations(str(tmp_path))
  directory = fake_comparison.make(tmp_path / "cmp")
  settings, texts = store.load_generations(directory)
  assert len(texts) == 9 and settings["seed"] == 0
  with open(os.path.join(directory, store.GENERATIONS)) as f:
    lines = f.readlines()
  with open(os.path.join(directory, store.GENERATIONS), "w") as f:
    f.writelines(lines[:-1])
  with pytest.raises(ConfigError, match="lacks generations of gamma"):
    store.load_generations(directory)
