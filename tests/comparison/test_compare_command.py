"""python -m roots_jax.compare: generation with real runs (resumed, and refused with other
settings), the judges' votes, and the report's files."""

import json
import os

import pytest

import fake_comparison
from roots_jax import compare
from roots_jax.api import LanguageModel
from roots_jax.comparison import pairs as pairs_lib
from roots_jax.comparison import store


def _prompts(tmp_path, prompts=("The", "Ba ko mi")):
  path = tmp_path / "prompts.jsonl"
  path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
  return str(path)


def test_generate_records_settings_and_resumes(pretrained, tmp_path, capfd, monkeypatch):
  run = pretrained["decoder"]
  cmp_dir = str(tmp_path / "cmp")
  argv = ["--runs", f"first={run},second={run}", "--prompts", _prompts(tmp_path),
          "--workdir", cmp_dir, "--max_new_tokens", "6", "--no_serve"]
  assert compare.main(argv) == 0
  settings, texts = store.load_generations(cmp_dir)
  assert [(r["name"], r["path"], r["step"], r["kind"]) for r in settings["runs"]] == [
      ("first", run, 3, "pretrain"), ("second", run, 3, "pretrain")]
  assert settings["prompts"] == ["The", "Ba ko mi"] and settings["seed"] == 0
  assert settings["generation"]["max_new_tokens"] == 6
  expected = LanguageModel.from_pretrained(run).generate(["The", "Ba ko mi"], max_new_tokens=6)
  for model in ("first", "second"):
    assert [texts[(model, i)] for i in range(2)] == [e[0] for e in expected]
  # A rerun with the same settings loads no model; other settings are refused in one line.
  before = open(os.path.join(cmp_dir, store.GENERATIONS)).read()
  monkeypatch.setattr(LanguageModel, "from_pretrained", lambda *a, **k: pytest.fail("loaded"))
  assert compare.main(["generate"] + argv) == 0
  assert open(os.path.join(cmp_dir, store.GENERATIONS)).read() == before
  capfd.readouterr()
  assert compare.main(argv[:-2] + ["7", "--no_serve"]) == 2
  err = capfd.readouterr().err.strip()
  assert "holds a comparison with other runs, prompts or generation settings" in err
  assert len(err.splitlines()) == 1


def test_runs_need_two_distinct_names(pretrained, tmp_path, capfd):
  run = pretrained["decoder"]
  assert compare.main(["--runs", f"{run},{run}", "--prompts", _prompts(tmp_path),
                       "--workdir", str(tmp_path / "cmp"), "--no_serve"]) == 2
  assert "name them, --runs NAME_A=PATH,NAME_B=PATH" in capfd.readouterr().err


def test_bleu_judge_fills_votes_and_the_report_is_written(tmp_path, capfd):
  cmp_dir = fake_comparison.make(tmp_path / "cmp")
  # beta's continuations are the references: beta wins every pair; alpha and gamma tie.
  references = tmp_path / "references.txt"
  references.write_text("".join(f"<beta continues prompt {i}>\n" for i in range(3)))
  argv = ["report", "--workdir", cmp_dir, "--judge", "bleu", "--references", str(references),
          "--bootstrap_rounds", "50"]
  assert compare.main(argv) == 0
  out = capfd.readouterr().out
  assert "9 votes (0 both bad, not rated) from 1 rater(s)" in out
  assert out.splitlines()[3].split()[:2] == ["1", "beta"]
  votes = store.VoteLog(cmp_dir).votes("judge:bleu")
  assert len(votes) == 9
  for v in votes:
    winner = "tie" if "beta" not in (v["left"], v["right"]) else (
        "left" if v["left"] == "beta" else "right")
    assert v["choice"] == winner
  report = json.load(open(os.path.join(cmp_dir, "report.json")))
  assert report["raters"] == ["judge:bleu"] and report["win_rate"]["beta"]["alpha"] == 1.0
  assert report["win_rate"]["alpha"]["gamma"] == 0.5
  for name in ("ranking.png", "win_rate.png"):
    with open(os.path.join(cmp_dir, name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert compare.main(argv) == 0  # rerun: the judge's votes stand, none added
  assert len(store.read_jsonl(os.path.join(cmp_dir, store.VOTES))) == 9


def test_loglik_judge_prefers_the_likelier_continuation(pretrained, tmp_path):
  cmp_dir = fake_comparison.make(tmp_path / "cmp")
  assert compare.main(["report", "--workdir", cmp_dir, "--judge", "loglik", "--judge_run",
                       pretrained["decoder"], "--bootstrap_rounds", "20"]) == 0
  judge = LanguageModel.from_pretrained(pretrained["decoder"])
  settings, texts = store.load_generations(cmp_dir)
  votes = {v["pair"]: v["choice"] for v in store.VoteLog(cmp_dir).votes("judge:loglik")}
  made = pairs_lib.make_pairs(fake_comparison.MODELS, 3, 0)
  assert len(votes) == len(made)
  for pair in made:
    prompt = settings["prompts"][pair["prompt"]]
    left, right = (judge.score(prompt, targets=texts[(pair[s], pair["prompt"])])
                   for s in ("left", "right"))
    per_token = [s["log_likelihood"] / s["num_tokens"] for s in (left, right)]
    assert votes[pair["id"]] == ("left" if per_token[0] > per_token[1] else "right")


def test_judges_need_their_inputs(tmp_path, capfd):
  cmp_dir = fake_comparison.make(tmp_path / "cmp")
  assert compare.main(["report", "--workdir", cmp_dir, "--judge", "rouge"]) == 2
  assert "--judge rouge needs --references FILE" in capfd.readouterr().err
  assert compare.main(["report", "--workdir", cmp_dir, "--judge", "loglik"]) == 2
  assert "--judge loglik needs --judge_run RUN" in capfd.readouterr().err
  assert compare.main(["report", "--workdir", cmp_dir]) == 2
  assert "no votes to rate" in capfd.readouterr().err


@pytest.mark.parametrize("argv, flags", [
    ([], ["generate", "serve", "report"]),
    (["generate"], ["--runs", "--prompts", "--workdir", "--max_new_tokens", "--no_serve",
                    "--host"]),
    (["serve"], ["--workdir", "--port"]),
    (["report"], ["--judge", "--references", "--judge_run", "--bootstrap_rounds"]),
])
def test_help(capfd, argv, flags):
  assert compare.main(argv + ["--help"]) == 0
  out = capfd.readouterr().out
  assert out.startswith(f"usage: python -m roots_jax.compare {' '.join(argv)}".rstrip())
  assert all(flag in out for flag in flags), out
