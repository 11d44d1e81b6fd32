"""The built-in tasks derived from the standard library: splits, classes and targets."""

import collections

import pytest

from roots_jax.data import builtin_tasks, sources

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def package():
  return {split: builtin_tasks.load_examples("package", split) for split in SPLITS}


@pytest.fixture(scope="module")
def summary():
  return {split: builtin_tasks.load_examples("summary", split) for split in SPLITS}


def test_parsing_is_deterministic():
  functions = builtin_tasks.functions()
  root, modules = sources.builtin_files()
  sample = modules[::25]  # a fresh parse of every 25th module (a full one takes seconds)
  again = [f for m in sample for f in builtin_tasks._module_functions(root, m)]
  assert again == [f for f in functions if f.module in set(sample)]
  assert [f.module for f in functions] == sorted(f.module for f in functions)
  assert builtin_tasks.load_examples("summary", "test") == builtin_tasks.load_examples(
      "summary", "test")


def test_splits_hold_whole_modules():
  by_split = collections.defaultdict(set)
  for f in builtin_tasks.functions():
    by_split[builtin_tasks.split_of(f.module)].add(f.module)
  assert set(by_split) == set(SPLITS)
  assert not (by_split["train"] & by_split["validation"] or by_split["train"] & by_split["test"]
              or by_split["validation"] & by_split["test"])
  # Stratified by package: each class is in every split.
  package = {m.split("/")[0] for m in by_split["test"] | by_split["validation"] if "/" in m}
  assert set(builtin_tasks.package_names()) <= package


def test_package_classes(package):
  names = builtin_tasks.package_names()
  assert len(names) == builtin_tasks.NUM_PACKAGES and list(names) == sorted(names)
  assert {"asyncio", "email"} <= set(names)
  for examples in package.values():
    assert {e["label"] for e in examples} <= set(names)
  for split in SPLITS:  # every class is trained on and scored
    assert {e["label"] for e in package[split]} == set(names), split
  assert len(package["train"]) > 1000 and all(len(package[s]) > 100 for s in SPLITS[1:])


def test_every_label_is_the_functions_package():
  classes = set(builtin_tasks.package_names())
  for f in builtin_tasks.functions():
    if f.package:
      assert f.module.split("/")[0] == f.package
    else:
      assert "/" not in f.module
  examples = builtin_tasks.load_examples("package", "validation")
  expected = [{"text": f.docstring, "label": f.package} for f in builtin_tasks.functions()
              if builtin_tasks.split_of(f.module) == "validation" and f.package in classes]
  assert examples == expected


def test_summary_targets_never_appear_in_inputs(summary):
  for examples in summary.values():
    for e in examples:
      assert e["target"] not in e["text"] and len(e["target"].split()) >= 3
      assert e["text"].startswith(("def ", "async def ")) and e["target"] == e["target"].strip()
  assert len(summary["train"]) > 3000 and all(len(summary[s]) > 200 for s in SPLITS[1:])


def test_docstring_is_removed_from_code(tmp_path):
  source = ('class A:\n'
            '    @property\n'
            '    def f(self, x=1):\n'
            '        """Return the value of x.\n\n'
            '        More lines.\n'
            '        """\n'
            '        text = """\n'
            'kept"""\n'
            '        return x\n'
            '\n'
            '    def g(self):\n'
            '        """Only a docstring."""\n'
            '        ...\n')
  (tmp_path / "m.py").write_text(source)
  f, g = builtin_tasks._module_functions(str(tmp_path), "m.py")
  assert f.docstring == "Return the value of x.\n\nMore lines."
  assert f.code == 'def f(self, x=1):\n    text = """\nkept"""\n    return x'
  assert g.code == "" and builtin_tasks._summary_target(g) == ""
  assert builtin_tasks._summary_target(f) == "Return the value of x."
