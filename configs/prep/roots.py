"""Corpus preparation as the ROOTS corpus was built (Laurençon et al. 2022): the BigScience
quality filters with their per-language thresholds (roots_jax/corpus/roots_parameters.json),
a 5-gram Kneser-Ney perplexity filter, MinHash deduplication, personal-data redaction and
decontamination against the built-in tasks' test splits.

  python -m roots_jax.prep --config prep/roots --workdir PREP --config.input.files='raw/*.jsonl'
  python -m roots_jax.prep --config prep/roots:code --workdir PREP   # source code

`code`: the language and quality filters are made for prose (they keep 41 of the standard
library's 734 modules: a Python file repeats itself and has few stop words), and whitespace
normalisation would change indentation and string literals; code is deduplicated, redacted and
decontaminated only.
"""

from roots_jax.config import prep_config


def get_config(arg=None):
  c = prep_config()
  if arg == "code":
    c.language.enabled = False
    c.quality.enabled = False
    c.normalize.whitespace = False
  elif arg:
    raise ValueError(f"prep/roots takes no argument or code, not {arg!r}")
  return c
