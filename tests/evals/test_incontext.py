"""In-context tasks: task files and their errors, few-shot prompts exactly as the harness builds
them, each metric against a hand computation, bootstrap errors against numpy, the runner's output
with a fake model, and the built-in stdlib tasks."""

import json
import math
import os
import random

import numpy as np
import pytest

from roots_jax import evaluate as evaluate_cli
from roots_jax import metrics as metrics_lib
from roots_jax.data import sources
from roots_jax.errors import ConfigError, DataError
from roots_jax.evals import incontext, incontext_tasks, stdlib_tasks
from roots_jax.metrics import bootstrap, squad
from roots_jax.runs import evaluation, workdir as workdir_lib
from roots_jax.runs.incontext import lm_of
from tiny_gpt import tiny_finetune_config


class FakeLM:
  """Scores a continuation by a table (default -10), a text by -0.5 nats per byte, and
  generates from a table keyed by the prompt after its last blank line; records every call."""

  truncated = 0

  def __init__(self, scores=None, greedy=(), generations=None):
    self.scores, self.greedy, self.generations = scores or {}, set(greedy), generations or {}
    self.calls = []

  def loglikelihood(self, requests):
    self.calls.append(("loglikelihood", list(requests)))
    return [(self.scores.get(c, -10.0), c in self.greedy) for _, c in requests]

  def loglikelihood_rolling(self, texts):
    self.calls.append(("loglikelihood_rolling", list(texts)))
    return [(-0.5 * len(t.encode()), len(t.split())) for t in texts]

  def generate_until(self, requests):
    self.calls.append(("generate_until", list(requests)))
    return [self.generations.get(c.split("\n\n")[-1], "") for c, _ in requests]


def _write_task(tmp_path, spec, splits):
  for split, docs in splits.items():
    with open(tmp_path / f"{split}.jsonl", "w") as f:
      f.write("".join(json.dumps(d) + "\n" for d in docs))
  spec = {"data": {s: f"{s}.jsonl" for s in splits}, **spec}
  path = tmp_path / "task.json"
  path.write_text(json.dumps(spec))
  return str(path)


CAPITALS = [{"country": c, "capital": k} for c, k in
            (("France", "Paris"), ("Peru", "Lima"), ("Japan", "Tokyo"), ("Chad", "N'Djamena"))]
QA = {"name": "capitals", "kind": "generate_until", "context": "Q: capital of {country}?\nA:",
      "target": "{capital}", "until": ["\n"], "metrics": ["exact_match", "f1", "acc"]}


def test_fewshot_prompts_are_the_harness_prompts(tmp_path):
  task = incontext_tasks.load_task(_write_task(tmp_path, {**QA, "description": "Capitals.\n\n"},
                                               {"train": CAPITALS[:3], "test": CAPITALS[3:]}))
  # random.Random(7).sample over 3 documents, 2 drawn: positions 1 then 0 (the same draw as
  # random.Random(7).sample(range(3), 2)).
  assert random.Random(7).sample(range(3), 2) == [1, 0]
  prompt = task.fewshot_prompt(task.docs[0], 2, random.Random(7))
  assert prompt == ("Capitals.\n\n"
                    "Q: capital of Peru?\nA: Lima\n\n"
                    "Q: capital of France?\nA: Paris\n\n"
                    "Q: capital of Chad?\nA:")
  assert task.fewshot_prompt(task.docs[0], 0, random.Random(7)) == (
      "Capitals.\n\nQ: capital of Chad?\nA:")


def test_fewshot_from_the_evaluated_split_leaves_the_document_out(tmp_path):
  spec = {**QA, "target_delimiter": " -> ", "fewshot_delimiter": "\n"}
  task = incontext_tasks.load_task(_write_task(tmp_path, spec, {"test": CAPITALS}))
  assert task.fewshot_is_eval
  # 3 of 4 drawn for 2 shots: positions 2, 0, 1 with this seed; the evaluated document (0) goes.
  assert random.Random(7).sample(range(4), 3) == [2, 0, 1]
  assert task.fewshot_prompt(task.docs[0], 2, random.Random(7)) == (
      "Q: capital of Japan?\nA: -> Tokyo\n"
      "Q: capital of Peru?\nA: -> Lima\n"
      "Q: capital of France?\nA:")


def test_fewshot_prompts_match_the_harness_sampler(tmp_path):
  samplers = pytest.importorskip("lm_eval.api.samplers")
  docs = [{"country": f"c{i}", "capital": f"k{i}"} for i in range(10)]
  task = incontext_tasks.load_task(_write_task(tmp_path, QA, {"test": docs}))
  ours, theirs = random.Random(3), samplers.ContextSampler(docs, rnd=3)
  for doc in docs:  # one generator over the task's documents in order, as the harness
    drawn = theirs.sample(3, eval_doc=doc)
    expected = "".join(f"Q: capital of {d['country']}?\nA: {d['capital']}\n\n" for d in drawn)
    assert task.fewshot_prompt(doc, 3, ours) == expected + f"Q: capital of {doc['country']}?\nA:"


def test_multiple_choice_acc_and_acc_norm_by_hand(tmp_path):
  docs = [{"q": "a", "options": ["xx", "yyyy"], "label": 1},     # acc: xx; norm: yyyy (-1 vs -.75)
          {"q": "b", "options": ["xx", "yyyy"], "label": "xx"},  # answer given as text
          {"q": "c", "options": ["zz", "w"], "label": 1}]        # both: w
  task = incontext_tasks.load_task(_write_task(
      tmp_path, {"kind": "multiple_choice", "context": "{q}:", "choices": "options",
                 "answer": "label"}, {"test": docs}))
  lm = FakeLM(scores={" xx": -2.0, " yyyy": -3.0, " zz": -5.0, " w": -1.0})
  result = incontext.evaluate_tasks(lm, [task], num_fewshot=0, iterations=200)["task"]
  # acc: picks xx, xx, w -> right on docs 2, 3; acc_norm: -1/2 vs -3/4 -> xx, xx; -5/2 vs -1 -> w.
  assert result["metrics"] == {"acc": pytest.approx(2 / 3), "acc_norm": pytest.approx(2 / 3)}
  lm.scores[" yyyy"] = -2.5  # per character -0.625 > -1: acc_norm now picks yyyy on docs 1, 2
  result = incontext.evaluate_tasks(lm, [task], iterations=200)["task"]
  assert result["metrics"] == {"acc": pytest.approx(2 / 3), "acc_norm": pytest.approx(2 / 3)}
  assert result["samples"][0]["prediction"] == 0 and result["samples"][0]["answer"] == 1
  lm.scores[" xx"] = -6.0  # acc: yyyy, yyyy, w: right on 1, 3; acc_norm the same
  result = incontext.evaluate_tasks(lm, [task], iterations=200)["task"]
  assert result["metrics"]["acc"] == pytest.approx(2 / 3)
  # All choices of all documents in one call, the delimiter before each.
  assert lm.calls[-1] == ("loglikelihood", [("a:", " xx"), ("a:", " yyyy"), ("b:", " xx"),
                                            ("b:", " yyyy"), ("c:", " zz"), ("c:", " w")])


def test_rolling_perplexities_by_hand(tmp_path):
  docs = [{"body": "ab cd"}, {"body": "éf"}]  # 5 bytes 2 words; 3 bytes 1 word
  task = incontext_tasks.load_task(_write_task(
      tmp_path, {"kind": "rolling_loglikelihood", "text": "{body}"}, {"test": docs}))
  lm = FakeLM()
  result = incontext.evaluate_tasks(lm, [task], num_fewshot=5, iterations=200)["task"]
  ll = -0.5 * 8  # 8 bytes at -0.5
  assert result["num_fewshot"] == 0
  assert result["metrics"] == {"word_perplexity": pytest.approx(math.exp(-ll / 3)),
                               "byte_perplexity": pytest.approx(math.exp(-ll / 8)),
                               "bits_per_byte": pytest.approx(-ll / 8 / math.log(2))}
  assert lm.calls == [("loglikelihood_rolling", ["ab cd", "éf"])]
  assert result["samples"][1] == {"text": "éf", "loglikelihood": -1.5, "tokens": 1}


def test_rolling_metrics_are_the_harness_aggregations():
  harness = pytest.importorskip("lm_eval.api.metrics")
  ll, words, num_bytes = [-12.5, -3.0, -40.25], [3, 1, 9], [14, 4, 50]
  assert incontext.word_perplexity(ll, words) == pytest.approx(
      harness.weighted_perplexity(list(zip(ll, words))), rel=1e-12)
  assert incontext.byte_perplexity(ll, num_bytes) == pytest.approx(
      harness.weighted_perplexity(list(zip(ll, num_bytes))), rel=1e-12)
  assert incontext.bits_per_byte(ll, num_bytes) == pytest.approx(
      harness.bits_per_byte(list(zip(ll, num_bytes))), rel=1e-12)


def test_generation_metrics_by_hand(tmp_path):
  task = incontext_tasks.load_task(_write_task(
      tmp_path, {**QA, "metrics": ["exact_match", "f1", "bleu", "rouge", "acc"]},
      {"train": CAPITALS[:1], "test": CAPITALS[1:]}))
  generations = [" Lima", " the Tokyo!", " Paris"]
  lm = FakeLM(generations={f"Q: capital of {c}?\nA:": g
                           for c, g in zip(("Peru", "Japan", "Chad"), generations)},
              greedy={" Lima", " N'Djamena"})
  result = incontext.evaluate_tasks(lm, [task], num_fewshot=1, iterations=200)["capitals"]
  m = result["metrics"]
  assert m["exact_match"] == pytest.approx(1 / 3)
  assert m["f1"] == pytest.approx(2 / 3)  # "the" and "!" normalised away: Tokyo matches
  assert m["acc"] == pytest.approx(2 / 3)
  assert m["bleu"] == metrics_lib.corpus_bleu(generations, ["Lima", "Tokyo", "N'Djamena"])["bleu"]
  rouge = metrics_lib.rouge(generations, ["Lima", "Tokyo", "N'Djamena"])
  assert [m[k] for k in ("rouge1", "rouge2", "rougeL")] == pytest.approx(list(rouge.values()))
  assert list(m) == ["exact_match", "f1", "bleu", "rouge1", "rouge2", "rougeL", "acc"]
  kinds = [kind for kind, _ in lm.calls]
  assert kinds == ["generate_until", "loglikelihood"]  # one batch of each
  prompt, kwargs = lm.calls[0][1][0]
  assert prompt == "Q: capital of France?\nA: Paris\n\nQ: capital of Peru?\nA:"
  assert kwargs == {"until": ["\n"], "max_gen_toks": 32}
  assert lm.calls[1][1][2] == ("Q: capital of France?\nA: Paris\n\nQ: capital of Chad?\nA:",
                               " N'Djamena")
  assert result["samples"][1] == {"prompt": "Q: capital of France?\nA: Paris\n\n"
                                            "Q: capital of Japan?\nA:",
                                  "target": "Tokyo", "generation": " the Tokyo!"}
  assert result["examples"] == 3 and result["examples_per_second"] > 0


def test_squad_token_f1_by_hand():
  assert squad.normalize_answer("The  Cat, sat!") == "cat sat"
  assert squad.token_f1("a cat sat on mats", "The cat sat") == pytest.approx(
      2 * (2 / 4) * (2 / 2) / (2 / 4 + 2 / 2))
  assert squad.token_f1("dog", "cat") == 0.0


def test_bootstrap_stderr_against_numpy():
  values = np.random.default_rng(0).normal(size=400)
  error = bootstrap.stderr_of_mean(values, iterations=2000, seed=3)
  assert error == pytest.approx(values.std() / math.sqrt(400), rel=0.1)
  # The same resamples with numpy directly.
  indices = np.random.default_rng(3).integers(0, 400, size=(2000, 400))
  assert error == pytest.approx(values[indices].mean(axis=1).std(ddof=1), rel=1e-12)
  assert bootstrap.stderr(np.mean, (values,), iterations=2000, seed=3) == pytest.approx(error)
  # A ratio of sums resamples pairs.
  ll, counts = -np.arange(1.0, 9.0), np.arange(2.0, 10.0)
  ratio = lambda a, b: a.sum() / b.sum()
  direct = [ratio(ll[i], counts[i]) for i in np.random.default_rng(5).integers(0, 8, (300, 8))]
  assert bootstrap.stderr(ratio, (ll, counts), 300, 5) == pytest.approx(np.std(direct, ddof=1))


def test_runner_reports_stderr_samples_and_limit(tmp_path):
  docs = [{"q": str(i), "options": ["a", "b"], "label": i % 2} for i in range(50)]
  task = incontext_tasks.load_task(_write_task(
      tmp_path, {"name": "coin", "kind": "multiple_choice", "context": "{q}", "choices": "options",
                 "answer": "label", "metrics": ["acc"]}, {"train": docs[:5], "test": docs}))
  lm = FakeLM(scores={" a": -1.0, " b": -2.0})  # always a: right on the even half
  result = incontext.evaluate_tasks(lm, [task], num_fewshot=2, limit=40, seed=0)["coin"]
  assert result["examples"] == 40 and result["num_fewshot"] == 2
  assert result["metrics"] == {"acc": 0.5}
  assert result["stderr"]["acc"] == pytest.approx(0.5 / math.sqrt(40), rel=0.15)
  assert len(result["samples"]) == incontext.NUM_SAMPLES
  assert result["samples"][0]["choices"] == ["a", "b"]
  assert result["samples"][0]["prompt"].endswith("\n\n0")
  # Seeded: the same prompts again; another seed, others.
  again = incontext.evaluate_tasks(lm, [task], num_fewshot=2, limit=40, seed=0)["coin"]
  assert again["samples"] == result["samples"] and again["stderr"] == result["stderr"]
  other = incontext.evaluate_tasks(lm, [task], num_fewshot=2, limit=40, seed=1)["coin"]
  assert [s["prompt"] for s in other["samples"]] != [s["prompt"] for s in result["samples"]]


@pytest.mark.parametrize("change, message", [
    ({"kind": "ranking"}, "kind must be one of"),
    ({"context": None}, "needs the key 'context'"),
    ({"metrics": ["acc", "bleu"]}, "'bleu' is not a multiple_choice metric"),
    ({"colour": 1}, "unknown key 'colour'"),
    ({"eval_split": "dev"}, "eval_split 'dev' is not a split"),
    ({"until": "\n"}, "until must be a list"),
    ({"max_gen_toks": 0}, "max_gen_toks must be a positive integer"),
])
def test_task_file_errors_name_the_file_and_key(tmp_path, change, message):
  spec = {"kind": "multiple_choice", "context": "{q}", "choices": "options", "answer": "label",
          **change}
  spec = {k: v for k, v in spec.items() if v is not None}
  path = _write_task(tmp_path, spec, {"test": [{"q": "x", "options": ["a"], "label": 0}]})
  with pytest.raises(ConfigError, match=message) as e:
    incontext_tasks.load_task(path)
  assert path in str(e.value) and "\n" not in str(e.value)


def test_bad_files_and_records_are_one_line_errors(tmp_path):
  with pytest.raises(ConfigError, match="cannot read the task file"):
    incontext.resolve(str(tmp_path / "missing.json"))
  with pytest.raises(ConfigError, match="unknown task 'nope'"):
    incontext.resolve("nope")
  (tmp_path / "bad.json").write_text("{not json")
  with pytest.raises(ConfigError, match="bad.json: not a JSON task file"):
    incontext_tasks.load_task(str(tmp_path / "bad.json"))
  spec = {"kind": "rolling_loglikelihood", "text": "{body}", "data": {"test": "gone.jsonl"}}
  (tmp_path / "t.json").write_text(json.dumps(spec))
  with pytest.raises(DataError, match="data.test: cannot read .*gone.jsonl"):
    incontext_tasks.load_task(str(tmp_path / "t.json"))
  (tmp_path / "gone.jsonl").write_text('{"text": "x"}\n[1]\n')
  with pytest.raises(DataError, match="gone.jsonl:2: a JSON list, not an object"):
    incontext_tasks.load_task(str(tmp_path / "t.json"))
  (tmp_path / "gone.jsonl").write_text('{"text": "x"}\n')
  task = incontext_tasks.load_task(str(tmp_path / "t.json"))
  with pytest.raises(DataError, match="text template '{body}' does not fit"):
    incontext.evaluate_tasks(FakeLM(), [task])
  with pytest.raises(ConfigError, match="5 shots need 5 few-shot documents"):
    incontext.evaluate_tasks(FakeLM(), [incontext_tasks.load_task(_write_task(
        tmp_path, QA, {"train": CAPITALS[:2], "test": CAPITALS[2:]}))], num_fewshot=5)


def _held_out_text() -> str:
  root = sources.builtin_files()[0]
  return "\n".join(open(os.path.join(root, m), encoding="utf-8", errors="replace").read()
                   for m in sources.BuiltinSource("eval", stdlib_tasks.EVAL_FRACTION).files)


@pytest.mark.parametrize("name", ["stdlib_next_line", "stdlib_docstring_name"])
def test_builtin_multiple_choice_tasks(name):
  task = incontext.resolve(name)
  assert task.kind == "multiple_choice" and 20 <= len(task.docs) <= stdlib_tasks.MAX_EXAMPLES
  held_out = _held_out_text()
  for doc in task.docs:
    choices = task.doc_choices(doc)
    assert len(choices) == 4 and len(set(choices)) == 4
    true = choices[task.doc_answer(doc)]
    if name == "stdlib_next_line":  # the true line is the one after the context, held out
      last = doc["context"].split("\n")[-1].strip()
      assert f"{last}\n" in held_out and true.strip() in held_out
    else:
      assert f"def {true}(" in held_out or f"def {true} (" in held_out
  # The answer is not always in one place; few-shot documents come from training modules only.
  assert len({d["answer"] for d in task.docs}) == 4
  held_out_modules = set(sources.BuiltinSource("eval", stdlib_tasks.EVAL_FRACTION).files)
  module = lambda f: f.where.rsplit(":", 1)[0]
  assert {module(f) for f in stdlib_tasks._split_functions("eval")} <= held_out_modules
  assert not {module(f) for f in stdlib_tasks._split_functions("train")} & held_out_modules
  # Deterministic: built again from the stdlib, the same documents.
  assert stdlib_tasks._BUILDERS[name](stdlib_tasks._split_functions("eval"))[:len(task.docs)] == \
      task.docs


def test_builtin_cloze_and_bits_per_byte():
  cloze = incontext.resolve("stdlib_cloze")
  held_out = _held_out_text()
  assert cloze.kind == "generate_until" and len(cloze.docs) >= 20
  for doc in cloze.docs:
    target = cloze.doc_target(doc)
    # The identifier, after the spaces that precede it; used before it: predictable.
    assert target.lstrip(" ").isidentifier() and target.lstrip(" ") in doc["context"]
    assert not doc["context"].endswith(" ")
    assert doc["context"].split("\n")[-1].lstrip() + target in held_out
  prompt = cloze.fewshot_prompt(cloze.docs[0], 1, random.Random(0))
  assert prompt.endswith("\n\n" + cloze.docs[0]["context"])
  assert any(prompt == d["context"] + d["target"] + "\n\n" + cloze.docs[0]["context"]
             for d in cloze.fewshot_docs)
  assert "(" in cloze.until and "\n" in cloze.until and not {" ", "_"} & set(cloze.until)
  bpb = incontext.resolve("stdlib_bpb")
  assert len(bpb.docs) == len(sources.BuiltinSource("eval", stdlib_tasks.EVAL_FRACTION).files)
  result = incontext.evaluate_tasks(FakeLM(), ["stdlib_bpb", "stdlib_cloze"], limit=2,
                                    iterations=50)
  assert result["stdlib_bpb"]["metrics"]["bits_per_byte"] == pytest.approx(0.5 / math.log(2))
  assert set(result["stdlib_cloze"]["metrics"]) == {"exact_match", "acc"}


def test_only_language_models_take_tasks(pretrained, task_files, tmp_path, capsys):
  with pytest.raises(ConfigError, match="encoder-only .* decoder and encoder-decoder"):
    evaluation.evaluate_incontext(pretrained["encoder"], ["stdlib_next_line"])
  finetuned = str(tmp_path / "finetuned")
  os.makedirs(finetuned)
  workdir_lib.write_config(tiny_finetune_config("classification", pretrained["decoder"],
                                                task_files), finetuned)
  with pytest.raises(ConfigError, match="fine-tuned for a classification task"):
    evaluation.evaluate_incontext(finetuned, ["stdlib_next_line"])
  assert evaluate_cli.main(["--workdir", pretrained["decoder"], "--tasks", "nope"]) == 2
  assert evaluate_cli.main(["--workdir", pretrained["decoder"], "--tasks", "stdlib_bpb",
                            "--split", "test"]) == 2
  assert "leave --split out" in capsys.readouterr().err
  with pytest.raises(ConfigError, match="--num_fewshot must be 0 or more"):
    evaluation.evaluate_incontext(pretrained["decoder"], ["stdlib_next_line"], num_fewshot=-1)


def test_format_table_shows_each_metric_with_its_stderr():
  results = {"workdir": "/runs/gpt", "checkpoint_step": 3, "incontext": {"t": {
      "num_fewshot": 5, "examples": 200, "examples_per_second": 41.26, "truncated_requests": 0,
      "metrics": {"acc": 0.25, "acc_norm": 0.3}, "stderr": {"acc": 0.0306, "acc_norm": 0.0324}}}}
  assert evaluation.format_table(results).split("\n") == [
      "run              /runs/gpt",
      "checkpoint step  3",
      "t                5-shot, 200 examples, 41.3 examples/s",
      "  acc            0.2500 ± 0.0306",
      "  acc_norm       0.3000 ± 0.0324"]
  results["incontext"]["t"]["truncated_requests"] = 12
  assert evaluation.format_table(results).split("\n")[2] == (
      "t                5-shot, 200 examples, 41.3 examples/s, 12 requests cut to the model's "
      "context")


@pytest.mark.parametrize("family", ["decoder", "encoder_decoder"])
def test_evaluate_tasks_end_to_end(family, pretrained, tmp_path, capsys):
  """The command scores a pretrained run on built-in tasks and a task file (rolling: a decoder's
  only), writes results.json and prints the table."""
  path = _write_task(tmp_path, {"name": "words", "kind": "rolling_loglikelihood",
                                "text": "{text}"}, {"test": [{"text": "Ba ka. Da ga ma."}] * 3})
  workdir = pretrained[family]
  # The tiny runs know 32-token contexts: stdlib_next_line's lines can be longer.
  tasks = "stdlib_docstring_name,stdlib_cloze"
  args = ["--workdir", workdir, "--num_fewshot", "1", "--limit", "3", "--seed", "2"]
  if family == "encoder_decoder":
    assert evaluate_cli.main(["--tasks", f"{tasks},{path}", *args]) == 2
    assert "rolling log-likelihood (perplexity of whole documents) needs a decoder" in (
        capsys.readouterr().err)
  else:
    tasks += f",{path}"
  assert evaluate_cli.main(["--tasks", tasks, *args]) == 0
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  scores = results["incontext"]
  assert list(scores) == tasks.replace(str(path), "words").split(",")
  for name, task in scores.items():
    assert task["examples"] == 3 and task["examples_per_second"] > 0
    assert set(task["stderr"]) == set(task["metrics"]) and task["samples"]
    assert task["num_fewshot"] == (0 if name == "words" else 1)
  assert 0 <= scores["stdlib_docstring_name"]["metrics"]["acc"] <= 1
  if family == "decoder":
    assert scores["words"]["metrics"]["bits_per_byte"] > 0
  # The command's numbers are the runner's on the same model.
  from roots_jax.runs import load  # pylint: disable=g-import-not-at-top
  loaded = load.load(workdir)
  with loaded.context():
    direct = incontext.evaluate_tasks(lm_of(loaded), ["stdlib_docstring_name"], 1, 3, 2)
  assert direct["stdlib_docstring_name"]["metrics"] == pytest.approx(
      scores["stdlib_docstring_name"]["metrics"], abs=1e-6)
