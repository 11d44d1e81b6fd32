"""Adapter runs: fine-tuning with LoRA (finetune.lora.rank > 0; models.lora) on a frozen base,
held in float or, for QLoRA (finetune.lora.quantize), quantized weight-only by Qwix's PTQ
(training.quantization) with the adapters in float32.

The parameters are split in two trees: the trained ones (every lora_a, lora_b and a new task
head) are the train state's, so only they get gradients and optimizer state and only they are
checkpointed; the frozen base (the init_from run's backbone, and an LM head copied from it) is
passed to the train step as a step constant and read again from init_from when the run resumes
or is loaded. `join(trained, base)` is the adapted model's parameter tree.
"""

import dataclasses
import re

import ml_collections
from flax import linen as nn
from flax import traverse_util

from roots_jax import tasks
from roots_jax.errors import ConfigError
from roots_jax.models import lora
from roots_jax.training import quantization
from roots_jax.training.losses import Loss

# finetune.lora.modules presets -> the module paths adapted (models.lora.path_of).
MODULES = {
    "attention": r".*attention/(query|key|value|out)",
    "all": r".*(attention/(query|key|value|out)|mlp/(wi|wi_gate|wi_up|wo))",
}


def enabled(config: ml_collections.ConfigDict) -> bool:
  """Whether `config` is an adapter run's."""
  return "finetune" in config and config.finetune.lora.rank > 0


def adapted(config: ml_collections.ConfigDict, model: nn.Module) -> nn.Module:
  """The fine-tuning `model` with the config's adapters, over a quantized base for QLoRA."""
  f, isolated = config.finetune.lora, {}
  if f.quantize:
    model = quantization.ptq_model(model, f.quantize)
    isolated = dict(isolated=quantization.outside_interception)
  methods = [m for m in quantization.METHODS if callable(getattr(type(model), m, None))]
  return lora.adapted(model, MODULES.get(f.modules, f.modules), rank=f.rank, alpha=f.alpha,
                      dropout=f.dropout, methods=methods, **isolated)


def head_trains(config: ml_collections.ConfigDict) -> bool:
  """Whether the task head is new and trains; an LM head is copied from the base, and frozen
  with it."""
  return tasks.get(config.task.kind).reads != "lm"


def _is_trained(path: tuple[str, ...], head_trains: bool) -> bool:
  return path[-1] in (lora.A, lora.B) or (path[0] == "head" and head_trains)


def split(params: dict, head_trains: bool) -> tuple[dict, dict]:
  """(trained, base) of an adapted model's parameters (boxed, abstract or arrays)."""
  flat = traverse_util.flatten_dict(params)
  trained = {p: v for p, v in flat.items() if _is_trained(p, head_trains)}
  base = {p: v for p, v in flat.items() if p not in trained}
  return traverse_util.unflatten_dict(trained), traverse_util.unflatten_dict(base)


def join(trained: dict, base: dict) -> dict:
  """The inverse of split."""
  return traverse_util.unflatten_dict({**traverse_util.flatten_dict(base),
                                       **traverse_util.flatten_dict(trained)})


def check_matches(config: ml_collections.ConfigDict, params: dict) -> None:
  """ConfigError when finetune.lora.modules adapts no layer of the adapted model whose
  parameters (abstract) are `params`, naming the dense layers there are."""
  paths = traverse_util.flatten_dict(params)
  if any(p[-1] == lora.A for p in paths):
    return
  layers = sorted({"/".join(p[:-1]) for p in paths if p[-1] == "kernel" and p[0] == "backbone"
                   and not any(re.fullmatch(r"layers_[1-9]\d*", k) for k in p)})
  raise ConfigError(f"finetune.lora.modules={config.finetune.lora.modules!r} matches no dense "
                    f"layer of this model; use attention, all or a regex over the layers' paths "
                    f"({', '.join(layers)})")


@dataclasses.dataclass(frozen=True)
class AdapterLoss(Loss):
  """An objective whose parameters are an adapter run's trained ones: the train step passes the
  frozen base after the batch, and the model runs on both joined."""

  def forward(self, model: nn.Module, params, batch, base=None, *, rng, deterministic: bool,
              z_loss: float):
    return super().forward(model, join(params, base), batch, rng=rng,
                           deterministic=deterministic, z_loss=z_loss)

  @classmethod
  def of(cls, loss: Loss) -> "AdapterLoss":
    return cls(**{f.name: getattr(loss, f.name) for f in dataclasses.fields(loss)})
