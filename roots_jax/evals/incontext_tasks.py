"""In-context (zero- and few-shot) tasks: what a document asks of a language model, and the
prompts that ask it, as EleutherAI's lm-evaluation-harness builds them.

A task is a JSON file beside its JSONL data (one record, a JSON object, per line):

  {
    "name": "capitals",                       # default: the file's name without .json
    "kind": "multiple_choice",                # | "rolling_loglikelihood" | "generate_until"
    "data": {"train": "train.jsonl", "test": "test.jsonl"},   # split -> path (relative to
                                              # the task file); any split names
    "eval_split": "test",                     # default: test, else validation, of those given
    "fewshot_split": "train",                 # default: train if given, else eval_split
    "description": "",                        # prefixed to every prompt as is (end it with
                                              # "\n\n" to set it apart)
    "context": "Q: What is the capital of {country}?\nA:",    # a template (below)
    "choices": "options",                     # multiple_choice: a field holding a list of
                                              # strings, or a list of templates
    "answer": "label",                        # multiple_choice: a field holding the index of
                                              # the true choice or its text
    "target": "{capital}",                    # generate_until: the reference (a template)
    "until": ["\n"],                          # generate_until: stop strings (default ["\n\n"])
    "max_gen_toks": 32,                       # generate_until: default 32
    "text": "{text}",                         # rolling_loglikelihood: the scored document
    "target_delimiter": " ",                  # between context and answer (default " ")
    "fewshot_delimiter": "\n\n",              # after each few-shot example (default "\n\n")
    "metrics": ["acc", "acc_norm"]            # default: all of the kind's (below)
  }

Templates are Python str.format strings over the record's fields ("{question}", "{{" for a
brace). Metrics by kind: multiple_choice acc, acc_norm (the choice with the highest log-likelihood,
per character of the choice for acc_norm); rolling_loglikelihood word_perplexity,
byte_perplexity, bits_per_byte (of the whole text; few-shot examples are not used);
generate_until exact_match, f1 (SQuAD's token F1), bleu, rouge (rouge1, rouge2, rougeL), and acc:
whether the reference is the model's greedy continuation by log-likelihood (LAMBADA's accuracy).

A prompt with K shots: the description, then K documents drawn from the few-shot split by one
random.Random(seed) per task, in document order (when the few-shot split is the evaluated one,
K+1 are drawn and the evaluated document left out), each as context + target_delimiter + answer +
fewshot_delimiter, then the evaluated document's context: the harness's plain-text prompt.
"""

import dataclasses
import json
import os
import random
from typing import Any

from roots_jax.errors import ConfigError, DataError

KINDS = ("multiple_choice", "rolling_loglikelihood", "generate_until")
METRICS = {
    "multiple_choice": ("acc", "acc_norm"),
    "rolling_loglikelihood": ("word_perplexity", "byte_perplexity", "bits_per_byte"),
    "generate_until": ("exact_match", "f1", "bleu", "rouge", "acc"),
}
_NEEDS = {"multiple_choice": ("context", "choices", "answer"),
          "rolling_loglikelihood": ("text",), "generate_until": ("context", "target")}
_FIELDS = {"name", "kind", "data", "eval_split", "fewshot_split", "description", "context",
           "choices", "answer", "target", "until", "max_gen_toks", "text", "target_delimiter",
           "fewshot_delimiter", "metrics"}


@dataclasses.dataclass
class Task:
  """A task's documents and how to prompt with them (see the module docstring)."""
  name: str
  kind: str
  docs: list[dict[str, Any]]          # the evaluated split's records
  fewshot_docs: list[dict[str, Any]]  # the few-shot split's records
  fewshot_is_eval: bool               # the few-shot split is the evaluated split
  metrics: tuple[str, ...]
  context: str = ""
  choices: str | list[str] = ""
  answer: str = ""
  target: str = ""
  text: str = ""
  until: tuple[str, ...] = ("\n\n",)
  max_gen_toks: int = 32
  description: str = ""
  target_delimiter: str = " "
  fewshot_delimiter: str = "\n\n"
  where: str = ""                     # the task file, for error messages

  def _fill(self, template: str, doc: dict, key: str) -> str:
    try:
      return template.format_map(doc)
    except (KeyError, IndexError, ValueError, AttributeError) as e:
      raise DataError(f"{self.where or self.name}: {key} template {template!r} does not fit "
                      f"the record {_short(doc)} ({type(e).__name__}: {e})") from e

  def doc_context(self, doc: dict) -> str:
    return self._fill(self.context, doc, "context")

  def doc_choices(self, doc: dict) -> list[str]:
    if isinstance(self.choices, list):
      return [self._fill(c, doc, "choices") for c in self.choices]
    values = doc.get(self.choices)
    if not (isinstance(values, list) and values and all(isinstance(v, str) for v in values)):
      raise DataError(f"{self.where or self.name}: choices field {self.choices!r} of the record "
                      f"{_short(doc)} is not a non-empty list of strings")
    return values

  def doc_answer(self, doc: dict) -> int:
    """The index of the true choice."""
    choices, value = self.doc_choices(doc), doc.get(self.answer)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(choices):
      return value
    if isinstance(value, str) and value in choices:
      return choices.index(value)
    raise DataError(f"{self.where or self.name}: answer field {self.answer!r} of the record "
                    f"{_short(doc)} is neither an index of its {len(choices)} choices nor one "
                    "of them")

  def doc_target(self, doc: dict) -> str:
    """The answer a few-shot example shows: the true choice, or the reference."""
    if self.kind == "multiple_choice":
      return self.doc_choices(doc)[self.doc_answer(doc)]
    return self._fill(self.target, doc, "target")

  def doc_text(self, doc: dict) -> str:
    return self._fill(self.text, doc, "text")

  def fewshot_prompt(self, doc: dict, num_fewshot: int, rng: random.Random) -> str:
    """The prompt for `doc` with `num_fewshot` examples drawn by `rng` (the harness's
    ContextSampler.sample and ConfigurableTask.fewshot_context, in plain text)."""
    shots = []
    if num_fewshot > 0:
      pool = self.fewshot_docs
      wanted = num_fewshot + 1 if self.fewshot_is_eval else num_fewshot
      if len(pool) < wanted:
        raise ConfigError(f"{self.name}: {num_fewshot} shots need {wanted} few-shot documents; "
                          f"the few-shot split has {len(pool)}: lower --num_fewshot")
      shots = rng.sample(pool, wanted)
      if self.fewshot_is_eval:
        shots = [d for d in shots if d != doc][:num_fewshot]
        if len(shots) < num_fewshot:  # copies of doc drawn: draw again from the others
          shots = rng.sample([d for d in pool if d != doc], num_fewshot)
    examples = "".join(self.doc_context(d) + self.target_delimiter + self.doc_target(d)
                       + self.fewshot_delimiter for d in shots)
    return self.description + examples + self.doc_context(doc)


def _short(doc: dict, most: int = 80) -> str:
  text = json.dumps(doc, ensure_ascii=False)
  return text if len(text) <= most else text[:most - 3] + "..."


def _read_jsonl(path: str, where: str) -> list[dict]:
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"{where}: cannot read {path}: {getattr(e, 'strerror', None) or e}") from e
  docs = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      doc = json.loads(line)
    except json.JSONDecodeError as e:
      raise DataError(f"{path}:{number}: not JSON ({e.msg}); one JSON object per line") from e
    if not isinstance(doc, dict):
      raise DataError(f"{path}:{number}: a JSON {type(doc).__name__}, not an object")
    docs.append(doc)
  if not docs:
    raise DataError(f"{where}: {path} holds no records")
  return docs


def _check_type(spec: dict, key: str, types, what: str, path: str) -> None:
  if key in spec and not isinstance(spec[key], types):
    raise ConfigError(f"{path}: {key} must be {what}, not {json.dumps(spec[key])[:60]}")


def load_task(path: str) -> Task:
  """The task described by the JSON file at `path` (see the module docstring), its data read;
  a ConfigError (the file, the key, what to change) or DataError (the data) when it cannot be."""
  try:
    with open(path, encoding="utf-8") as f:
      spec = json.load(f)
  except OSError as e:
    raise ConfigError(f"cannot read the task file {path}: {e.strerror}; give a task file or a "
                      "built-in task's name") from e
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ConfigError(f"{path}: not a JSON task file ({e})") from e
  if not isinstance(spec, dict):
    raise ConfigError(f"{path}: a task file holds a JSON object, not a {type(spec).__name__}")
  unknown = sorted(set(spec) - _FIELDS)
  if unknown:
    raise ConfigError(f"{path}: unknown key {unknown[0]!r}; the keys are "
                      f"{', '.join(sorted(_FIELDS))}")
  kind = spec.get("kind")
  if kind not in KINDS:
    raise ConfigError(f"{path}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
  for key in ("kind",) + _NEEDS[kind] + ("data",):
    if key not in spec:
      raise ConfigError(f"{path}: a {kind} task needs the key {key!r}")
  for key in ("name", "eval_split", "fewshot_split", "description", "context", "answer",
              "target", "text", "target_delimiter", "fewshot_delimiter"):
    _check_type(spec, key, str, "a string", path)
  _check_type(spec, "choices", (str, list), "a field name or a list of templates", path)
  _check_type(spec, "until", list, "a list of stop strings", path)
  _check_type(spec, "metrics", list, "a list of metric names", path)
  _check_type(spec, "data", dict, 'an object {"split": "file.jsonl", ...}', path)
  max_gen_toks = spec.get("max_gen_toks", 1)
  if isinstance(max_gen_toks, bool) or not isinstance(max_gen_toks, int) or max_gen_toks < 1:
    raise ConfigError(f"{path}: max_gen_toks must be a positive integer")
  metrics = tuple(spec.get("metrics", METRICS[kind]))
  for metric in metrics:
    if metric not in METRICS[kind]:
      raise ConfigError(f"{path}: metrics: {metric!r} is not a {kind} metric; choose from "
                        f"{', '.join(METRICS[kind])}")
  data = spec["data"]
  if not data:
    raise ConfigError(f"{path}: data names no split")
  eval_split = spec.get("eval_split") or next((s for s in ("test", "validation") if s in data),
                                              "")
  fewshot_split = spec.get("fewshot_split") or ("train" if "train" in data else eval_split)
  for key, split in (("eval_split", eval_split), ("fewshot_split", fewshot_split)):
    if split not in data:
      raise ConfigError(f"{path}: {key} {split!r} is not a split of data ({', '.join(data)}); "
                        f"set {key}")
  base = os.path.dirname(os.path.abspath(path))
  read = {split: _read_jsonl(os.path.join(base, data[split]), f"{path}: data.{split}")
          for split in {eval_split, fewshot_split}}
  fields = {k: spec[k] for k in ("context", "choices", "answer", "target", "text",
                                 "description", "target_delimiter", "fewshot_delimiter",
                                 "max_gen_toks") if k in spec}
  if "until" in spec:
    fields["until"] = tuple(spec["until"])
  name = spec.get("name") or os.path.splitext(os.path.basename(path))[0]
  return Task(name=name, kind=kind, docs=read[eval_split], fewshot_docs=read[fewshot_split],
              fewshot_is_eval=fewshot_split == eval_split, metrics=metrics, where=path, **fields)
