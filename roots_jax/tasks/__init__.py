"""Fine-tuning task kinds by name (task.kind), one module each: how a record becomes an example
and a row for each model family, what the head reads and outputs, the loss, the default metric
and the evaluator (roots_jax.evals) that scores it.

  kind = tasks.get(config.task.kind)
  kind.check_family(families.get(config.model.family))

A new kind is a module here defining `KIND`, added to KINDS below.
"""

from roots_jax.errors import ConfigError
from roots_jax.tasks import chat, classification, extractive_qa, regression, seq2seq
from roots_jax.tasks import token_classification
from roots_jax.tasks.base import TaskKind

KINDS = {k.name: k for k in (classification.KIND, regression.KIND, token_classification.KIND,
                             seq2seq.KIND, extractive_qa.KIND, chat.KIND)}
NAMES = tuple(KINDS)


def get(name: str) -> TaskKind:
  """The task kind task.kind=`name`."""
  if name not in KINDS:
    raise ConfigError(f"task.kind must be one of {', '.join(NAMES)}; got {name!r}")
  return KINDS[name]
