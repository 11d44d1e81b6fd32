"""The pairs a rater judges: every pair of models on every prompt, in an order and with a
left/right placement drawn from the seed, so neither the position nor the sequence tells which
model wrote what (the page shows the pair's id and texts only)."""

import itertools
import random


def make_pairs(models: list[str], num_prompts: int, seed: int) -> list[dict]:
  """[{"id", "prompt" (index), "left", "right" (model names)}] in the order raters see them.

  The same models, prompt count and seed give the same pairs, so a server restarted on the
  same directory (and the votes already cast) keeps them."""
  rng = random.Random(seed)
  pairs = []
  for prompt in range(num_prompts):
    for a, b in itertools.combinations(models, 2):
      left, right = (a, b) if rng.random() < 0.5 else (b, a)
      pairs.append({"prompt": prompt, "left": left, "right": right})
  rng.shuffle(pairs)
  return [{"id": f"{i:05d}", **p} for i, p in enumerate(pairs)]
