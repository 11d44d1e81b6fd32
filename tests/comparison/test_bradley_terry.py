"""Bradley-Terry fits against hand computations and a known synthetic ranking."""

import numpy as np
import pytest

from roots_jax.comparison import bradley_terry, pairs, report
from roots_jax.errors import DataError


def _vote(left, right, choice):
  return {"rater": "r", "left": left, "right": right, "choice": choice}


def _simulate(strengths: dict[str, float], count: int, seed: int) -> list[dict]:
  """`count` votes between random pairs, the winner drawn with the BT probabilities."""
  rng = np.random.default_rng(seed)
  models = list(strengths)
  votes = []
  for _ in range(count):
    i, j = rng.choice(len(models), 2, replace=False)
    a, b = models[i], models[j]
    p_left = strengths[a] / (strengths[a] + strengths[b])
    votes.append(_vote(a, b, "left" if rng.random() < p_left else "right"))
  return votes


def test_two_models_strength_ratio_is_the_wins_ratio():
  # 30 wins of a, 10 of b, 4 ties (2 half-wins each): MLE p_a / p_b = 32 / 12.
  votes = ([_vote("a", "b", "left")] * 20 + [_vote("b", "a", "right")] * 10
           + [_vote("a", "b", "right")] * 10 + [_vote("a", "b", "tie")] * 4
           + [_vote("a", "b", "both_bad")] * 7)
  wins = bradley_terry.win_matrix(votes, ["a", "b"])
  np.testing.assert_array_equal(wins, [[0, 32], [12, 0]])
  log_p = bradley_terry.fit(wins)
  np.testing.assert_allclose(np.exp(log_p[0] - log_p[1]), 32 / 12, rtol=1e-9)
  rating = bradley_terry.ratings(log_p)
  np.testing.assert_allclose(rating.mean(), 1000)
  np.testing.assert_allclose(rating[0] - rating[1], 400 * np.log10(32 / 12), rtol=1e-9)


def test_win_rates_by_hand():
  votes = [_vote("a", "b", "left"), _vote("a", "b", "left"), _vote("b", "a", "tie"),
           _vote("c", "a", "left"), _vote("b", "c", "both_bad")]
  rates = bradley_terry.win_rates(bradley_terry.win_matrix(votes, ["a", "b", "c"]))
  expected = [[np.nan, 2.5 / 3, 0.0], [0.5 / 3, np.nan, np.nan], [1.0, np.nan, np.nan]]
  np.testing.assert_allclose(rates, expected)


def test_recovers_a_known_ranking_from_simulated_votes():
  strengths = {"w": 4.0, "x": 2.0, "y": 1.0, "z": 0.5}
  models = list(strengths)
  votes = _simulate(strengths, 2000, seed=0)
  log_p = bradley_terry.fit(bradley_terry.win_matrix(votes, models))
  truth = np.log(list(strengths.values()))
  truth -= truth.mean()
  assert list(np.argsort(-log_p)) == [0, 1, 2, 3]
  np.testing.assert_allclose(log_p, truth, atol=0.1)  # ~2 standard errors at 1000 votes each
  lower, upper = bradley_terry.bootstrap(votes, models, rounds=500, seed=0)
  true_rating = bradley_terry.ratings(truth)
  assert np.all((lower <= true_rating) & (true_rating <= upper)), (lower, true_rating, upper)
  assert np.all(upper - lower < 60)  # 2000 votes pin each rating to tens of points


def test_fit_ignores_the_order_of_the_votes():
  votes = _simulate({"a": 3.0, "b": 1.0, "c": 1.5}, 300, seed=1)
  forward = bradley_terry.fit(bradley_terry.win_matrix(votes, ["a", "b", "c"]))
  backward = bradley_terry.fit(bradley_terry.win_matrix(votes[::-1], ["a", "b", "c"]))
  np.testing.assert_allclose(forward, backward, atol=1e-12)


def test_a_model_that_never_won_gets_a_finite_floor():
  votes = [_vote("a", "b", "left")] * 5 + [_vote("b", "c", "left")] * 5
  rating = bradley_terry.ratings(bradley_terry.fit(
      bradley_terry.win_matrix(votes, ["a", "b", "c"])))
  assert np.all(np.isfinite(rating)) and rating[0] > rating[1] > rating[2]


def test_bootstrap_is_seeded():
  votes = _simulate({"a": 2.0, "b": 1.0}, 100, seed=2)
  first = bradley_terry.bootstrap(votes, ["a", "b"], rounds=50, seed=3)
  np.testing.assert_array_equal(first, bradley_terry.bootstrap(votes, ["a", "b"], rounds=50,
                                                               seed=3))


def test_pairs_cover_every_pair_of_models_on_every_prompt_in_both_placements():
  made = pairs.make_pairs(["a", "b", "c"], 20, seed=0)
  assert len(made) == 3 * 20 and len({p["id"] for p in made}) == 60
  assert {(p["prompt"], frozenset((p["left"], p["right"]))) for p in made} == {
      (i, frozenset(s)) for i in range(20) for s in (("a", "b"), ("a", "c"), ("b", "c"))}
  assert 15 < sum(p["left"] < p["right"] for p in made) < 45  # both placements drawn
  assert [p["prompt"] for p in made] != sorted(p["prompt"] for p in made)  # shuffled
  assert made == pairs.make_pairs(["a", "b", "c"], 20, seed=0)
  assert made != pairs.make_pairs(["a", "b", "c"], 20, seed=1)


def test_report_counts_and_table():
  votes = _simulate({"a": 3.0, "b": 1.0, "c": 1.5}, 300, seed=4) + [
      {"rater": "s", "left": "a", "right": "b", "choice": "both_bad"},
      {"rater": "s", "left": "b", "right": "c", "choice": "tie"}]
  result = report.build(votes, ["a", "b", "c"], rounds=100, seed=0)
  assert [r["model"] for r in result["models"]] == ["a", "c", "b"]
  assert result["votes"] == 302 and result["both_bad"] == 1 and result["raters"] == ["r", "s"]
  by_model = {r["model"]: r for r in result["models"]}
  assert sum(r["wins"] for r in result["models"]) == 300
  assert by_model["b"]["ties"] == 1 and by_model["a"]["both_bad"] == 1
  assert all(r["ci_low"] <= r["rating"] <= r["ci_high"] for r in result["models"])
  table = report.format_table(result)
  assert "302 votes (1 both bad, not rated) from 2 rater(s)" in table
  assert table.splitlines()[3].split()[:2] == ["1", "a"]


def test_report_needs_decisive_votes():
  with pytest.raises(DataError, match="no votes to rate"):
    report.build([{"rater": "r", "left": "a", "right": "b", "choice": "both_bad"}], ["a", "b"])
