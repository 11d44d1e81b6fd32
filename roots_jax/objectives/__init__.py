"""Pretraining objectives by name (data.objective), one module each: its rows (a data
Transform), its Loss and its batch row spec (`loss.example`).

  objective = objectives.get(config.data.objective, config.model.family)
  batches = objectives.dataset(config, tokenizer, "train")    # the rows of its transform

A new objective is a module here defining `OBJECTIVE`, added to OBJECTIVES below.
"""

import grain
import ml_collections

from roots_jax.data import pipeline
from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.errors import ConfigError
from roots_jax.objectives import causal, mlm_nsp, seq2seq, span_corruption
from roots_jax.objectives.base import Objective

OBJECTIVES = {o.name: o for o in (causal.OBJECTIVE, mlm_nsp.OBJECTIVE, span_corruption.OBJECTIVE,
                                  seq2seq.OBJECTIVE)}
NAMES = tuple(OBJECTIVES)


def get(name: str, family: str | None = None) -> Objective:
  """The objective data.objective=`name`, checked against model.family when given."""
  if name not in OBJECTIVES:
    raise ConfigError(f"unknown data.objective {name!r}; choose one of {', '.join(NAMES)}")
  objective = OBJECTIVES[name]
  if family is not None and objective.family != family:
    fits = [o.name for o in OBJECTIVES.values() if o.family == family]
    raise ConfigError(f"data.objective={name} trains a model.family={objective.family} model, "
                      f"not {family}; for {family} use data.objective={' or '.join(fits)}")
  return objective


def target_len(data: ml_collections.ConfigDict) -> int:
  """The decoder length of data.objective's rows: data.target_len, or when 0 the derived one
  (span corruption: T5's random_spans_helper, 114 for seq_len 512; seq2seq: seq_len); 0 for
  the objectives without decoder features."""
  return get(data.objective).target_len(data)


def dataset(config: ml_collections.ConfigDict, tokenizer: BaseTokenizer, split: str, *,
            process_index: int = 0, process_count: int = 1) -> grain.IterDataset:
  """This process's batches of data.objective's rows of `split` ("train" | "eval"; see
  roots_jax.data.pipeline.make_dataset)."""
  objective = get(config.data.objective)
  return pipeline.make_dataset(
      config, tokenizer, split, objective.transform(config.data, tokenizer, config.seed),
      pairs=objective.reads_pairs, process_index=process_index, process_count=process_count)
