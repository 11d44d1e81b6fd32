"""A raw corpus for the corpus-preparation tests: prose in English, French and German from
templates with random fillers (so unrelated documents share few word 5-grams), with planted
exact and near duplicates, personal data, junk, a passage of an evaluation set and a
boilerplate line; and reference prose for the n-gram model."""

import json
import random

TEMPLATES = {
    "en": ["The {a} {n} of {c} was built by {p} in {y}, and it is still there today.",
           "When {p} came back to {c}, the {n} had become much more {a} than before.",
           "Many people in {c} believe that the {n} should be kept {a} for their children.",
           "It was not the first time that {p} had written about the {a} {n} of {c}.",
           "After the long winter of {y}, the {n} near {c} was once again open to visitors.",
           "Nobody could say why {p} walked to the {n} every morning before work.",
           "In {y} a storm damaged the roof, but the town paid for the repairs at once.",
           "Her letters from {c} describe a {a} place where everyone knew each other."],
    "fr": ["Le {n} de {c} a été construit par {p} en {y}, et il est toujours là.",
           "Quand {p} est revenu à {c}, le {n} était devenu beaucoup plus {a} qu'avant.",
           "Beaucoup de gens à {c} pensent que le {n} doit rester {a} pour leurs enfants.",
           "Ce n'était pas la première fois que {p} écrivait sur le {n} {a} de {c}.",
           "Personne ne savait pourquoi {p} allait au {n} chaque matin avant le travail.",
           "En {y}, une tempête a abîmé le toit, mais la ville a payé les travaux."],
    "de": ["Der {n} von {c} wurde im Jahr {y} von {p} gebaut, und er steht noch heute dort.",
           "Als {p} nach {c} zurückkam, war der {n} viel {a} als zuvor geworden.",
           "Viele Menschen in {c} glauben, dass der {n} für ihre Kinder {a} bleiben soll.",
           "Es war nicht das erste Mal, dass {p} über den {a} {n} von {c} geschrieben hatte.",
           "Niemand wusste, warum {p} jeden Morgen vor der Arbeit zum {n} ging.",
           "Im Jahr {y} beschädigte ein Sturm das Dach, aber die Stadt zahlte sofort."],
}
FILLERS = {
    "a": ["old", "quiet", "famous", "beautiful", "strange", "green", "small", "large", "busy",
          "empty", "bright", "dark", "ancient", "modern", "simple", "rich"],
    "n": ["bridge", "garden", "library", "market", "tower", "river", "church", "school",
          "harbour", "station", "museum", "forest", "castle", "square", "theatre", "mill"],
    "c": ["Lyon", "Bergen", "Porto", "Graz", "Ghent", "Turku", "Cork", "Bari", "Split", "Brno",
          "Lille", "Basel", "Aarhus", "Tartu", "Malmo", "Nantes", "Bremen", "Kassel"],
    "p": ["Anna", "Pierre", "Jonas", "Maria", "Lukas", "Sofia", "Henri", "Clara", "Felix",
          "Elena", "Oskar", "Ines", "Mathis", "Greta", "Paul", "Lea", "Emil", "Nora"],
    "y": [str(y) for y in range(1850, 2020, 7)],
}
# An evaluation set's passage (16 words), planted in one document.
EVAL_PASSAGE = ("the committee agreed that every member of the jury would read the full report "
                "before the final vote")
BOILERPLATE = "This page was printed from the archive of the regional history society."
EMAIL, IP = "anna.berg@example.org", "192.0.2.44"


def paragraph(rng: random.Random, lang: str, sentences: int) -> str:
  """`sentences` of the language's templates, each at most once."""
  return " ".join(t.format(**{k: rng.choice(v) for k, v in FILLERS.items()})
                  for t in rng.sample(TEMPLATES[lang], sentences))


def documents(seed: int = 0, per_language: int = 12) -> list[dict]:
  """{"text", "kind"} records: kind is clean_<lang>, what was planted, or the original of a
  planted duplicate (exact_original, near_original)."""
  rng = random.Random(seed)
  docs = []
  for lang in TEMPLATES:
    for i in range(per_language):
      text = paragraph(rng, lang, len(TEMPLATES[lang]) - 1)
      if lang == "en" and i < 10:  # a footer in 10 documents: boilerplate
        text += "\n" + BOILERPLATE
      docs.append({"text": text, "kind": f"clean_{lang}"})
  english = [d for d in docs if d["kind"] == "clean_en"]
  english[3]["kind"], english[4]["kind"] = "exact_original", "near_original"
  docs.append({"text": english[3]["text"].upper().replace(" ", "  "), "kind": "exact_duplicate"})
  words = english[4]["text"].split(" ")
  words[30] = "changed"
  docs.append({"text": " ".join(words), "kind": "near_duplicate"})
  docs.append({"text": paragraph(rng, "en", 5) + f" Write to {EMAIL} or visit {IP} for the "
               "opening hours.", "kind": "personal_data"})
  docs.append({"text": paragraph(rng, "en", 5) + " In the end, " + EVAL_PASSAGE.capitalize()
               + ".", "kind": "contaminated"})
  docs.append({"text": "buy now " * 60, "kind": "repetition"})
  docs.append({"text": " ".join(w + " #%&*" for w in paragraph(rng, "en", 5).split()),
               "kind": "symbols"})
  rng.shuffle(docs)
  return docs


def write(path, seed: int = 0, per_language: int = 12) -> list[dict]:
  docs = documents(seed, per_language)
  with open(path, "w", encoding="utf-8") as f:
    for doc in docs:
      f.write(json.dumps(doc, ensure_ascii=False) + "\n")
  return docs


def reference(path, seed: int = 1, paragraphs: int = 300) -> None:
  """Clean prose in the three languages, for the n-gram model and its tokenizer."""
  rng = random.Random(seed)
  with open(path, "w", encoding="utf-8") as f:
    for i in range(paragraphs):
      f.write(paragraph(rng, list(TEMPLATES)[i % 3], 4) + "\n\n")
