"""The safetensors format in numpy: read and write without torch or the safetensors package.

A file is an 8-byte little-endian header length N, N bytes of JSON ({name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {str: str}}), then the tensors' raw little-endian
bytes, offsets counted from the end of the header. bfloat16 and float8 come from ml_dtypes (which
JAX ships). Spec: https://github.com/huggingface/safetensors#format.
"""

import json
import os
import struct

import ml_dtypes
import numpy as np

from roots_jax.errors import CheckpointError

DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16), "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_NAMES = {dtype: name for name, dtype in DTYPES.items()}
# Larger headers are not safetensors files (the reference implementation caps them at 100 MB).
_MAX_HEADER = 100_000_000


def read_header(path: str) -> tuple[dict, int]:
  """(the JSON header, the byte offset where the tensor data starts)."""
  try:
    with open(path, "rb") as f:
      prefix = f.read(8)
      (n,) = struct.unpack("<Q", prefix) if len(prefix) == 8 else (-1,)
      if not 0 < n <= _MAX_HEADER:
        raise CheckpointError(f"{path} is not a safetensors file (bad header length)")
      header = json.loads(f.read(n))
  except OSError as e:
    raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from e
  except ValueError as e:
    raise CheckpointError(f"{path} is not a safetensors file (its header is not JSON)") from e
  return header, 8 + n


def read(path: str) -> dict[str, np.ndarray]:
  """Every tensor of the file, as numpy arrays in the stored dtype (memory-mapped, read-only)."""
  header, start = read_header(path)
  data = np.asarray(np.memmap(path, dtype=np.uint8, mode="r"))  # a plain (0-d capable) view
  tensors = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    if info.get("dtype") not in DTYPES:
      raise CheckpointError(f"{path}: tensor {name} has dtype {info.get('dtype')!r}, which this "
                            f"reader does not know ({', '.join(DTYPES)})")
    dtype, shape = DTYPES[info["dtype"]], tuple(info["shape"])
    begin, end = info["data_offsets"]
    if end - begin != dtype.itemsize * int(np.prod(shape)) or start + end > data.size:
      raise CheckpointError(f"{path}: tensor {name} does not fit its offsets (a truncated file?)")
    tensors[name] = data[start + begin:start + end].view(dtype).reshape(shape)
  return tensors


def write(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None):
  """Writes `tensors` (C order, little-endian, names sorted) atomically: a temporary file renamed
  into place. Hugging Face's loaders want metadata {"format": "pt"}."""
  header, offset, arrays = {}, 0, []
  for name in sorted(tensors):
    array = np.asarray(tensors[name])
    if array.dtype.byteorder == ">":
      array = array.astype(array.dtype.newbyteorder("<"))
    if array.dtype not in _NAMES:
      raise ValueError(f"tensor {name}: dtype {array.dtype} has no safetensors name")
    if not array.flags.c_contiguous:  # (np.ascontiguousarray would make a scalar 1-d)
      array = array.copy(order="C")
    header[name] = {"dtype": _NAMES[array.dtype], "shape": list(array.shape),
                    "data_offsets": [offset, offset + array.nbytes]}
    offset += array.nbytes
    arrays.append(array)
  if metadata:
    header["__metadata__"] = dict(metadata)
  text = json.dumps(header, separators=(",", ":")).encode()
  text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the reference writes it
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp, "wb") as f:
      f.write(struct.pack("<Q", len(text)))
      f.write(text)
      for array in arrays:
        f.write(array.tobytes())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
