"""A loaded run as the model of in-context evaluation (evals.incontext_lm)."""

from roots_jax.errors import ConfigError
from roots_jax.evals.incontext_lm import InContextLM
from roots_jax.runs.load import Loaded


def context_length(loaded: Loaded) -> int:
  """The longest context the model knows: a run trained here, the length it was trained on
  (data.seq_len: positions past it were never trained, and RoPE's or ALiBi's max_len does not
  stop them); a converted Hugging Face model, its max_len."""
  config, max_len = loaded.config, loaded.model_config.max_len
  kind = config.quantize.source_kind if config.kind == "quantized" else config.kind
  if kind == "converted" or "data" not in config:
    return max_len
  return min(max_len, config.data.seq_len)


def lm_of(loaded: Loaded, batch_size: int = 32) -> InContextLM:
  """The loaded pretrained (or converted, distilled, compressed) language model, its windows as
  long as its context_length; ConfigError for a fine-tuned model or one without a tokenizer."""
  if loaded.task is not None:
    raise ConfigError(f"in-context evaluation needs a pretrained language model; "
                      f"{loaded.workdir} is fine-tuned for {loaded.task.name}")
  if loaded.tokenizer is None:
    raise ConfigError(f"in-context evaluation reads text: {loaded.no_tokenizer}")
  return InContextLM(loaded.model, loaded.params, loaded.tokenizer, loaded.family,
                     loaded.batch_sharding, loaded.context, context_length(loaded), batch_size)
