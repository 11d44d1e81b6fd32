"""Corpus BLEU (Papineni et al. 2002), a port of sacrebleu's default configuration.

Equal to `sacrebleu.corpus_bleu(hypotheses, [references])` (sacrebleu 2.x defaults:
tokenizer "13a", case-sensitive, smoothing "exp", n-grams up to 4, no effective order),
checked in tests/metrics/test_bleu.py; ported rather than imported so evaluation needs no
extra dependency. Scores are comparable with published sacreBLEU numbers only under these
defaults.
"""

import collections
import math
import re

MAX_ORDER = 4

# sacrebleu.tokenizers.tokenizer_re.TokenizerRegexp, applied in this order.
_13A_RULES = (
    # Most ASCII punctuation and symbols become their own token.
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    # Period and comma, unless preceded by a digit ...
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    # ... or followed by one (keeps 3.14 and 1,000 whole).
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    # A dash after a digit.
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
)


def tokenize_13a(line: str) -> list[str]:
  """mteval-v13a tokenization, as sacrebleu applies Tokenizer13a to a right-stripped segment."""
  line = line.rstrip()
  line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
  if "&" in line:
    line = line.replace("&quot;", '"').replace("&amp;", "&")
    line = line.replace("&lt;", "<").replace("&gt;", ">")
  line = f" {line} "
  for pattern, replacement in _13A_RULES:
    line = pattern.sub(replacement, line)
  return line.split()


def _ngram_counts(tokens: list[str]) -> collections.Counter:
  return collections.Counter(
      tuple(tokens[i:i + n]) for n in range(1, MAX_ORDER + 1) for i in range(len(tokens) - n + 1))


def _closest_ref_len(hyp_len: int, ref_lens: list[int]) -> int:
  """The reference length nearest the hypothesis length, the shorter on a tie (sacrebleu)."""
  return min(ref_lens, key=lambda ref_len: (abs(hyp_len - ref_len), ref_len))


def corpus_bleu(hypotheses: list[str], references: list[str] | list[list[str]]) -> dict:
  """BLEU of a corpus: n-gram matches and lengths are summed over segments, then combined.

  Args:
    hypotheses: one detokenized string per segment.
    references: per segment, one reference string or a non-empty list of them (then the
      n-gram clip is the max count over that segment's references, and the brevity
      length is the reference length closest to the hypothesis). Note the layout is per
      segment, the transpose of sacrebleu's list of reference streams.

  Returns:
    {"bleu": 0..100, "precisions": four n-gram precisions in percent, "bp": brevity
    penalty, "sys_len": hypothesis tokens, "ref_len": effective reference tokens}.
  """
  if len(hypotheses) != len(references):
    raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
  sys_len = ref_len = 0
  correct = [0] * MAX_ORDER
  total = [0] * MAX_ORDER
  for hypothesis, refs in zip(hypotheses, references):
    refs = [refs] if isinstance(refs, str) else refs
    if not refs:
      raise ValueError("every hypothesis needs at least one reference")
    ref_tokens = [tokenize_13a(ref) for ref in refs]
    max_ref_counts = collections.Counter()
    for tokens in ref_tokens:
      max_ref_counts |= _ngram_counts(tokens)  # | keeps the max count per n-gram
    hyp_tokens = tokenize_13a(hypothesis)
    sys_len += len(hyp_tokens)
    ref_len += _closest_ref_len(len(hyp_tokens), [len(tokens) for tokens in ref_tokens])
    for ngram, count in _ngram_counts(hyp_tokens).items():
      total[len(ngram) - 1] += count
      correct[len(ngram) - 1] += min(count, max_ref_counts[ngram])

  brevity_penalty = 1.0
  if sys_len < ref_len:
    brevity_penalty = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
  precisions = [0.0] * MAX_ORDER
  if not any(correct):
    bleu = 0.0
  else:
    # Smoothing "exp" (Chen & Cherry 2014, method 3, as mteval-v13a): the k-th order with
    # no match gets precision 1 / (2^k * total). Orders with no n-grams at all (short
    # corpora) stop the loop and keep precision 0.
    smooth = 1.0
    for n in range(MAX_ORDER):
      if total[n] == 0:
        break
      if correct[n] == 0:
        smooth *= 2
        precisions[n] = 100.0 / (smooth * total[n])
      else:
        precisions[n] = 100.0 * correct[n] / total[n]
    # sacrebleu floors log(0) at -9999999999, which makes the score 0.0.
    log_mean = sum(math.log(p) if p > 0 else -9999999999 for p in precisions) / MAX_ORDER
    bleu = brevity_penalty * math.exp(log_mean)
  return {"bleu": bleu, "precisions": precisions, "bp": brevity_penalty,
          "sys_len": sys_len, "ref_len": ref_len}
