"""Reading Hugging Face config.json fields, and refusing what roots_jax or Hugging Face cannot
represent with an error that names the field."""

from roots_jax.errors import ConfigError

# Hugging Face activation names (transformers.activations.ACT2FN) <-> model.mlp_activation.
# "gelu" there is the exact erf GELU; "gelu_new" / "gelu_pytorch_tanh" the tanh approximation.
ACTIVATIONS = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu": "gelu_exact",
               "relu": "relu"}
HF_ACTIVATIONS = {"gelu": "gelu_new", "gelu_exact": "gelu", "relu": "relu"}


def get(config: dict, key: str, default):
  """config[key], or Hugging Face's default for a field the file leaves out (None counts too)."""
  value = config.get(key)
  return default if value is None else value


def activation(config: dict, key: str, default: str, what: str) -> str:
  name = get(config, key, default)
  if name not in ACTIVATIONS:
    raise ConfigError(f"config.json {key}={name!r}: {what} supports "
                      f"{', '.join(ACTIVATIONS)}")
  return ACTIVATIONS[name]


def require(config: dict, key: str, expected, default, what: str) -> None:
  """Refuses a variant switch roots_jax does not implement (e.g. GPT-2's add_cross_attention)."""
  value = get(config, key, default)
  if value != expected:
    raise ConfigError(f"config.json {key}={value!r}: roots_jax implements {what} only with "
                      f"{key}={expected!r}")


def refuse_all(model, hf_name: str, *, any_head_dim: bool = False, any_kv_heads: bool = False,
               note: str = "", **wants) -> None:
  """`refuse` for each field=want, and for grouped-query attention (Llama alone has it) and a
  head size other than embed_dim / num_heads (T5's d_kv, Llama's head_dim) unless allowed.
  `note` ends each message (where another architecture would take the field's value)."""
  if not any_kv_heads:
    wants["num_kv_heads"] = (0, model.num_heads)
  if not any_head_dim:
    wants["head_dim"] = (0, model.embed_dim // model.num_heads)
  for field, want in wants.items():
    refuse(model, field, want, hf_name, note)


def refuse(model, field: str, want, hf_name: str, note: str = "") -> None:
  """Export: model.<field> of `model` (a ModelConfig) must be `want` (or one of a tuple)."""
  value = getattr(model, field)
  allowed = want if isinstance(want, tuple) else (want,)
  if value not in allowed:
    raise ConfigError(f"model.{field}={value!r} cannot be written as {hf_name}, which needs "
                      f"{' or '.join(repr(a) for a in allowed)}{note}")


def rope_theta(config: dict, what: str, *, legacy_theta: str = "rope_theta",
               legacy_fraction: str = "partial_rotary_factor", fraction: float = 1.0) -> float:
  """The RoPE base of a config.json, from transformers 5's rope_parameters or the older keys
  (rope_scaling, and `legacy_theta` / `legacy_fraction`: GPT-NeoX's rotary_emb_base /
  rotary_pct, whose default `fraction` is 0.25). Refuses scaled RoPE and a rotation of part of
  each head: ours rotates all of it, unscaled."""
  params = config.get("rope_parameters") or config.get("rope_scaling") or {}
  kind = params.get("rope_type", params.get("type", "default"))
  if kind != "default":
    raise ConfigError(f"config.json rope_type={kind!r}: roots_jax implements {what} only with "
                      "unscaled RoPE (rope_type 'default')")
  key, share = legacy_fraction, get(config, legacy_fraction, fraction)
  if "partial_rotary_factor" in params:
    key, share = "rope_parameters.partial_rotary_factor", params["partial_rotary_factor"]
  if share != 1:
    raise ConfigError(f"config.json {key}={share!r}: roots_jax implements {what} only with RoPE "
                      "on the whole head (1.0)")
  return float(params.get("rope_theta", get(config, legacy_theta, 10000.0)))
