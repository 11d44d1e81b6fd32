"""LoRA (Hu et al. 2021): a trained low-rank update added to frozen dense layers,

  y = x W + (alpha / r) * dropout(x) A B      A [inputs..., r], B [r, features...]

as PEFT does it: A random (He uniform, as PEFT's and Qwix's), B zero, so the adapted model starts
as the base. `adapted(model, ...)` wraps a model so that every DenseGeneral whose module path
("backbone/layers/attention/query") matches a pattern gets `lora_a` and `lora_b` parameters next
to its kernel; the model code is untouched. A and B keep the kernel's logical axes on their
input and feature sides (the rank axis is replicated), and a scanned stack stacks them like its
kernels. Dropout applies where the call has a "dropout" rng (training), never in evaluation or
decoding.

Qwix's LoRA (qwix.LoraProvider) intercepts the same matmuls, but (0.1.8) it flattens a
multi-dimensional kernel's sides into one axis and then fails to box the result under a mesh
(the kernel's three logical names on a two-dimensional array), and applies its dropout whether
or not the model runs deterministically; hence this small layer, which composes with Qwix's PTQ
for QLoRA: the base kernels quantized, the adapters' matmuls left outside its interception.
"""

import re
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
from flax import linen as nn

from roots_jax.models.layers import DenseGeneral

A, B = "lora_a", "lora_b"


def path_of(module: nn.Module) -> str:
  """A module's path below the model, as the patterns see it: "backbone/layers/mlp/wi"."""
  return "/".join(module.path)


def _low_rank(h: jax.Array, a: jax.Array, b: jax.Array, n_in: int) -> jax.Array:
  return jnp.tensordot(jnp.tensordot(h, a, axes=n_in), b, axes=1)  # [..., r] -> [..., F...]


def adapted(model: nn.Module, pattern: str, *, rank: int, alpha: float, dropout: float,
            methods: Iterable[str], isolated: Callable = lambda f: f) -> nn.Module:
  """A copy of `model` whose `methods` run with LoRA on the DenseGeneral layers whose path fully
  matches `pattern`. Its parameters are the model's plus lora_a and lora_b in those layers.
  `isolated(f)` wraps the adapters' own matmuls: a quantized base's interception of matmuls
  (Qwix) must not take A and B for weights to quantize."""
  regex, scale = re.compile(pattern), alpha / rank

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if (context.method_name != "__call__" or not isinstance(module, DenseGeneral)
        or not regex.fullmatch(path_of(module))):
      return next_fun(*args, **kwargs)
    (x,) = args
    n_in = len(module.axes) - len(module.features)
    inputs = x.shape[x.ndim - n_in:]
    a = module.param(A, nn.with_logical_partitioning(
        nn.initializers.he_uniform(in_axis=tuple(range(n_in)), out_axis=-1),
        (*module.axes[:n_in], None)), (*inputs, rank), module.param_dtype)
    b = module.param(B, nn.with_logical_partitioning(
        nn.initializers.zeros, (None, *module.axes[n_in:])), (rank, *module.features),
        module.param_dtype)
    y = next_fun(*args, **kwargs)
    h = x
    if dropout > 0 and module.has_rng("dropout"):
      keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - dropout, h.shape)
      h = jnp.where(keep, h / (1.0 - dropout), 0.0).astype(h.dtype)
    h, a, b = (t.astype(module.dtype) for t in (h, a, b))
    delta = isolated(_low_rank)(h, a, b, n_in)  # [..., F...]
    return y + (scale * delta).astype(y.dtype)

  cls = type(model)

  def wrap(name):
    method = getattr(cls, name)

    def run(self, *args, **kwargs):
      with nn.intercept_methods(interceptor):
        return method(self, *args, **kwargs)
    run.__name__ = name
    return run

  wrapper = type(cls.__name__, (cls,), {name: wrap(name) for name in methods})
  copy = model.copy()
  copy.__class__ = wrapper
  return copy


def fold(kernel: jax.Array, a: jax.Array, b: jax.Array, scale: float) -> jax.Array:
  """kernel + scale * A B: the dense layer the adapter's layer equals. kernel [L..., in...,
  out...], a [L..., in..., r], b [L..., r, out...], where L are the leading axes a scanned stack
  adds."""
  lead = a.ndim + b.ndim - kernel.ndim - 2
  delta = lambda a, b: jnp.tensordot(a, b, axes=1)
  for _ in range(lead):
    delta = jax.vmap(delta)
  return kernel + scale * delta(a.astype(jnp.float32), b.astype(jnp.float32)).astype(kernel.dtype)
