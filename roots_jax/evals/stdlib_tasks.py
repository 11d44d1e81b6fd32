"""Built-in in-context tasks from the Python standard library, so a model can be scored with no
data (the built-in pretraining corpus is the stdlib too):

- stdlib_next_line (multiple choice): a function's first lines -> its true next line among four;
  the three others are lines of other functions, indented like the true one.
- stdlib_docstring_name (multiple choice): a function's docstring, as comments, then "def" ->
  the function's name among four names of other functions.
- stdlib_cloze (generate_until, LAMBADA-style): a function up to the last identifier of one of
  its lines (up to CLOZES_PER_FUNCTION lines each), an identifier already used above it -> that
  identifier (with the spaces before it); scored by exact match of the greedy generation (cut at
  the first character but a space that cannot continue an identifier) and by acc, whether the
  identifier is the model's greedy continuation.
- stdlib_bpb (rolling_loglikelihood): whole held-out modules -> bits per byte and word and byte
  perplexity.

Evaluated documents come from the modules a pretraining run on the built-in corpus holds out
(sources.BuiltinSource("eval", EVAL_FRACTION), the quickstart's data.eval_fraction), few-shot
examples from the first FEWSHOT_MODULES of its training modules in the order of a hash of their
path. Every choice is drawn by a random.Random seeded with the document's module and line, so the
tasks are the same on every machine with the same Python; at most MAX_EXAMPLES documents each,
built once per process.
"""

import ast
import functools
import keyword
import os
import random
import re
import string
import tokenize
from typing import NamedTuple

from roots_jax.data import sources
from roots_jax.errors import DataError
from roots_jax.evals.incontext_tasks import Task

EVAL_FRACTION = 0.02   # the quickstart's data.eval_fraction: its held-out modules
FEWSHOT_MODULES = 40
MAX_EXAMPLES = 200
CLOZES_PER_FUNCTION = 3
MAX_CONTEXT_LINES = 12  # a next-line or cloze context shows at most this many lines
_LINE = re.compile(r"^(.*\W)([A-Za-z_]\w*)$")  # a line ending in an identifier
# Stop strings of the cloze: anything that cannot continue an identifier but the space that may
# open the target (exact match strips the generation).
_NOT_IDENTIFIER = tuple(sorted(set(string.punctuation + string.whitespace) - {"_", " "}))


class Function(NamedTuple):
  where: str                # "module:line", seeding its choices
  name: str
  docstring: str            # cleaned; "" without one
  lines: tuple[str, ...]    # the source, dedented by the `def`'s column
  body_start: int           # index in lines of the first line after the docstring


def _functions(module: str) -> list[Function]:
  root = sources.builtin_files()[0]
  try:
    with tokenize.open(os.path.join(root, module)) as f:
      source = f.read()
    tree = ast.parse(source)
  except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
    return []
  lines = source.split("\n")  # not splitlines(): form feeds would shift ast's line numbers
  found = []
  for node in ast.walk(tree):
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      continue
    code = lines[node.lineno - 1:node.end_lineno]
    code = tuple(l[min(node.col_offset, len(l) - len(l.lstrip())):] for l in code)
    docstring = ast.get_docstring(node) or ""
    body_start = node.body[0].end_lineno - node.lineno + 1 if docstring else 1
    found.append(Function(f"{module}:{node.lineno}", node.name, docstring, code, body_start))
  return sorted(found, key=lambda f: int(f.where.rsplit(":", 1)[1]))


@functools.lru_cache(maxsize=None)
def _split_functions(split: str) -> tuple[Function, ...]:
  """"eval": the held-out modules' functions; "train": FEWSHOT_MODULES training modules'."""
  files = sources.BuiltinSource(split, EVAL_FRACTION).files
  if split == "train":
    files = sorted(sorted(files, key=sources.hash01)[:FEWSHOT_MODULES])
  return tuple(f for m in files for f in _functions(m))


def _candidate_lines(f: Function) -> list[int]:
  """Indices of body lines worth predicting: code (not blank, not a comment) of 8 to 80
  characters, with at least one line of body above them."""
  last = min(len(f.lines), f.body_start + MAX_CONTEXT_LINES)
  return [i for i in range(f.body_start + 1, last)
          if 8 <= len(f.lines[i].strip()) <= 80 and not f.lines[i].strip().startswith("#")]


def _context(f: Function, end: int) -> str:
  start = max(0, end - MAX_CONTEXT_LINES)
  return "\n".join(f.lines[start:end])


def _shuffled_choices(rng: random.Random, true: str, others: list[str]) -> tuple[list[str], int]:
  choices = [true] + others
  rng.shuffle(choices)
  return choices, choices.index(true)


def _next_line_docs(functions: tuple[Function, ...]) -> list[dict]:
  pool = sorted({f.lines[i].strip() for f in functions for i in _candidate_lines(f)})
  docs = []
  for f in functions:
    candidates = _candidate_lines(f)
    if not candidates:
      continue
    rng = random.Random(f.where)
    i = rng.choice(candidates)
    true = f.lines[i]
    indent = true[:len(true) - len(true.lstrip())]
    others = [indent + line for line in rng.sample(pool, 4) if line != true.strip()][:3]
    choices, answer = _shuffled_choices(rng, true, others)
    docs.append({"context": _context(f, i), "choices": choices, "answer": answer})
  return docs


def _docstring_prompt(docstring: str) -> str:
  paragraph = docstring.split("\n\n")[0].strip()[:300]
  return "\n".join(f"# {line}".rstrip() for line in paragraph.splitlines())


def _docstring_name_docs(functions: tuple[Function, ...]) -> list[dict]:
  usable = [f for f in functions if f.docstring and not f.name.startswith("_")
            and f.name not in f.docstring]
  names = sorted({f.name for f in usable})
  docs = []
  for f in usable:
    rng = random.Random(f.where)
    others = [n for n in rng.sample(names, min(4, len(names))) if n != f.name][:3]
    if len(others) < 3:
      continue
    choices, answer = _shuffled_choices(rng, f.name, others)
    docs.append({"context": _docstring_prompt(f.docstring) + "\ndef", "choices": choices,
                 "answer": answer})
  return docs


def _cloze_docs(functions: tuple[Function, ...]) -> list[dict]:
  docs = []
  for f in functions:
    found = []
    for i in _candidate_lines(f):
      match = _LINE.match(f.lines[i].rstrip())
      if match and not keyword.iskeyword(match[2]) and len(match[2]) > 1 and \
          re.search(rf"\b{match[2]}\b", _context(f, i)):
        found.append((i, match))
    rng = random.Random(f.where)
    for i, match in sorted(rng.sample(found, min(CLOZES_PER_FUNCTION, len(found)))):
      # The spaces before the identifier open the target, as LAMBADA's space opens its word: a
      # prompt ending in a space tokenizes as no training text did ("= " + "name", not "=" +
      # " name"), and a model continues it badly.
      before = match[1].rstrip(" ")
      docs.append({"context": _context(f, i) + "\n" + before,
                   "target": match[1][len(before):] + match[2]})
  return docs


def _module_docs(split: str) -> list[dict]:
  root = sources.builtin_files()[0]
  files = sources.BuiltinSource(split, EVAL_FRACTION).files
  docs = []
  for module in files:
    with open(os.path.join(root, module), encoding="utf-8", errors="replace") as f:
      docs.append({"text": f.read()})
  return docs


_BUILDERS = {"stdlib_next_line": _next_line_docs, "stdlib_docstring_name": _docstring_name_docs,
             "stdlib_cloze": _cloze_docs}
NAMES = (*_BUILDERS, "stdlib_bpb")


@functools.lru_cache(maxsize=None)
def _docs(name: str, split: str) -> tuple[dict, ...]:
  if name == "stdlib_bpb":
    docs = _module_docs(split)
  else:
    docs = _BUILDERS[name](_split_functions(split))
  if not docs:
    raise DataError(f"the built-in task {name} has no {split} documents in this Python's "
                    f"standard library ({sources.builtin_files()[0]}); use a task file")
  return tuple(docs[:MAX_EXAMPLES])


def builtin_task(name: str) -> Task:
  """The built-in task `name` (one of NAMES)."""
  if name == "stdlib_bpb":
    return Task(name=name, kind="rolling_loglikelihood", docs=list(_docs(name, "eval")),
                fewshot_docs=[], fewshot_is_eval=False,
                metrics=("word_perplexity", "byte_perplexity", "bits_per_byte"), text="{text}")
  common = dict(name=name, docs=list(_docs(name, "eval")), fewshot_docs=list(_docs(name, "train")),
                fewshot_is_eval=False, context="{context}")
  if name == "stdlib_cloze":
    return Task(kind="generate_until", metrics=("exact_match", "acc"), target="{target}",
                target_delimiter="", until=_NOT_IDENTIFIER, max_gen_toks=16, **common)
  return Task(kind="multiple_choice", metrics=("acc", "acc_norm"), choices="choices",
              answer="answer", target_delimiter="\n" if name == "stdlib_next_line" else " ",
              **common)
