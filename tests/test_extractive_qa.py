"""Extractive question answering: windows with a document stride and their labels (also against
Hugging Face's prepare_train_features on its fast tokenizer), the best span across windows,
SQuAD data from JSONL and TFDS, the built-in identifier task, and a tiny BERT fine-tuned,
evaluated and answering through predict and the question-answering pipeline."""

import json
import random
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

from roots_jax import config as config_lib
from roots_jax import pipeline, tasks
from roots_jax.api import LanguageModel
from roots_jax.data import builtin_tasks, qa_spans, task_rows
from roots_jax.data.qa_spans import NO_SPAN
from roots_jax.errors import ConfigError, DataError
from roots_jax.models import families
from roots_jax.runs import finetune as finetune_lib
from roots_jax.runs.evaluation import evaluate_run
from tiny_gpt import read_metrics

KIND = tasks.get("extractive_qa")
SQUAD_FIELDS = dict(text_field="question", text_pair_field="context", label_field="answers")


def _settings(tokenizer, **kw):
  specials = task_rows.specials(tokenizer)
  return dict(tokenizer=tokenizer, cls_id=specials["cls"][0], sep_id=specials["sep"][0], **kw)


def _long_context(n=60):
  return " ".join(f"item{i} holds {['red', 'green', 'blue'][i % 3]}." for i in range(n))


# Windows.


def test_windows_cover_a_long_context_with_the_stride(tokenizer):
  """[CLS] q [SEP] window [SEP] rows; consecutive windows share exactly doc_stride context
  tokens and together hold every one; offsets are the context tokens' own; no answer: [CLS]."""
  context, question = _long_context(), "  What does item7 hold?"
  settings = _settings(tokenizer, max_len=48, doc_stride=12, max_question_len=6)
  windows = qa_spans.windows(question, context, None, **settings)
  q = tokenizer.encode(question.lstrip())[:6]
  ids, spans = tokenizer.encode_offsets(context)
  head = [settings["cls_id"], *q, settings["sep_id"]]
  assert len(windows) > 4
  start = 0
  for k, w in enumerate(windows):
    body = len(w.ids) - len(head) - 1
    assert w.ids == head + ids[start:start + body] + [settings["sep_id"]]
    assert len(w.ids) <= 48 and (body == 48 - len(head) - 1 or k == len(windows) - 1)
    assert w.token_types == [0] * len(head) + [1] * (body + 1)
    assert w.offsets == [NO_SPAN] * len(head) + spans[start:start + body] + [NO_SPAN]
    assert w.answer == (0, 0)
    start += body - 12
  assert start + 12 == len(ids)  # the last window ends at the context's last token
  with pytest.raises(ConfigError, match="doc_stride"):
    qa_spans.windows(question, context, None, **{**settings, "doc_stride": 40})


def test_every_answer_is_labelled_in_a_window_that_holds_it(tokenizer):
  """Each answer's label points at tokens whose characters are exactly the answer in every
  window holding it whole (at least one), and at [CLS] in every other."""
  context = _long_context()
  settings = _settings(tokenizer, max_len=40, doc_stride=10, max_question_len=8)
  _, spans = tokenizer.encode_offsets(context)
  for match in re.finditer(r"item\d+|blue", context):
    answer = match.span()
    windows = qa_spans.windows("Which one?", context, answer, **settings)
    found = 0
    for w in windows:
      inside = [o for o in w.offsets if o != NO_SPAN]
      holds = inside[0][0] <= answer[0] and inside[-1][1] >= answer[1]
      if not holds:
        assert w.answer == (0, 0)
        continue
      found += 1
      s, e = w.answer
      assert 0 < s <= e and w.token_types[s] == 1
      assert context[w.offsets[s][0]:w.offsets[e][1]] == match.group()
    assert found >= 1, match.group()


@pytest.mark.extra("hf")
def test_windows_and_labels_equal_hugging_faces_on_its_fast_tokenizer(tmp_path):
  """With a BERT WordPiece vocabulary, our windows (ids, token types, context offsets) and labels
  equal run_qa.py's prepare_train_features / prepare_validation_features on BertTokenizerFast
  (truncation="only_second", stride, return_overflowing_tokens, return_offsets_mapping)."""
  import transformers  # pylint: disable=g-import-not-at-top
  from roots_jax.data import load_tokenizer  # pylint: disable=g-import-not-at-top
  context = ("The Normans were the people who in the 10th and 11th centuries gave their name to "
             "Normandy, a region in France. They were descended from Norse raiders and pirates "
             "from Denmark, Iceland and Norway who, under their leader Rollo, agreed to swear "
             "fealty to King Charles III of West Francia. ") * 3
  question = "In what country is Normandy located?"
  words = sorted(set(re.findall(r"\w+|[^\w\s]", (context + question).lower())))
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + [
      "##" + c for c in sorted(set("".join(words)))]
  (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
  ours = load_tokenizer(str(tmp_path))
  fast = transformers.BertTokenizerFast.from_pretrained(str(tmp_path))
  max_len, stride = 40, 8
  encoded = fast(question, context, truncation="only_second", max_length=max_len, stride=stride,
                 return_overflowing_tokens=True, return_offsets_mapping=True)
  for answer_text in ("France", "Rollo", "King Charles III", "Normans", "Norway"):
    begin = context.index(answer_text, len(context) // 3)
    answer = (begin, begin + len(answer_text))
    windows = qa_spans.windows(question, context, answer,
                               **_settings(ours, max_len=max_len, doc_stride=stride,
                                           max_question_len=64))
    assert len(windows) == len(encoded["input_ids"]) > 3
    for i, w in enumerate(windows):
      sequence_ids = encoded.sequence_ids(i)
      offsets = [tuple(o) if s == 1 else NO_SPAN
                 for o, s in zip(encoded["offset_mapping"][i], sequence_ids)]
      assert w.ids == encoded["input_ids"][i] and w.token_types == encoded["token_type_ids"][i]
      assert w.offsets == offsets
      assert w.answer == _hf_train_labels(encoded["offset_mapping"][i], sequence_ids, answer)


def _hf_train_labels(offsets, sequence_ids, answer):
  """run_qa.py's prepare_train_features labels of one feature (its loops as written, the start
  search bounded to the context: unbounded it walks into [SEP]'s (0, 0) offsets when the answer
  starts at a window's last token)."""
  start_char, end_char = answer
  token_start_index = 0
  while sequence_ids[token_start_index] != 1:
    token_start_index += 1
  token_end_index = len(offsets) - 1
  while sequence_ids[token_end_index] != 1:
    token_end_index -= 1
  if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
    return (0, 0)
  last = token_end_index
  while token_start_index <= last and offsets[token_start_index][0] <= start_char:
    token_start_index += 1
  while offsets[token_end_index][1] >= end_char:
    token_end_index -= 1
  return (token_start_index - 1, token_end_index + 1)


# Decoding.

CONTEXT = "alpha beta gamma delta epsilon"
# Two windows of 7 tokens: [CLS] q [SEP] three context words [SEP]; they share "gamma".
OFFSETS = [[NO_SPAN] * 3 + [(0, 5), (6, 10), (11, 16), NO_SPAN],
           [NO_SPAN] * 3 + [(11, 16), (17, 22), (23, 30), NO_SPAN]]


def _logits(start, end):
  """A window's start and end logits [7] from {index: logit} (0 elsewhere)."""
  out = np.zeros((2, 7))
  for row, logits in enumerate((start, end)):
    for i, x in logits.items():
      out[row, i] = x
  return out[0], out[1]


def test_the_best_span_is_found_across_windows_and_invalid_ones_are_rejected():
  # [CLS] and [SEP] (no context tokens) score highest; then "alpha beta" (2 + 2).
  first = _logits({0: 100, 3: 2}, {6: 90, 4: 2})
  # An end before its start ("epsilon" .. "gamma", 50 + 50) beats "delta" (6 + 6).
  second = _logits({5: 50, 4: 6, 3: -100}, {3: 50, 4: 6, 5: -100})
  assert qa_spans.best_span(CONTEXT, [first, second], OFFSETS, max_answer_len=30) == (
      qa_spans.Span("delta", 12.0, 17, 22))
  assert qa_spans.best_span(CONTEXT, [first], OFFSETS[:1], max_answer_len=30) == (
      qa_spans.Span("alpha beta", 4.0, 0, 10))
  # "gamma delta epsilon" (10 + 10) is three tokens: the best with max_answer_len 3, not 2.
  third = _logits({3: 10}, {5: 10})
  assert qa_spans.best_span(CONTEXT, [first, second, third], OFFSETS + OFFSETS[1:],
                            max_answer_len=3) == qa_spans.Span("gamma delta epsilon", 20.0, 11, 30)
  assert qa_spans.best_span(CONTEXT, [first, second, third], OFFSETS + OFFSETS[1:],
                            max_answer_len=2).text == "delta"
  # No context token: no answer.
  assert qa_spans.best_span(CONTEXT, [first], [[NO_SPAN] * 7], max_answer_len=30) == (
      qa_spans.Span("", 0.0, 0, 0))


def test_the_probability_score_is_the_pipelines():
  """HF's question-answering pipeline: softmax of each window's start (end) logits over its
  context tokens and [CLS], the span's start x end probability, the best over windows."""
  first = _logits({0: 3, 3: 2}, {0: 1, 4: 2})
  second = _logits({3: 1, 4: 2}, {3: 1, 5: 3})
  span = qa_spans.best_span(CONTEXT, [first, second], OFFSETS, max_answer_len=30,
                            probability=True)
  allowed = np.array([1, 0, 0, 1, 1, 1, 0], bool)
  prob = lambda x: np.exp(x) * allowed / (np.exp(x) * allowed).sum()
  scores = {}
  for k, (start, end) in enumerate((first, second)):
    ps, pe = prob(start), prob(end)
    for s in range(3, 6):
      for e in range(s, 6):
        scores[(k, s, e)] = ps[s] * pe[e]
  k, s, e = max(scores, key=scores.get)
  assert (k, s, e) == (1, 4, 5) and span.text == "delta epsilon"
  assert span.score == pytest.approx(scores[(k, s, e)], rel=1e-12)
  assert (span.start, span.end) == (17, 30)


# Data.


def _squad_task(**kw):
  task = config_lib.finetune_config().task
  task.update({"kind": "extractive_qa", "source": "files", **SQUAD_FIELDS, **kw})
  return task


def test_squad_jsonl_the_official_json_and_bad_records(tmp_path):
  context = "The cat sat on the mat. The dog sat too."
  good = [
      {"id": "a", "title": "t", "context": context, "question": "Who sat?",
       "answers": {"text": ["The cat", "cat"], "answer_start": [0, 4]}},
      {"id": "b", "context": context, "question": "Where?",
       "answers": [{"text": "the mat", "answer_start": 15}]},
  ]
  path = tmp_path / "train.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in good))
  examples = KIND.load_examples(_squad_task(train_files=str(path)), "train")
  assert examples == [
      {"id": "a", "question": "Who sat?", "context": context,
       "answers": [("The cat", 0), ("cat", 4)]},
      {"id": "b", "question": "Where?", "context": context, "answers": [("the mat", 15)]}]
  official = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
      {"id": "a", "question": "Who sat?",
       "answers": [{"text": "The cat", "answer_start": 0}, {"text": "cat", "answer_start": 4}]},
      {"id": "b", "question": "Where?", "answers": [{"text": "the mat", "answer_start": 15}]}]}]}]}
  (tmp_path / "dev.json").write_text(json.dumps(official))
  assert KIND.load_examples(_squad_task(train_files=str(tmp_path / "dev.json")),
                            "train") == examples
  official["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 14
  (tmp_path / "dev.json").write_text(json.dumps(official))
  with pytest.raises(DataError, match=r"dev.json:b: answer 'the mat' is not the context"):
    KIND.load_examples(_squad_task(train_files=str(tmp_path / "dev.json")), "train")
  bad = [
      ({**good[0], "answers": {"text": ["the cat"], "answer_start": [0]}}, "is not the context"),
      ({**good[0], "answers": {"text": ["cat"], "answer_start": [4, 5]}}, "not SQuAD answers"),
      ({**good[0], "answers": {"text": [], "answer_start": []}}, "at least one answer"),
      ({k: v for k, v in good[0].items() if k != "context"}, "no field 'context'"),
  ]
  for record, message in bad:
    path.write_text(json.dumps(good[1]) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DataError, match=rf"train.jsonl:2.*{message}"):
      KIND.load_examples(_squad_task(train_files=str(path)), "train")


def test_tfds_squad_through_a_data_source():
  """TFDS squad's records (text as bytes, the answers a nested feature of arrays) become
  examples; the random mock's answers, which are not in their contexts, are refused by record."""
  context = "Paris is the capital of France."
  records = [{"id": b"q1", "title": b"France", "context": context.encode(),
              "question": b"What is the capital of France?",
              "answers": {"text": np.array([b"Paris", b"Paris"], dtype=object),
                          "answer_start": np.array([0, 0], np.int32)}}]

  class Source(list):
    def __init__(self, builder, items):
      super().__init__(items)
      self.dataset_info = builder.info

  task = _squad_task(source="tfds", tfds_name="squad")
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              as_data_source_fn=lambda builder, split=None, **_: Source(
                                  builder, records)):
    examples = KIND.load_examples(task, "validation")
    assert len(examples) == 1 and list(examples) == [
        {"id": "q1", "question": "What is the capital of France?", "context": context,
         "answers": [("Paris", 0), ("Paris", 0)]}]
  with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
    examples = KIND.load_examples(task, "train")
    with pytest.raises(DataError, match="TFDS 'squad' split 'train' record 0"):
      examples[0]  # pylint: disable=pointless-statement


def test_the_builtin_identifier_task():
  examples = builtin_tasks.load_examples("identifier", "validation")
  assert len(examples) > 100
  for e in examples:
    (name, start), = e["answers"]
    assert e["context"][start:start + len(name)] == name and "___" in e["question"]
    assert not re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", e["question"])
    assert e["context"].index("(") < start < e["context"].index(")", start) + 1  # the signature
  assert not {e["context"] for e in examples} & {
      e["context"] for e in builtin_tasks.load_examples("identifier", "test")}


def test_other_families_and_bad_settings_are_config_errors():
  with pytest.raises(ConfigError, match="extractive_qa needs an encoder"):
    KIND.check_family(families.get("decoder"))
  with pytest.raises(ConfigError, match="text_pair_field"):
    KIND.validate(_squad_task(text_pair_field=""))
  with pytest.raises(ConfigError, match="max_answer_len"):
    KIND.validate(_squad_task(max_answer_len=0))
  with pytest.raises(ConfigError, match="built-in task 'identifier' does not fit"):
    config = config_lib.finetune_config()
    config.task.update(kind="classification", builtin="identifier")
    tasks.get("classification").validate(config.task)


# A tiny BERT fine-tuned.

NUMBERS = ["7", "42", "seven"]


@pytest.fixture(scope="module")
def qa_files(tmp_path_factory):
  """Contexts of 12-30 corpus words with one number among them; the question asks for it: the
  answer is the number's span, often beyond the first window."""
  root = tmp_path_factory.mktemp("qa")
  rng = random.Random(0)
  words = ["ba", "ko", "mi", "tu", "ze", "lo", "pa", "ri"]
  files = []
  for split, count in (("train", 96), ("validation", 16)):
    lines = []
    for i in range(count):
      before = " ".join(rng.choices(words, k=rng.randint(2, 24)))
      number = rng.choice(NUMBERS)
      context = f"{before} {number} {' '.join(rng.choices(words, k=rng.randint(2, 6)))}"
      lines.append(json.dumps({"id": f"{split}{i}", "question": "which number", "context": context,
                               "answers": {"text": [number], "answer_start": [len(before) + 1]}}))
    (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    files.append(str(root / f"{split}.jsonl"))
  return files


@pytest.fixture(scope="module")
def qa_run(pretrained, qa_files, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("qa_run"))
  train, validation = qa_files
  overrides = {
      "init_from": pretrained["encoder"], "task.source": "files", "task.train_files": train,
      "task.validation_files": validation, "task.test_files": validation,
      **{f"task.{k}": v for k, v in SQUAD_FIELDS.items()},
      "task.max_len": 24, "task.doc_stride": 6, "task.max_question_len": 8,
      "train.batch_size": 16, "train.steps": 40, "train.log_every": 1, "train.eval_every": 20,
      "train.checkpoint_every": 20, "optimizer.learning_rate": 3e-3, "optimizer.warmup_steps": 4,
  }
  config = config_lib.load_config("configs/finetune/identifier.py",
                                  [f"{k}={v}" for k, v in overrides.items()])
  finetune_lib.finetune(config, workdir)
  return workdir


def test_a_tiny_bert_learns_and_is_scored(qa_run, qa_files):
  losses = [row["loss"] for _, row in sorted(read_metrics(qa_run).items())]
  assert len(losses) == 40 and np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
  evaluations = read_metrics(qa_run, "eval")
  assert sorted(evaluations) == [20, 40]
  assert {"loss", "accuracy", "exact_match", "f1"} <= set(evaluations[40])
  assert evaluations[40]["examples"] == 16  # questions, each in one or more windows
  results = evaluate_run(qa_run, split="test")
  metrics = results["metrics"]
  # Finding the one number is learnt in 40 steps (100 here; a random span rarely is one).
  assert 75 <= metrics["exact_match"] <= metrics["f1"] <= 100
  validation = [json.loads(line) for line in open(qa_files[1])]
  assert [s["answers"] for s in results["samples"]] == [
      r["answers"]["text"] for r in validation[:5]]
  # The evaluator's answers are the API's (probability scores choose within a window alike).
  lm = LanguageModel.from_pretrained(qa_run)
  answers = lm.predict([{"question": r["question"], "context": r["context"]}
                        for r in validation])
  em = np.mean([a["answer"] == r["answers"]["text"][0] for a, r in zip(answers, validation)])
  assert 100 * em == pytest.approx(metrics["exact_match"], abs=100 / len(validation) * 2)


def test_predict_and_the_question_answering_pipeline(qa_run, pretrained):
  lm = LanguageModel.from_pretrained(qa_run)
  context = "ba ko mi tu ze lo pa ri ba ko mi tu ze lo 42 pa ri"
  one = lm.predict({"question": "which number", "context": context})
  assert set(one) == {"answer", "score", "start", "end"}
  assert context[one["start"]:one["end"]] == one["answer"] and 0 < one["score"] <= 1
  qa = pipeline("question-answering", lm)
  assert qa(question="which number", context=context) == one
  assert qa({"question": "which number", "context": context}) == one
  assert qa(question=["which number"] * 2, context=[context, "7 ba ko"])[0] == one
  assert qa([{"question": "which number", "context": context}]) == [one]
  with pytest.raises(ConfigError, match="question= and context="):
    qa(question="which number")
  with pytest.raises(ConfigError, match="dict"):
    lm.predict("which number")
  with pytest.raises(ConfigError, match="fine-tuned for extractive_qa"):
    pipeline("question-answering", pretrained["encoder"])
