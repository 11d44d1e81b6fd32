"""Zero- and few-shot evaluation of a language model on in-context tasks (evals.incontext_tasks:
task files; evals.stdlib_tasks: the built-in ones), as the lm-evaluation-harness scores them.

  results = evaluate_tasks(lm, ["stdlib_next_line", "my_task.json"], num_fewshot=5, limit=100)
  results["stdlib_next_line"]["metrics"]["acc"], results[...]["stderr"]["acc"]

`lm` answers the harness's three kinds of request (LM below), each for a whole task at once so
that it can batch them. Each task's result holds its metrics, their bootstrap standard errors
(metrics.bootstrap, `iterations` resamples of the documents, BLEU's at most 100 as in the
harness), the documents scored, the speed, and its first documents' prompts and answers.
"""

import math
import random
import re
import time
from typing import Protocol, Sequence

import numpy as np

from roots_jax import metrics as metrics_lib
from roots_jax.errors import ConfigError
from roots_jax.evals import incontext_tasks, stdlib_tasks
from roots_jax.evals.incontext_tasks import Task
from roots_jax.metrics import bootstrap, squad

NUM_SAMPLES = 3         # documents whose prompt and answer the results show
BLEU_ITERATIONS = 100   # corpus BLEU is costly to resample: the harness's cap too
DEFAULT_SEED = 1234     # the harness's few-shot seed


class LM(Protocol):
  """The harness's model interface (lm_eval.api.model.LM), over batches of requests, and how
  many requests so far had their context cut to the model's length (the first tokens dropped)."""

  truncated: int

  def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
    """(context, continuation) -> (sum of ln p(continuation tokens | context), whether each
    continuation token is the greedy one)."""

  def loglikelihood_rolling(self, texts: Sequence[str]) -> list[tuple[float, int]]:
    """text -> (sum of ln p of all its tokens, their number)."""

  def generate_until(self, requests: Sequence[tuple[str, dict]]) -> list[str]:
    """(context, {"until": [stop strings], "max_gen_toks": n}) -> the greedy continuation, cut
    before the first stop string."""


def resolve(spec: str | Task) -> Task:
  """A Task from a built-in task's name or a task file's path."""
  if isinstance(spec, Task):
    return spec
  if spec in stdlib_tasks.NAMES:
    return stdlib_tasks.builtin_task(spec)
  if not spec.endswith(".json"):
    raise ConfigError(f"unknown task {spec!r}: give a task file (.json) or a built-in task: "
                      f"{', '.join(stdlib_tasks.NAMES)}")
  return incontext_tasks.load_task(spec)


def check_settings(num_fewshot: int, limit: int | None) -> None:
  if num_fewshot < 0:
    raise ConfigError(f"--num_fewshot must be 0 or more, not {num_fewshot}")
  if limit is not None and limit < 1:
    raise ConfigError(f"--limit must be positive, not {limit}")


def evaluate_tasks(lm: LM, tasks: Sequence[str | Task], num_fewshot: int = 0,
                   limit: int | None = None, seed: int = DEFAULT_SEED,
                   iterations: int = bootstrap.ITERATIONS) -> dict[str, dict]:
  """Each task's metrics, standard errors, samples and speed on its first `limit` documents
  (all when None), with `num_fewshot` examples per prompt drawn by random.Random(seed)."""
  check_settings(num_fewshot, limit)
  resolved = [resolve(t) for t in tasks]
  names = [t.name for t in resolved]
  if len(set(names)) < len(names):
    raise ConfigError(f"two tasks are named {next(n for n in names if names.count(n) > 1)!r}: "
                      "give each task once (a task file's name field tells them apart)")
  return {t.name: evaluate_task(lm, t, num_fewshot, limit, seed, iterations) for t in resolved}


def evaluate_task(lm: LM, task: Task, num_fewshot: int, limit: int | None, seed: int,
                  iterations: int) -> dict:
  docs = task.docs[:limit] if limit else task.docs
  began, truncated = time.perf_counter(), lm.truncated
  if task.kind == "rolling_loglikelihood":
    num_fewshot = 0  # the harness scores whole documents without examples
    values, samples = _rolling(lm, task, docs)
  else:
    rng = random.Random(seed)
    prompts = [task.fewshot_prompt(doc, num_fewshot, rng) for doc in docs]
    score = _multiple_choice if task.kind == "multiple_choice" else _generate
    values, samples = score(lm, task, docs, prompts)
  seconds = time.perf_counter() - began
  scores, errors = _metrics(task, values, iterations, seed)
  return {"kind": task.kind, "metrics": scores, "stderr": errors, "num_fewshot": num_fewshot,
          "examples": len(docs), "truncated_requests": lm.truncated - truncated,
          "seconds": seconds,
          "examples_per_second": len(docs) / max(seconds, 1e-9), "samples": samples}


def _multiple_choice(lm: LM, task: Task, docs, prompts) -> tuple[dict, list]:
  choices = [task.doc_choices(doc) for doc in docs]
  answers = np.array([task.doc_answer(doc) for doc in docs])
  scored = lm.loglikelihood([(prompt, task.target_delimiter + choice)
                             for prompt, cs in zip(prompts, choices) for choice in cs])
  ends = np.cumsum([len(cs) for cs in choices])
  lls = [np.array([ll for ll, _ in scored[end - len(cs):end]], np.float64)
         for end, cs in zip(ends, choices)]
  # acc_norm: per character of the choice, without the delimiter (the harness's acc_norm).
  picks = np.array([np.argmax(ll) for ll in lls])
  norm_picks = np.array([np.argmax(ll / np.array([len(c) for c in cs], np.float64))
                         for ll, cs in zip(lls, choices)])
  values = {"acc": (picks == answers).astype(np.float64),
            "acc_norm": (norm_picks == answers).astype(np.float64)}
  firsts = list(zip(prompts, choices, answers, picks, lls))[:NUM_SAMPLES]
  samples = [{"prompt": p, "choices": cs, "answer": int(a), "prediction": int(pick),
              "loglikelihoods": ll.tolist()} for p, cs, a, pick, ll in firsts]
  return values, samples


def _generate(lm: LM, task: Task, docs, prompts) -> tuple[dict, list]:
  targets = [task.doc_target(doc) for doc in docs]
  kwargs = {"until": list(task.until), "max_gen_toks": task.max_gen_toks}
  generations = lm.generate_until([(prompt, dict(kwargs)) for prompt in prompts])
  values = {"generations": generations, "targets": targets}
  if "acc" in task.metrics:
    greedy = lm.loglikelihood([(p, task.target_delimiter + t) for p, t in zip(prompts, targets)])
    values["acc"] = np.array([float(g) for _, g in greedy])
  samples = [{"prompt": p, "target": t, "generation": g}
             for p, t, g in list(zip(prompts, targets, generations))[:NUM_SAMPLES]]
  return values, samples


def _rolling(lm: LM, task: Task, docs) -> tuple[dict, list]:
  texts = [task.doc_text(doc) for doc in docs]
  scored = lm.loglikelihood_rolling(texts)
  values = {"loglikelihood": np.array([ll for ll, _ in scored], np.float64),
            "words": np.array([len(re.split(r"\s+", t)) for t in texts], np.float64),
            "bytes": np.array([len(t.encode("utf-8")) for t in texts], np.float64)}
  samples = [{"text": t[:200], "loglikelihood": float(ll), "tokens": int(n)}
             for t, (ll, n) in list(zip(texts, scored))[:NUM_SAMPLES]]
  return values, samples


def word_perplexity(ll, words) -> float:
  """exp(-sum ll / sum words): the harness's weighted perplexity over whitespace words."""
  return metrics_lib.perplexity(-float(np.sum(ll)), float(np.sum(words)))


def byte_perplexity(ll, num_bytes) -> float:
  """exp(-sum ll / sum UTF-8 bytes)."""
  return metrics_lib.perplexity(-float(np.sum(ll)), float(np.sum(num_bytes)))


def bits_per_byte(ll, num_bytes) -> float:
  """-sum ll / sum UTF-8 bytes / ln 2."""
  return -float(np.sum(ll)) / float(np.sum(num_bytes)) / math.log(2)


def _bleu(generations, targets) -> float:
  return metrics_lib.corpus_bleu(list(generations), list(targets))["bleu"]


def _metrics(task: Task, values: dict, iterations: int, seed: int) -> tuple[dict, dict]:
  """(metric -> value, metric -> bootstrap standard error) of the task's metrics."""
  per_doc, ratios = {}, {}
  if task.kind == "multiple_choice":
    per_doc = {m: values[m] for m in task.metrics}
  elif task.kind == "rolling_loglikelihood":
    functions = {"word_perplexity": (word_perplexity, "words"),
                 "byte_perplexity": (byte_perplexity, "bytes"),
                 "bits_per_byte": (bits_per_byte, "bytes")}
    ratios = {m: (functions[m][0], (values["loglikelihood"], values[functions[m][1]]))
              for m in task.metrics}
  else:
    pairs = list(zip(values["generations"], values["targets"]))
    for m in task.metrics:
      if m == "exact_match":
        per_doc[m] = np.array([metrics_lib.exact_match([g], [t]) for g, t in pairs])
      elif m == "f1":
        per_doc[m] = np.array([squad.token_f1(g, t) for g, t in pairs])
      elif m == "rouge":
        each = [metrics_lib.rouge([g], [t]) for g, t in pairs]
        per_doc.update({k: np.array([e[k] for e in each]) for k in ("rouge1", "rouge2", "rougeL")})
      elif m == "acc":
        per_doc[m] = values["acc"]
    if "bleu" in task.metrics:
      ratios["bleu"] = (_bleu, (values["generations"], values["targets"]))
  scores = {m: float(np.mean(v)) for m, v in per_doc.items()}
  errors = {m: bootstrap.stderr_of_mean(v, iterations, seed) for m, v in per_doc.items()}
  for m, (statistic, columns) in ratios.items():
    scores[m] = statistic(*columns)
    errors[m] = bootstrap.stderr(statistic, columns,
                                 min(iterations, BLEU_ITERATIONS) if m == "bleu" else iterations,
                                 seed)
  order = [k for m in task.metrics
           for k in (("rouge1", "rouge2", "rougeL") if m == "rouge" else (m,))]
  return {m: scores[m] for m in order}, {m: errors[m] for m in order}
