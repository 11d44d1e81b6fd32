"""Labelled examples from CSV/TSV/JSONL files and (mocked) TFDS, and the label vocabulary."""

import json
import pickle

import pytest
import tensorflow_datasets as tfds

from roots_jax import tasks
from roots_jax.config import finetune_config
from roots_jax.data import supervised
from roots_jax.data.supervised import LabelVocab
from roots_jax.errors import DataError


def load_examples(task, split):
  return tasks.get(task.kind).load_examples(task, split)


def build_labels(task, examples):
  return LabelVocab.build(task, examples, tasks.get(task.kind).labels_of)


def make_task(**fields):
  task = finetune_config().task
  task.update(dict(source="files"))
  task.update(fields)
  return task


def write(path, text, mode="w"):
  with open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
    f.write(text)
  return str(path)


def write_jsonl(path, records):
  return write(path, "".join(json.dumps(r) + "\n" for r in records))


def test_label_values_keep_the_train_splits_types(tmp_path):
  """JSON ints and bools stay what they were (predictions give them back), through labels.json;
  string names need no values there."""
  for raw, names in (([10, 2, 2], ("2", "10")), ([True, False], ("False", "True"))):
    labels = build_labels(make_task(), [{"text": "x", "label": r} for r in raw])
    assert labels.names == names and labels.values == tuple(sorted(set(raw)))
    labels.save(str(tmp_path / "labels.json"))
    restored = LabelVocab.load(str(tmp_path / "labels.json"))
    assert restored.values == labels.values and [type(v) for v in restored.values] == [
        type(v) for v in labels.values]
  assert build_labels(make_task(), [{"text": "x", "label": "pos"}]).values == ("pos",)


def test_csv_classification_with_string_labels(tmp_path):
  train = write(tmp_path / "train.csv",
                'text,label\n"Hello, world",pos\nbad film,neg\n"multi\nline ""quoted""",pos\n')
  valid = write(tmp_path / "valid.csv", "text,label\nfine,neg\n")
  task = make_task(train_files=train, validation_files=valid)
  examples = load_examples(task, "train")
  assert examples == [{"text": "Hello, world", "label": "pos"},
                      {"text": "bad film", "label": "neg"},
                      {"text": 'multi\nline "quoted"', "label": "pos"}]
  labels = build_labels(task, examples)
  assert labels.names == ("neg", "pos") and labels.id("pos") == 1 and labels.name(0) == "neg"
  labels.save(str(tmp_path / "labels.json"))
  assert json.loads((tmp_path / "labels.json").read_text()) == {"names": ["neg", "pos"]}
  restored = LabelVocab.load(str(tmp_path / "labels.json"))
  assert restored.names == labels.names
  assert [restored.id(e["label"]) for e in load_examples(task, "validation")] == [0]
  task.validation_files = write(tmp_path / "valid2.csv", "text,label\nmeh,neutral\n")
  [unknown] = load_examples(task, "validation")
  with pytest.raises(DataError, match=r"unknown label 'neutral': the 2 known classes are neg, "
                                      r"pos\. The classes come from the train split; set task.labels"):
    restored.id(unknown["label"])
  with pytest.raises(DataError, match="set task.test_files"):
    load_examples(task, "test")


def test_tsv_pairs_keep_quotes_like_glue(tmp_path):
  path = write(tmp_path / "dev.tsv",
               'id\tsentence1\tsentence2\tlabel\n0\tHe said "no\tShe said "yes"\t1\n')
  task = make_task(train_files=path, text_field="sentence1", text_pair_field="sentence2")
  assert load_examples(task, "train") == [
      {"text": 'He said "no', "text_pair": 'She said "yes"', "label": "1"}]


def test_jsonl_regression_tokens_and_seq2seq(tmp_path):
  scores = write_jsonl(tmp_path / "stsb.jsonl", [{"text": "a", "text_pair": "b", "score": 4.5},
                                                 {"text": "c", "text_pair": "d", "score": "0.25"}])
  task = make_task(kind="regression", train_files=scores, text_pair_field="text_pair",
                   label_field="score")
  assert [e["label"] for e in load_examples(task, "train")] == [4.5, 0.25]

  ner = write_jsonl(tmp_path / "ner.jsonl", [{"tokens": ["EU", "rejects", "German"],
                                              "ner_tags": ["B-ORG", "O", "B-MISC"]},
                                             {"tokens": ["Peter"], "ner_tags": ["B-PER"]}])
  task = make_task(kind="token_classification", train_files=ner, text_field="tokens",
                   label_field="ner_tags")
  examples = load_examples(task, "train")
  assert examples[0] == {"words": ["EU", "rejects", "German"], "tags": ["B-ORG", "O", "B-MISC"]}
  assert build_labels(task, examples).names == ("B-MISC", "B-ORG", "B-PER", "O")

  pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"article": "long text", "highlights": "short"}])
  task = make_task(kind="seq2seq", train_files=pairs, text_field="article",
                   label_field="highlights")
  assert load_examples(task, "train") == [{"text": "long text", "target": "short"}]


def test_csv_token_tags_are_whitespace_separated(tmp_path):
  path = write(tmp_path / "ner.csv", "words,tags\nEU rejects German,B-ORG O B-MISC\n")
  task = make_task(kind="token_classification", train_files=path, text_field="words",
                   label_field="tags")
  assert load_examples(task, "train") == [{"words": ["EU", "rejects", "German"],
                                           "tags": ["B-ORG", "O", "B-MISC"]}]


def test_label_vocab_orders(tmp_path):
  task = make_task()
  ints = [{"label": i} for i in (2, 0, 1, 2)]
  vocab = build_labels(task, ints)
  assert vocab.names == ("0", "1", "2") and [vocab.id(e["label"]) for e in ints] == [2, 0, 1, 2]
  stars = [{"label": s} for s in ("10", "9", "1")]  # numeric order, not "1" < "10" < "9"
  assert build_labels(task, stars).names == ("1", "9", "10")
  task.labels = ("positive", "negative")  # given: id order as written
  vocab = build_labels(task, [{"label": "negative"}])
  assert vocab.id("negative") == 1
  with pytest.raises(DataError, match=r"unknown label 'neutral'.*negative.*set task.labels"):
    vocab.id("neutral")


def test_unknown_label_names_known_ones_truncated():
  vocab = LabelVocab([f"c{i}" for i in range(50)])
  with pytest.raises(DataError) as e:
    vocab.id("other")
  assert "c19, ..." in str(e.value) and "c20" not in str(e.value)


BAD_INPUTS = {
    "missing_field": ("x.jsonl", b'{"text": "a", "label": 1}\n{"text": "b"}\n',
                      r"x.jsonl:2 has no field 'label' \(has: text\); set task.label_field"),
    "missing_column": ("x.csv", b"sentence,label\na,1\n",
                       r"x.csv:2 has no field 'text' \(has: sentence, label\); "
                       r"set task.text_field"),
    "short_row": ("x.csv", b"text,label\na,1\nb\n",
                  r"x.csv:3 does not have the header's 2 columns"),
    "empty": ("x.jsonl", b"", r"x.jsonl is empty"),
    "header_only": ("x.tsv", b"text\tlabel\n", r"x.tsv holds no examples"),
    "binary": ("x.csv", b"PK\x03\x04\x00\x00text,label", r"x.csv looks binary"),
    "invalid_utf8": ("x.csv", b"text,label\nok,1\ncaf\xe9,1\n", r"x.csv:3 is not valid UTF-8"),
    "bad_json": ("x.jsonl", b'{"text": "a", "label": 1}\n{"text": \n',
                 r"x.jsonl:2 is not valid JSON"),
    "not_an_object": ("x.jsonl", b'["a", 1]\n', r"x.jsonl:1 holds a JSON list, not an object"),
    "unknown_extension": ("x.txt", b"text,label\na,1\n",
                          r"set task.format to csv, tsv, jsonl or squad"),
    "non_float_score": ("x.csv", b"text,label\na,0.5\nb,high\n",
                        r"x.csv:3: label 'high' in field 'label' is not a finite number.*"
                        r"task.kind=regression"),
    "word_tag_mismatch": ("x.jsonl", b'{"text": ["a", "b"], "label": ["O"]}\n',
                          r"x.jsonl:1: 2 words in 'text' but 1 tags in 'label'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_data_error_naming_file_and_line(tmp_path, case):
  name, data, message = BAD_INPUTS[case]
  kind = {"non_float_score": "regression", "word_tag_mismatch": "token_classification"}
  task = make_task(train_files=write(tmp_path / name, data, "wb"),
                   kind=kind.get(case, "classification"))
  with pytest.raises(DataError, match=message):
    load_examples(task, "train")


def test_missing_files_are_data_errors(tmp_path):
  task = make_task(train_files=str(tmp_path / "nothing*.csv"))
  with pytest.raises(DataError, match="in task.train_files matches no file"):
    load_examples(task, "train")
  with pytest.raises(DataError, match="set task.validation_files"):
    load_examples(task, "validation")


def mock_tfds(num_examples=5):
  return tfds.testing.mock_data(num_examples=num_examples,
                                policy=tfds.testing.MockPolicy.USE_CODE)


def test_tfds_classification_uses_class_label_names():
  task = make_task(source="tfds", tfds_name="glue/sst2", text_field="sentence")
  with mock_tfds():
    train = load_examples(task, "train")
    assert len(train) == 5 and train.label_names == ("negative", "positive")
    assert all(isinstance(e["text"], str) and e["label"] in train.label_names for e in train)
    labels = build_labels(task, train)
    assert labels.names == ("negative", "positive")
    task.labels = ("neg", "pos")  # renames the ClassLabel ids
    assert {e["label"] for e in load_examples(task, "validation")} <= {"neg", "pos"}
    task.text_field = "text"
    with pytest.raises(DataError, match="no feature 'text'.*set the task"):
      load_examples(task, "train")


def test_tfds_pairs_and_regression():
  with mock_tfds():
    task = make_task(source="tfds", tfds_name="glue/mrpc", text_field="sentence1",
                     text_pair_field="sentence2")
    example = load_examples(task, "train")[0]
    assert set(example) == {"text", "text_pair", "label"} and example["label"] in (
        "equivalent", "not_equivalent")
    task.update(dict(tfds_name="glue/stsb", kind="regression"))
    examples = load_examples(task, "validation")
    assert all(isinstance(e["label"], float) for e in examples)


@pytest.mark.parametrize("name,text_field,label_field", [
    ("cnn_dailymail", "article", "highlights"), ("wmt14_translate/de-en", "de", "en")])
def test_tfds_seq2seq(name, text_field, label_field):
  task = make_task(source="tfds", tfds_name=name, kind="seq2seq", text_field=text_field,
                   label_field=label_field)
  with mock_tfds(3):
    examples = load_examples(task, "train")
    assert len(examples) == 3 and examples.label_names is None
    assert all(set(e) == {"text", "target"} and isinstance(e["target"], str) for e in examples)


def test_tfds_examples_pickle_for_grain_workers():
  task = make_task(source="tfds", tfds_name="glue/sst2", text_field="sentence")
  with mock_tfds():
    examples = load_examples(task, "train")
    assert pickle.loads(pickle.dumps(examples))[3] == examples[3]
  assert isinstance(examples, supervised.TfdsExamples)
