"""Multi-head attention with grouped KV heads, its masks, and the one attention core.

Einsum legend: B batch, T query length, S key length, D embed, N query heads, K kv heads,
G query heads per kv head (N = K * G), H head dim.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from roots_jax.errors import ConfigError
from roots_jax.models.config import ModelConfig
from roots_jax.models.layers import dense, residual_init_std
from roots_jax.models.positions import apply_rope

IMPLS = ("xla", "dot_product_attention", "cudnn")

# The variable collection of structured pruning's masks (runs.prune): passed to apply as
# {"params": ..., "masks": ...}, `head_mask` [N] multiplies each head's output before the output
# projection (Michel et al. 2019), Mlp's `unit_mask` [F] each hidden unit. Absent (the default),
# the model is what it always was.
MASKS = "masks"


def default_segments(tokens: jax.Array, segment_ids: jax.Array | None) -> jax.Array:
  """segment_ids [B, T], or one segment covering every row when not given."""
  return jnp.ones_like(tokens) if segment_ids is None else segment_ids


def make_attention_mask(q_segment_ids: jax.Array, kv_segment_ids: jax.Array, *,
                        causal: bool) -> jax.Array:
  """[B, 1, T, S] bool, True where query t may attend to key s.

  Segment ids number the packed sequences of a row from 1 and mark padding with 0. A query sees
  only keys of its own segment, so real tokens never see padding or another document; padding is
  a segment of its own, so no row is fully masked (fused kernels would return NaN there).
  """
  mask = q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]  # [B, T, S]
  if causal:
    mask &= jnp.tril(jnp.ones((q_segment_ids.shape[1], kv_segment_ids.shape[1]), bool))
  return mask[:, None]


def cache_slots(module: nn.Module, positions: jax.Array,
                segment_ids: jax.Array) -> tuple[jax.Array | None, jax.Array, jax.Array]:
  """A decoding stack's bookkeeping for T new tokens: (the slot of the first, the causal mask
  [B, 1, T, L] over the cache's L slots, the positions [B, L] of the tokens in them).

  Call inside the stack's compact method. The cache records each slot's segment id and position,
  so left-padded prompts (segment 0) stay invisible to real tokens, and T5's relative bias sees
  true distances. The shape-only first call (inputs of length L) creates the records and returns
  (None, the plain causal mask, positions).
  """
  initialized = module.has_variable("cache", "index")
  index = module.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
  slot_segments = module.variable("cache", "segment_ids", jnp.zeros, segment_ids.shape, jnp.int32)
  slot_positions = module.variable("cache", "positions", jnp.zeros, positions.shape, jnp.int32)
  if not initialized:
    return None, make_attention_mask(segment_ids, segment_ids, causal=True), positions
  start, length = index.value, segment_ids.shape[1]
  slot_segments.value = jax.lax.dynamic_update_slice(
      slot_segments.value, segment_ids.astype(jnp.int32), (0, start))
  slot_positions.value = jax.lax.dynamic_update_slice(
      slot_positions.value, positions.astype(jnp.int32), (0, start))
  index.value = start + length
  slots = jnp.arange(slot_segments.value.shape[1])
  mask = segment_ids[:, :, None] == slot_segments.value[:, None, :]  # [B, T, L]
  mask &= slots[None, None, :] <= start + jnp.arange(length)[None, :, None]
  return start, mask[:, None], slot_positions.value


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, *,
                          bias: jax.Array | None = None, scale: float | None = None,
                          impl: str = "xla", dropout_rate: float = 0.0,
                          dropout_rng: jax.Array | None = None) -> jax.Array:
  """softmax(scale q k^T + bias, masked) v: the core every attention layer goes through.

  q: [B, T, N, H]; k, v: [B, S, K, H] with K dividing N (GQA; MQA when K = 1); mask: [B, 1, T, S]
  bool; bias: additive logits [1 or B, N, T, S] (T5's relative position bias), added before the
  mask; scale: None for 1/sqrt(H), 1.0 for none (T5). Returns [B, T, N, H]. Softmax statistics
  are float32.
  impl: "xla" (explicit einsums, the reference), "dot_product_attention" (jax.nn's XLA path) or
  "cudnn" (jax.nn's fused cuDNN kernel: NVIDIA GPUs, bfloat16/float16). Attention dropout, active
  when `dropout_rng` is given and the rate is positive, exists only in "xla".
  """
  if impl not in IMPLS:
    raise ConfigError(f"model.attention_impl must be one of {', '.join(IMPLS)}; got {impl!r}")
  if dropout_rng is not None and dropout_rate > 0 and impl != "xla":
    raise ConfigError(f"model.attention_dropout_rate > 0 needs model.attention_impl=xla "
                      f"(jax.nn.dot_product_attention has no dropout); got {impl!r}")
  if impl == "xla":
    return _einsum_attention(q, k, v, mask, bias, scale, dropout_rate, dropout_rng)
  if impl == "cudnn":
    if jax.default_backend() != "gpu":
      raise ConfigError(f"cudnn attention needs an NVIDIA GPU (running on "
                        f"{jax.default_backend()}); set model.attention_impl=xla")
    if q.dtype not in (jnp.bfloat16, jnp.float16):
      raise ConfigError(f"cudnn attention needs model.dtype bfloat16 or float16; got {q.dtype}")
  return jax.nn.dot_product_attention(
      q, k, v, bias=None if bias is None else bias.astype(q.dtype), mask=mask, scale=scale,
      implementation="cudnn" if impl == "cudnn" else "xla")


def _einsum_attention(q, k, v, mask, bias, scale, dropout_rate, dropout_rng):
  b, t, n, h = q.shape
  kv_heads = k.shape[2]
  q = q.reshape(b, t, kv_heads, n // kv_heads, h)  # [B, T, K, G, H]
  logits = jnp.einsum("BTKGH,BSKH->BKGTS", q, k, preferred_element_type=jnp.float32)
  logits = logits * np.float32(1 / np.sqrt(h) if scale is None else scale)
  if bias is not None:
    logits = logits + bias.astype(jnp.float32).reshape(
        bias.shape[0], kv_heads, n // kv_heads, *bias.shape[2:])  # [B or 1, K, G, T, S]
  logits = jnp.where(mask[:, :, None], logits, jnp.finfo(jnp.float32).min)  # mask [B, 1, 1, T, S]
  probs = jax.nn.softmax(logits, axis=-1)  # [B, K, G, T, S] float32
  if dropout_rng is not None and dropout_rate > 0:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
    probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
  out = jnp.einsum("BKGTS,BSKH->BTKGH", probs.astype(v.dtype), v)
  return out.reshape(b, t, n, h)  # [B, T, N, H]


class Attention(nn.Module):
  """Multi-head attention with K <= N key/value heads (GQA, Ainslie et al. 2023; MQA if K = 1).

  Self-attention by default; pass `kv` [B, S, D] for cross-attention. With `positions` [B, T]
  (self-attention under position="rope") queries and keys are rotated by RoPE; `bias`
  [1 or B, N, T, S] is added to the logits (position="relative"). Logits are scaled by 1/sqrt(H)
  unless model.scaled_attention is False (T5, which folds the scale into its initialisation).

  With `decode`, keys and values live in the "cache" collection (see roots_jax.decoding):
  self-attention writes the T new ones at `cache_index` into cached_key/cached_value [B, L, K, H]
  and attends over all L slots (`mask` [B, 1, T, L] hides the empty ones); cross-attention
  projects `kv` once, on the call that passes it, and reads the cached projections when called
  with kv=None. The first decode call, on inputs of the full cache length, only creates the
  cache (Flax's convention), attending as usual. A `head_mask` [N] in the MASKS collection
  scales each head's output.
  """
  config: ModelConfig

  @nn.compact
  def __call__(self, x: jax.Array, kv: jax.Array | None = None, *, mask: jax.Array,
               positions: jax.Array | None = None, bias: jax.Array | None = None,
               deterministic: bool = True, cross: bool = False, decode: bool = False,
               cache_index: jax.Array | None = None) -> jax.Array:
    """x [B, T, D]; kv [B, S, D] (cross-attention; None in a cached decode step) -> [B, T, D]."""
    cfg = self.config
    n, k, h = cfg.num_heads, cfg.kv_heads, cfg.head_size
    q = dense(cfg, (n, h), ("embed", "heads", "kv"), name="query")(x)  # [B, T, N, H]
    if positions is not None:
      q = apply_rope(q, positions, cfg.rope_theta)
    key = value = None  # a cached cross-attention step reuses the stored projections
    if kv is not None or not cross:
      kv = x if kv is None else kv
      key = dense(cfg, (k, h), ("embed", "kv_heads", "kv"), name="key")(kv)  # [B, S, K, H]
      value = dense(cfg, (k, h), ("embed", "kv_heads", "kv"), name="value")(kv)  # [B, S, K, H]
      if positions is not None:
        key = apply_rope(key, positions, cfg.rope_theta)
    if decode:
      key, value = self._cached(key, value, cross=cross, cache_index=cache_index)
    dropout_rng = None
    if not deterministic and cfg.attention_dropout_rate > 0:
      dropout_rng = self.make_rng("dropout")
    out = dot_product_attention(q, key, value, mask, bias=bias,
                                scale=None if cfg.scaled_attention else 1.0,
                                impl=cfg.attention_impl,
                                dropout_rate=cfg.attention_dropout_rate,
                                dropout_rng=dropout_rng)  # [B, T, N, H]
    if self.has_variable(MASKS, "head_mask"):  # Michel et al. 2019's head mask xi_h
      out = out * self.get_variable(MASKS, "head_mask").astype(out.dtype)[:, None]  # [N, 1]
    return dense(cfg, (cfg.embed_dim,), ("heads", "kv", "embed"), init_std=residual_init_std(cfg),
                 name="out")(out)  # [B, T, D]

  def _cached(self, key, value, *, cross, cache_index):
    """The keys and values to attend over in decode mode ([B, L or S, K, H]), updating the cache:
    self-attention writes `key`/`value` [B, T, K, H] at cache_index; cross-attention stores them
    whole (None: read the stored ones)."""
    axes = ("batch", "length", "kv_heads", "kv")
    initialized = self.has_variable("cache", "cached_key")
    cached_key = self.variable("cache", "cached_key", lambda: jnp.zeros_like(key))
    cached_value = self.variable("cache", "cached_value", lambda: jnp.zeros_like(value))
    if not initialized:  # the shape-only pass that creates the cache
      return key, value
    if cross:
      if key is not None:
        cached_key.value, cached_value.value = key, value
    else:
      start = (0, cache_index, 0, 0)
      cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, key, start)
      cached_value.value = jax.lax.dynamic_update_slice(cached_value.value, value, start)
    cached_key.value = nn.with_logical_constraint(cached_key.value, axes)
    cached_value.value = nn.with_logical_constraint(cached_value.value, axes)
    return cached_key.value, cached_value.value
