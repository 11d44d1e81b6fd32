"""An interpolated modified Kneser-Ney n-gram language model over a tokenizer's ids, in numpy.

Two uses: filtering a corpus by perplexity (ROOTS did it with KenLM 5-grams), and the classical
baseline whose perplexity `python -m roots_jax.evaluate --ngram DIR` reports next to a
Transformer's on the same held-out split.

  model = train_on_source(BuiltinSource("train", 0.02), tokenizer, order=5)
  model.save("/tmp/ngram")                       # ngram.npz + ngram.json
  ppl, tokens = model.perplexity(tokenizer.encode(t) for t in texts)

The estimate is Chen & Goodman's (1998), as KenLM's lmplz builds it. Adjusted counts a(g): the
raw count for the highest order and for n-grams starting with <s>, else the continuation count
N1+(. g). Per order, discounts D1, D2, D3+ from the count-of-counts n1..n4 of adjusted counts
(Y = n1 / (n1 + 2 n2), D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3); where a
count-of-count is zero or a discount leaves [0, r] (tiny corpora) that order falls back to 0.5,
1, 1.5 (KenLM's --discount_fallback). Then

  p(w | c) = (a(c w) - D(a(c w))) / sum_v a(c v) + gamma(c) p(w | c[1:])
  gamma(c) = (D1 N1(c .) + D2 N2(c .) + D3+ N3+(c .)) / sum_v a(c v)

down to the unigrams, which are discounted too and interpolated with the uniform distribution
over the vocabulary (`interpolate_unigrams`, KenLM's default: every token has p > 0), or are the
plain continuation distribution N1+(. w) / N1+(. .) (Chen & Goodman's, NLTK's): then a token
never seen after another has probability 0. `discount=<float>` uses one discount everywhere
(classic interpolated Kneser-Ney).

Each document is one sequence `<s> w1 .. wn </s>` (KenLM's sentence): <s> is context only, never
predicted, </s> is predicted and counted as a token. The tokenizer's bos/eos ids serve as <s> and
</s> where it has them (distinct ones); otherwise ids V and V+1 (past the tokenizer's
vocabulary) are reserved for them. Documents stay whole by default, as the Transformer sees them;
`split_lines=True` makes each non-empty line its own sequence, as ccnet and ROOTS scored
paragraphs (a document's perplexity is then exp(-sum log p / sum tokens) over its lines, ccnet's
10 ** (-sum log10 p / sum tokens)).

Storage is the ARPA backoff form: per order, the sorted keys of the seen n-grams (the index of
the n-gram's context in the table one order below * V' + w; unigrams are the dense ids), their
interpolated log p, and per n-gram its log gamma as a context, so that p(w | c) = p_stored(c w)
if (c w) was seen, else gamma(c) p(w | c[1:]) (gamma = 1 for an unseen context). Training holds
the corpus' ids (4 bytes a token) and per order a few arrays as long as the corpus; lookups are
np.searchsorted over all positions at once.
"""

import hashlib
import json
import logging
import os
import time
from typing import Iterable, Sequence

import numpy as np

from roots_jax import progress
from roots_jax.data import load_tokenizer
from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.errors import ConfigError, DataError

log = logging.getLogger("roots_jax")

# KenLM's --discount_fallback: D1, D2, D3+ of an order whose count-of-counts cannot give them.
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
# Tokens per vectorised scoring call: bounds the temporaries (a few int64 arrays this long).
_SCORE_CHUNK = 1 << 22
# ARPA's log10 probability of a token that is never predicted (<s>, or unseen ones without
# unigram interpolation).
_ARPA_ZERO = -99.0


def tokenizer_fingerprint(tokenizer: BaseTokenizer) -> str:
  """sha256 of the tokenizer's file (`sha256sum spm.model`), or of its files' names and
  sha256s: equal fingerprints give equal ids."""
  contents = tokenizer.contents()
  if len(contents) == 1:
    return hashlib.sha256(next(iter(contents.values()))).hexdigest()
  lines = "".join(f"{name}\0{hashlib.sha256(data).hexdigest()}\n"
                  for name, data in sorted(contents.items()))
  return hashlib.sha256(lines.encode()).hexdigest()


class NGramModel:
  """A trained model: per order k (1..order) `keys[k]` (sorted int64; order 1: none, the ids are
  the index), `logp[k]` (float64 natural log p of each n-gram) and, below the top order,
  `logbow[k]` (log gamma of each n-gram as a context, 0 where it is none)."""

  def __init__(self, *, order: int, vocab_size: int, bos_id: int, eos_id: int, keys: list,
               logp: list, logbow: list, discounts: list, counts: list, tokens: int,
               discount="modified", interpolate_unigrams: bool = True, tokenizer: dict | None = None):
    self.order, self.vocab_size, self.bos_id, self.eos_id = order, vocab_size, bos_id, eos_id
    self.size = max(vocab_size, bos_id + 1, eos_id + 1)  # V': the ids, reserved ones included
    self.keys, self.logp, self.logbow = keys, logp, logbow
    self.discounts, self.counts, self.tokens = discounts, counts, tokens
    self.discount, self.interpolate_unigrams = discount, interpolate_unigrams
    self.tokenizer = tokenizer or {}  # {"path", "fingerprint"} of the tokenizer it was trained on

  # Training.

  @classmethod
  def train(cls, token_docs: Iterable[Sequence[int]], vocab_size: int, order: int = 5, *,
            discount="modified", interpolate_unigrams: bool = True, bos_id: int | None = None,
            eos_id: int | None = None, tokenizer: dict | None = None) -> "NGramModel":
    """Counts and estimates the model of `token_docs` (each a sequence of ids < vocab_size);
    `bos_id`/`eos_id` None or negative: reserved ids V, V+1. `discount`: "modified" or one
    float in (0, 1]."""
    if order < 1:
      raise ConfigError(f"ngram order {order} must be 1 or more (5 as ROOTS)")
    if not (discount == "modified" or (isinstance(discount, (int, float))
                                       and not isinstance(discount, bool) and 0 < discount <= 1)):
      raise ConfigError(f"ngram discount {discount!r} must be 'modified' or a number in (0, 1]")
    bos, eos = _boundary_ids(vocab_size, bos_id, eos_id)
    size = max(vocab_size, bos + 1, eos + 1)
    began = time.perf_counter()
    stream, num_docs = _stream(token_docs, vocab_size, bos, eos)
    tokens = len(stream) - num_docs  # predicted: </s> counts, <s> does not
    log.info("ngram: %d documents, %d tokens read in %.1f s", num_docs, tokens,
             time.perf_counter() - began)

    # Counting: hist[j] = index of the k-gram ending at position j (-1: none), order by order.
    hist = stream.astype(np.int64)                     # order 1: the id itself  [T]
    starts = stream == bos                             # a sequence's first position  [T]
    raw = [None, np.bincount(stream, minlength=size).astype(np.int64)]
    keys, suffix, first = [None, None], [None, None], [None, np.arange(size)]
    for k in range(2, order + 1):
      prev = np.concatenate([[-1], hist[:-1]])
      valid = (prev >= 0) & ~starts
      where = np.flatnonzero(valid)
      table, at, inverse, count = np.unique(prev[where] * size + stream[where],
                                            return_index=True, return_inverse=True,
                                            return_counts=True)
      keys.append(table)
      raw.append(count.astype(np.int64))
      suffix.append(hist[where[at]])                   # the last k-1 tokens' index in order k-1
      first.append(first[k - 1][table // size])        # the first token
      hist = np.full(len(stream), -1, np.int64)
      hist[where] = inverse.reshape(-1)
    del hist, stream, starts

    # Adjusted counts: raw at the top order and for n-grams starting with <s>, else N1+(. g).
    adjusted = [None] * (order + 1)
    adjusted[order] = raw[order]
    for k in range(order - 1, 0, -1):
      continuation = np.bincount(suffix[k + 1], minlength=len(raw[k]))
      adjusted[k] = np.where(first[k] == bos, raw[k], continuation)
    adjusted[1][bos] = 0                               # <s> is never predicted

    discounts = [None] + [_discounts(adjusted[k], discount) for k in range(1, order + 1)]
    logp, logbow = [None] * (order + 1), [None] * (order + 1)
    predictable = size - 1                             # every id but <s>

    # Unigrams: discounted and interpolated with the uniform distribution, or plain.
    a = adjusted[1].astype(np.float64)
    total = a.sum()
    if interpolate_unigrams:
      d = discounts[1][np.minimum(adjusted[1], 3)]
      gamma0 = d.sum() / total
      p = (a - d) / total + gamma0 / predictable
    else:
      p = a / total
    p[bos] = 0.0
    with np.errstate(divide="ignore"):
      logp[1] = np.log(p)
    prob = p                                           # the interpolated p of order k-1's table

    for k in range(2, order + 1):
      ctx = keys[k] // size
      a = adjusted[k]
      d = discounts[k][np.minimum(a, 3)]
      n_ctx = len(logp[k - 1])
      s = np.bincount(ctx, weights=a, minlength=n_ctx)
      gamma = np.bincount(ctx, weights=d, minlength=n_ctx)
      np.divide(gamma, s, out=gamma, where=s > 0)
      p = (a - d) / s[ctx] + gamma[ctx] * prob[suffix[k]]
      logbow[k - 1] = np.where(s > 0, np.log(np.where(s > 0, gamma, 1.0)), 0.0)
      logp[k] = np.log(p)
      prob = p
    model = cls(order=order, vocab_size=vocab_size, bos_id=bos, eos_id=eos, keys=keys, logp=logp,
                logbow=logbow, discounts=[None] + [list(map(float, d[1:]))
                                                   for d in discounts[1:]],
                counts=[None, int(np.count_nonzero(raw[1]))] +
                [len(keys[k]) for k in range(2, order + 1)],
                tokens=tokens, discount=discount, interpolate_unigrams=interpolate_unigrams,
                tokenizer=tokenizer)
    log.info("ngram: order %d, n-grams %s, trained in %.1f s", order, model.counts[1:],
             time.perf_counter() - began)
    return model

  # Scoring.

  def log_probs(self, ids: Sequence[int]) -> np.ndarray:
    """ln p of each predicted token of one document: its ids, then </s>  [len(ids) + 1]."""
    stream, _ = _stream([ids], self.vocab_size, self.bos_id, self.eos_id)
    return self._score_stream(stream)[1:]

  def score_documents(self, token_docs: Iterable[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(sum of ln p [D], predicted tokens, </s> included [D]) of each document, vectorised
    over chunks of documents."""
    sums, counts = [], []
    for stream, _ in _chunks(token_docs, self.vocab_size, self.bos_id, self.eos_id):
      logp = self._score_stream(stream)
      starts = np.flatnonzero(stream == self.bos_id)
      sums.append(np.add.reduceat(logp, starts))       # <s> positions hold 0
      counts.append(np.diff(np.append(starts, len(stream))) - 1)
    if not sums:
      return np.zeros(0), np.zeros(0, np.int64)
    return np.concatenate(sums), np.concatenate(counts)

  def perplexity(self, token_docs: Iterable[Sequence[int]]) -> tuple[float, int]:
    """(exp(-sum ln p / tokens), tokens) over every predicted token of the documents, </s>
    included."""
    sums, counts = self.score_documents(token_docs)
    tokens = int(counts.sum())
    if not tokens:
      raise DataError("there are no documents to score: give a non-empty corpus")
    return float(np.exp(-sums.sum() / tokens)), tokens

  def context_log_probs(self, context: Sequence[int]) -> np.ndarray:
    """ln p(w | context) for every id w  [V'] (<s>: -inf); the context may be any ids but <s>,
    of any length (its last order-1 are used)."""
    context = [int(c) for c in context]
    context = context[max(0, len(context) - self.order + 1):] if self.order > 1 else []
    words = np.arange(self.size, dtype=np.int64)
    out = self.logp[1][words].copy()
    node = None
    for k in range(2, len(context) + 2):
      # The context of order k: the last k-1 tokens, looked up one token at a time.
      node = context[-(k - 1)]
      for j in range(k - 2, 0, -1):
        node = self._find(k - j, np.array([node]), np.array([context[-j]]))[0]
        if node < 0:
          break
      if node < 0:
        break
      found = self._find(k, np.full(self.size, node), words)
      hit = found >= 0
      out = np.where(hit, self.logp[k][np.maximum(found, 0)], out + self.logbow[k - 1][node])
    return out

  def _find(self, k: int, ctx: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Index in order k's table of the n-grams (ctx, w) (ctx: index in order k-1, -1: none);
    -1 where unseen."""
    if k == 1:
      return words.astype(np.int64)
    table = self.keys[k]
    query = ctx * self.size + words
    at = np.minimum(np.searchsorted(table, query), len(table) - 1)
    return np.where((ctx >= 0) & (len(table) > 0) & (table[at] == query), at, -1)

  def _score_stream(self, stream: np.ndarray) -> np.ndarray:
    """ln p of each position of a stream of sequences (<s> positions: 0)  [T]."""
    tokens = stream.astype(np.int64)
    starts = stream == self.bos_id
    logp = self.logp[1][tokens]
    node = tokens                                        # the (k-1)-gram ending at each position
    for k in range(2, self.order + 1):
      prev = np.concatenate([[-1], node[:-1]])
      prev[starts] = -1                                  # no n-gram ends at <s> but <s> itself
      node = self._find(k, prev, tokens)
      has = prev >= 0
      backoff = np.where(has, self.logbow[k - 1][np.maximum(prev, 0)], 0.0)
      logp = np.where(node >= 0, self.logp[k][np.maximum(node, 0)], logp + backoff)
    logp[starts] = 0.0
    return logp

  # Files.

  def check_tokenizer(self, tokenizer: BaseTokenizer, directory: str = "") -> None:
    """ConfigError unless the model was trained on `tokenizer`'s ids."""
    if self.tokenizer.get("fingerprint", "") != tokenizer_fingerprint(tokenizer):
      raise ConfigError(
          f"the n-gram model {directory} was trained with another tokenizer "
          f"({self.tokenizer.get('path') or 'unknown'}) than {tokenizer.path}; train one on that "
          f"tokenizer with ngram.tokenizer={tokenizer.path}")

  def metadata(self) -> dict:
    return {"order": self.order, "vocab_size": self.vocab_size, "bos_id": self.bos_id,
            "eos_id": self.eos_id, "discount": self.discount,
            "interpolate_unigrams": self.interpolate_unigrams,
            "discounts": {str(k): self.discounts[k] for k in range(1, self.order + 1)},
            "ngrams": {str(k): self.counts[k] for k in range(1, self.order + 1)},
            "tokens": self.tokens, "tokenizer": self.tokenizer}

  def save(self, directory: str) -> None:
    """Writes directory/ngram.npz (the tables) and directory/ngram.json (what they are)."""
    os.makedirs(directory, exist_ok=True)
    arrays = {f"logp{k}": self.logp[k] for k in range(1, self.order + 1)}
    arrays.update({f"keys{k}": self.keys[k] for k in range(2, self.order + 1)})
    arrays.update({f"logbow{k}": self.logbow[k] for k in range(1, self.order)})
    path = os.path.join(directory, "ngram.npz")
    with open(path + ".tmp", "wb") as f:
      np.savez(f, **arrays)
    os.replace(path + ".tmp", path)
    path = os.path.join(directory, "ngram.json")
    with open(path + ".tmp", "w") as f:
      json.dump(self.metadata(), f, indent=2)
    os.replace(path + ".tmp", path)

  @classmethod
  def load(cls, directory: str) -> "NGramModel":
    """The model `save` wrote in `directory`."""
    try:
      with open(os.path.join(directory, "ngram.json")) as f:
        meta = json.load(f)
      with np.load(os.path.join(directory, "ngram.npz")) as z:
        arrays = {name: z[name] for name in z.files}
    except (OSError, ValueError, KeyError) as e:
      raise DataError(f"cannot read an n-gram model in {directory} ({e}); give the directory "
                      "that holds ngram.json and ngram.npz") from e
    order = meta["order"]
    try:
      keys = [None, None] + [arrays[f"keys{k}"] for k in range(2, order + 1)]
      logp = [None] + [arrays[f"logp{k}"] for k in range(1, order + 1)]
      logbow = [None] + [arrays[f"logbow{k}"] for k in range(1, order)] + [None]
    except KeyError as e:
      raise DataError(f"{directory}/ngram.npz lacks {e}: train and save the model again") from e
    return cls(order=order, vocab_size=meta["vocab_size"], bos_id=meta["bos_id"],
               eos_id=meta["eos_id"], keys=keys, logp=logp, logbow=logbow,
               discounts=[None] + [meta["discounts"][str(k)] for k in range(1, order + 1)],
               counts=[None] + [meta["ngrams"][str(k)] for k in range(1, order + 1)],
               tokens=meta["tokens"], discount=meta["discount"],
               interpolate_unigrams=meta["interpolate_unigrams"], tokenizer=meta["tokenizer"])

  def ngram_ids(self, k: int) -> np.ndarray:
    """The ids of order k's n-grams, in table order  [n_k, k]."""
    if k == 1:
      return np.arange(self.size, dtype=np.int64)[:, None]
    below = self.ngram_ids(k - 1)
    return np.concatenate([below[self.keys[k] // self.size], (self.keys[k] % self.size)[:, None]],
                          axis=1)

  def write_arpa(self, path: str) -> None:
    """Writes the model as an ARPA file (KenLM's build_binary and query read it): words are the
    ids in decimal, <s> and </s>; log10 probabilities and backoffs; -99 for probability 0."""
    log10 = np.log(10.0)
    with open(path + ".tmp", "w") as f:
      f.write("\n\\data\\\n")
      sizes = [self.size] + [len(self.keys[k]) for k in range(2, self.order + 1)]
      f.writelines(f"ngram {k}={n}\n" for k, n in enumerate(sizes, 1))
      for k in range(1, self.order + 1):
        f.write(f"\n\\{k}-grams:\n")
        words = self.ngram_ids(k).astype(str).astype(object)
        words[words == str(self.bos_id)] = "<s>"
        words[words == str(self.eos_id)] = "</s>"
        text = words[:, 0]
        for j in range(1, k):
          text = text + " " + words[:, j]
        p = np.maximum(self.logp[k] / log10, _ARPA_ZERO)
        if k < self.order:
          bow = self.logbow[k] / log10
          lines = [f"{a:.7g}\t{t}\t{b:.7g}\n" for a, t, b in zip(p.tolist(), text, bow.tolist())]
        else:
          lines = [f"{a:.7g}\t{t}\n" for a, t in zip(p.tolist(), text)]
        f.writelines(lines)
      f.write("\n\\end\\\n")
    os.replace(path + ".tmp", path)


def _boundary_ids(vocab_size: int, bos_id: int | None, eos_id: int | None) -> tuple[int, int]:
  """(<s>, </s>): the tokenizer's where it has distinct ones, else reserved ids V (then V+1)."""
  has_eos = eos_id is not None and 0 <= eos_id < vocab_size
  has_bos = bos_id is not None and 0 <= bos_id < vocab_size and not (has_eos and bos_id == eos_id)
  reserved = iter(range(vocab_size, vocab_size + 2))
  return bos_id if has_bos else next(reserved), eos_id if has_eos else next(reserved)


def _chunks(token_docs: Iterable[Sequence[int]], vocab_size: int, bos: int, eos: int):
  """(stream of `<s> doc </s>` sequences [T] int32, documents), about _SCORE_CHUNK tokens each."""
  pieces, length, count = [], 0, 0
  boundary = np.array([eos, bos], np.int32)
  for doc in token_docs:
    ids = np.asarray(doc, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size or np.any(ids == bos)):
      raise DataError(f"a document holds ids outside 0..{vocab_size - 1} or the sentence-start "
                      f"id {bos}: give the token ids of the tokenizer the model is for")
    pieces += [boundary[1:], ids.astype(np.int32), boundary[:1]]
    length += ids.size + 2
    count += 1
    if length >= _SCORE_CHUNK:
      yield np.concatenate(pieces), count
      pieces, length, count = [], 0, 0
  if pieces:
    yield np.concatenate(pieces), count


def _stream(token_docs, vocab_size: int, bos: int, eos: int) -> tuple[np.ndarray, int]:
  """All the documents as one stream of `<s> doc </s>` sequences [T] int32, and their number."""
  parts = list(_chunks(token_docs, vocab_size, bos, eos))
  if not parts:
    raise DataError("the n-gram corpus is empty: give it at least one document")
  return np.concatenate([s for s, _ in parts]), sum(n for _, n in parts)


def _discounts(adjusted: np.ndarray, discount) -> np.ndarray:
  """[0, D1, D2, D3+] of one order from the count-of-counts of its adjusted counts, or the
  fallback (0.5, 1, 1.5) where they cannot give them; `discount` a float: that one."""
  if discount != "modified":
    return np.array([0.0, discount, discount, discount])
  n = np.bincount(np.minimum(adjusted, 5), minlength=6).astype(np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    y = n[1] / (n[1] + 2 * n[2])
    d = np.array([0.0, 1 - 2 * y * n[2] / n[1], 2 - 3 * y * n[3] / n[2],
                  3 - 4 * y * n[4] / n[3]])
  if not (np.all(np.isfinite(d)) and np.all(d[1:] > 0) and np.all(d[1:] <= np.arange(1, 4))):
    return np.array([0.0, *FALLBACK_DISCOUNTS])
  return d


# Texts and sources.

def text_sequences(text: str, tokenizer: BaseTokenizer, split_lines: bool = False) -> list:
  """The token sequences of one text: itself, or each of its non-empty lines."""
  if not split_lines:
    return [tokenizer.encode(text)]
  return [tokenizer.encode(line) for line in text.split("\n") if line.strip()]


def train_from_texts(texts: Iterable[str], tokenizer: BaseTokenizer, order: int = 5, *,
                     split_lines: bool = False, **options) -> NGramModel:
  """The model of `texts` tokenized with `tokenizer` (its bos/eos as <s>, </s>); `options`:
  NGramModel.train's discount, interpolate_unigrams."""
  docs = (seq for text in texts for seq in text_sequences(text, tokenizer, split_lines))
  return NGramModel.train(docs, tokenizer.vocab_size, order, bos_id=tokenizer.bos_id,
                          eos_id=tokenizer.eos_id, tokenizer=_tokenizer_info(tokenizer), **options)


def source_texts(source, max_documents: int | None = None) -> Iterable[str]:
  """The documents of a roots_jax.data.sources source (all its units in order), up to
  `max_documents`."""
  count = 0
  for unit in range(source.num_units):
    for _, thunk in source.records(unit, None):
      text = thunk()
      if text is None:  # skipped, with a warning, by the source
        continue
      if not isinstance(text, str):
        raise DataError("an n-gram model reads documents, not (input, target) pairs: give a "
                        "source of text documents")
      if max_documents is not None and count >= max_documents:
        return
      count += 1
      yield text


def train_on_source(source, tokenizer: BaseTokenizer, order: int = 5, *,
                    max_documents: int | None = None, split_lines: bool = False,
                    **options) -> NGramModel:
  """The model of a source's documents (e.g. BuiltinSource("train", 0.02), or make_source(
  config.data, "train")) tokenized with `tokenizer`; `options`: discount, interpolate_unigrams."""
  texts = progress.track(source_texts(source, max_documents), "ngram", total=max_documents,
                         unit="doc")
  return train_from_texts(texts, tokenizer, order, split_lines=split_lines, **options)


def score_source(model: NGramModel, source, tokenizer: BaseTokenizer, *,
                 max_documents: int | None = None, split_lines: bool = False) -> dict:
  """{"perplexity", "tokens", "documents"} of the model over a source's documents."""
  docs = source_texts(source, max_documents)
  counter = [0]

  def sequences():
    for text in progress.track(docs, "ngram eval", unit="doc"):
      counter[0] += 1
      yield from text_sequences(text, tokenizer, split_lines)

  ppl, tokens = model.perplexity(sequences())
  return {"perplexity": ppl, "tokens": tokens, "documents": counter[0]}


def _tokenizer_info(tokenizer: BaseTokenizer) -> dict:
  return {"path": os.path.abspath(tokenizer.path) if getattr(tokenizer, "path", "") else "",
          "fingerprint": tokenizer_fingerprint(tokenizer)}


class PerplexityScorer:
  """text -> its perplexity per token under the model saved in `directory`, each non-empty line
  a sentence (as ROOTS scored documents with KenLM: 10 ** (-sum log10 p / tokens) over the
  lines); inf for a text without a line. The quality filter's perplexity signal. It pickles as
  its two paths (datatrove sends steps to worker processes) and loads on first use."""

  def __init__(self, directory: str, tokenizer_path: str):
    self.directory, self.tokenizer_path = directory, tokenizer_path
    self._model = self._tokenizer = None

  def __getstate__(self):
    return {"directory": self.directory, "tokenizer_path": self.tokenizer_path}

  def __setstate__(self, state):
    self.__init__(**state)

  def __call__(self, text: str) -> float:
    if self._model is None:
      self._tokenizer = load_tokenizer(self.tokenizer_path)
      self._model = NGramModel.load(self.directory)
      self._model.check_tokenizer(self._tokenizer, self.directory)
    sums, counts = self._model.score_documents(
        text_sequences(text, self._tokenizer, split_lines=True))
    tokens = int(counts.sum())
    return float(np.exp(-sums.sum() / tokens)) if tokens else float("inf")
