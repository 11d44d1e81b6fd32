"""Parameter name and shape maps between a Hugging Face state dict and roots_jax parameters.

A family describes its checkpoint as a `Layout`: rules for the tensors outside the layers, and
per stack of layers rules with "{i}" for the layer index. The same layout converts both ways and
for both layer layouts: model.scan_layers=True keeps a stack's layers under `layers` with a
leading layer axis, False under layers_0, layers_1, ...

Rule kinds (ours on the right; N heads, H head dim, D embed, F mlp):
  copy     same shape both ways (embedding tables, norm scales, the relative bias table)
  flat     Hugging Face 1-D, ours any shape (a query bias [N*H] <-> [N, H])
  linear   torch nn.Linear weight [out, in] <-> our kernel [in, out...] (query [D, N, H])
  linear2  the same with two input axes: attention output [D, N*H] <-> [N, H, D]
  conv1d   GPT-2's Conv1D weight [in, out], not transposed <-> our kernel [in, out...]
  conv1d2  the same with two input axes: [N*H, D] <-> [N, H, D]
"""

import dataclasses
import re

import numpy as np

from roots_jax.errors import CheckpointError
from roots_jax.models.config import ModelConfig

KINDS = ("copy", "flat", "linear", "linear2", "conv1d", "conv1d2")


@dataclasses.dataclass(frozen=True)
class Rule:
  hf: str            # the Hugging Face tensor name; "{i}" is the layer index in a stack's rules
  ours: str          # our parameter path, "/"-separated; a stack's rules are relative to a layer
  kind: str = "copy"


@dataclasses.dataclass(frozen=True)
class Stack:
  path: str          # where the stack's layers live: "" (decoder, encoder), "encoder", "decoder"
  num_layers: int
  rules: tuple[Rule, ...]


@dataclasses.dataclass(frozen=True)
class Layout:
  rules: tuple[Rule, ...]
  stacks: tuple[Stack, ...]
  # Regexes of Hugging Face tensors that carry nothing of ours: buffers, copies of tied weights.
  ignored: tuple[str, ...] = ()


def decoder_layout(m: ModelConfig, top: list[Rule], layer: list[Rule], ignored: list[str],
                   head: str) -> Layout:
  """A decoder's layout: `top` and one stack of `layer` rules, and its LM head, the Hugging
  Face weight `head`: our lm_head when untied, else a copy of the token table (in .bin files)
  that is ignored."""
  if m.tie_embeddings:
    ignored = [*ignored, re.escape(head)]
  else:
    top = [*top, Rule(head, "lm_head/kernel", "linear")]
  return Layout(tuple(top), (Stack("", m.num_layers, tuple(layer)),), tuple(ignored))


def _split(path: str) -> tuple[str, ...]:
  return tuple(p for p in path.split("/") if p)


def _places(layout: Layout, scan: bool):
  """(rule, HF name, our path tuple, layer index or None) for every tensor of the layout."""
  for rule in layout.rules:
    yield rule, rule.hf, _split(rule.ours), None
  for stack in layout.stacks:
    for rule in stack.rules:
      for i in range(stack.num_layers):
        layers = ("layers",) if scan else (f"layers_{i}",)
        yield rule, rule.hf.format(i=i), _split(stack.path) + layers + _split(rule.ours), i


def to_ours(kind: str, x: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
  """A Hugging Face tensor `name` as our parameter of `shape`."""
  size = int(np.prod(shape))
  fan_in = int(np.prod(shape[:2 if kind.endswith("2") else 1]))
  want = {"copy": tuple(shape), "flat": (size,), "linear": (size // fan_in, fan_in),
          "conv1d": (fan_in, size // fan_in)}[kind.rstrip("2")]
  if tuple(x.shape) != tuple(want):
    raise CheckpointError(f"the checkpoint's {name} is {tuple(x.shape)} but config.json's "
                          f"dimensions need {tuple(want)}")
  return (x.T if kind.startswith("linear") else x).reshape(shape)


def to_hf(kind: str, y: np.ndarray) -> np.ndarray:
  """Our parameter as the Hugging Face tensor of the rule's kind."""
  if kind == "copy":
    return y
  if kind == "flat":
    return y.reshape(-1)
  n_in = 2 if kind.endswith("2") else 1
  matrix = y.reshape(int(np.prod(y.shape[:n_in])), -1)  # [in, out]
  return matrix.T if kind.startswith("linear") else matrix


def import_params(layout: Layout, tensors: dict[str, np.ndarray], shapes: dict, *, scan: bool):
  """-> (flat params {path tuple: array}, missing [(our path, HF name)], unused HF names).

  `shapes` maps each of our parameter paths (tuples) to its shape, so every tensor is checked
  against the model config; a stack's layers are stacked on a new leading axis when `scan`.
  """
  params, missing, stacked = {}, [], {}
  for rule, name, path, layer in _places(layout, scan):
    if path not in shapes:
      raise CheckpointError(f"internal: no parameter {'/'.join(path)} for {name}")
    if name not in tensors:
      missing.append((path, name))
      continue
    if scan and layer is not None:
      stacked.setdefault(path, []).append(to_ours(rule.kind, tensors[name], shapes[path][1:], name))
    else:
      params[path] = to_ours(rule.kind, tensors[name], shapes[path], name)
  for path, layers in stacked.items():
    if len(layers) == shapes[path][0]:  # a layer with a missing tensor is reported as missing
      params[path] = np.stack(layers)
  used = {name for _, name, _, _ in _places(layout, scan)}
  ignored = re.compile("|".join(f"(?:{p})" for p in layout.ignored) or "$^")
  unused = sorted(n for n in tensors if n not in used and not ignored.fullmatch(n))
  return params, missing, unused


def export_params(layout: Layout, params: dict, *, scan: bool) -> dict[str, np.ndarray]:
  """Our flat params {path tuple: array} -> {Hugging Face name: array}."""
  tensors = {}
  for rule, name, path, layer in _places(layout, scan):
    value = np.asarray(params[path], np.float32)
    if scan and layer is not None:
      value = value[layer]
    tensors[name] = np.ascontiguousarray(to_hf(rule.kind, value))
  return tensors
