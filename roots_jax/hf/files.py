"""A Hugging Face model directory on disk: config.json, the weights, the tokenizer files.

Weights are model.safetensors or pytorch_model.bin, each possibly sharded (an *.index.json
naming the shard of every tensor). Safetensors are read in numpy; .bin files are pickled torch
tensors, so they need torch (the `hf` extra).
"""

import json
import os
import shutil

import numpy as np

from roots_jax.errors import CheckpointError, ConfigError
from roots_jax.hf import safetensors

WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# What Hugging Face tokenizers are saved as: GPT-2's byte-level BPE, BERT's WordPiece, T5's and
# Llama's sentencepiece, the fast tokenizers' tokenizer.json, and their settings.
TOKENIZER_FILES = ("vocab.json", "merges.txt", "vocab.txt", "spiece.model", "tokenizer.model",
                   "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")


def read_config(hf_dir: str) -> dict:
  path = os.path.join(hf_dir, "config.json")
  if not os.path.isdir(hf_dir):
    raise ConfigError(f"{hf_dir} is not a directory; give a Hugging Face model directory "
                      "(config.json and model.safetensors or pytorch_model.bin)")
  try:
    with open(path) as f:
      config = json.load(f)
  except OSError as e:
    raise ConfigError(f"cannot read {path}: {e.strerror or e}; a Hugging Face model directory "
                      "holds config.json and model.safetensors or pytorch_model.bin") from e
  except ValueError as e:
    raise ConfigError(f"{path} is not valid JSON: {e}") from e
  if not isinstance(config, dict):
    raise ConfigError(f"{path} is not a Hugging Face model config (not a JSON object)")
  return config


def read_weights(hf_dir: str) -> dict[str, np.ndarray]:
  """Every tensor of the checkpoint by its Hugging Face name, as float32 numpy arrays."""
  for name in WEIGHTS:
    index = os.path.join(hf_dir, f"{name}.index.json")
    if os.path.isfile(os.path.join(hf_dir, name)):
      files = [name]
    elif os.path.isfile(index):
      try:
        with open(index) as f:
          files = sorted(set(json.load(f)["weight_map"].values()))
      except (OSError, ValueError, KeyError, AttributeError) as e:
        raise CheckpointError(f"cannot read the shard index {index}: {e}") from e
    else:
      continue
    read = _read_safetensors if name.endswith(".safetensors") else _read_torch
    tensors = {}
    for file in files:
      tensors.update(read(os.path.join(hf_dir, file)))
    return tensors
  raise CheckpointError(f"{hf_dir} has no weights: expected model.safetensors or "
                        "pytorch_model.bin (or their sharded *.index.json)")


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  """The floating-point tensors (integer ones are buffers such as BERT's position_ids)."""
  return {k: np.asarray(v, np.float32) for k, v in safetensors.read(path).items()
          if not (np.issubdtype(v.dtype, np.integer) or v.dtype == np.bool_)}


def _read_torch(path: str) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ConfigError(f"{path} is a PyTorch pickle, which needs torch: pip install "
                      "'roots_jax[hf]', or convert from a model.safetensors") from e
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises many types for a bad file
    raise CheckpointError(f"cannot read {path} with torch.load: {str(e).splitlines()[0]}") from e
  if not isinstance(state, dict):
    raise CheckpointError(f"{path} does not hold a state dict")
  return {k: v.detach().to(torch.float32).numpy() for k, v in state.items()
          if isinstance(v, torch.Tensor) and v.is_floating_point()}


def copy_tokenizer(src: str, dst: str) -> list[str]:
  """Copies the TOKENIZER_FILES that `src` has into `dst`; returns their names."""
  names = [n for n in TOKENIZER_FILES if os.path.isfile(os.path.join(src, n))]
  os.makedirs(dst, exist_ok=True)
  for name in names:
    shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
  return names


def write_model(hf_dir: str, config: dict, tensors: dict[str, np.ndarray]) -> None:
  """config.json and model.safetensors (float32, with the metadata Hugging Face checks)."""
  os.makedirs(hf_dir, exist_ok=True)
  safetensors.write(os.path.join(hf_dir, "model.safetensors"),
                    {k: np.asarray(v, np.float32) for k, v in tensors.items()},
                    metadata={"format": "pt"})
  with open(os.path.join(hf_dir, "config.json"), "w") as f:
    json.dump(config, f, indent=2, sort_keys=True)


def write_tokenizer(hf_dir: str, contents: dict[str, bytes]) -> list[str]:
  """Writes the tokenizer files `contents` ({name: bytes}) into `hf_dir`; returns their names."""
  for name, data in contents.items():
    with open(os.path.join(hf_dir, name), "wb") as f:
      f.write(data)
  return sorted(contents)
