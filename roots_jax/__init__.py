"""roots_jax: GPT, BERT and T5-style Transformer pretraining in one sharded JAX code path.

The public API is imported lazily, so `import roots_jax` stays cheap:
  config = roots_jax.load_config("configs/gpt2.py:tiny", ["train.steps=10"])
  from roots_jax.train import train; train(config, "/tmp/run")
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {"load_config": "roots_jax.config"}


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f"module 'roots_jax' has no attribute {name!r}")
