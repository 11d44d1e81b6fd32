"""Merging an adapter run (runs.lora) into a plain fine-tuning run:

  summary = merge("/tmp/adapter-run", "/tmp/merged")

Each adapted kernel becomes W + (alpha / r) A B (a QLoRA base's W dequantized first, and its
other quantized kernels dequantized too), so the merged run's outputs equal base + adapters. It is
a fine-tuning run like any other (finetune.lora.rank 0, float32), written with runs.load.save
at the adapter run's checkpoint step: evaluate, generate and the Python API use it without the
base run.
"""

import logging

import jax

from roots_jax.errors import ConfigError
from roots_jax.models import lora as lora_model
from roots_jax.runs import load, lora, workdir as workdir_lib
from roots_jax.training import quantization

log = logging.getLogger("roots_jax")


def merge(run: str, out: str, *, checkpoint: int | str | None = None) -> dict:
  """Writes the adapter run (or checkpoint) at `run` merged into the run `out`. Returns a
  summary: source, step, out, the number of adapted kernels and of parameters."""
  loaded = load.load(run, checkpoint=checkpoint)
  if not lora.enabled(loaded.config):
    raise ConfigError(f"{loaded.workdir} is not an adapter run (its finetune.lora.rank is 0): "
                      "there is nothing to merge")
  out = load.check_save_directory(loaded, out)
  f = loaded.config.finetune.lora
  with loaded.context():
    params, folded = fold(loaded.params, f.alpha / f.rank)
    params = jax.jit(lambda p: p)(params)
  config = workdir_lib.read_config(loaded.workdir)
  with config.unlocked():
    config.finetune.lora.update(rank=0, quantize="")
  load.save(loaded, params, out, config=config)
  log.info("merged %d adapted kernels of %s step %d into %s", folded, loaded.workdir,
           loaded.step, out)
  return dict(source=loaded.workdir, step=loaded.step, out=out, kernels=folded,
              parameters=sum(x.size for x in jax.tree.leaves(params)))


def fold(params: dict, scale: float) -> tuple[dict, int]:
  """(an adapted model's parameters with every adapter folded into its kernel and every
  quantized kernel dequantized, how many adapted kernels were folded, a layer's each)."""
  count = 0

  def walk(tree):
    nonlocal count
    out = {k: walk(v) if isinstance(v, dict) else quantization.dequantized(v)
           for k, v in tree.items()
           if k not in (lora_model.A, lora_model.B)}
    if lora_model.A in tree:
      a, b, kernel = tree[lora_model.A], tree[lora_model.B], out["kernel"]
      out["kernel"] = lora_model.fold(kernel, a, b, scale)
      # A scanned stack's kernel [layers, ...] holds one adapted kernel per layer (A and B
      # carry the layer axis too: one axis more than an unstacked kernel's pair).
      count += kernel.shape[0] if a.ndim + b.ndim == kernel.ndim + 3 else 1
    return out

  return walk(params), count
