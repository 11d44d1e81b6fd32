"""The prep config: the shipped ROOTS config, its code variant, and one-line errors."""

import pytest

from roots_jax import config as config_lib
from roots_jax.errors import ConfigError


def test_roots_config_defaults_to_the_builtin_corpus_with_every_step():
  c = config_lib.load_config("prep/roots")
  assert c.kind == "prep" and c.input.source == "auto" and not c.input.files
  assert c.language.enabled and c.quality.enabled and c.redact.enabled
  assert c.decontaminate.enabled and c.dedup.exact and c.dedup.near and c.dedup.lines
  assert (c.ngram.order, c.dedup.num_buckets, c.dedup.hashes_per_bucket) == (5, 14, 8)
  code = config_lib.load_config("prep/roots:code")
  assert not code.language.enabled and not code.quality.enabled and code.dedup.near
  assert "input.files" in config_lib.describe(c)


@pytest.mark.parametrize("override, message", [
    ("input.source=files", "input.source=files needs input.files"),
    ("input.source=web", "input.source must be one of auto, builtin, files"),
    ("executor.kind=slurm", "executor.kind=slurm needs executor.partition"),
    ("executor.tasks=0", "executor.tasks must be positive"),
    ("dedup.line_min_docs=1", "dedup.line_min_docs must be at least 2"),
    ("ngram.discount=1.5", "ngram.discount must be modified or a number in"),
    ("ngram.discount=kneser", "ngram.discount must be modified or a number in"),
    ("executor.sbatch_args=qos", "executor.sbatch_args takes key=value items"),
    ("quality.filters=words,length", "quality.filters has unknown filter 'length'"),
])
def test_bad_values_are_one_line_errors(override, message):
  with pytest.raises(ConfigError, match=message):
    config_lib.load_config("prep/roots", [override])


def test_the_config_names_the_quality_filters_in_their_order():
  from roots_jax.corpus import quality  # pylint: disable=g-import-not-at-top
  assert config_lib.PREP_FILTERS == quality.FILTERS
