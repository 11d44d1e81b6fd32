"""The ROOTS quality filters: each signal against values worked out by hand, the shipped table,
removal reasons in BigScience's order, per-language parameters and a user table."""

import collections
import json
import pickle
import random

import pytest
from datatrove.data import Document

from roots_jax.corpus import quality, roots_table
from roots_jax.corpus.quality import QualityFilter
from roots_jax.corpus.steps import Record
from roots_jax.errors import ConfigError

TABLE = roots_table.load_table()
SPECIAL = frozenset(TABLE["special_characters"])
DELETIONS = str.maketrans("", "", TABLE["special_characters"])
WORD_DELETIONS = str.maketrans("", "", "".join(SPECIAL - set(" \n\t")))

GOOD = ("The old lighthouse keeper walked along the rocky shore every morning, and he counted the "
        "boats that had returned from the sea during the night before he climbed the stairs to "
        "his small kitchen for a cup of tea.")


class FixedPerplexity:
  """A picklable stand-in for an n-gram model's scorer."""

  def __init__(self, value):
    self.value = value

  def __call__(self, text):
    return self.value


def test_shipped_table_rows_match_bigscience():
  # parameters_filtering.py: parameters_filtering_en and parameters_filtering_fr.
  en, fr, zh = (TABLE["languages"][lang] for lang in ("en", "fr", "zh"))
  assert "bigscience-workshop/data-preparation" in TABLE["source"]
  assert (en["number_words_min_cutoff"], en["number_words_max_cutoff"]) == (20, 100000)
  assert (en["character_repetition_length"], en["character_repetition_max_cutoff"]) == (10, 0.106)
  assert (en["word_repetition_length"], en["word_repetition_max_cutoff"]) == (5, 0.19)
  assert (en["special_characters_max_cutoff"], en["stopwords_min_cutoff"]) == (0.4, 0.3)
  assert (en["flagged_words_max_cutoff"], en["lang_id_min_cutoff"]) == (0.01, 0.8)
  assert en["perplexity_max_cutoff"] == 1500
  assert (fr["number_words_min_cutoff"], fr["character_repetition_max_cutoff"]) == (13, 0.14)
  assert (fr["word_repetition_max_cutoff"], fr["special_characters_max_cutoff"]) == (0.13, 0.34)
  assert (fr["stopwords_min_cutoff"], fr["flagged_words_max_cutoff"]) == (0.27, 0.008)
  assert fr["perplexity_max_cutoff"] == 1770
  assert zh["tokenization"] and zh["character_repetition_length"] == 3
  assert zh["words_augmentation_group_sizes"] == [2] and zh["words_augmentation_join_char"] == ""
  # string.punctuation + digits + whitespace, their other special characters, emoji.
  assert {"!", "7", " ", "\n", "«", "…", "😀"} <= SPECIAL and not {"a", "é", "中"} & SPECIAL


def test_words_split_on_space_newline_tab_and_strip_special_characters():
  text = "Hello, world!\t(yes) ... «ok» don't\nx\r"
  # Tokens: "Hello," "world!" "(yes)" "..." "«ok»" "don't" "x\r"; "..." strips to nothing, "\r"
  # is special, the inner "'" stays.
  assert quality.words(text, SPECIAL) == ["Hello", "world", "yes", "ok", "don't", "x"]
  assert quality.word_count(text, WORD_DELETIONS) == 6
  # Chinese: every character but the separators is a word, special ones strip to nothing.
  assert quality.words("中文, 好!\n", SPECIAL, characters=True) == ["中", "文", "好"]
  assert quality.word_count("中文, 好!\n", WORD_DELETIONS, characters=True) == 3


def test_character_repetition_ratio():
  # "abababab", n=2: ab x4, ba x3 (7 bigrams); isqrt(2 distinct) = 1, 2 repeated: top 1 -> 4/7.
  assert quality.character_repetition_ratio("abababab", 2) == 4 / 7
  # "abcabcxyz", n=3: abc x2, bca cab bcx cxy xyz x1 (7); isqrt(6) = 2, 1 repeated: 2/7.
  assert quality.character_repetition_ratio("abcabcxyz", 3) == 2 / 7
  # Nothing repeated: top = min(isqrt(4), 0) = 0.
  assert quality.character_repetition_ratio("abcdef", 3) == 0
  assert quality.character_repetition_ratio("short", 10) == 0
  # "0123456789" x3, n=10: 21 grams, the 10 rotations: one 3 times, nine twice; isqrt(10) = 3:
  # (3 + 2 + 2) / 21.
  assert quality.character_repetition_ratio("0123456789" * 3, 10) == 7 / 21
  # "中文字" x2 + "中", n=4: 中文字中 x2, 文字中文, 字中文字 (4 grams); isqrt(3) = 1: 2/4.
  assert quality.character_repetition_ratio("中文字中文字中", 4) == 2 / 4
  # Longer than one int64 key holds (63 characters of a 2-letter alphabet): "ab" x40, n=64:
  # 17 grams, abab... at the 9 even starts, baba... at the 8 odd; isqrt(2) = 1: 9/17.
  assert quality.character_repetition_ratio("ab" * 40, 64) == 9 / 17


@pytest.mark.parametrize("alphabet_size", [1, 2, 100, 5000])
def test_character_ngram_counts_match_counting_slices(alphabet_size):
  """The packed and ranked keys against the plain definition, with several rankings for n > 6
  on 13-bit characters."""
  rng = random.Random(alphabet_size)
  alphabet = [chr(0x4E00 + i) for i in range(alphabet_size)]
  text = "".join(rng.choice(alphabet[:rng.randint(1, alphabet_size)]) for _ in range(400)) * 2
  for n in (1, 3, 7, 10, 20):
    expected = collections.Counter(text[i:i + n] for i in range(len(text) - n + 1))
    assert sorted(quality.character_ngram_counts(text, n)) == sorted(expected.values())


def test_word_repetition_ratio():
  # a b a b a, n=2: ab x2, ba x2, all 4 bigrams repeated.
  assert quality.word_repetition_ratio(["a", "b", "a", "b", "a"], 2) == 1.0
  # a b c a b, n=2: ab x2, bc, ca: 2 of 4.
  assert quality.word_repetition_ratio(["a", "b", "c", "a", "b"], 2) == 2 / 4
  assert quality.word_repetition_ratio(["a", "b"], 5) == 0


def test_special_characters_ratio():
  # "ab, c!": ",", " " and "!" of 6 characters.
  assert quality.special_characters_ratio("ab, c!", DELETIONS) == 3 / 6
  assert quality.special_characters_ratio("", DELETIONS) == 0


def test_listed_ratio_with_augmentation_and_cap():
  stopwords = roots_table.word_lists("stopwords")["en"]
  # the, and, the of 5 words.
  assert quality.listed_ratio(["the", "cat", "and", "the", "dog"], stopwords) == 3 / 5
  # a, a (words) + "bc" (of the bigrams ab, bc, ca) = 3 hits over 4 words.
  assert quality.listed_ratio(["a", "b", "c", "a"], frozenset({"a", "bc"}), [2], "") == 3 / 4
  # a, a + "a a" = 3 hits over 2 words: capped at 1.
  assert quality.listed_ratio(["a", "a"], frozenset({"a", "a a"}), [2], " ") == 1.0
  assert quality.listed_ratio([], stopwords) == 0


def run(step, docs, tmp_path):
  kept = list(step.run(docs))
  with open(tmp_path / "parts" / step.name / "00000.json") as f:
    return kept, json.load(f)


def doc(text, language="en", i=0):
  return Document(text=text, id=str(i), metadata={"language": language})


def test_removal_reasons_in_bigscience_order(tmp_path):
  step = QualityFilter(str(tmp_path), perplexity=FixedPerplexity(1000.0))
  texts = {
      None: GOOD,
      "words": "A lighthouse stood on the shore.",  # 6 words < 20
      # Fails word repetition too (1.0), but character repetition comes first.
      "character_repetition": "the cat sat on the mat and " * 6,
      # Upper-case and punctuated repeats: the same words (lower-cased), other characters.
      "word_repetition": GOOD + " THE OLD LIGHTHOUSE KEEPER WALKED ALONG THE ROCKY SHORE; "
                                "The Old Lighthouse Keeper Walked Along The Rocky Shore!",
      "special_characters": GOOD + " Readings: 3.14159, 2.71828; 1.41421, 1.73205; 0.57721, "
                                   "4.66920; 2.50290, 1.61803; 0.69314!",
      "stopwords": "Quantum chromodynamics lattice simulations require enormous computational "
                   "resources, specialised hardware, careful numerical analysis, extensive "
                   "validation campaigns, international collaborations, dedicated software "
                   "teams, reproducible workflows, rigorous uncertainty quantification.",
      "flagged_words": GOOD + " He never watched porn.",  # 1 of 43 words > 0.01
  }
  docs = [doc(text, i=i) for i, text in enumerate(texts.values())]
  kept, part = run(step, docs, tmp_path)
  assert [d.text for d in kept] == [GOOD]
  removed = part["languages"]["en"]["removed"]
  assert removed == {reason: 1 for reason in texts if reason}
  assert sum(removed.values()) + part["languages"]["en"]["docs_out"] == len(texts)
  assert [s["id"] for s in part["samples"]["stopwords"]] == ["5"]
  assert part["thresholds"]["words"]["en"] == [20, 100000]
  assert part["thresholds"]["character_repetition"]["en"] == [None, 0.106]
  assert part["thresholds"]["stopwords"]["en"] == [0.3, None]
  assert part["thresholds"]["perplexity"]["en"] == [None, 1500]
  assert all(len(part["signals"][name]["en"]) == len(texts) for name in quality.FILTERS)
  signals = kept[0].metadata["signals"]
  assert signals["words"] == 39 and signals["flagged_words"] == 0 and signals["perplexity"] == 1000

  # Perplexity last: the good document fails only it. Without a scorer there is no such filter.
  step = QualityFilter(str(tmp_path), perplexity=FixedPerplexity(1500.5))
  assert step.apply(doc(GOOD), Record("quality", 0)) == "perplexity"
  assert "perplexity" not in QualityFilter(str(tmp_path)).signals(GOOD, step.parameters("en"))


def test_filters_subset_keeps_the_fixed_order(tmp_path):
  step = QualityFilter(str(tmp_path), filters=("stopwords", "character_repetition"))
  record = Record("quality", 0)
  assert step.apply(doc("the cat sat on the mat and " * 6), record) == "character_repetition"
  assert set(record.signals) == {"character_repetition", "stopwords"}
  assert step.apply(doc("A lighthouse stood on the shore."), record) is None


def test_parameters_per_language(tmp_path):
  step = QualityFilter(str(tmp_path), filters=("words", "stopwords"))
  record = Record("quality", 0)
  fifteen = " ".join(["mot"] * 15)
  # fr needs 13 words, en 20; de is not in the table: en's row, and no stop-word list of its own.
  assert step.apply(doc(fifteen, "fr"), record) == "stopwords"
  assert step.apply(doc(fifteen, "en"), record) == "words"
  german = doc(fifteen, "de")
  assert step.apply(german, record) == "words"
  assert set(german.metadata["signals"]) == {"words"}
  # Unidentified text is default_language in full, stop words included.
  unknown = Document(text=GOOD, id="u")
  assert step.apply(unknown, record) is None
  assert unknown.metadata["signals"]["stopwords"] == 21 / 39
  assert record.thresholds["words"] == {"fr": [13, 100000], "en": [20, 100000],
                                        "de": [20, 100000], "unknown": [20, 100000]}
  # zh: characters are words, with bigram augmentation. 我们的鳄鱼 ("our crocodile"): words
  # 我 们 的 鳄 鱼, of which 我 们 的 are stop words, + bigrams 我们 (a stop word) 们的 的鳄 鳄鱼:
  # 4 hits / 5 words.
  zh = step.parameters("zh")
  assert zh.groups == [2]
  assert quality.listed_ratio(quality.words("我们的鳄鱼", zh.strip, True), zh.stopwords,
                              zh.groups, "") == 4 / 5


def test_user_table_and_condition_switches(tmp_path):
  table = json.loads(open(roots_table.SHIPPED_TABLE, encoding="utf-8").read())
  table["languages"]["en"]["cond_check_number_words"] = False
  table["languages"]["en"]["stopwords_min_cutoff"] = 0.9
  path = tmp_path / "table.json"
  path.write_text(json.dumps(table))
  step = QualityFilter(str(tmp_path), table_path=str(path))
  short = doc("A lighthouse stood on the shore.")
  assert step.apply(short, Record("quality", 0)) == "stopwords"  # 3/6 < 0.9; words switched off
  assert "words" not in short.metadata["signals"]
  restored = pickle.loads(pickle.dumps(step))
  assert restored.apply(doc("A lighthouse stood on the shore."), Record("quality", 0)) == "stopwords"


@pytest.mark.parametrize("content, says", [
    ("{not json", "is not valid JSON"),
    ('{"languages": {}}', "needs a \"special_characters\" string"),
    ('{"special_characters": "!", "languages": {"en": {"tokenization": false}}}',
     "language 'en' lacks character_repetition_length, character_repetition_max_cutoff"),
])
def test_bad_table_fails_in_one_line(tmp_path, content, says):
  path = tmp_path / "table.json"
  path.write_text(content)
  with pytest.raises(ConfigError, match=says) as error:
    QualityFilter(str(tmp_path), table_path=str(path))
  assert "\n" not in str(error.value)


def test_bad_values_and_arguments(tmp_path):
  table = json.loads(open(roots_table.SHIPPED_TABLE, encoding="utf-8").read())
  table["languages"]["fr"]["word_repetition_length"] = 0
  path = tmp_path / "table.json"
  path.write_text(json.dumps(table))
  with pytest.raises(ConfigError, match="fr.word_repetition_length = 0 is not a positive integer"):
    QualityFilter(str(tmp_path), table_path=str(path))
  with pytest.raises(ConfigError, match="No such file"):
    QualityFilter(str(tmp_path), table_path=str(tmp_path / "missing.json"))
  with pytest.raises(ConfigError, match="unknown quality filters lang_id"):
    QualityFilter(str(tmp_path), filters=("words", "lang_id"))
  with pytest.raises(ConfigError, match="default_language 'xx' is not in the quality table"):
    QualityFilter(str(tmp_path), default_language="xx")
