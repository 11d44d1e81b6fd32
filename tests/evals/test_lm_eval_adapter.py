"""The lm-evaluation-harness adapter run by the harness itself on task YAMLs over local JSONL
files: its acc, acc_norm and exact_match equal those computed by hand from InContextLM, and our
runner's on the same documents."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from roots_jax.evals import incontext
from roots_jax.evals.incontext_lm import rolling_windows
from roots_jax.runs import load as load_lib
from roots_jax.runs.incontext import lm_of

pytestmark = pytest.mark.extra("lmeval")

CHOICE_DOCS = [
    {"question": "Ba ko mi", "choices": ["tu ze.", "seven", "42 42 42 ko", "lo"], "answer": 0},
    {"question": "Lo pa ri", "choices": ["7.", "ba ko mi tu", "ze"], "answer": 2},
    {"question": "Seven", "choices": ["ba", "ko ko ko ko ko", "42."], "answer": 1},
    {"question": "Ze ze", "choices": ["mi tu.", "pa", "ri 7 seven"], "answer": 1},
    {"question": "Tu", "choices": ["lo lo.", "42", "ba ko", "mi"], "answer": 3},
]
PROMPTS = ["Ba ko mi", "Lo pa ri 7", "Ze", "Seven tu"]
CHOICE_TASK = """task: rj_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""
GENERATE_TASK = """task: rj_generate
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["."]
  max_gen_toks: 8
  do_sample: false
metric_list:
  - metric: exact_match
"""


def _write(path, docs):
  path.write_text("".join(json.dumps(d) + "\n" for d in docs))
  return path


@pytest.fixture(scope="module")
def tasks(pretrained, tmp_path_factory):
  """(directory of the task YAMLs, the run's InContextLM): the generation task's first two
  answers are the model's own greedy outputs, the others never produced."""
  root = tmp_path_factory.mktemp("lm_eval_tasks")
  icl = lm_of(load_lib.load(pretrained["decoder"]))
  outputs = icl.generate_until([(p, {"until": ["."], "max_gen_toks": 8}) for p in PROMPTS])
  answers = outputs[:2] + ["never said", "not this"]
  generate = [{"prompt": p, "answer": a} for p, a in zip(PROMPTS, answers)]
  (root / "choice.yaml").write_text(CHOICE_TASK.format(
      data=_write(root / "choice.jsonl", CHOICE_DOCS)))
  (root / "generate.yaml").write_text(GENERATE_TASK.format(
      data=_write(root / "generate.jsonl", generate)))
  return root, icl, answers


def test_the_harness_scores_the_adapter_as_computed_by_hand(pretrained, tasks, monkeypatch):
  root, icl, answers = tasks
  monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
  import lm_eval  # pylint: disable=import-outside-toplevel
  from roots_jax.runs.lm_eval_adapter import RootsJaxLM  # pylint: disable=import-outside-toplevel
  assert lm_eval.api.registry.get_model("roots_jax") is RootsJaxLM
  assert lm_eval.api.registry.get_model("dummy").__name__ == "DummyLM"  # the harness's own stay
  out = lm_eval.simple_evaluate(
      model="roots_jax", model_args=f"path={pretrained['decoder']},batch_size=8",
      tasks=["rj_choice", "rj_generate"],
      task_manager=lm_eval.tasks.TaskManager(include_path=str(root)))
  results = out["results"]
  # By hand: the harness asks for each choice after the question and its " " delimiter.
  acc, acc_norm = [], []
  for doc in CHOICE_DOCS:
    scores = np.array([s for s, _ in icl.loglikelihood(
        [(doc["question"], " " + c) for c in doc["choices"]])])
    lengths = np.array([len(c) for c in doc["choices"]], float)
    acc.append(scores.argmax() == doc["answer"])
    acc_norm.append((scores / lengths).argmax() == doc["answer"])
  assert 0 < np.mean(acc_norm) < 1 or 0 < np.mean(acc) < 1, "choices that tell the two apart"
  assert results["rj_choice"]["acc,none"] == pytest.approx(np.mean(acc))
  assert results["rj_choice"]["acc_norm,none"] == pytest.approx(np.mean(acc_norm))
  # Our runner, on the same documents as a task file, gives the harness's numbers.
  (root / "ours.json").write_text(json.dumps({
      "name": "rj_choice", "kind": "multiple_choice", "data": {"test": "choice.jsonl"},
      "context": "{question}", "choices": "choices", "answer": "answer"}))
  ours = incontext.evaluate_tasks(icl, [str(root / "ours.json")])["rj_choice"]["metrics"]
  assert ours["acc"] == pytest.approx(results["rj_choice"]["acc,none"])
  assert ours["acc_norm"] == pytest.approx(results["rj_choice"]["acc_norm,none"])
  generated = icl.generate_until([(p, {"until": ["."], "max_gen_toks": 8}) for p in PROMPTS])
  assert results["rj_generate"]["exact_match,none"] == pytest.approx(
      np.mean([g == a for g, a in zip(generated, answers)])) == pytest.approx(0.5)


def test_rolling_windows_are_the_harness_windows():
  from lm_eval import utils  # pylint: disable=import-outside-toplevel
  for length, max_len in ((1, 4), (4, 4), (5, 4), (10, 4), (23, 8), (64, 64), (200, 64)):
    tokens = list(range(10, 10 + length))
    want = [utils.make_disjoint_window(w) for w in utils.get_rolling_token_windows(
        tokens, prefix_token=2, max_seq_len=max_len, context_len=1)]
    assert rolling_windows(tokens, 2, max_len) == [tuple(w) for w in want]


def test_the_command_runs_a_task_through_the_harness(pretrained, tasks, tmp_path):
  root, _, _ = tasks
  env = dict(os.environ, HF_DATASETS_OFFLINE="1", PYTHONPATH=os.getcwd())
  done = subprocess.run(
      [sys.executable, "-m", "roots_jax.lm_eval", "run", "--model", "roots_jax", "--model_args",
       f"path={pretrained['decoder']},batch_size=8", "--batch_size", "1", "--tasks",
       "rj_generate", "--include_path", str(root),
       "--output_path", str(tmp_path / "out")], env=env, capture_output=True, text=True,
      check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "rj_generate" in done.stdout and "exact_match" in done.stdout
