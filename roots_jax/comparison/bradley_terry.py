"""Bradley-Terry ratings of models from pairwise votes, as Chatbot Arena reports them.

P(i beats j) = p_i / (p_i + p_j). The strengths are fitted by maximum likelihood with the MM
algorithm of Hunter (2004, "MM algorithms for generalized Bradley-Terry models", eq. 3), a tie
counting as half a win for each side (Arena's BT fit); "both bad" votes say nothing about the
order and are left out. Ratings are on Arena's Elo-like scale, 400 * log10(p), shifted so their
mean is 1000; confidence intervals are percentiles over bootstrap resamples of the votes. Unlike
online Elo, the fit does not depend on the order the votes came in.
"""

import numpy as np

SCALE = 400.0  # Elo's: a 400-point gap is 10:1 odds
MEAN_RATING = 1000.0
# A model that never won (or never lost) in a resample has no finite maximum-likelihood
# strength; strengths are held within this factor of their geometric mean instead (+-2400).
MAX_RATIO = 1e6


def win_matrix(votes: list[dict], models: list[str]) -> np.ndarray:
  """wins[i, j]: how often model i beat model j, ties counting half to each; both-bad votes
  left out. Votes are {"left", "right", "choice"} (roots_jax.comparison.store)."""
  index = {m: i for i, m in enumerate(models)}
  wins = np.zeros((len(models), len(models)))
  for v in votes:
    left, right = index[v["left"]], index[v["right"]]
    if v["choice"] == "left":
      wins[left, right] += 1
    elif v["choice"] == "right":
      wins[right, left] += 1
    elif v["choice"] == "tie":
      wins[left, right] += 0.5
      wins[right, left] += 0.5
  return wins


def win_rates(wins: np.ndarray) -> np.ndarray:
  """rates[i, j]: the share of i's comparisons with j that i won (ties half); NaN where the two
  were never compared (and on the diagonal)."""
  games = wins + wins.T
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(games > 0, wins / games, np.nan)


def fit(wins: np.ndarray, *, iterations: int = 10_000, tol: float = 1e-10) -> np.ndarray:
  """Log-strengths (natural log, mean 0) maximising the likelihood of `wins` [..., M, M]; the
  leading axes are independent problems (bootstrap rounds), solved together."""
  wins = np.asarray(wins, np.float64)
  games = wins + np.swapaxes(wins, -1, -2)  # [..., M, M]
  total_wins = wins.sum(-1)  # [..., M]
  p = np.ones(wins.shape[:-1])
  for _ in range(iterations):
    denominator = (games / (p[..., :, None] + p[..., None, :])).sum(-1)
    new = np.where(denominator > 0, total_wins / np.where(denominator > 0, denominator, 1), p)
    new = np.clip(new, 1 / MAX_RATIO, None)
    new = new / np.exp(np.log(new).mean(-1, keepdims=True))
    new = np.clip(new, 1 / MAX_RATIO, MAX_RATIO)
    done = np.max(np.abs(np.log(new) - np.log(p))) < tol
    p = new
    if done:
      break
  log_p = np.log(p)
  return log_p - log_p.mean(-1, keepdims=True)


def ratings(log_strengths: np.ndarray) -> np.ndarray:
  """Log-strengths on the Elo-like scale (mean 1000)."""
  r = SCALE * log_strengths / np.log(10)
  return r - r.mean(-1, keepdims=True) + MEAN_RATING


def bootstrap(votes: list[dict], models: list[str], *, rounds: int = 1000, seed: int = 0,
              level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
  """(lower, upper) [M] rating bounds: percentiles of the ratings fitted to `rounds` resamples
  (with replacement, as many votes as there are) of the votes."""
  rng = np.random.default_rng(seed)
  per_vote = np.stack([win_matrix([v], models) for v in votes])  # [N, M, M]
  draws = rng.integers(0, len(votes), size=(rounds, len(votes)))
  counts = np.stack([np.bincount(d, minlength=len(votes)) for d in draws])  # [R, N]
  resampled = np.einsum("rn,nij->rij", counts, per_vote)
  r = ratings(fit(resampled))  # [R, M]
  tail = 100 * (1 - level) / 2
  return np.percentile(r, tail, axis=0), np.percentile(r, 100 - tail, axis=0)
