"""roots_jax: GPT, BERT and T5-style Transformer pretraining in one sharded JAX code path."""

__version__ = "0.1.0"
