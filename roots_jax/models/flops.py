"""Model FLOPs per trained token, the numerator of MFU."""

from roots_jax.models.config import ModelConfig


def flops_per_token(config: ModelConfig, seq_len: int, target_len: int | None = None) -> float:
  """Training (forward + backward) FLOPs per token: 6 P + 12 L T N H.

  As in PaLM (Chowdhery et al. 2022, appendix B) and MaxText. P counts the weights of every matmul:
  the q, k, v and output projections, the MLP and the LM head (tied or not, the logits are a
  matmul), but not embedding lookups, norms or biases; each weight costs 2 FLOPs forward and 4
  backward. 12 L T N H is attention itself: QK^T and PV, 2 T N H FLOPs each per token forward,
  tripled for backward; the causal mask's skipped half is counted, as in PaLM.

  encoder (BERT): the same over seq_len tokens (bidirectional attention, counted fully), plus the
  MLM head (transform D x D and the V x D output) on every token and the NSP pooler and
  classifier once per sequence (their weights / seq_len).

  encoder_decoder: per *encoder* token (what the train loop counts: batch x seq_len), for one
  example of seq_len encoder tokens and target_len (default seq_len) decoder tokens: the encoder
  on seq_len tokens, the decoder's self-attention, MLP, cross-attention query/output and LM head on
  target_len tokens, its cross-attention key/value projections on seq_len tokens, and attention
  12 N H (L_enc S^2 + L_dec (T^2 + T S)); the total divided by seq_len.
  """
  d, n, k, h, f, v = (config.embed_dim, config.num_heads, config.kv_heads, config.head_size,
                      config.mlp_dim, config.vocab_size)
  q_out, k_v = 2 * d * n * h, 2 * d * k * h  # query + out, key + value
  mlp = (3 if config.mlp_activation in ("swiglu", "geglu") else 2) * d * f
  layer = q_out + k_v + mlp
  if config.family == "encoder_decoder":
    s, t = seq_len, target_len or seq_len
    enc_layers, dec_layers = config.num_layers, config.decoder_layers
    weight_flops = (s * (enc_layers * layer + dec_layers * k_v)
                    + t * (dec_layers * (layer + q_out) + d * v))
    attention = n * h * (enc_layers * s * s + dec_layers * (t * t + t * s))
    return (6.0 * weight_flops + 12.0 * attention) / s
  matmul_params = config.num_layers * layer + d * v
  per_sequence = 0
  if config.family == "encoder":
    matmul_params += d * d  # mlm_transform
    per_sequence = d * d + 2 * d  # pooler, nsp_classifier
  return (6.0 * matmul_params + 6.0 * per_sequence / seq_len
          + 12.0 * config.num_layers * seq_len * n * h)
