"""Random text that exercises the BLEU and ROUGE tokenizers, shared by their parity tests."""

import random
import string

# Words chosen for the tokenizer rules: case, digits with separators (13a keeps "3.14"
# and "1,000" whole but splits "10-"), hyphens, apostrophes, HTML entities and
# "<skipped>" (13a unescapes / drops them), non-ASCII letters and punctuation (ROUGE
# drops them, 13a keeps them attached).
WORDS = (
    "the cat The CAT sat on mat a dog Dog barked loudly at night and ran away "
    "3.14 1,000 10- 2-3 42 0.5 v2 1990s state-of-the-art well-known e-mail "
    "don't it's O'Neil rock'n'roll &amp; &quot; &lt; &gt; <skipped> AT&T "
    "café naïve Straße İstanbul 東京 Ωmega — “quoted” ‘single’ … €5 x² ﬁne"
).split()
PUNCTUATION = list(".,!?;:\"'()[]{}-/&%$#@*+=<>|~`^_\\") + ["...", "--", " - "]
SEPARATORS = [" ", " ", " ", "", "  ", "\t", "\n", "-\n", " \n "]


def sentence(rng: random.Random, max_words: int = 12) -> str:
  """Words and punctuation joined by mostly spaces, sometimes nothing, tabs or newlines."""
  pieces = []
  for _ in range(rng.randint(0, max_words)):
    pieces.append(rng.choice(WORDS) if rng.random() < 0.8 else rng.choice(PUNCTUATION))
    pieces.append(rng.choice(SEPARATORS))
  return "".join(pieces[:-1]) + rng.choice(["", "", ".", " .", "!", " ", "\n"])


def characters(rng: random.Random, max_length: int = 40) -> str:
  """Arbitrary printable ASCII, whitespace and some non-ASCII: tokenizer edge cases."""
  alphabet = string.printable + "éïßİ東京Ω—“”‘’…€²ﬁ\u00a0\u2009"
  return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, max_length)))


def perturb(rng: random.Random, text: str) -> str:
  """A hypothesis near `text`: words dropped, replaced, swapped or re-cased, or unchanged."""
  choice = rng.random()
  if choice < 0.1:
    return text
  if choice < 0.15:
    return ""
  words = text.split(" ")
  out = []
  for word in words:
    r = rng.random()
    if r < 0.15:
      continue  # shorter hypotheses exercise the brevity penalty
    out.append(rng.choice(WORDS) if r < 0.3 else word.upper() if r < 0.35 else word)
  if len(out) > 1 and rng.random() < 0.3:
    i = rng.randrange(len(out) - 1)
    out[i], out[i + 1] = out[i + 1], out[i]
  return " ".join(out)
