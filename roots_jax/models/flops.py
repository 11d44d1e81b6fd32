"""Model FLOPs per trained token, the numerator of MFU."""

from roots_jax.models.config import ModelConfig


def flops_per_token(config: ModelConfig, seq_len: int) -> float:
  """Training (forward + backward) FLOPs per token: 6 P + 12 L T N H.

  As in PaLM (Chowdhery et al. 2022, appendix B) and MaxText. P counts the weights of every matmul:
  the q, k, v and output projections, the MLP and the LM head (tied or not, the logits are a
  matmul), but not embedding lookups, norms or biases; each weight costs 2 FLOPs forward and 4
  backward. 12 L T N H is attention itself: QK^T and PV, 2 T N H FLOPs each per token forward,
  tripled for backward; the causal mask's skipped half is counted, as in PaLM.
  """
  d, n, k, h, f = (config.embed_dim, config.num_heads, config.kv_heads, config.head_size,
                   config.mlp_dim)
  attention = 2 * d * n * h + 2 * d * k * h  # query + out, key + value
  mlp = (3 if config.mlp_activation == "swiglu" else 2) * d * f
  matmul_params = config.num_layers * (attention + mlp) + d * config.vocab_size
  return 6.0 * matmul_params + 12.0 * config.num_layers * seq_len * n * h
