"""Generation: the KV-cached loop against full forward passes, beam search against exhaustive
search, and sampling against the distribution it should draw from."""

import itertools

import jax
import numpy as np
import pytest
from scipy import stats

from roots_jax import decoding
from roots_jax.errors import ConfigError
from roots_jax.models import build_model, families
from roots_jax.models.heads import FinetuneModel
from tiny_models import random_params, tiny_config

EOS = 3
PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12], [4], []]  # the empty one: a padding row
VARIANTS = {
    "gpt": ("decoder", {}),
    "rope-gqa": ("decoder", dict(position="rope", num_kv_heads=2)),
    "relative-looped": ("decoder", dict(position="relative", scan_layers=False)),
    "t5": ("encoder_decoder", dict(position="relative", use_bias=False, scaled_attention=False,
                                   norm="rmsnorm")),
    "transformer": ("encoder_decoder", dict(position="sinusoidal", num_decoder_layers=3)),
}


def _prompts(family, prompts=PROMPTS, width=6):
  """Left-padded prompts in generate's layout."""
  tokens = np.zeros((len(prompts), width), np.int32)
  for i, p in enumerate(prompts):
    tokens[i, width - len(p):] = p
  segments = (np.arange(width)[None] >= width - np.array([len(p) for p in prompts])[:, None])
  prefix = "" if family == "decoder" else "encoder_"
  return {f"{prefix}inputs": tokens, f"{prefix}segment_ids": segments.astype(np.int32)}


class _Jitted:
  """A module with its full forward pass jitted once (`forward(params, *inputs)`)."""

  def __init__(self, module):
    self.module = module
    self.forward = jax.jit(lambda p, *inputs: module.apply({"params": p}, *inputs))


def _model(name, vocab_size=16):
  family, overrides = VARIANTS[name]
  model = build_model(tiny_config(family=family, vocab_size=vocab_size, **overrides))
  tokens = np.ones((1, 8), np.int32)
  params = random_params(model, *([tokens] if family == "decoder" else [tokens, tokens]))
  return _Jitted(model), params["params"], family


def _run(model, params, prompts, family, use_cache=True, **options):
  config = decoding.GenerationConfig(**options)
  fn = jax.jit(lambda p, b: decoding.generate(model.module, p, b, family=family, config=config,
                                              eos_id=EOS, use_cache=use_cache))
  return jax.device_get(fn(params, prompts))


def _forward(model, params, family, prompt, continuations, width=16):
  """Raw logits [C, N, V] of the full forward pass (no cache; the prompt unpadded, the tokens
  after it zeros up to `width`, which causal attention never sees) before each token of
  `continuations` [C, N]. One shape per model, so one compilation."""
  c, n = continuations.shape
  if family == "decoder":
    tokens = np.zeros((c, width), np.int32)
    tokens[:, :len(prompt)] = prompt
    tokens[:, len(prompt):len(prompt) + n] = continuations
    logits = model.forward(params, tokens)[:, len(prompt) - 1:len(prompt) - 1 + n]
  else:
    enc = np.tile(np.array(prompt, np.int32), (c, 1))
    dec = np.zeros((c, width), np.int32)
    dec[:, 1:n] = continuations[:, :-1]
    logits = model.forward(params, enc, dec)[:, :n]
  return np.asarray(logits, np.float64)


def _log_softmax(logits):
  return logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
      - logits.max(-1, keepdims=True)


def _stepwise_greedy(model, params, family, prompt, steps):
  """One prompt, in Python: the full forward pass over the tokens so far, argmax, append."""
  out = []
  for _ in range(steps):
    logits = _forward(model, params, family, prompt, np.array([out + [0]], np.int32))
    out.append(int(np.argmax(logits[0, -1])))
    if out[-1] == EOS:
      break
  return out


@pytest.mark.parametrize("name", VARIANTS)
def test_cached_greedy_equals_full_forward_each_step(name):
  model, params, family = _model(name)
  got = _run(model, params, _prompts(family), family, max_new_tokens=7)
  for i, prompt in enumerate(PROMPTS[:-1]):
    want = _stepwise_greedy(model, params, family, prompt, 7)
    assert list(got.tokens[i, 0, :len(want)]) == want and got.lengths[i, 0] == len(want)
    assert not got.tokens[i, 0, len(want):].any()
  assert got.lengths[-1, 0] == 0 and not got.tokens[-1].any()  # padding rows stay empty


@pytest.mark.parametrize("name", ["gpt", "t5"])
@pytest.mark.parametrize("options", [
    dict(do_sample=True, temperature=0.8, top_k=6, top_p=0.9, repetition_penalty=1.3,
         num_return_sequences=3, seed=7),
    dict(num_beams=3, num_return_sequences=2, length_penalty=0.6, early_stopping=False,
         repetition_penalty=1.5),
], ids=["sample", "beam"])
def test_cache_and_recompute_agree(name, options):
  """Same tokens, lengths and scores with and without the KV cache, for every strategy."""
  model, params, family = _model(name)
  cached = _run(model, params, _prompts(family), family, max_new_tokens=6, **options)
  full = _run(model, params, _prompts(family), family, use_cache=False, max_new_tokens=6,
              **options)
  np.testing.assert_array_equal(cached.tokens, full.tokens)
  np.testing.assert_array_equal(cached.lengths, full.lengths)
  np.testing.assert_allclose(cached.scores, full.scores, atol=1e-5)


@pytest.mark.parametrize("family", ["decoder", "encoder_decoder"])
def test_finetuned_seq2seq_head_generates_through_its_own_output_layer(family):
  model = FinetuneModel(tiny_config(family=family, vocab_size=16), "lm")
  row = np.ones((1, 6), np.int32)
  batch = ({"inputs": row, "segment_ids": row, "positions": row} if family == "decoder" else {
      f"{side}_{key}": row for side in ("encoder", "decoder")
      for key in ("inputs", "segment_ids", "positions")})
  params = random_params(model, batch)["params"]
  config = decoding.GenerationConfig(max_new_tokens=5)
  generate = lambda cache: jax.jit(lambda p, b: decoding.generate(
      model, p, b, family=family, config=config, eos_id=EOS, use_cache=cache,
      method=model.lm_logits))(params, _prompts(family))
  np.testing.assert_array_equal(generate(True).tokens, generate(False).tokens)


@pytest.mark.parametrize("name", ["gpt", "t5"])
def test_beam_one_and_top_k_one_are_greedy(name):
  model, params, family = _model(name)
  prompts = _prompts(family)
  greedy = _run(model, params, prompts, family, max_new_tokens=7).tokens
  beam = _run(model, params, prompts, family, max_new_tokens=7, num_beams=1).tokens
  top1 = _run(model, params, prompts, family, max_new_tokens=7, do_sample=True, top_k=1,
              temperature=0.5, seed=3).tokens
  np.testing.assert_array_equal(beam, greedy)
  np.testing.assert_array_equal(top1, greedy)
  # A beam of one through the beam-search code path (two candidates per step) too.
  one = decoding.GenerationConfig(max_new_tokens=7, num_beams=1)
  fam = families.get(family)
  lm = decoding._cached_model(model.module, params, prompts, family=fam, steps=7,
                              method=fam.lm_logits)
  beam_path = jax.device_get(jax.jit(lambda: decoding._beam_search(lm, one, EOS, 0, None))())
  live = [i for i, p in enumerate(PROMPTS) if p]
  np.testing.assert_array_equal(beam_path.tokens[live], greedy[live])


@pytest.mark.parametrize("name", ["gpt", "t5"])
def test_beam_search_finds_the_exhaustive_best(name):
  """With beams >= V^(N-1) nothing is pruned: the best hypotheses are those of scoring every
  sequence that ends in eos (or at N tokens) by its summed log-probability."""
  vocab, steps = 5, 3
  model, params, family = _model(name, vocab_size=vocab)
  prompt = [4, 2, 1]
  got = _run(model, params, _prompts(family, [prompt], 4), family, max_new_tokens=steps,
             num_beams=vocab ** (steps - 1), num_return_sequences=4, length_penalty=0.0,
             early_stopping=False)
  sequences = np.array(list(itertools.product(range(vocab), repeat=steps)), np.int32)
  logp = _log_softmax(_forward(model, params, family, prompt, sequences))
  token_logp = np.take_along_axis(logp, sequences[..., None], axis=-1)[..., 0]  # [C, N]
  hypotheses = {}
  for seq, lp in zip(sequences, token_logp):
    ends = list(seq).index(EOS) + 1 if EOS in seq else steps
    hypotheses[tuple(seq[:ends])] = lp[:ends].sum()
  best = sorted(hypotheses.items(), key=lambda kv: -kv[1])[:4]
  for r, (seq, score) in enumerate(best):
    assert tuple(got.tokens[0, r, :got.lengths[0, r]]) == seq
    np.testing.assert_allclose(got.scores[0, r], score, rtol=1e-5)


def _expected_distribution(logits, *, temperature=1.0, top_k=0, top_p=1.0, penalty=1.0,
                           seen=()):
  """numpy: the distribution HF's processors leave, from one row of logits [V]."""
  logits = logits.astype(np.float64).copy()
  for i in set(seen):
    logits[i] = logits[i] / penalty if logits[i] > 0 else logits[i] * penalty
  logits /= temperature
  order = np.argsort(-logits)
  keep = np.zeros(len(logits), bool)
  keep[order[:top_k or len(logits)]] = True
  probs = np.exp(logits - logits.max()) * keep
  probs /= probs.sum()
  sorted_probs = probs[order]
  # top-p: the smallest prefix of the sorted tokens whose mass reaches top_p.
  prefix = np.searchsorted(np.cumsum(sorted_probs), top_p - 1e-12) + 1
  nucleus = np.zeros(len(logits), bool)
  nucleus[order[:prefix]] = True
  probs = probs * nucleus
  return probs / probs.sum()


@pytest.mark.parametrize("options", [
    dict(temperature=0.7),
    dict(temperature=1.3, top_k=4),
    dict(top_p=0.8),
    dict(repetition_penalty=2.0, temperature=0.5),
], ids=["temperature", "top_k", "top_p", "repetition_penalty"])
def test_sampling_draws_from_the_processed_distribution(options):
  """4000 first tokens of one prompt against the expected probabilities (chi-square)."""
  model, params, family = _model("gpt", vocab_size=8)
  prompt = [5, 6, 7, 1]
  draws = 4000
  got = _run(model, params, _prompts(family, [prompt], 4), family, max_new_tokens=1,
             do_sample=True, num_return_sequences=draws, seed=11, **options)
  counts = np.bincount(got.tokens[0, :, 0], minlength=8)
  logits = _forward(model, params, family, prompt, np.zeros((1, 1), np.int32))[0, 0]
  probs = _expected_distribution(
      logits, temperature=options.get("temperature", 1.0), top_k=options.get("top_k", 0),
      top_p=options.get("top_p", 1.0), penalty=options.get("repetition_penalty", 1.0),
      seen=prompt)
  assert not counts[probs == 0].any()  # filtered tokens are never drawn
  support = probs > 0
  assert support.sum() >= 2
  p_value = stats.chisquare(counts[support], probs[support] * draws).pvalue
  assert p_value > 1e-3, (counts, probs * draws)


def test_sampling_is_a_function_of_the_seed():
  model, params, family = _model("gpt")
  run = lambda seed: _run(model, params, _prompts(family), family, max_new_tokens=8,
                          do_sample=True, num_return_sequences=2, seed=seed).tokens
  np.testing.assert_array_equal(run(1), run(1))
  assert not np.array_equal(run(1), run(2))


@pytest.mark.parametrize("options, message", [
    (dict(max_new_tokens=0), "max_new_tokens must be at least 1"),
    (dict(do_sample=True, temperature=0.0), "temperature must be > 0"),
    (dict(top_p=1.5), "top_p must be in (0, 1]"),
    (dict(num_beams=2, do_sample=True), "beam search does not sample"),
    (dict(num_return_sequences=3), "needs do_sample or num_beams >= 3"),
    (dict(num_beams=2, num_return_sequences=3), "needs do_sample or num_beams >= 3"),
])
def test_impossible_settings_name_the_fix(options, message):
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("]", r"\]")):
    decoding.GenerationConfig(**options).validate()
