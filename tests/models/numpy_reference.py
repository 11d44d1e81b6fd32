"""Numpy references for the model tests: attention, norms, activations, T5's position buckets."""

import math

import numpy as np


def reference_attention(q, k, v, mask, bias=None, scale=None):
  """softmax(scale q k^T + bias, masked) v in numpy, kv heads repeated to the query heads."""
  groups = q.shape[2] // k.shape[2]
  k, v = np.repeat(k, groups, axis=2), np.repeat(v, groups, axis=2)
  scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
  logits = np.einsum("btnh,bsnh->bnts", q, k) * scale
  if bias is not None:
    logits = logits + bias
  logits = np.where(mask, logits, -np.inf)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  return np.einsum("bnts,bsnh->btnh", probs, v)


def layernorm(x, p, eps=1e-5):
  y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
  return y * p["scale"] + p["bias"]


def gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def relative_position_bucket(relative_position, bidirectional=True, num_buckets=32,
                             max_distance=128):
  """Hugging Face's T5Attention._relative_position_bucket, torch replaced by numpy."""
  relative_position = np.asarray(relative_position, np.int64)
  relative_buckets = np.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    relative_buckets += (relative_position > 0).astype(np.int64) * num_buckets
    relative_position = np.abs(relative_position)
  else:
    relative_position = -np.minimum(relative_position, np.zeros_like(relative_position))
  max_exact = num_buckets // 2
  is_small = relative_position < max_exact
  with np.errstate(divide="ignore", invalid="ignore"):
    relative_position_if_large = max_exact + (
        np.log(relative_position.astype(np.float32) / max_exact)
        / math.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(np.int64)
  relative_position_if_large = np.minimum(relative_position_if_large, num_buckets - 1)
  relative_buckets += np.where(is_small, relative_position, relative_position_if_large)
  return relative_buckets
