"""The ROOTS filtering parameters per language, and its stop-word and flagged-word lists, kept as
data: roots_parameters.json, roots_stopwords.json and roots_flagged_words.json, taken from
BigScience's OSCAR filtering code (github.com/bigscience-workshop/data-preparation,
preprocessing/training/01b_oscar_cleaning_and_filtering, Apache-2.0; each file's "source" names
the file and commit). A user table (`table_path`) has the shape of roots_parameters.json."""

import functools
import json
import os

from roots_jax.errors import ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED_TABLE = os.path.join(HERE, "roots_parameters.json")


def _number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _positive_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool) and v > 0


_BOOL = (lambda v: isinstance(v, bool), "boolean")
_NUMBER = (_number, "number")
_LENGTH = (_positive_int, "positive integer")
# One language's row, under BigScience's names (parameters_filtering.py): key -> (test, kind).
ROW = {
    "cond_check_number_words": _BOOL, "tokenization": _BOOL,
    "number_words_min_cutoff": _NUMBER, "number_words_max_cutoff": _NUMBER,
    "cond_check_character_repetition_removal": _BOOL, "character_repetition_length": _LENGTH,
    "character_repetition_max_cutoff": _NUMBER,
    "cond_check_word_repetition_removal": _BOOL, "word_repetition_length": _LENGTH,
    "word_repetition_max_cutoff": _NUMBER,
    "cond_check_special_characters": _BOOL, "special_characters_max_cutoff": _NUMBER,
    "cond_words_augmentation": _BOOL,
    "words_augmentation_group_sizes": (
        lambda v: isinstance(v, list) and all(map(_positive_int, v)), "list of positive integers"),
    "words_augmentation_join_char": (lambda v: isinstance(v, str), "string"),
    "cond_check_stopwords": _BOOL, "stopwords_min_cutoff": _NUMBER,
    "cond_check_flagged_words": _BOOL, "flagged_words_max_cutoff": _NUMBER,
    "cond_check_lang_id": _BOOL, "lang_id_min_cutoff": _NUMBER,
    "cond_check_perplexity": _BOOL, "perplexity_max_cutoff": _NUMBER,
}


@functools.lru_cache(maxsize=8)
def load_table(path: str = "") -> dict:
  """{"special_characters": str, "languages": {lang: row}} from `path` ("" for the shipped
  ROOTS table), checked so that a bad file fails before any document is read."""
  path = path or SHIPPED_TABLE
  fix = f"fix it, or leave table_path empty for the shipped table ({SHIPPED_TABLE})"
  try:
    with open(path, encoding="utf-8") as f:
      table = json.load(f)
  except OSError as e:
    raise ConfigError(f"quality table {path}: {e.strerror}; {fix}") from None
  except ValueError as e:
    raise ConfigError(f"quality table {path} is not valid JSON ({e}); {fix}") from None
  if not isinstance(table, dict) or not isinstance(table.get("special_characters"), str) \
      or not isinstance(table.get("languages"), dict) or not table["languages"]:
    raise ConfigError(f"quality table {path} needs a \"special_characters\" string and a "
                      f"non-empty \"languages\" object, as the shipped table has; {fix}")
  for lang, row in table["languages"].items():
    missing = sorted(set(ROW) - set(row)) if isinstance(row, dict) else sorted(ROW)
    if missing:
      raise ConfigError(f"quality table {path}: language {lang!r} lacks {', '.join(missing)}; "
                        f"{fix}")
    for key, (test, kind) in ROW.items():
      if not test(row[key]):
        raise ConfigError(f"quality table {path}: {lang}.{key} = {row[key]!r} is not a {kind}; "
                          f"{fix}")
  return table


@functools.lru_cache(maxsize=None)
def word_lists(kind: str) -> dict[str, frozenset[str]]:
  """{lang: words} of the shipped "stopwords" or "flagged_words" lists."""
  with open(os.path.join(HERE, f"roots_{kind}.json"), encoding="utf-8") as f:
    return {lang: frozenset(words) for lang, words in json.load(f)["words"].items()}
