"""Which family module converts a Hugging Face config.json, or a roots_jax model section."""

from types import ModuleType

from roots_jax.errors import ConfigError
from roots_jax.hf import bert, gpt2, t5

MODULES = (gpt2, bert, t5)


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


def for_family(family: str) -> ModuleType:
  """The module that writes a roots_jax model.family as Hugging Face's format."""
  for module in MODULES:
    if module.FAMILY == family:
      return module
  raise ConfigError(f"model.family={family!r} has no Hugging Face format here")
