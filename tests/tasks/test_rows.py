"""Fine-tuning rows for every (model family, task kind), and the train / eval datasets."""

import itertools
import pickle

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from roots_jax import tasks
from roots_jax.config import finetune_config
from roots_jax.data import task_rows
from roots_jax.data.supervised import LabelVocab
from roots_jax.errors import ConfigError, DataError
from roots_jax.models import families
from roots_jax.objectives.seq2seq import Seq2Seq

L, T = 24, 8
LABELS = LabelVocab(["neg", "pos"])
TAGS = LabelVocab(["B-ORG", "I-ORG", "O"])
EXAMPLES = {
    "classification": {"text": "def f(x): return x + 1", "text_pair": "a second text",
                       "label": "pos"},
    "regression": {"text": "short", "label": 0.75},
    "token_classification": {"words": ["import", "os.path", "as", "p", "é"],
                             "tags": ["B-ORG", "I-ORG", "O", "B-ORG", "O"]},
    "seq2seq": {"text": "def add(a, b):\n    return a + b", "target": "Add two numbers."},
    "chat": tasks.get("chat").example({"prompt": "What does add return?", "response": "a + b"},
                                      None, "record"),
}
# extractive_qa makes a row per window of an example: tests/test_extractive_qa.py.
CASES = [(f, k) for f in families.FAMILIES for k in tasks.NAMES
         if (f, k) not in (("encoder", "seq2seq"), ("encoder", "chat")) and k != "extractive_qa"]
# Chat rows need the run's template, so its datasets make them (tests/test_chat.py).
ENCODED = [(f, k) for f, k in CASES if k != "chat"]


def encode(tokenizer, example, family, kind, max_len=L, target_len=T):
  labels = TAGS if kind == "token_classification" else LABELS
  return tasks.get(kind).encode(example, family=families.get(family), tokenizer=tokenizer,
                                labels=labels, max_len=max_len, target_len=target_len)


def example_spec(family, kind, max_len, target_len):
  return tasks.get(kind).spec(families.get(family), max_len, target_len)


def make_dataset(config, tokenizer, labels, examples, *, family, **options):
  return tasks.get(config.task.kind).dataset(config, tokenizer, labels, examples,
                                              family=families.get(family), **options)


def ids(tokenizer):
  return dict(cls=tokenizer.piece_id("[CLS]"), sep=tokenizer.piece_id("[SEP]"),
              bos=tokenizer.bos_id, eos=tokenizer.eos_id)


def real(row, prefix=""):
  """The unpadded tokens of a row's inputs."""
  return row[f"{prefix}inputs"][row[f"{prefix}segment_ids"] > 0].tolist()


@pytest.mark.parametrize("family,kind", ENCODED)
def test_rows_match_the_spec(tokenizer, family, kind):
  spec = example_spec(family, kind, L, T)
  row = encode(tokenizer, EXAMPLES[kind], family, kind)
  assert {k: (v.shape, v.dtype) for k, v in row.items()} == {
      k: (shape, np.dtype(dtype)) for k, (shape, dtype) in spec.items()}
  for prefix in ("", "encoder_", "decoder_"):
    if f"{prefix}segment_ids" in row:
      segments, positions = row[f"{prefix}segment_ids"], row[f"{prefix}positions"]
      n = int(segments.sum())
      assert segments.tolist() == [1] * n + [0] * (len(segments) - n)
      assert positions.tolist() == list(range(n)) + [0] * (len(segments) - n)
      assert not row[f"{prefix}inputs"][n:].any()
  zero = task_rows.zero_row(spec)
  assert all(not v.any() and v.shape == spec[k][0] for k, v in zero.items())


@pytest.mark.parametrize("family", families.FAMILIES)
def test_classification_specials_and_pairs(tokenizer, family):
  sp = ids(tokenizer)
  a = tokenizer.encode(EXAMPLES["classification"]["text"])
  b = tokenizer.encode(EXAMPLES["classification"]["text_pair"])
  row = encode(tokenizer, EXAMPLES["classification"], family, "classification", max_len=64)
  assert row["label"] == 1 and row["label_weight"] == 1.0
  if family == "encoder":
    assert real(row) == [sp["cls"]] + a + [sp["sep"]] + b + [sp["sep"]]
    assert row["token_types"].tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1) + [0] * (
        64 - len(a) - len(b) - 3)
    single = encode(tokenizer, {"text": "x", "label": "neg"}, family, "classification")
    assert not single["token_types"].any()
  elif family == "decoder":
    assert real(row) == [sp["bos"]] + a + [sp["sep"]] + b + [sp["eos"]]
  else:
    enc = real(row, "encoder_")
    assert enc == a + [sp["sep"]] + b + [sp["eos"]]
    assert real(row, "decoder_") == [0] + enc[:-1]  # shifted right, T5's start id 0
  regression = encode(tokenizer, EXAMPLES["regression"], family, "regression")
  assert regression["label"] == np.float32(0.75)


def reference_longest_first(a, b, budget):
  """HF's loop: remove the last token of the longer sequence (the second on a tie)."""
  a, b = list(a), list(b)
  while len(a) + len(b) > budget:
    if len(a) > len(b):
      a.pop()
    else:
      b.pop()
  return a, b


def test_pairs_truncate_longest_first(tokenizer):
  for la, lb, budget in itertools.product(range(9), range(9), range(1, 12)):
    a, b = list(range(la)), list(range(100, 100 + lb))
    assert task_rows.truncate_longest_first(a, b, budget) == reference_longest_first(a, b, budget)
  sp = ids(tokenizer)
  long_a = " ".join(["alpha"] * 40)
  row = encode(tokenizer, {"text": long_a, "text_pair": "beta gamma", "label": "neg"},
               "encoder", "classification", max_len=32)
  tokens = real(row)
  b = tokenizer.encode("beta gamma")
  assert len(b) < (32 - 3) // 2  # so only the longer a is cut
  assert len(tokens) == 32 and tokens[-len(b) - 1:] == b + [sp["sep"]]
  assert tokens[1:-len(b) - 2] == tokenizer.encode(long_a)[:32 - 3 - len(b)]


@pytest.mark.parametrize("family", families.FAMILIES)
def test_tags_sit_on_the_first_piece_of_each_word(tokenizer, family):
  example = EXAMPLES["token_classification"]
  row = encode(tokenizer, example, family, "token_classification", max_len=64)
  prefix = "encoder_" if family == "encoder_decoder" else ""
  inputs = row[f"{prefix}inputs"]
  starts = np.flatnonzero(row["tag_weights"]).tolist()
  assert len(starts) == len(example["words"])
  assert row["tags"][starts].tolist() == [TAGS.id(t) for t in example["tags"]]
  assert not row["tags"][row["tag_weights"] == 0].any()
  end = int(row[f"{prefix}segment_ids"].sum()) - 1  # the closing [SEP] / [EOS]
  for i, (start, stop) in enumerate(zip(starts, starts[1:] + [end])):
    word = example["words"][i]
    assert tokenizer.decode(inputs[start:stop]) == (word if i == 0 else " " + word)
  assert tokenizer.is_special(inputs[end]) and (family == "encoder_decoder" or
                                                tokenizer.is_special(inputs[0]))


def test_words_that_do_not_fit_are_dropped(tokenizer):
  words = [f"word{i}" for i in range(30)]
  example = {"words": words, "tags": ["O"] * 30}
  row = encode(tokenizer, example, "encoder", "token_classification", max_len=16)
  kept = int(row["tag_weights"].sum())
  assert 0 < kept < 30 and row["segment_ids"].sum() <= 16
  text = tokenizer.decode(real(row)[1:-1])
  assert text == " ".join(words[:kept])
  assert real(row)[-1] == ids(tokenizer)["sep"]


def test_decoder_seq2seq_loss_on_the_target_only(tokenizer):
  sp = ids(tokenizer)
  example = EXAMPLES["seq2seq"]
  source, target = tokenizer.encode(example["text"]), tokenizer.encode(example["target"])
  row = encode(tokenizer, example, "decoder", "seq2seq", max_len=64, target_len=32)
  prompt = [sp["bos"]] + source + [sp["sep"]]
  assert real(row) == prompt + target + [sp["eos"]]
  assert row["prompt_len"] == len(prompt)
  n = len(prompt) + len(target) + 1
  assert row["targets"][:n - 1].tolist() == row["inputs"][1:n].tolist()
  assert not row["targets"][n - 1:].any()
  weighted = row["targets"][row["weights"] > 0].tolist()
  assert weighted == target + [sp["eos"]]  # exactly the target tokens and the eos
  assert np.flatnonzero(row["weights"]).tolist() == list(range(len(prompt) - 1, n - 1))
  # Truncation: input to L-2 tokens, target to T-1, each with its specials.
  short = encode(tokenizer, example, "decoder", "seq2seq", max_len=6, target_len=3)
  assert real(short) == [sp["bos"]] + source[:4] + [sp["sep"]] + target[:2] + [sp["eos"]]
  assert short["weights"].sum() == 3


def test_encoder_decoder_seq2seq_matches_the_pretraining_row(tokenizer):
  example = EXAMPLES["seq2seq"]
  row = encode(tokenizer, example, "encoder_decoder", "seq2seq", max_len=12, target_len=5)
  pair = (np.asarray(tokenizer.encode(example["text"]), np.int32),
          np.asarray(tokenizer.encode(example["target"]), np.int32))
  [reference] = Seq2Seq(tokenizer, 12, target_len=5).flat_map(pair)
  assert real(row, "encoder_") == reference["encoder_inputs"].tolist()
  targets = row["decoder_targets"][row["decoder_weights"] > 0].tolist()
  assert targets == reference["decoder_targets"].tolist()
  assert real(row, "decoder_") == [0] + targets[:-1]
  assert row["decoder_segment_ids"].tolist() == (row["decoder_weights"] > 0).tolist()


def test_encoder_cannot_do_seq2seq(tokenizer):
  with pytest.raises(ConfigError, match="needs a decoder or encoder_decoder"):
    encode(tokenizer, EXAMPLES["seq2seq"], "encoder", "seq2seq")


def make_config(kind="classification", batch_size=4, **task):
  config = finetune_config()
  config.train.batch_size = batch_size
  config.task.update(dict(kind=kind, max_len=L, target_len=T, **task))
  return config


def numbered(n):
  return [{"text": f"example number {i}", "label": "pos" if i % 3 else "neg"} for i in range(n)]


@pytest.mark.parametrize("family,kind", CASES)
def test_eval_batches_are_padded_with_zero_rows(tokenizer, family, kind):
  config = make_config(kind=kind, batch_size=4)
  examples = [EXAMPLES[kind]] * 5
  labels = TAGS if kind == "token_classification" else LABELS
  spec = example_spec(family, kind, L, T)
  generated = "weights" if family == "decoder" else "decoder_weights"
  weight = {"classification": "label_weight", "regression": "label_weight",
            "token_classification": "tag_weights", "seq2seq": generated, "chat": generated}[kind]
  counts = []
  for p in range(2):  # 5 examples, global batch 4 over 2 processes: 2 batches of 2 rows each
    batches = list(make_dataset(config, tokenizer, labels, examples, family=family,
                                split="validation", process_index=p, process_count=2))
    assert all({k: (v.shape[1:], v.dtype) for k, v in b.items()} == {
        k: (s, np.dtype(d)) for k, (s, d) in spec.items()} for b in batches)
    assert all(len(v) == 2 for b in batches for v in b.values())
    rows_with_weight = [bool(w.any()) for b in batches for w in b[weight]]
    counts.append(len(batches))
    assert rows_with_weight == [True] * (3 - p) + [False] * (1 + p)
    padding = [{k: v[i] for k, v in b.items()} for b in batches for i in range(2)][3 - p:]
    assert all(not v.any() for row in padding for v in row.values())
  assert counts == [2, 2]


def test_every_process_yields_the_same_number_of_batches(tokenizer):
  config = make_config(batch_size=8)
  examples = numbered(19)  # ceil(19 / 8) = 3 batches; process 3 holds 4 examples, 1 batch
  seen, counts = [], []
  for p in range(4):
    batches = list(make_dataset(config, tokenizer, LABELS, examples, family="encoder",
                                split="test", process_index=p, process_count=4))
    counts.append(len(batches))
    rows = np.concatenate([b["inputs"] for b in batches])[
        np.concatenate([b["label_weight"] for b in batches]) > 0]
    seen += [tokenizer.decode(r[1:r.tolist().index(ids(tokenizer)["sep"])]) for r in rows]
  assert counts == [3, 3, 3, 3]
  assert sorted(seen) == sorted(e["text"] for e in examples)  # each example exactly once


def test_unknown_label_fails_before_the_first_batch(tokenizer):
  examples = numbered(3) + [{"text": "x", "label": "neutral"}]
  with pytest.raises(DataError, match=r"validation example 3: unknown label 'neutral'"):
    make_dataset(make_config(), tokenizer, LABELS, examples, family="encoder",
                 split="validation")


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_train_iterator_resumes_exactly(tokenizer, tmp_path):
  config = make_config(batch_size=4)
  dataset = make_dataset(config, tokenizer, LABELS, numbered(10), family="decoder",
                         split="train")
  iterator = iter(dataset)
  take(iterator, 3)
  state = iterator.get_state()
  expected = take(iterator, 5)
  resumed = iter(dataset)
  resumed.set_state(state)
  for a, b in zip(expected, take(resumed, 5)):
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
  # Through Orbax, as the driver saves it.
  with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
    manager.save(0, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(resumed)))
    manager.wait_until_finished()
    again = iter(dataset)
    manager.restore(0, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(again)))
  assert all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(take(resumed, 3),
                                                                       take(again, 3)))


def test_epochs_are_reshuffled_and_shards_disjoint(tokenizer):
  examples = numbered(16)
  config = make_config(batch_size=4)

  def epochs(process_index=0, process_count=1, n=2):
    dataset = make_dataset(config, tokenizer, LABELS, examples, family="encoder",
                           split="train", process_index=process_index,
                           process_count=process_count)
    per_epoch = 16 // process_count // (4 // process_count)
    rows = [r.tobytes() for b in take(iter(dataset), n * per_epoch) for r in b["inputs"]]
    return [rows[i * len(rows) // n:(i + 1) * len(rows) // n] for i in range(n)]

  first, second = epochs()
  assert sorted(first) == sorted(second) and len(set(first)) == 16  # each epoch: every example
  assert first != second  # in a new order
  shards = [set(epochs(p, 2, n=1)[0]) for p in range(2)]
  assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == 16


def test_encoding_pickles_for_grain_workers(tokenizer):
  dataset = make_dataset(make_config(), tokenizer, LABELS, numbered(8), family="encoder",
                         split="validation")
  restored = pickle.loads(pickle.dumps(dataset))
  assert all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(dataset, restored))
