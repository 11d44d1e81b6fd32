"""The comparison report: Bradley-Terry ratings with bootstrap intervals, vote counts and the
win-rate matrix, as a dict (report.json), a printed table and two PNGs."""

import logging
import os

import numpy as np

from roots_jax.comparison import bradley_terry
from roots_jax.errors import DataError

log = logging.getLogger("roots_jax")


def build(votes: list[dict], models: list[str], *, rounds: int = 1000, seed: int = 0) -> dict:
  """The report of `votes` (effective votes, roots_jax.comparison.store) between `models`."""
  decisive = [v for v in votes if v["choice"] != "both_bad"]
  if not decisive:
    raise DataError("no votes to rate (both-bad votes do not count): cast some on the page "
                    "(python -m roots_jax.compare serve) or fill them with --judge")
  wins = bradley_terry.win_matrix(decisive, models)
  rating = bradley_terry.ratings(bradley_terry.fit(wins))
  lower, upper = bradley_terry.bootstrap(decisive, models, rounds=rounds, seed=seed)
  rates = bradley_terry.win_rates(wins)
  rows = []
  for i, m in enumerate(models):
    mine = [v for v in votes if m in (v["left"], v["right"])]
    rows.append({
        "model": m, "rating": float(rating[i]), "ci_low": float(lower[i]),
        "ci_high": float(upper[i]), "votes": len(mine),
        "wins": sum(v["choice"] in ("left", "right") and v[v["choice"]] == m for v in mine),
        "ties": sum(v["choice"] == "tie" for v in mine),
        "both_bad": sum(v["choice"] == "both_bad" for v in mine)})
  rows.sort(key=lambda r: -r["rating"])
  return {
      "models": rows,
      "win_rate": {a: {b: None if np.isnan(rates[i, j]) else float(rates[i, j])
                       for j, b in enumerate(models)} for i, a in enumerate(models)},
      "votes": len(votes), "both_bad": len(votes) - len(decisive),
      "raters": sorted({v["rater"] for v in votes}),
      "method": ("Bradley-Terry maximum likelihood (MM, Hunter 2004); ties half a win each, "
                 "both-bad votes excluded; rating = 400 log10(strength), mean 1000"),
      "bootstrap": {"rounds": rounds, "seed": seed, "level": 0.95}}


def format_table(report: dict) -> str:
  """The ranking, then the win-rate matrix (row model's wins against the column model)."""
  width = max(8, *(len(r["model"]) for r in report["models"]))
  lines = [f"{report['votes']} votes ({report['both_bad']} both bad, not rated) from "
           f"{len(report['raters'])} rater(s); 95% bootstrap intervals over "
           f"{report['bootstrap']['rounds']} resamples",
           "",
           f"{'rank':>4}  {'model':<{width}}  {'rating':>7}  {'95% CI':>15}  {'votes':>5}  "
           f"{'wins':>5}  {'ties':>5}  {'bad':>4}"]
  for rank, r in enumerate(report["models"], 1):
    ci = f"{r['ci_low']:.0f} .. {r['ci_high']:.0f}"
    lines.append(f"{rank:>4}  {r['model']:<{width}}  {r['rating']:>7.1f}  {ci:>15}  "
                 f"{r['votes']:>5}  {r['wins']:>5}  {r['ties']:>5}  {r['both_bad']:>4}")
  order = [r["model"] for r in report["models"]]
  lines += ["", "win rate (row beats column, ties half)",
            f"{'':<{width}}  " + "  ".join(f"{m:>{width}}" for m in order)]
  for a in order:
    cells = [report["win_rate"][a][b] for b in order]
    lines.append(f"{a:<{width}}  " + "  ".join(
        f"{'-':>{width}}" if c is None else f"{c:>{width}.2f}" for c in cells))
  return "\n".join(lines)


def plot(report: dict, directory: str) -> list[str]:
  """Writes ranking.png (ratings with their intervals) and win_rate.png (the matrix as a
  heatmap) in `directory`; the files written ([] without matplotlib, said in the log)."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    log.info("the plots need matplotlib (pip install -e '.[compare]'): skipped")
    return []
  rows = report["models"][::-1]  # best on top
  names = [r["model"] for r in rows]
  fig, ax = plt.subplots(figsize=(6, 1 + 0.4 * len(rows)))
  y = np.arange(len(rows))
  ax.errorbar([r["rating"] for r in rows], y, fmt="o",
              xerr=[[r["rating"] - r["ci_low"] for r in rows],
                    [r["ci_high"] - r["rating"] for r in rows]], capsize=4)
  ax.set_yticks(y, names)
  ax.set_xlabel("rating (Bradley-Terry, 95% bootstrap CI)")
  fig.tight_layout()
  ranking = os.path.join(directory, "ranking.png")
  fig.savefig(ranking, dpi=100)
  plt.close(fig)

  order = names[::-1]
  matrix = np.array([[np.nan if report["win_rate"][a][b] is None else report["win_rate"][a][b]
                      for b in order] for a in order])
  fig, ax = plt.subplots(figsize=(1.5 + 0.8 * len(order), 1 + 0.7 * len(order)))
  image = ax.imshow(matrix, vmin=0, vmax=1, cmap="RdBu")
  for i in range(len(order)):
    for j in range(len(order)):
      if not np.isnan(matrix[i, j]):
        ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center")
  ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
  ax.set_yticks(range(len(order)), order)
  ax.set_title("win rate of row against column")
  fig.colorbar(image)
  fig.tight_layout()
  heatmap = os.path.join(directory, "win_rate.png")
  fig.savefig(heatmap, dpi=100)
  plt.close(fig)
  return [ranking, heatmap]
