"""The numpy safetensors reader/writer: round trips, and files the reference implementation reads
and writes (with the hf extra, which brings the safetensors package)."""

import ml_dtypes
import numpy as np
import pytest

from roots_jax.errors import CheckpointError
from roots_jax.hf import safetensors


def arrays():
  rng = np.random.default_rng(0)
  return {
      "f32": rng.normal(size=(3, 5)).astype(np.float32),
      "bf16": rng.normal(size=(4,)).astype(ml_dtypes.bfloat16),
      "f16": rng.normal(size=(2, 2, 2)).astype(np.float16),
      "i64": np.arange(6, dtype=np.int64).reshape(2, 3),
      "bool": np.array([True, False, True]),
      "scalar": np.array(2.5, np.float64),
      "empty": np.zeros((0, 3), np.float32),
      "big_endian": np.arange(3, dtype=">f4"),
  }


def test_round_trip(tmp_path):
  path = str(tmp_path / "x.safetensors")
  safetensors.write(path, arrays(), metadata={"format": "pt"})
  header, start = safetensors.read_header(path)
  assert header["__metadata__"] == {"format": "pt"} and start % 8 == 0
  back = safetensors.read(path)
  assert back.keys() == arrays().keys()
  for name, want in arrays().items():
    assert back[name].dtype == want.dtype.newbyteorder("<") and back[name].shape == want.shape
    np.testing.assert_array_equal(back[name], want)


@pytest.mark.extra("hf")  # safetensors comes with transformers
def test_reference_implementation_reads_and_writes_the_same_files(tmp_path):
  import safetensors.numpy as st  # pylint: disable=g-import-not-at-top
  mine, theirs = str(tmp_path / "mine.safetensors"), str(tmp_path / "theirs.safetensors")
  plain = {k: v for k, v in arrays().items() if k not in ("bf16", "big_endian")}
  safetensors.write(mine, plain, metadata={"format": "pt"})
  for name, value in st.load_file(mine).items():
    np.testing.assert_array_equal(value, plain[name])
  st.save_file(plain, theirs, metadata={"format": "np"})
  for name, value in safetensors.read(theirs).items():
    np.testing.assert_array_equal(value, plain[name])


def test_bad_files_are_checkpoint_errors(tmp_path):
  bad = tmp_path / "bad.safetensors"
  bad.write_bytes(b"\x00" * 4)
  with pytest.raises(CheckpointError, match="not a safetensors file"):
    safetensors.read(str(bad))
  good = str(tmp_path / "good.safetensors")
  safetensors.write(good, {"w": np.ones((64,), np.float32)})
  truncated = tmp_path / "truncated.safetensors"
  truncated.write_bytes(open(good, "rb").read()[:-16])
  with pytest.raises(CheckpointError, match="truncated"):
    safetensors.read(str(truncated))
