"""The model side of in-context (zero- and few-shot) evaluation: the three request types of
EleutherAI's lm-evaluation-harness on our models, with the harness's semantics, batched and
jitted (one compilation per shape bucket) and generating with the KV cache.

  lm = InContextLM(model, params, tokenizer, family, batch_sharding, context, max_len=128)
  lm.loglikelihood([("The cat", " sat")])          # -> [(sum ln p(continuation | context), greedy)]
  lm.loglikelihood_rolling(["a whole document"])   # -> [(sum ln p(every token), token count)]
  lm.generate_until([("Q: 2+2=", {"until": ["\\n"], "max_gen_toks": 8})])  # -> ["4"]

Requests are sorted longest first (as the harness does, so the first batch shows whether memory
suffices), cut into batches of `batch_size` rows (padded to the data-parallel size) with widths
rounded up to multiples of lm_rows.WIDTH_MULTIPLE, and answered in the order given.
`examples` and `seconds` count what each request type has answered, for examples/s.
"""

import collections
import time
from typing import Callable, ContextManager, Sequence

import jax
import numpy as np
from flax import linen as nn

from roots_jax import decoding
from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.decoding import GenerationConfig
from roots_jax.errors import ConfigError
from roots_jax.evals import lm_rows
from roots_jax.models.families import Family

# The harness's default number of new tokens for generate_until.
MAX_GEN_TOKS = 32

# A scored row: (decoder inputs, encoder inputs or None, targets, weights).
Row = tuple[list[int], list[int] | None, list[int], list[float]]


class InContextLM:
  """A decoder or encoder-decoder language model answering the harness's requests."""

  def __init__(self, model: nn.Module, params, tokenizer: BaseTokenizer, family: Family,
               batch_sharding: jax.sharding.NamedSharding,
               context: Callable[[], ContextManager], max_len: int, batch_size: int = 32):
    if not family.generates:
      raise ConfigError("in-context evaluation needs a decoder or encoder-decoder language "
                        "model; this is an encoder-only (BERT) one")
    self.model, self.params, self.tokenizer, self.family = model, params, tokenizer, family
    self.batch_sharding, self.context, self.max_len = batch_sharding, context, max_len
    self.batch_rows = lm_rows.round_up(batch_size, lm_rows.data_parallel_size(batch_sharding))
    self.examples: dict[str, int] = collections.Counter()
    self.seconds: dict[str, float] = collections.Counter()
    # Requests whose context lost its first tokens to the model's context length: a few-shot
    # prompt longer than the model knows loses its first examples.
    self.truncated = 0
    self._fns: dict = {}

  def examples_per_second(self, kind: str) -> float:
    """Requests of `kind` answered per second so far (nan before any)."""
    return self.examples[kind] / self.seconds[kind] if self.seconds[kind] else float("nan")

  # The harness's prefix token: what the first token of a text is predicted from.
  @property
  def _prefix(self) -> int:
    tok = self.tokenizer
    return tok.bos_id if tok.bos_id >= 0 else tok.eos_id

  # Log-likelihood.

  def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
    """(sum of ln p(continuation | context), whether greedy decoding gives the continuation)
    for each (context, continuation): the harness's TemplateLM.loglikelihood. A context's
    trailing spaces move to the continuation; a decoder scores encode(context + continuation)
    after the tokens of encode(context), with bos first where the tokenizer has one (an empty
    context: the prefix token, bos or else eos), left-truncated to max_len; an encoder-decoder
    scores encode(continuation) from the start id given encode(context) + eos."""
    start = time.perf_counter()
    rows = [self._pair_row(context, continuation) for context, continuation in requests]
    out = self._score(rows)
    self._count("loglikelihood", len(rows), start)
    return [(float(s), bool(g)) for s, g in out]

  def _pair_row(self, context: str, continuation: str) -> Row:
    tok = self.tokenizer
    spaces = len(context) - len(context.rstrip())
    if spaces:
      context, continuation = context[:-spaces], context[-spaces:] + continuation
    if self.family.has_encoder:
      source = self._cut_left(tok.encode(context) + [tok.eos_id], self.max_len)
      target = tok.encode(continuation)
      self._check_fits(len(target), "continuation")
      return [0] + target[:-1], source, target, [1.0] * len(target)
    if context:
      head = tok.encode(context)
      target = tok.encode(context + continuation)[len(head):]
      head = ([tok.bos_id] if tok.bos_id >= 0 else []) + head
    else:
      target = tok.encode(continuation)
      head, target = ([self._prefix], target) if target[:1] != [self._prefix] else (
          target[:1], target[1:])
    return self._decoder_row(head, target)

  def _decoder_row(self, context: list[int], target: list[int]) -> Row:
    """The last max_len + 1 tokens of context + target, scoring the target."""
    self._check_fits(len(target), "continuation")
    ids = self._cut_left(context + target, self.max_len + 1)
    weights = [0.0] * (len(ids) - 1 - len(target)) + [1.0] * len(target)
    return ids[:-1], None, ids[1:], weights

  def _cut_left(self, ids: list[int], length: int) -> list[int]:
    """The last `length` of `ids`, counting a cut in `truncated`."""
    self.truncated += len(ids) > length
    return ids[-length:]

  def _check_fits(self, length: int, what: str) -> None:
    if length > self.max_len:
      raise ConfigError(f"a {what} of {length} tokens exceeds the model's context of "
                        f"{self.max_len} tokens: shorten it")

  def loglikelihood_rolling(self, texts: Sequence[str]) -> list[tuple[float, int]]:
    """(sum of ln p of every token of the text, token count) for each text, the first token
    predicted from the prefix token (bos, or else eos), no eos added; texts longer than max_len
    in the harness's disjoint rolling windows (lm_eval.utils.get_rolling_token_windows with
    context_len=1, then make_disjoint_window): every token predicted once, each window with
    as much context as fits. Decoders only."""
    if self.family.has_encoder:
      raise ConfigError("rolling log-likelihood (perplexity of whole documents) needs a "
                        "decoder; this is an encoder-decoder model")
    start = time.perf_counter()
    owners, rows, counts = [], [], []
    for i, text in enumerate(texts):
      tokens = self.tokenizer.encode(text)
      counts.append(len(tokens))
      for context, target in rolling_windows(tokens, self._prefix, self.max_len):
        owners.append(i)
        rows.append(self._decoder_row(context, target))
    sums = np.zeros(len(texts))
    for owner, (score, _) in zip(owners, self._score(rows)):
      sums[owner] += score
    self._count("loglikelihood_rolling", len(texts), start)
    return [(float(s), n) for s, n in zip(sums, counts)]

  def _score(self, rows: list[Row]) -> list[tuple[float, bool]]:
    """(sum log p of the weighted targets, all greedy) of each row, in order."""
    fn = self._jit("score", lambda: lm_rows.target_scores(self.model, self.family.has_encoder))
    out = [None] * len(rows)
    # Longest first: the widest (most memory-hungry) batch runs first.
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]) - len(rows[i][1] or ()))
    for start in range(0, len(order), self.batch_rows):
      chunk = order[start:start + self.batch_rows]
      chunk_rows = [rows[i] for i in chunk]
      width = self._width(max(len(r[0]) for r in chunk_rows))
      encoder_width = self._width(max(len(r[1]) for r in chunk_rows)) if (
          self.family.has_encoder) else None
      sums, greedy = self._run(fn, lm_rows.scored_batch(chunk_rows, width, encoder_width),
                               len(chunk))
      for i, s, g in zip(chunk, sums, greedy):
        out[i] = (float(s), bool(g))
    return out

  # Generation.

  def generate_until(self, requests: Sequence[tuple[str, dict]]) -> list[str]:
    """Greedy continuation of each context (KV cache), up to gen kwargs' max_gen_toks new tokens
    (default MAX_GEN_TOKS) or eos, cut before the first of its `until` stop strings. A decoder's
    prompt is bos + context left-truncated to leave room for the new tokens, an
    encoder-decoder's input context + eos."""
    start = time.perf_counter()
    groups = collections.defaultdict(list)       # max_gen_toks -> request indices
    stops = []
    for i, (_, kwargs) in enumerate(requests):
      new_tokens, until = _generation_kwargs(kwargs)
      groups[new_tokens].append(i)
      stops.append(until)
    out = [None] * len(requests)
    for new_tokens, indices in groups.items():
      prompts = {i: self._prompt(requests[i][0], new_tokens) for i in indices}
      texts = self._generate(list(prompts.values()), new_tokens)
      for i, text in zip(prompts, texts):
        out[i] = _cut(text, stops[i])
    self._count("generate_until", len(requests), start)
    return out

  def _prompt(self, context: str, new_tokens: int) -> list[int]:
    tok = self.tokenizer
    if self.family.has_encoder:
      return self._cut_left(tok.encode(context) + [tok.eos_id], self.max_len)
    if new_tokens >= self.max_len:
      raise ConfigError(f"max_gen_toks={new_tokens} leaves no room for the prompt in the "
                        f"model's context of {self.max_len} tokens: lower it")
    ids = ([tok.bos_id] if tok.bos_id >= 0 else []) + tok.encode(context)
    return self._cut_left(ids or [self._prefix], self.max_len - new_tokens)

  def _generate(self, prompts: list[list[int]], new_tokens: int) -> list[str]:
    config = GenerationConfig(max_new_tokens=new_tokens)
    tok, model, family = self.tokenizer, self.model, self.family
    fn = self._jit(("generate", new_tokens), lambda: lambda params, batch: decoding.generate(
        model, params, batch, family=family, config=config, eos_id=tok.eos_id,
        pad_id=max(tok.pad_id, 0)))
    prefix = family.prompt_prefix
    texts = [None] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    for start in range(0, len(order), self.batch_rows):
      chunk = order[start:start + self.batch_rows]
      tokens, segments = lm_rows.left_padded([prompts[i] for i in chunk],
                                             self._width(max(len(prompts[i]) for i in chunk)))
      out = self._run(fn, {f"{prefix}inputs": tokens, f"{prefix}segment_ids": segments},
                      len(chunk))
      for i, ids, n in zip(chunk, out.tokens[:, 0], out.lengths[:, 0]):
        ids = [int(t) for t in ids[:n]]
        texts[i] = tok.decode(ids[:-1] if ids and ids[-1] == tok.eos_id else ids)
    return texts

  # Running.

  def _width(self, n: int) -> int:
    """The shape bucket of a row of n tokens."""
    return lm_rows.round_up(n)

  def _jit(self, key, make: Callable) -> Callable:
    if key not in self._fns:
      self._fns[key] = jax.jit(make())
    return self._fns[key]

  def _run(self, fn: Callable, batch: dict[str, np.ndarray], rows: int):
    return lm_rows.run_padded(fn, self.params, batch, rows, self.batch_rows,
                              self.batch_sharding, self.context)

  def _count(self, kind: str, examples: int, start: float) -> None:
    self.examples[kind] += examples
    self.seconds[kind] += time.perf_counter() - start


def rolling_windows(tokens: list[int], prefix: int,
                    max_len: int) -> list[tuple[list[int], list[int]]]:
  """(context, target) windows that predict each token once: the harness's
  get_rolling_token_windows(tokens, prefix, max_len, context_len=1) made disjoint. The first
  window predicts the first max_len tokens from the prefix token; each later one the next
  max_len (the last: the rest) from the tokens before them, the window max_len + 1 long."""
  windows, done = [], 0
  while done < len(tokens):
    end = min(done + max_len, len(tokens))
    context = [prefix] if done == 0 else tokens[max(end - max_len - 1, 0):done]
    windows.append((context, tokens[done:end]))
    done = end
  return windows


def _generation_kwargs(kwargs: dict) -> tuple[int, list[str]]:
  """(max_gen_toks, stop strings) of the harness's gen kwargs; ConfigError for sampling."""
  kwargs = dict(kwargs or {})
  if kwargs.get("do_sample"):
    raise ConfigError("generate_until decodes greedily: set do_sample to false in the task's "
                      "generation_kwargs")
  until = kwargs.get("until") or []
  until = [until] if isinstance(until, str) else list(until)
  return int(kwargs.get("max_gen_toks", MAX_GEN_TOKS)), until


def _cut(text: str, stops: list[str]) -> str:
  """text up to the first occurrence of any stop string."""
  ends = [text.find(s) for s in stops if s and s in text]
  return text[:min(ends)] if ends else text
