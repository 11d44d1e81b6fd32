"""Fine-tuning tasks derived from the Python standard library (the built-in pretraining corpus).

Every documented function and method (at any depth) of the stdlib modules becomes an example:

- "package" (classification): a function's docstring -> the top-level package of its module
  ("email", "asyncio", ...), for the NUM_PACKAGES packages with the most documented functions
  over all modules, so every split has the same classes; single-file modules take no part.
- "summary" (seq2seq): a function's code without its docstring -> the docstring's first line.
- "identifier" (extractive_qa): context = a function's code without its docstring; question =
  the first sentence of its docstring that names one of its parameters (as a whole word; self,
  cls and common English words left out), that name blanked out as "___" wherever it occurs in
  the sentence; answer = the parameter's first occurrence in the signature. One example per
  such parameter: "Return the ___ of the file." over `def size(path, follow=True): ...` answers
  `path`.
- "instructions" (chat): a user's question about a function's code (at most MAX_CODE_LINES
  lines) and the assistant's answer, one conversation per question, three kinds mixed: "Write a
  one-line summary of this function:" -> the summary target; "Which arguments does this function
  take?" and "What does this function return?" -> answers read off its syntax tree (its
  parameters; the expressions of its own return statements, not a generator's).

Splits hold whole modules, stratified by package so that every class is in every split: each
package's modules (and the single-file modules, as one group) in the order of a hash of their
path give their first tenth (at least one, in a group of three or more) to test, the next to
validation and the rest to train. The order is by module path, then source order.
"""

import ast
import collections
import functools
import inspect
import re
import tokenize
from typing import NamedTuple

from roots_jax.data import sources
from roots_jax.errors import DataError

# The built-in tasks (task.builtin) and the task.kind of their examples.
KINDS = {"package": "classification", "summary": "seq2seq", "identifier": "extractive_qa",
         "instructions": "chat"}
NUM_PACKAGES = 10
TEST_FRACTION = 0.1
VALIDATION_FRACTION = 0.1
# A summary target needs at least this many words ("Return the value." but not "Helper.").
MIN_SUMMARY_WORDS = 3
# Parameter names that are English words too: a sentence holding them need not name them.
_ENGLISH = frozenset("a an and as at be by for from if in is it no not of on or the to with "
                     "all any each new old other same some this that value".split())
# The instructions' functions fit a short prompt; a return answer names short expressions.
MAX_CODE_LINES = 10
MAX_RETURN_CHARS = 60


class Function(NamedTuple):
  module: str     # path relative to the stdlib, e.g. "email/utils.py"
  package: str    # top-level package, "" for a single-file module
  docstring: str  # cleaned (inspect.cleandoc)
  code: str       # source from the `def` line, dedented, docstring lines removed; "" when
                  # the function is only a docstring and pass/... or shares a line with it


def _code_without_docstring(node: ast.FunctionDef | ast.AsyncFunctionDef,
                            lines: list[str]) -> str:
  doc, rest = node.body[0], node.body[1:]
  if (doc.lineno == node.lineno or (rest and rest[0].lineno == doc.end_lineno)
      or all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and
                                         isinstance(s.value, ast.Constant) and
                                         s.value.value is Ellipsis) for s in rest)):
    return ""
  kept = lines[node.lineno - 1:doc.lineno - 1] + lines[doc.end_lineno:node.end_lineno]
  # Unindent by the `def`'s column only: a string literal's lines may start further left.
  return "\n".join(l[min(node.col_offset, len(l) - len(l.lstrip())):] for l in kept)


def _module_functions(root: str, module: str) -> list[Function]:
  """The documented functions of one module in source order; none if it does not parse."""
  try:
    with tokenize.open(f"{root}/{module}") as f:  # PEP 263 encoding, universal newlines
      source = f.read()
    tree = ast.parse(source)
  except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
    return []
  lines = source.split("\n")  # not splitlines(): form feeds would shift ast's line numbers
  package = module.split("/")[0] if "/" in module else ""
  nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
  functions = []
  for node in sorted(nodes, key=lambda n: (n.lineno, n.col_offset)):
    docstring = ast.get_docstring(node, clean=False)
    if docstring:
      functions.append(Function(module, package, inspect.cleandoc(docstring),
                                _code_without_docstring(node, lines)))
  return functions


@functools.lru_cache(maxsize=None)
def functions() -> tuple[Function, ...]:
  """Every documented stdlib function, parsed once per process (several splits use them)."""
  root, modules = sources.builtin_files()
  return tuple(f for m in modules for f in _module_functions(root, m))


@functools.lru_cache(maxsize=None)
def package_names() -> tuple[str, ...]:
  """The NUM_PACKAGES packages with the most documented functions (ties by name), sorted."""
  counts = collections.Counter(f.package for f in functions() if f.package)
  top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:NUM_PACKAGES]
  return tuple(sorted(name for name, _ in top))


@functools.lru_cache(maxsize=None)
def module_splits() -> dict[str, str]:
  """module -> "train" | "validation" | "test" (see the module docstring)."""
  groups = collections.defaultdict(list)
  for module in sorted({f.module for f in functions()}):
    groups[module.split("/")[0] if "/" in module else ""].append(module)
  splits = {}
  for modules in groups.values():
    modules.sort(key=sources.hash01)
    n = len(modules)
    test = max(1, round(n * TEST_FRACTION)) if n >= 3 else 0
    validation = test + (max(1, round(n * VALIDATION_FRACTION)) if n >= 3 else 0)
    for i, module in enumerate(modules):
      splits[module] = "test" if i < test else "validation" if i < validation else "train"
  return splits


def split_of(module: str) -> str:
  return module_splits()[module]


def _summary_target(f: Function) -> str:
  """The docstring's first non-empty line if it makes a summary of `f`'s code, else ""."""
  line = next((l.strip() for l in f.docstring.splitlines() if l.strip()), "")
  if not f.code or len(line.split()) < MIN_SUMMARY_WORDS or line in f.code:
    return ""
  return line


def _identifier_examples(f: Function) -> list[dict]:
  """The "identifier" examples of `f` (see the module docstring), as tasks.extractive_qa's."""
  try:
    tree = ast.parse(f.code)
  except SyntaxError:
    return []
  if not f.code or not tree.body or not isinstance(tree.body[0], (ast.FunctionDef,
                                                                  ast.AsyncFunctionDef)):
    return []
  a = tree.body[0].args
  names = [p.arg for p in (*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg)
           if p is not None and p.arg not in ("self", "cls") and len(p.arg) > 1
           and p.arg.lower() not in _ENGLISH]
  text = " ".join(f.docstring.split())
  sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if s]
  signature = f.code.index("(") + 1
  examples = []
  for name in names:
    word = re.compile(rf"(?<![\w.]){re.escape(name)}(?!\w)")
    sentence = next((s for s in sentences if word.search(s)), None)
    where = word.search(f.code, signature)
    if sentence is None or where is None:
      continue
    examples.append({"question": word.sub("___", sentence), "context": f.code,
                     "answers": [(name, where.start())]})
  return examples


def _own_nodes(node: ast.AST):
  """The nodes of a function's body, not those of the functions, lambdas and classes in it."""
  for child in ast.iter_child_nodes(node):
    yield child
    if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
      yield from _own_nodes(child)


def _arguments_answer(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
  a = node.args
  names = ([p.arg for p in a.posonlyargs + a.args] + ([f"*{a.vararg.arg}"] if a.vararg else [])
           + [p.arg for p in a.kwonlyargs] + ([f"**{a.kwarg.arg}"] if a.kwarg else []))
  if not names:
    return "It takes no arguments."
  return f"It takes {', '.join(names[:-1])} and {names[-1]}." if len(names) > 1 else (
      f"It takes {names[0]}.")


def _returns_answer(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
  """"" for a generator or a return expression over MAX_RETURN_CHARS."""
  own = list(_own_nodes(node))
  if any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in own):
    return ""
  values = list(dict.fromkeys(ast.unparse(n.value) for n in own
                              if isinstance(n, ast.Return) and n.value is not None))
  if any(len(v) > MAX_RETURN_CHARS for v in values):
    return ""
  if not values:
    return "It returns None."
  return f"It returns {values[0]}." if len(values) == 1 else (
      f"It returns one of: {'; '.join(values)}.")


def _conversation(question: str, code: str, answer: str) -> dict:
  prompt = f"{question}\n{code}"
  return {"messages": [{"role": "user", "content": prompt},
                       {"role": "assistant", "content": answer}],
          "text": prompt, "target": answer}


def _instructions(f: Function) -> list[dict]:
  """The built-in "instructions" conversations about `f` (see the module docstring)."""
  if not f.code or f.code.count("\n") >= MAX_CODE_LINES:
    return []
  try:
    node = ast.parse(f.code).body[0]
  except SyntaxError:
    return []
  answers = [("Write a one-line summary of this function:", _summary_target(f)),
             ("Which arguments does this function take?", _arguments_answer(node)),
             ("What does this function return?", _returns_answer(node))]
  return [_conversation(q, f.code, a) for q, a in answers if a]


def load_examples(name: str, split: str) -> list[dict[str, str]]:
  """The examples of built-in task `name` ("package" | "summary" | "identifier" |
  "instructions") in `split`."""
  if split not in ("train", "validation", "test"):
    raise ValueError(f"split must be train, validation or test, not {split!r}")
  ours = [f for f in functions() if split_of(f.module) == split]
  if name == "package":
    classes = set(package_names())
    examples = [{"text": f.docstring, "label": f.package} for f in ours if f.package in classes]
  elif name == "summary":
    examples = [{"text": f.code, "target": t} for f in ours if (t := _summary_target(f))]
  elif name == "identifier":
    examples = [e for f in ours for e in _identifier_examples(f)]
  elif name == "instructions":
    examples = [e for f in ours for e in _instructions(f)]
  else:
    raise DataError(f"unknown built-in task {name!r}; set task.builtin to package, summary, "
                    "identifier or instructions")
  if not examples:
    raise DataError(f"the built-in task {name!r} has no {split} examples in this Python's "
                    f"standard library ({sources.builtin_files()[0]}); use task.source=files")
  return examples
