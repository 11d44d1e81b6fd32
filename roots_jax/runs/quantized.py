"""Quantized runs (kind "quantized"): a pretraining, converted, distilled or fine-tuning run's
model with the matmul kernels of its blocks quantized by Qwix (roots_jax.training.quantization),
made by runs.quantize (`python -m roots_jax.quantize`), used like the run it was made from:
evaluated on its split and metrics, generating, loaded by the Python API.

Its config.json holds the source run's keys with kind "quantized" and a `quantize` section
(scheme, calibration_batches, source, source_step, source_kind); its checkpoints/<step> holds
the quantized parameters only (Qwix QArrays: int8 or int4 values with float32 scales; the rest
float32), at the source checkpoint's step.
"""

import ml_collections

from roots_jax.runs import assemble, distilled, finetune, pretrain
from roots_jax.training import quantization

# The kind of run quantized (quantize.source_kind) -> its module.
SOURCES = {"pretrain": pretrain, "converted": pretrain, "finetune": finetune,
           "distill": distilled}
# A quantized run has one checkpoint.
DEFAULT_CHECKPOINT = "latest"


def source(config: ml_collections.ConfigDict):
  """The module of the kind of run a quantized run was made from."""
  return SOURCES[config.quantize.source_kind]


def model_for(config: ml_collections.ConfigDict, workdir: str) -> assemble.RunModel:
  """The source kind's model, quantized to quantize.scheme (Qwix's PTQ: its parameters are
  QArrays, and static activation scales where it was calibrated)."""
  m = source(config).model_for(config, workdir)
  return m._replace(model=quantized_like(config, m.model))


def quantized_like(config: ml_collections.ConfigDict, module):
  """`module` (the run's model, or a part of it: a fine-tuned model's backbone) quantized as a
  quantized run's model is; any other run's as it is."""
  if config.kind != "quantized":
    return module
  q = config.quantize
  return quantization.ptq_model(module, q.scheme, static=q.calibration_batches > 0)


def eval_split(config: ml_collections.ConfigDict, split: str) -> tuple[str, str]:
  """The source kind's split and what is scored: perplexity (a pretrained model), the task."""
  return source(config).eval_split(config, split)


def evaluate(loaded, split: str) -> tuple[dict, dict]:
  return source(loaded.config).evaluate(loaded, split)
