"""Property tests: random and malformed bytes through the sources and the whole pipeline.

Whatever a data file holds, reading it either raises a DataError naming the file (or, for the
stream as a whole, the data) or yields documents, and then batches of the documented shapes
and dtypes with token ids inside the vocabulary. The examples are derandomized, so CI sees the
same ones every run; raise FUZZ_EXAMPLES to explore further locally.
"""

import collections
import itertools
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from roots_jax import objectives
from roots_jax.data import sources
from roots_jax.errors import ConfigError, DataError

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 50)), deadline=None,
                derandomize="FUZZ_EXAMPLES" not in os.environ, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Bytes that trip readers up: NUL, lone surrogates and invalid or truncated UTF-8, a byte order
# mark, every line ending, right-to-left and combining marks, an emoji, an escape sequence.
ODD = [b"\0", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xff", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98",
       b"\xef\xbb\xbf", b"\r", b"\n", b"\r\n", b"\n\n", b"\t", b" ", "\u202e".encode(),
       "e\u0301".encode(), "\U0001F600".encode(), b"\x1b[31m", b"\\u", b'"', b"{", b"}"]
odd_text = st.text(st.characters(codec="utf-8"), max_size=40)  # any plane, controls, NUL
long_run = st.builds(lambda c, n: c * n, st.sampled_from([b"a", "é".encode(), b" ", b"\xff",
                                                          "😀".encode()]),
                     st.integers(50, 3000))
chunk = st.one_of(odd_text.map(str.encode), st.sampled_from(ODD), st.binary(max_size=16),
                  long_run)
text_bytes = st.lists(chunk, max_size=25).map(b"".join)

# JSONL: mostly records (with lone surrogates as JSON escapes or as raw bytes, long ones over
# small budgets), and blank lines, other JSON values, truncated lines and junk.
doc_text = st.text(st.characters(codec="utf-8") | st.characters(categories=["Cs"]), max_size=60)
record = st.builds(
    lambda text, ascii_only: json.dumps({"text": text}, ensure_ascii=ascii_only).encode(
        "utf-8", "surrogatepass"), doc_text, st.booleans())
long_record = st.builds(lambda c, n: json.dumps({"text": c * n}).encode(),
                        st.sampled_from(["x", "é", " "]), st.integers(50, 3000))
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6)
jsonl_line = st.one_of(record, record, long_record, st.just(b""), st.just(b"  \t"),
                       json_value.map(lambda v: json.dumps(v).encode()),
                       record.map(lambda r: r[:len(r) // 2]), chunk)
line_end = st.sampled_from([b"\n", b"\n", b"\r\n", b"\r", b""])
jsonl_bytes = st.lists(st.tuples(jsonl_line, line_end), max_size=12).map(
    lambda lines: b"".join(l + e for l, e in lines))
clean_jsonl_bytes = st.lists(st.tuples(st.one_of(record, long_record, st.just(b"")),
                                       st.sampled_from([b"\n", b"\r\n"])),
                             min_size=1, max_size=12).map(
                                 lambda lines: b"".join(l + e for l, e in lines))

data_file = st.one_of(
    st.tuples(st.just("txt"), text_bytes),
    st.tuples(st.just("txt"), st.binary(max_size=3000)),
    st.tuples(st.just("jsonl"), jsonl_bytes),
    st.tuples(st.just("jsonl"), clean_jsonl_bytes),
    st.tuples(st.just("jsonl"), st.binary(max_size=3000)),
)
bom = st.sampled_from([b"", b"", b"\xef\xbb\xbf"])
budget = st.sampled_from([40, 300, 300, 4096, 4096, 64 << 20, 64 << 20])


def write(tmp_path_factory, ext: str, content: bytes) -> str:
  """A fresh directory per example: function-scoped tmp_path is shared by all of them."""
  path = tmp_path_factory.mktemp("fuzz") / f"data.{ext}"
  path.write_bytes(content)
  return str(path)


def check_message(error: Exception, path: str) -> None:
  """A user-facing message: one line, naming the file, or the whole data set when the stream
  ran out of documents."""
  message = str(error)
  assert "\n" not in message
  assert path in message or "training data" in message or "training documents" in message, message


def read_all(source, **kwargs) -> tuple[list, list, str | None]:
  """Documents, the state after each and the message of the DataError that ended the stream,
  if one did."""
  docs, states = [], []
  it = iter(sources.DocumentStream(source, repeat=False, seed=None, **kwargs))
  try:
    for doc in it:
      docs.append(doc)
      states.append(json.loads(json.dumps(it.get_state())))
  except DataError as e:
    return docs, states, str(e)
  return docs, states, None


def file_source(path, max_bytes, **kwargs):
  kwargs = {"split": "train", "eval_fraction": None, **kwargs}
  return sources.FileSource(path, "auto", "text", max_document_bytes=max_bytes, **kwargs)


@FUZZ
@given(file=data_file, head=bom, max_bytes=budget, data=st.data())
def test_any_bytes_read_as_documents_or_a_data_error_and_resume_anywhere(
    tmp_path_factory, file, head, max_bytes, data):
  ext, content = file
  path = write(tmp_path_factory, ext, head + content)
  try:
    source = file_source(path, max_bytes)
  except DataError as e:
    check_message(e, path)
    event(f"check: {str(e).replace(path, 'FILE')[:40]}")
    return
  docs, states, error = read_all(source)
  event(f"{'no' if not docs else 'some'} documents{', then an error' if error else ''}")
  if error:
    check_message(error, path)
  for doc in docs:
    assert isinstance(doc, str)
    doc.encode("utf-8")  # no lone surrogates: every tokenizer can take it
    if ext == "txt":  # at most max_bytes of the file, each byte at most one character
      assert len(doc) <= max_bytes and doc.strip()
  # Resuming after any document gives exactly the rest, and the same error.
  k = data.draw(st.integers(0, len(docs) - 1), label="resume after") if docs else -1
  it = iter(sources.DocumentStream(source, repeat=False, seed=None))
  if k >= 0:
    it.set_state(states[k])
  rest, rest_error = [], None
  try:
    rest.extend(it)
  except DataError as e:
    rest_error = str(e)
  assert rest == docs[k + 1:] and rest_error == error
  if error is None:  # The held-out split is disjoint and complete, skipped records or not.
    train, _, _ = read_all(file_source(path, max_bytes, eval_fraction=0.5))
    held_out, _, _ = read_all(file_source(path, max_bytes, split="eval", eval_fraction=0.5))
    assert collections.Counter(train) + collections.Counter(held_out) == collections.Counter(docs)


parquet_value = st.one_of(st.none(), st.binary(max_size=100), odd_text.map(str.encode),
                          long_run)


@FUZZ
@given(values=st.lists(parquet_value, min_size=1, max_size=40), as_string=st.booleans(),
       max_bytes=budget, data=st.data())
def test_parquet_values_of_any_bytes_read_leniently_and_resume_anywhere(
    tmp_path_factory, values, as_string, max_bytes, data):
  column = pa.array(values, pa.binary())
  if as_string:  # A string column holding invalid UTF-8, as another writer may store it.
    column = pa.Array.from_buffers(pa.string(), len(column), column.buffers(), column.null_count)
  path = tmp_path_factory.mktemp("fuzz") / "data.parquet"
  pq.write_table(pa.table({"text": column}), path, row_group_size=7)
  source = file_source(str(path), max_bytes)
  docs, states, error = read_all(source)
  assert error is None
  assert docs == [v.decode("utf-8", "replace") for v in values
                  if v is not None and len(v) <= max_bytes]
  k = data.draw(st.integers(-1, len(docs) - 1), label="resume after")
  it = iter(sources.DocumentStream(source, repeat=False, seed=None))
  if k >= 0:
    it.set_state(states[k])
  assert list(it) == docs[k + 1:]


def check_batch(batch: dict[str, np.ndarray], config, vocab_size: int) -> None:
  """The objective's documented keys, shapes and dtypes; ids in the vocabulary; 0/1 weights
  only on real tokens."""
  b, t = config.train.batch_size, config.data.seq_len
  objective = config.data.objective
  if objective == "causal":
    ids, weights, segments = ("inputs", "targets"), "weights", "segment_ids"
    shapes = {k: (b, t) for k in ("inputs", "targets", "segment_ids", "positions", "weights")}
  elif objective == "mlm_nsp":
    ids, weights, segments = ("inputs", "targets"), "weights", "segment_ids"
    shapes = {k: (b, t) for k in ("inputs", "targets", "token_types", "segment_ids",
                                  "positions", "weights")}
    shapes.update(nsp_labels=(b,), nsp_weights=(b,))
  else:
    ids, weights, segments = (("encoder_inputs", "decoder_inputs", "decoder_targets"),
                              "decoder_weights", "decoder_segment_ids")
    target = objectives.target_len(config.data)
    shapes = {f"encoder_{k}": (b, t) for k in ("inputs", "segment_ids", "positions")}
    shapes.update({f"decoder_{k}": (b, target) for k in ("inputs", "targets", "segment_ids",
                                                          "positions", "weights")})
  assert {k: v.shape for k, v in batch.items()} == shapes
  for key, value in batch.items():
    assert value.dtype == (np.float32 if "weights" in key else np.int32), key
    assert value.min() >= 0, key
    if "weights" in key:
      assert set(np.unique(value)) <= {0.0, 1.0}, key
  for key in ids:
    assert batch[key].max() < vocab_size, key
  assert np.all(batch[segments][batch[weights] > 0] > 0)  # no loss on padding
  if objective != "mlm_nsp":  # every real target counts (BERT: only the masked ones)
    np.testing.assert_array_equal(batch[weights], batch[segments] > 0)


@pytest.mark.parametrize("objective", ["causal", "mlm_nsp", "span_corruption"])
@FUZZ
@given(file=data_file, head=bom, max_bytes=budget)
def test_any_bytes_make_valid_batches_or_a_data_error(tmp_path_factory, make_config, tokenizer,
                                                      objective, file, head, max_bytes):
  ext, content = file
  path = write(tmp_path_factory, ext, head + content)
  config = make_config(source="files", train_files=path, eval_files=path, objective=objective,
                       max_document_bytes=max_bytes)
  # Eval is one finite pass: all of it is checked. Training repeats, so take a few batches
  # (causal only: BERT's pairs need two tokens, and a corpus of 1-token documents would
  # never fill a batch).
  splits = {"eval": None, "train": 3} if objective == "causal" else {"eval": None}
  for split, count in splits.items():
    try:
      batches = list(itertools.islice(objectives.dataset(config, tokenizer, split), count))
    except (DataError, ConfigError) as e:
      check_message(e, path)
      event(f"{split}: {str(e).replace(path, 'FILE')[:40]}")  # --hypothesis-show-statistics
      continue
    event(f"{split}: {'no' if not batches else 'some'} batches")
    for batch in batches:
      check_batch(batch, config, tokenizer.vocab_size)
