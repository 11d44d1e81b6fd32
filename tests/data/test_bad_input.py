"""Bad input: huge records within a memory budget, unreadable or vanishing files, odd encodings.

A record over data.max_document_bytes is skipped with a warning and never held whole; every
user mistake is a DataError naming the file.
"""

import errno
import hashlib
import json
import logging
import os
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roots_jax import config as config_lib
from roots_jax import objectives
from roots_jax.data import sources
from roots_jax.errors import ConfigError, DataError

BUDGET = 1 << 16


def files(patterns, max_document_bytes=BUDGET, **kwargs):
  return sources.FileSource(patterns, "auto", "text", split="train", eval_fraction=None,
                            max_document_bytes=max_document_bytes, **kwargs)


def read_with_states(source, **kwargs) -> list[tuple[str, dict]]:
  """Every document and the iterator state just after it (round-tripped through JSON)."""
  it = iter(sources.DocumentStream(source, repeat=False, seed=None, **kwargs))
  return [(doc, json.loads(json.dumps(it.get_state()))) for doc in it]


def assert_resumes_everywhere(source, read):
  """Restoring the state after any document yields exactly the documents after it."""
  docs = [d for d, _ in read]
  for i, (_, state) in enumerate(read):
    it = iter(sources.DocumentStream(source, repeat=False, seed=None))
    it.set_state(state)
    assert list(it) == docs[i + 1:]


def skip_warnings(caplog) -> list[str]:
  return [r.getMessage() for r in caplog.records
          if r.name == "roots_jax" and r.getMessage().startswith("skipped ")]


def big_jsonl(path, size: int) -> list[str]:
  """Five small records, a blank line and two big ones (lines 3 and 6: size + 13 and
  2 * size + 13 bytes); returns the small documents."""
  small = [f"doc {i}" for i in range(5)]
  with open(path, "w", encoding="utf-8") as f:
    f.write(json.dumps({"text": small[0]}) + "\n\n")
    f.write(json.dumps({"text": "x" * size}) + "\n")
    f.write(json.dumps({"text": small[1]}) + "\r\n")
    f.write(json.dumps({"text": small[2]}) + "\n")
    f.write(json.dumps({"text": "é" * size}, ensure_ascii=False) + "\n")  # 2 bytes a character
    f.write(json.dumps({"text": small[3]}) + "\n")
    f.write(json.dumps({"text": small[4]}))  # no final newline
  return small


def test_a_jsonl_record_over_the_budget_is_skipped_with_a_warning(tmp_path, caplog):
  path = tmp_path / "big.jsonl"
  small = big_jsonl(path, 1 << 20)
  source = files(str(path))
  with caplog.at_level(logging.WARNING, "roots_jax"):
    read = read_with_states(source)
  assert [d for d, _ in read] == small
  assert skip_warnings(caplog) == [
      f"skipped {path}:{line}: a record of {size} bytes, more than data.max_document_bytes "
      f"({BUDGET}); raise that to keep it" for line, size in ((3, (1 << 20) + 13),
                                                            (6, (2 << 20) + 13))]
  # Positions count the skipped lines: line numbers and byte offsets are the file's own.
  assert [s["position"][1] for _, s in read] == [1, 4, 5, 7, 8]
  assert read[-1][1]["position"][0] == path.stat().st_size
  assert_resumes_everywhere(source, read)


def test_records_at_the_budget_are_kept_and_one_byte_more_is_skipped(tmp_path, caplog):
  record = json.dumps({"text": "y" * 100})
  path = tmp_path / "edge.jsonl"
  path.write_text(f"{record}\r\n{record}y\n{record}")
  with caplog.at_level(logging.WARNING, "roots_jax"):
    docs = [d for d, _ in read_with_states(files(str(path), max_document_bytes=len(record)))]
  assert docs == ["y" * 100, "y" * 100]
  assert [w.split(":")[1] for w in skip_warnings(caplog)] == ["2"]


def test_the_held_out_split_does_not_move_when_records_are_skipped(tmp_path):
  path = tmp_path / "d.jsonl"
  small = big_jsonl(path, 1 << 18)
  for split in ("train", "eval"):
    kept = sources.FileSource(str(path), "auto", "text", split=split, eval_fraction=0.5,
                              max_document_bytes=BUDGET)
    everything = sources.FileSource(str(path), "auto", "text", split=split, eval_fraction=0.5,
                                    max_document_bytes=1 << 20)
    expected = [d for d, _ in read_with_states(everything) if d in small]
    assert [d for d, _ in read_with_states(kept)] == expected


def test_a_skipped_record_is_read_in_bounded_memory_and_warned_once_over_shards(tmp_path,
                                                                              caplog):
  path = tmp_path / "huge.jsonl"
  big_jsonl(path, 4 << 20)
  source = files(str(path))
  tracemalloc.start()
  try:
    with caplog.at_level(logging.WARNING, "roots_jax"):
      shares = [[d for d, _ in read_with_states(source, shard_index=i, shard_count=2)]
                for i in range(2)]
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  # `for line in f` would hold the 4 and 8 MB lines; the budget is 64 KiB.
  assert peak < 1 << 20, peak
  assert len(skip_warnings(caplog)) == 2  # by the share each record belongs to, not by both
  assert sorted(shares[0] + shares[1]) == [f"doc {i}" for i in range(5)]


def test_a_text_file_without_newlines_streams_in_documents_within_the_budget(tmp_path):
  text = "é€😀a b" * 200_000  # 2.4 MB of 1-4 byte characters on one line
  path = tmp_path / "one_line.txt"
  path.write_bytes(text.encode())
  source = files(str(path), max_document_bytes=50_000)
  digest, sizes, chars, states = hashlib.sha256(), [], [], []
  tracemalloc.start()
  try:
    it = iter(sources.DocumentStream(source, repeat=False, seed=None))
    for doc in it:
      digest.update(doc.encode())
      sizes.append(len(doc.encode()))
      chars.append(len(doc))
      states.append(it.get_state())
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert peak < 1 << 20, peak  # reading the line whole would take 2.4 MB, more as a str
  # Cut at character boundaries: nothing lost or replaced.
  assert digest.digest() == hashlib.sha256(text.encode()).digest()
  assert len(sizes) > 40 and max(sizes) <= 50_000 and min(sizes[:-1]) > 49_990
  it = iter(sources.DocumentStream(source, repeat=False, seed=None))
  it.set_state(json.loads(json.dumps(states[20])))
  assert "".join(it) == text[sum(chars[:21]):]


def test_text_documents_are_cut_before_the_line_that_would_overflow(tmp_path):
  lines = [f"line {i} " + "ü" * (i % 7 * 5) for i in range(200)]
  path = tmp_path / "para.txt"
  path.write_text("\n".join(lines) + "\n")
  source = files(str(path), max_document_bytes=300)
  read = read_with_states(source)
  docs = [d for d, _ in read]
  assert max(len(d.encode()) for d in docs) <= 300
  assert "\n".join(docs) == "\n".join(lines)  # cut at line boundaries only
  assert_resumes_everywhere(source, read)


def test_a_parquet_value_over_the_budget_is_skipped_with_a_warning(tmp_path, caplog):
  texts = [f"row {i}" for i in range(2500)]
  texts[1] = "z" * (BUDGET + 1)
  texts[2000] = "\xff" * (3 * BUDGET)  # 2 bytes of UTF-8 each
  texts[5] = None
  path = tmp_path / "t.parquet"
  pq.write_table(pa.table({"text": texts}), path, row_group_size=1100)
  source = files(str(path))
  with caplog.at_level(logging.WARNING, "roots_jax"):
    read = read_with_states(source)
  assert [d for d, _ in read] == [t for i, t in enumerate(texts) if i not in (1, 2000, 5)]
  assert skip_warnings(caplog) == [
      f"skipped {path} row {i} (counting from 0): a record of {n} bytes, more than "
      f"data.max_document_bytes ({BUDGET}); raise that to keep it"
      for i, n in ((1, BUDGET + 1), (2000, 6 * BUDGET))]
  for k in (0, 1, 2, 1096, 1097, 1995, 1996, 1997):  # around the skips and a row group's end
    it = iter(sources.DocumentStream(source, repeat=False, seed=None))
    it.set_state(read[k][1])
    assert list(it) == [d for d, _ in read[k + 1:]]


def test_invalid_utf8_in_a_parquet_string_column_is_replaced(tmp_path):
  data = b"ok\xff\xfeZ"  # Arrow does not check the UTF-8 of what a Parquet writer stored
  offsets = pa.array([0, 2, 5], pa.int32()).buffers()[1]
  column = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(data)])
  pq.write_table(pa.table({"text": column}), tmp_path / "bad.parquet")
  assert [d for d, _ in read_with_states(files(str(tmp_path / "bad.parquet")))] == [
      "ok", "\ufffd\ufffdZ"]


def test_when_every_document_is_skipped_training_stops_with_a_data_error(tmp_path):
  path = tmp_path / "all_big.jsonl"
  path.write_text("".join(json.dumps({"text": "w" * 500}) + "\n" for _ in range(3)))
  stream = sources.DocumentStream(files(str(path), max_document_bytes=100), repeat=True, seed=0)
  with pytest.raises(DataError, match="skipped as larger than data.max_document_bytes"):
    next(iter(stream))
  # Resumed at the end of an epoch that did yield documents: no false alarm.
  path.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"text": "w" * 500}) + "\n")
  stream = sources.DocumentStream(files(str(path), max_document_bytes=100), repeat=True, seed=0)
  it = iter(stream)
  assert next(it) == "ok"
  state = it.get_state()
  it = iter(stream)
  it.set_state(state)
  assert next(it) == "ok"


def test_the_budget_comes_from_the_config_and_is_validated(make_config, tmp_path, caplog):
  path = tmp_path / "c.jsonl"
  small = big_jsonl(path, 5000)
  config = make_config(source="files", train_files=str(path), max_document_bytes=4000)
  assert sources.make_source(config.data, "train").max_document_bytes == 4000
  config.data.eval_fraction = 0.0
  with caplog.at_level(logging.WARNING, "roots_jax"):
    docs = list(sources.DocumentStream(sources.make_source(config.data, "train"), repeat=False,
                                       seed=None))
  assert docs == small and len(skip_warnings(caplog)) == 2
  config.data.max_document_bytes = 0
  with pytest.raises(ConfigError, match="data.max_document_bytes must be positive; got 0"):
    config_lib.validate(config)


def test_the_pipeline_trains_past_a_huge_record(make_config, tokenizer, tmp_path, caplog):
  path = tmp_path / "p.jsonl"
  big_jsonl(path, 1 << 20)
  config = make_config(source="files", train_files=str(path), eval_fraction=0.0,
                       max_document_bytes=BUDGET)
  with caplog.at_level(logging.WARNING, "roots_jax"):
    it = iter(objectives.dataset(config, tokenizer, "train"))
    batches = [next(it) for _ in range(3)]
  assert all(b["inputs"].shape == (4, 32) and b["inputs"].max() < 512 for b in batches)
  assert any("p.jsonl:3" in w for w in skip_warnings(caplog))


# Files that exist by name but cannot be read, for real (tests run as root: chmod does not
# stop root).
def broken_link(tmp_path):
  os.symlink(tmp_path / "gone", tmp_path / "broken.jsonl")
  return tmp_path / "broken.jsonl", "No such file or directory"


def link_loop(tmp_path):
  os.symlink(tmp_path / "loop.txt", tmp_path / "loop.txt")
  return tmp_path / "loop.txt", "Too many levels of symbolic links"


@pytest.mark.parametrize("make", [broken_link, link_loop])
def test_unreadable_files_are_data_errors_naming_them(tmp_path, make):
  path, reason = make(tmp_path)
  with pytest.raises(DataError) as e:
    files(str(tmp_path / "*"))
  assert str(e.value) == (f"cannot read data file {path}: {reason}; fix the file or remove it "
                          "from data.train_files")


def test_a_pipe_is_rejected_without_opening_it(tmp_path):
  os.mkfifo(tmp_path / "pipe.txt")  # opening it to read would wait for a writer
  with pytest.raises(DataError, match=r"pipe.txt is not a regular file \(a pipe or a device\?\); "
                                      "remove it from data.train_files"):
    files(str(tmp_path / "*.txt"))


def test_permission_denied_names_the_file_and_the_config_key(tmp_path, make_config,
                                                             monkeypatch):
  (tmp_path / "a.jsonl").write_text('{"text": "a"}\n')

  def deny(path, *args, **kwargs):
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

  monkeypatch.setattr(sources, "open", deny, raising=False)
  data = make_config(source="files", train_files="x", eval_files=str(tmp_path / "a.jsonl")).data
  with pytest.raises(DataError, match=r"cannot read data file .*a.jsonl: Permission denied; fix "
                                      r"the file or remove it from data.eval_files"):
    sources.make_source(data, "eval")


@pytest.mark.parametrize("name", ["a.txt", "a.jsonl", "a.parquet"])
def test_a_file_deleted_after_the_start_is_a_data_error(tmp_path, name):
  path = tmp_path / name
  if name.endswith(".parquet"):
    pq.write_table(pa.table({"text": ["a", "b"]}), path)
  else:
    path.write_text('{"text": "a"}\n' if name.endswith(".jsonl") else "a\n")
  source = files(str(path))
  path.unlink()
  with pytest.raises(DataError, match=f"cannot read data file {path}: No such file or "
                                      "directory; fix the file or remove it"):
    list(sources.DocumentStream(source, repeat=False, seed=None))


def test_a_read_error_in_the_middle_of_a_file_is_a_data_error(tmp_path, monkeypatch):
  path = tmp_path / "disk.jsonl"
  path.write_text("".join(json.dumps({"text": f"d{i}"}) + "\n" for i in range(10)))
  source = files(str(path))

  class FailingFile:
    def __init__(self, f):
      self.f, self.lines = f, 0

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      self.f.close()

    def seek(self, *args):
      return self.f.seek(*args)

    def readline(self, limit):
      self.lines += 1
      if self.lines > 3:
        raise OSError(errno.EIO, os.strerror(errno.EIO))
      return self.f.readline(limit)

  monkeypatch.setattr(sources, "open", lambda p, mode: FailingFile(open(p, mode)), raising=False)
  it = iter(sources.DocumentStream(source, repeat=False, seed=None))
  assert [next(it) for _ in range(3)] == ["d0", "d1", "d2"]
  with pytest.raises(DataError, match="disk.jsonl: Input/output error; fix the file"):
    next(it)


@pytest.mark.parametrize("name, content, docs", [
    # A UTF-8 byte order mark (utf-8-sig) is dropped; json.loads would reject it.
    ("bom.jsonl", b'\xef\xbb\xbf{"text": "a"}\n{"text": "b"}\n', ["a", "b"]),
    ("bom.txt", b"\xef\xbb\xbfpara one\n\npara two", ["para one", "para two"]),
    ("crlf.jsonl", b'{"text": "a\\r\\nb"}\r\n\r\n{"text": "c"}\r\n', ["a\r\nb", "c"]),
    ("crlf.txt", b"one\r\ntwo\r\n\r\nthree\r\n", ["one\r\ntwo", "three"]),
    # Invalid UTF-8 inside a JSON string, a lone surrogate as bytes and as a JSON escape.
    ("bad.jsonl", b'{"text": "a\xffb\xed\xa0\x80c"}\n{"text": "x\\ud800y\\udfff"}\n',
     ["a\ufffdb\ufffd\ufffd\ufffdc", "x\ufffdy\ufffd"]),
    ("escapes.jsonl", b'{"text": "\\ud83d\\ude00 \\u0000"}\n', ["\U0001F600 \0"]),
    ("bad.txt", b"a\xc3(\xed\xa0\x80 \xf0\x9f\x98", ["a\ufffd(\ufffd\ufffd\ufffd \ufffd"]),
])
def test_odd_encodings_decode_without_errors(tmp_path, name, content, docs):
  (tmp_path / name).write_bytes(content)
  assert [d for d, _ in read_with_states(files(str(tmp_path / name)))] == docs


def test_odd_text_tokenizes(tokenizer):
  ids = tokenizer.encode("x\ufffdy \0 \U0001F600")
  assert ids and 0 <= min(ids) and max(ids) < tokenizer.vocab_size


@pytest.mark.parametrize("line, message", [
    ("1" * 5000, r"j.jsonl:1 is not valid JSON \(Exceeds the limit"),
    ('{"text": ' + "[" * 100_000, r"j.jsonl:1 is not valid JSON \(maximum recursion depth"),
    ('{"a\\nb": 1, "c": 2}', r"j.jsonl:1 has no field 'text' \(has: a\\nb, c\);"),
    (json.dumps({f"k{i}": i for i in range(30)}),
     r"\(has: k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, ... \(30 in all\)\)"),
], ids=["long_number", "deep_nesting", "newline_in_key", "many_keys"])
def test_json_that_python_cannot_parse_is_a_one_line_data_error(tmp_path, line, message):
  (tmp_path / "j.jsonl").write_text(line + "\n")
  with pytest.raises(DataError, match=message) as e:
    files(str(tmp_path / "j.jsonl"), max_document_bytes=1 << 20)
  assert "\n" not in str(e.value)


def test_binary_past_the_first_kb_reads_as_replaced_text(tmp_path):
  rng = np.random.default_rng(0)
  path = tmp_path / "late.txt"
  path.write_bytes(b"text " * 300 + rng.bytes(5000))
  docs = [d for d, _ in read_with_states(files(str(path)))]
  assert docs and docs[0].startswith("text text")
