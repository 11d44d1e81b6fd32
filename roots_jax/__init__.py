"""roots_jax: GPT, BERT and T5-style Transformer pretraining in one sharded JAX code path.

The public API is imported lazily, so `import roots_jax` stays cheap:
  config = roots_jax.load_config("configs/gpt2.py:tiny", ["train.steps=10"])
  from roots_jax.runs.pretrain import train; train(config, "/tmp/run")
  lm = roots_jax.LanguageModel.from_pretrained("/tmp/run"); lm.generate("def f(")
  roots_jax.pipeline("text-generation", model="/tmp/run")("import os", max_length=30)
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {"load_config": "roots_jax.config", "LanguageModel": "roots_jax.api",
            "pipeline": "roots_jax.pipelines", "GenerationConfig": "roots_jax.decoding"}


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f"module 'roots_jax' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *_EXPORTS])
