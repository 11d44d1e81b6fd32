"""A comparison directory with made-up generations: the page and the votes need no model."""

import os

from roots_jax.comparison import store

MODELS = ["alpha", "beta", "gamma"]
PROMPTS = ["def add(a, b):", "The quick brown fox", "import os\n"]


def make(directory, models=MODELS, prompts=PROMPTS, seed=0) -> str:
  os.makedirs(directory, exist_ok=True)
  store.write_json(os.path.join(directory, store.SETTINGS), {
      "runs": [{"name": m, "path": f"/runs/{m}", "step": 3, "kind": "pretrain"} for m in models],
      "prompts": list(prompts), "seed": seed, "generation": {"max_new_tokens": 8}})
  store.append_jsonl(os.path.join(directory, store.GENERATIONS), [
      {"model": m, "prompt": i, "text": f"<{m} continues prompt {i}>"}
      for m in models for i in range(len(prompts))])
  return str(directory)
