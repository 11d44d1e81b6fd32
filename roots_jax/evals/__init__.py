"""Evaluators by name, as big_vision's: each a module with a class built from the model it
scores and the split it reads (evals.base), called with parameters for a dict of metrics.

  evaluator = evals.get("classification")(scorer, split, tokenizer=..., family=...)
  metrics = evaluator(params)                   # with the "examples" and "tokens" scored
  metrics, details = evaluator.report(params)   # details: what results.json adds (per class, ...)

perplexity scores a pretraining objective's held-out split; the others a fine-tuning task's
labelled split (each task kind names its evaluator). A new evaluator is a module here, added to
EVALUATORS below. In-context (zero- and few-shot) tasks score a language model through the
harness's three requests instead of a scorer: evals.incontext.
"""

from roots_jax.errors import ConfigError
from roots_jax.evals import classification, generation, perplexity, regression
from roots_jax.evals import extractive_qa, token_classification
from roots_jax.evals.base import LOWER_IS_BETTER, Scorer, Split, is_better

EVALUATORS = {
    "perplexity": perplexity.Perplexity,
    "classification": classification.Classification,
    "regression": regression.Regression,
    "token_classification": token_classification.TokenClassification,
    "generation": generation.Generation,
    "extractive_qa": extractive_qa.ExtractiveQA,
}


def get(name: str) -> type:
  if name not in EVALUATORS:
    raise ConfigError(f"unknown evaluator {name!r}; choose one of {', '.join(EVALUATORS)}")
  return EVALUATORS[name]


__all__ = ["EVALUATORS", "LOWER_IS_BETTER", "Scorer", "Split", "get", "is_better"]
