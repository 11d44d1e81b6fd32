"""A loaded run as the model of in-context evaluation (evals.incontext_lm)."""

from roots_jax.errors import ConfigError
from roots_jax.evals.incontext_lm import InContextLM
from roots_jax.runs.load import Loaded


def lm_of(loaded: Loaded, batch_size: int = 32) -> InContextLM:
  """The loaded pretrained (or converted, distilled, compressed) language model, its windows as
  long as the model's max_len; ConfigError for a fine-tuned model or one without a tokenizer."""
  if loaded.task is not None:
    raise ConfigError(f"in-context evaluation needs a pretrained language model; "
                      f"{loaded.workdir} is fine-tuned for {loaded.task.name}")
  if loaded.tokenizer is None:
    raise ConfigError(f"in-context evaluation reads text: {loaded.no_tokenizer}")
  return InContextLM(loaded.model, loaded.params, loaded.tokenizer, loaded.family,
                     loaded.batch_sharding, loaded.context, loaded.model_config.max_len,
                     batch_size)
