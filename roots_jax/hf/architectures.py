"""Which family module converts a Hugging Face config.json, or a roots_jax model section."""

from types import ModuleType

from roots_jax.errors import ConfigError
from roots_jax.hf import bert, gpt2, gpt_neox, llama, t5
from roots_jax.models.config import ModelConfig

MODULES = (gpt2, gpt_neox, llama, bert, t5)


def for_hf_config(config: dict, path: str) -> tuple[ModuleType, str]:
  """(family module, architecture name) of a config.json; refuses the unsupported ones."""
  supported = ", ".join(a for m in MODULES for a in m.ARCHITECTURES)
  model_type = config.get("model_type")
  module = next((m for m in MODULES if model_type in m.MODEL_TYPES), None)
  architectures = config.get("architectures") or []
  if module is None:
    name = architectures[0] if architectures else f"model_type {model_type!r}"
    raise ConfigError(f"{path}: {name} is not supported; roots_jax converts {supported}")
  architecture = next((a for a in architectures if a in module.ARCHITECTURES),
                      None if architectures else module.ARCHITECTURES[0])
  if architecture is None:
    raise ConfigError(f"{path}: {architectures[0]} is not supported; for {module.NAME} "
                      f"roots_jax converts {', '.join(module.ARCHITECTURES)}")
  return module, architecture


def for_model(m: ModelConfig) -> ModuleType:
  """The module that writes model section `m` as Hugging Face's format: the one of its family
  whose WRITES fields `m` has (a decoder: GPT-2, GPT-NeoX or Llama by position and norm)."""
  candidates = [module for module in MODULES if module.FAMILY == m.family]
  if not candidates:
    raise ConfigError(f"model.family={m.family!r} has no Hugging Face format here")
  for module in candidates:
    if all(getattr(m, field) == value for field, value in module.WRITES.items()):
      return module
  keys = list(dict.fromkeys(field for module in candidates for field in module.WRITES))
  have = ", ".join(f"model.{field}={getattr(m, field)!r}" for field in keys)
  needs = "; ".join(f"{module.NAME} needs " + ", ".join(f"{field}={value!r}" for field, value
                                                         in module.WRITES.items())
                    for module in candidates)
  raise ConfigError(f"{have} has no Hugging Face architecture here: {needs}")
