"""EleutherAI's lm-evaluation-harness on roots_jax models: the model class `roots_jax`, whose
three request types run on evals.incontext_lm (batched, jitted per shape bucket, generating with
the KV cache). Importing this module registers it (lm-eval is the optional lmeval extra).

  python -m roots_jax.lm_eval run --model roots_jax --model_args path=RUN --tasks TASK \\
      --include_path DIR
  lm_eval.simple_evaluate(model="roots_jax", model_args="path=RUN", tasks=[...])  # after import

model_args: path (a run directory, one of its checkpoints/<step>, or a Hugging Face model
directory), checkpoint ("best", "latest" or a step), batch_size (rows per jitted call; "auto":
32), max_gen_toks (generate_until's default new tokens, 32, where a task does not say).
"""

import importlib

from lm_eval import utils
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from roots_jax.evals.incontext_lm import MAX_GEN_TOKS
from roots_jax.runs import load as load_lib
from roots_jax.runs.incontext import lm_of

DEFAULT_BATCH_SIZE = 32

# The harness registers its own models only while its registry is empty: first, so that they
# stay available beside ours.
importlib.import_module("lm_eval.models")


@register_model("roots_jax")
class RootsJaxLM(LM):
  """A roots_jax run as a harness model. `device` and `max_batch_size`, which the harness passes
  to every model, are not used: JAX places the model on this machine's devices."""

  def __init__(self, path: str, checkpoint: str | None = None,
               batch_size: int | str | None = DEFAULT_BATCH_SIZE,
               max_gen_toks: int | str = MAX_GEN_TOKS, device: str | None = None,
               max_batch_size: int | None = None):
    super().__init__()
    del device, max_batch_size
    rows = DEFAULT_BATCH_SIZE if batch_size in (None, "auto") else int(batch_size)
    self.lm = lm_of(load_lib.load(path, checkpoint=checkpoint), batch_size=rows)
    self.max_gen_toks = int(max_gen_toks)

  @classmethod
  def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
    return cls.create_from_arg_obj(utils.simple_parse_args_string(arg_string), additional_config)

  @classmethod
  def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None):
    """model_args win over the settings the harness passes to every model (its --batch_size,
    default 1, and device), which would otherwise collide with them."""
    extra = {k: v for k, v in (additional_config or {}).items()
             if v is not None and k not in arg_dict}
    return cls(**arg_dict, **extra)

  def loglikelihood(self, requests) -> list[tuple[float, bool]]:
    results = self.lm.loglikelihood([r.args for r in requests])
    for request, result in zip(requests, results):
      self.cache_hook.add_partial("loglikelihood", request.args, result)
    return results

  def loglikelihood_rolling(self, requests) -> list[float]:
    results = [total for total, _ in self.lm.loglikelihood_rolling([r.args[0] for r in requests])]
    for request, result in zip(requests, results):
      self.cache_hook.add_partial("loglikelihood_rolling", request.args, result)
    return results

  def generate_until(self, requests) -> list[str]:
    results = self.lm.generate_until(
        [(context, {"max_gen_toks": self.max_gen_toks, **(kwargs or {})})
         for context, kwargs in (r.args for r in requests)])
    for request, result in zip(requests, results):
      self.cache_hook.add_partial("generate_until", request.args, result)
    return results
