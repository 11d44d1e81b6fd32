"""Document sources: formats, splits, user errors, sharding, epochs and resumable state."""

import collections
import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow_datasets as tfds

from roots_jax.data import sources
from roots_jax.errors import DataError


def read(source, **kwargs) -> list[str]:
  return list(sources.DocumentStream(source, repeat=False, seed=None, **kwargs))


def files(patterns, split="train", eval_fraction=None, fmt="auto", field="text"):
  return sources.FileSource(patterns, fmt, field, split=split, eval_fraction=eval_fraction,
                            max_document_bytes=64 << 20)


def test_text_paragraphs_keep_inner_newlines_and_decode_bad_utf8(tmp_path):
  path = tmp_path / "a.txt"
  path.write_bytes(b"first line\n\tsecond \xff line\n\n\n  \npara two\r\n\nlast")
  assert read(files(str(path))) == ["first line\n\tsecond \ufffd line", "para two", "last"]


def test_text_without_blank_lines_streams_in_bounded_documents(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, "MAX_DOC_BYTES", 100)
  path = tmp_path / "long.txt"
  path.write_text("".join(f"line {i:04d} of a file without paragraphs\n" for i in range(30)))
  docs = read(files(str(path)))
  assert len(docs) > 5 and all(len(d) < 150 for d in docs)
  assert "\n".join(docs) + "\n" == path.read_text()


def test_jsonl_and_globs(jsonl_files, tmp_path):
  pattern, docs = jsonl_files
  assert read(files(pattern)) == docs
  # Comma-separated, overlapping patterns: files in the given order, each once.
  both = f"{tmp_path}/part2.jsonl, {pattern}"
  assert read(files(both)) == docs[40:] + docs[:40]


def test_parquet_reads_by_batches_and_resumes_inside_a_row_group(tmp_path):
  texts = [f"row {i} " * (i % 5 + 1) for i in range(3000)]
  texts[7] = None
  path = tmp_path / "t.parquet"
  pq.write_table(pa.table({"text": texts, "n": list(range(3000))}), path, row_group_size=1100)
  stream = sources.DocumentStream(files(str(path)), repeat=False, seed=None)
  assert list(stream) == [t for t in texts if t is not None]
  it = iter(stream)
  for _ in range(1500):
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  rest = list(it)
  it2 = iter(stream)
  it2.set_state(state)
  assert list(it2) == rest == texts[1501:]


@pytest.mark.parametrize("name, content, message", [
    ("nothing*.txt", None, "matches no file"),
    ("empty.txt", b"", "is empty"),
    ("blob.txt", b"GIF89a\0\0\x01binary", "looks binary"),
    ("bad.jsonl", b'{"body": "no text field"}\n', "bad.jsonl:1 has no field 'text'"),
    ("bad2.jsonl", b'\n{"text": 3}\n', "bad2.jsonl:2: field 'text' holds int"),
    ("broken.jsonl", b'{"text": "unterminated\n', "broken.jsonl:1 is not valid JSON"),
    ("notes.md", b"# title\n", "set data.format"),
    ("fake.parquet", b"not parquet at all", "cannot read"),
])
def test_user_mistakes_are_data_errors_naming_the_file(tmp_path, name, content, message):
  if content is not None:
    (tmp_path / name).write_bytes(content)
  with pytest.raises(DataError, match=message):
    files(str(tmp_path / name))


def test_missing_parquet_column_and_directory(tmp_path):
  pq.write_table(pa.table({"body": ["x"]}), tmp_path / "t.parquet")
  with pytest.raises(DataError, match="no column 'text'.*columns: body"):
    files(str(tmp_path / "t.parquet"))
  with pytest.raises(DataError, match="is a directory"):
    files(str(tmp_path))


def test_jsonl_missing_field_on_a_later_line_names_the_line(tmp_path):
  path = tmp_path / "d.jsonl"
  path.write_text('{"text": "a"}\n{"text": "b"}\n\n{"title": "c"}\n')
  with pytest.raises(DataError, match=r"d.jsonl:4 has no field 'text' \(has: title\)"):
    read(files(str(path)))


def test_held_out_documents_split_disjointly_and_stably(jsonl_files):
  pattern, docs = jsonl_files
  train = read(files(pattern, "train", eval_fraction=0.25))
  held_out = read(files(pattern, "eval", eval_fraction=0.25))
  assert sorted(train + held_out) == sorted(docs)
  assert 5 <= len(held_out) <= 25
  assert held_out == read(files(pattern, "eval", eval_fraction=0.25))


def test_builtin_corpus_splits_by_module_deterministically():
  train, held_out = sources.BuiltinSource("train", 0.05), sources.BuiltinSource("eval", 0.05)
  assert not set(train.files) & set(held_out.files)
  assert 20 < len(held_out.files) < len(train.files) / 10
  assert train.files == sorted(train.files) == sources.BuiltinSource("train", 0.05).files
  assert "os.py" in train.files + held_out.files
  for f in train.files + held_out.files:
    parts = f.split("/")
    assert f.endswith(".py") and not {"test", "tests", "site-packages", "__pycache__"} & set(parts)
  first = pathlib.Path(held_out.root, held_out.files[0])
  assert read(held_out)[0] == first.read_text(encoding="utf-8")


def test_tfds_data_source_with_mock_data(make_config):
  data = make_config(source="tfds", tfds_name="lm1b", eval_split="test").data
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    docs = read(sources.make_source(data, "train"))
    assert len(docs) == 6 and all(isinstance(d, str) and d for d in docs)
    data.text_field = "content"
    with pytest.raises(DataError, match="no feature 'content'"):
      sources.make_source(data, "train")
  data.tfds_name = "no_such_dataset"
  with pytest.raises(DataError, match="cannot open TFDS dataset 'no_such_dataset'"):
    sources.make_source(data, "train")


@pytest.mark.parametrize("one_file", [True, False])
def test_shards_are_disjoint_and_cover_each_epoch(jsonl_files, tmp_path, one_file):
  pattern, docs = jsonl_files
  if one_file:
    pattern = str(tmp_path / "part1.jsonl")
    docs = docs[20:40]
  source = files(pattern)
  shares = [read(source, shard_index=i, shard_count=3) for i in range(3)]
  assert sorted(sum(shares, [])) == sorted(docs)
  assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_worker_slices_subdivide_a_process_share(jsonl_files):
  source = files(jsonl_files[0])
  process_share = read(source, shard_index=1, shard_count=2)
  workers = []
  for w in range(3):
    stream = sources.DocumentStream(source, repeat=False, seed=None, shard_index=1, shard_count=2)
    stream.set_slice(slice(w, None, 3))
    workers.append(list(stream))
  assert sorted(sum(workers, [])) == sorted(process_share)
  assert workers[0] == process_share[0::3]


@pytest.mark.parametrize("stored_permutation", [True, False])
def test_repeat_reshuffles_each_epoch_and_resumes_mid_file(jsonl_files, monkeypatch,
                                                           stored_permutation):
  if not stored_permutation:
    monkeypatch.setattr(sources, "MAX_PERMUTATION", 0)
  pattern, docs = jsonl_files
  stream = sources.DocumentStream(files(pattern), repeat=True, seed=3)
  it = iter(stream)
  epoch0 = [next(it) for _ in docs]
  epoch1 = [next(it) for _ in docs]
  assert collections.Counter(epoch0) == collections.Counter(epoch1) == collections.Counter(docs)
  assert epoch0 != epoch1  # the file order changes
  it = iter(stream)
  for _ in range(25):
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  assert state["position"] is not None  # inside a file, not at a file boundary
  it2 = iter(stream)
  it2.set_state(state)
  assert [next(it2) for _ in range(50)] == (epoch0 + epoch1)[25:75]


def test_repeating_an_empty_share_is_an_error(tmp_path):
  path = tmp_path / "one.txt"
  path.write_text("the only document")
  stream = sources.DocumentStream(files(str(path)), repeat=True, seed=0, shard_index=1,
                                  shard_count=2)
  with pytest.raises(DataError, match="fewer than the 2 readers"):
    next(iter(stream))


def test_no_eval_data_is_an_error(make_config):
  with pytest.raises(DataError, match="no eval data"):
    sources.make_source(make_config(source="files", train_files="x.txt", eval_fraction=0.0).data,
                        "eval")


def test_pair_mode_reads_input_target_tuples(tmp_path):
  fields = ("q", "a")
  pq.write_table(pa.table({"q": ["q0", None, b"q2"], "a": ["a0", "a1", "a2"]}),
                 tmp_path / "p.parquet")
  assert read(files(str(tmp_path / "p.parquet"), field=fields)) == [("q0", "a0"), ("q2", "a2")]
  (tmp_path / "p.jsonl").write_text('{"q": "x", "a": "y"}\n{"q": "z", "b": "w"}\n')
  it = iter(sources.DocumentStream(files(str(tmp_path / "p.jsonl"), field=fields), repeat=False,
                                   seed=None))
  assert next(it) == ("x", "y")
  with pytest.raises(DataError, match=r"p.jsonl:2 has no field 'a'.*data.input_field"):
    next(it)
  with pytest.raises(DataError, match="no column 'b'.*set data.input_field"):
    files(str(tmp_path / "p.parquet"), field=("q", "b"))


def test_prepared_corpus_reads_the_manifests_shards_by_language(make_config, tmp_path):
  shards = {"data/en/00000.jsonl": ("en", ["one", "two"]), "data/fr/00000.jsonl": ("fr", ["un"]),
            "data/en/00001.jsonl": ("en", ["three"]), "data/de/00001.jsonl": ("de", [])}
  for path, (_, texts) in shards.items():
    (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / path).write_text("".join(json.dumps({"text": t, "id": t}) + "\n" for t in texts))
  manifest = [{"path": p, "language": lang, "documents": len(texts)}
              for p, (lang, texts) in shards.items()]
  (tmp_path / "manifest.json").write_text(json.dumps({"shards": manifest}))
  data = make_config(source="prepared", prepared_dir=str(tmp_path), eval_fraction=0.0).data
  assert read(sources.make_source(data, "train")) == ["one", "two", "un", "three"]
  data.prepared_languages = "en"
  assert read(sources.make_source(data, "train")) == ["one", "two", "three"]
  data.prepared_languages = "de,it"
  with pytest.raises(DataError, match=r"no documents in de, it \(it has en, fr\)"):
    sources.make_source(data, "train")
  data.prepared_dir = str(tmp_path / "nowhere")
  with pytest.raises(DataError, match="has no manifest.json: run python -m roots_jax.prep"):
    sources.make_source(data, "train")
