"""Quantization with Qwix (Google's quantization library for JAX): the schemes a model can be
quantized to after training (PTQ, runs.quantized) or trained for (QAT, fp8), as Qwix rules, and
the conversion of trained float parameters into quantized ones.

What is quantized: the matmul kernels of the Transformer blocks (attention query, key, value,
out; the MLP's). Embeddings (and so a tied LM head), an untied LM head, task heads, norms and
biases stay float32: they are a small share of a large model's weights, and the embedding table
is also read by row lookup, which a quantized kernel does not serve. The attention core's own
einsums (q k^T, probs v) have no weights and stay in the compute dtype.

  int8_weight   int8 weights, one scale per output channel: s = max|w| / 127.5, w ~ s * round(w/s)
  int8          int8 weights and int8 matmul inputs: dynamic (one scale per token, taken at run
                time) or static (one scale per matmul input, calibrated on a few batches)
  int4_weight   int4 weights per output channel: s = max|w| / 7.5

Qwix (0.1.8) intercepts jax.lax.dot_general in the modules whose path matches a rule. Two
things it does not do for our models, done here instead: `qwix.quantize_params` quantizes a
kernel stacked by nn.scan (a leading layer axis) with the per-layer axes, so its scales would
sit on the wrong axes: it is applied to each layer in turn; and its
static activation scales average over the batch axes only, one scale per position, which would
tie a model to one sequence length: here the batch and length axes both are averaged over (one
scale per matmul input).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn

from roots_jax.errors import ConfigError

# Scheme -> (weight qtype, activation qtype or None).
SCHEMES = {"int8_weight": ("int8", None), "int8": ("int8", "int8"), "int4_weight": ("int4", None)}
# The modules quantized: those inside a stack's layers (`layers` scanned, `layers_<i>` looped;
# models.stack), whatever sits above the stack (an encoder-decoder's halves, a task model's
# backbone).
BLOCK_MODULES = r"(.*/)?layers(_\d+)?/.*"
# The methods a quantized model is called through (roots_jax.decoding calls all of them).
METHODS = ("__call__", "lm_logits", "encode", "decode")
# fp8 training (as MaxText, Transformer Engine): e4m3 forward, e5m2 gradients.
FP8 = ("float8_e4m3fn", "float8_e5m2")
INSTALL = "pip install 'roots_jax[quant]'"


def qwix():
  """The qwix module, or a ConfigError saying how to install it."""
  try:
    import qwix as module  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ConfigError(f"quantization needs Qwix, which is not installed: {INSTALL}") from e
  return module


def check_scheme(scheme: str, what: str) -> None:
  if scheme not in SCHEMES:
    raise ConfigError(f"{what} must be one of {', '.join(SCHEMES)}; got {scheme!r}")


def _rules(scheme: str, *, static: bool, rule_type=None) -> list:
  q = qwix()
  weight, act = SCHEMES[scheme]
  rule_type = rule_type or q.QuantizationRule
  fields = dict(module_path=BLOCK_MODULES, op_names=("dot_general",), weight_qtype=weight)
  if act:
    fields.update(act_qtype=act, act_static_scale=static, act_batch_axes=(0, 1))
  return [rule_type(**fields)]


def _wrap(model: nn.Module, provider) -> nn.Module:
  methods = [m for m in METHODS if callable(getattr(type(model), m, None))]
  return qwix().quantize_model(model, provider, methods=methods)


def ptq_model(model: nn.Module, scheme: str, *, static: bool = False) -> nn.Module:
  """`model` with its block kernels quantized to `scheme` (static: calibrated activation scales,
  which are parameters): its parameters are quantize_params' (Qwix QArrays)."""
  check_scheme(scheme, "the quantization scheme")
  return _wrap(model, qwix().PtqProvider(_rules(scheme, static=static)))


def calibration_model(model: nn.Module, scheme: str) -> nn.Module:
  """`model` (float parameters) collecting the activation statistics of a static `scheme` in its
  "quant_stats" collection when applied with mutable=["quant_stats"]."""
  q = qwix()
  return _wrap(model, q.QtProvider(_rules(scheme, static=True, rule_type=q.QtRule)))


def training_model(model: nn.Module, quant: ml_collections.ConfigDict) -> nn.Module:
  """The model a run trains under its `quant` section: fake quantization of quant.qat_scheme
  (quantization-aware training: forward quantized, straight-through gradients), fp8 matmuls
  (quant.fp8), or `model` itself."""
  if quant.qat_scheme:
    check_scheme(quant.qat_scheme, "quant.qat_scheme")
    q = qwix()
    return _wrap(model, q.QtProvider(_rules(quant.qat_scheme, static=False, rule_type=q.QtRule)))
  if quant.fp8:
    check_fp8()
    q = qwix()
    forward, backward = (jnp.dtype(t) for t in FP8)
    rule = q.QtRule(module_path=BLOCK_MODULES, op_names=("dot_general",), weight_qtype=forward,
                    act_qtype=forward, bwd_qtype=backward)
    return _wrap(model, q.QtProvider([rule]))
  return model


def outside_interception(fn):
  """`fn` run without Qwix's interception of matmuls: inside a quantized model, a matmul whose
  weights must stay float (the LoRA adapters of a QLoRA model, runs.lora)."""
  from qwix._src import interception  # pylint: disable=g-import-not-at-top
  return interception.disable_interceptions(fn)


def dequantized(value):
  """A parameter in float: a quantized kernel (a QArray, or the PTQ parameter holding one)
  dequantized, anything else as it is."""
  value = getattr(value, "array", value)  # Qwix's PTQ keeps a QArray with how it was quantized
  return qwix().dequantize(value) if isinstance(value, _qarray_type()) else value


def is_quantized(value) -> bool:
  """Whether a parameter (a leaf, or a QArray with `is_leaf=is_quantized`) is quantized."""
  return isinstance(getattr(value, "array", value), _qarray_type())


def num_values(params) -> int:
  """The values of a parameter tree, a quantized kernel's counted as in float."""
  qarray = _qarray_type()
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(
      params, is_leaf=lambda x: isinstance(x, qarray)))


def _qarray_type():
  """Qwix's QArray, or () (nothing is an instance) without Qwix."""
  try:
    import qwix as module  # pylint: disable=g-import-not-at-top
  except ImportError:
    return ()
  return module.QArray


def check_fp8() -> None:
  """fp8 matmuls run fast only on GPUs with fp8 tensor cores (H100 and later)."""
  if jax.default_backend() != "gpu":
    raise ConfigError(f"quant.fp8 needs a GPU with fp8 matmuls (H100 or later); this runs on "
                      f"{jax.default_backend()}: set quant.fp8=false")


def quantize_params(params: dict, abstract: dict, quant_stats: dict | None = None) -> dict:
  """Trained float `params` as the parameters of a ptq_model, whose unboxed abstract
  parameters are `abstract`; `quant_stats` (a calibration_model's) give the static activation
  scales. A scanned stack (`layers`, a leading layer axis) is quantized a layer at a time."""
  q, stats = qwix(), quant_stats or {}
  out, rest = {}, {}
  for key, value in params.items():
    if key == "layers":
      per_layer = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype),
                               abstract[key])
      layer = lambda tree, i: jax.tree.map(lambda x: x[i], tree)
      quantized = [q.quantize_params(layer(value, i), per_layer, layer(stats.get(key, {}), i))
                   for i in range(jax.tree.leaves(value)[0].shape[0])]
      out[key] = jax.tree.map(lambda *layers: jnp.stack(layers), *quantized)
    elif isinstance(value, dict) and _has_stack(value):
      out[key] = quantize_params(value, abstract[key], stats.get(key))
    else:
      rest[key] = value
  if rest:
    out.update(q.quantize_params(rest, abstract, {k: v for k, v in stats.items() if k in rest}))
  return out


def _has_stack(tree: dict) -> bool:
  return any(k == "layers" or (isinstance(v, dict) and _has_stack(v)) for k, v in tree.items())


@dataclasses.dataclass(frozen=True)
class Bytes:
  """Bytes of a parameter tree's arrays as stored (int4: half a byte per value)."""
  total: int            # every array
  quantized: int        # the quantized kernels' values and scales
  quantized_float: int  # the same kernels as float32

  @property
  def ratio(self) -> float:
    """How many times smaller the quantized kernels are than in float32."""
    return self.quantized_float / max(self.quantized, 1)


def stored_bytes(params: Any) -> Bytes:
  """The bytes of `params` (arrays or ShapeDtypeStructs; QArrays where quantized)."""
  q = qwix()
  total = quantized = as_float = 0
  for leaf in jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, q.QArray)):
    if isinstance(leaf, q.QArray):
      size = sum(_nbytes(x) for x in jax.tree.leaves(leaf))
      quantized += size
      as_float += int(np.prod(leaf.shape)) * 4
    else:
      size = _nbytes(leaf)
    total += size
  return Bytes(total, quantized, as_float)


def _nbytes(x) -> int:
  dtype = jnp.dtype(x.dtype)
  if jnp.issubdtype(dtype, jnp.integer):
    bits = jnp.iinfo(dtype).bits
  elif jnp.issubdtype(dtype, jnp.floating):
    bits = jnp.finfo(dtype).bits
  else:
    bits = dtype.itemsize * 8
  return -(-int(np.prod(x.shape)) * bits // 8)
