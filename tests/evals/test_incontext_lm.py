"""InContextLM against sums of log-softmax computed by hand from the model's logits, batched
against one at a time, and generate_until against LanguageModel.generate."""

import numpy as np
import pytest

from roots_jax.api import LanguageModel
from roots_jax.errors import ConfigError
from roots_jax.evals.incontext_lm import rolling_windows
from roots_jax.runs import load as load_lib
from roots_jax.runs.incontext import lm_of

GENERATES = ("decoder", "encoder_decoder")
REQUESTS = [("Ba ko mi", " tu ze."), ("Lo pa ", "ri 7"), ("", "Seven ba."),
            ("Mi mi tu ze lo pa ri ko ba ko ko mi.", " Ba"), ("Ze", " 42 42 ko.")]


@pytest.fixture(scope="module")
def models(pretrained):
  """family -> (LanguageModel, InContextLM) of one loaded run."""
  out = {}
  for family in GENERATES:
    loaded = load_lib.load(pretrained[family])
    out[family] = LanguageModel(loaded), lm_of(loaded, batch_size=8)
  return out


def _log_probs(lm, ids, decoder_ids=None) -> np.ndarray:
  """log-softmax [T, V] in float64 of the model's logits over one row."""
  logits = lm.logits(np.array(ids), decoder_ids=None if decoder_ids is None else np.array(
      decoder_ids)).astype(np.float64)
  return logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - (
      logits.max(-1, keepdims=True))


def _scored(logp, first: int, targets) -> tuple[float, bool]:
  """(sum log p of targets read from position `first` on, whether each is the argmax)."""
  rows = logp[first:first + len(targets)]
  picked = rows[np.arange(len(targets)), targets]
  return float(picked.sum()), bool((rows.argmax(-1) == np.array(targets)).all())


def _by_hand(lm, family, context, continuation):
  """The harness's encoding, then the scores from full-precision log-softmax."""
  tok = lm.tokenizer
  spaces = len(context) - len(context.rstrip())
  if spaces:
    context, continuation = context[:-spaces], context[-spaces:] + continuation
  if family == "encoder_decoder":
    target = tok.encode(continuation)
    logp = _log_probs(lm, tok.encode(context) + [tok.eos_id], [0] + target[:-1])
    return _scored(logp, 0, target)
  if context:
    head = [tok.bos_id] + tok.encode(context)
    target = tok.encode(context + continuation)[len(head) - 1:]
  else:
    head, target = [tok.bos_id], tok.encode(continuation)
  ids = head + target
  return _scored(_log_probs(lm, ids[:-1]), len(head) - 1, target)


@pytest.mark.parametrize("family", GENERATES)
def test_loglikelihood_is_the_log_softmax_sum_by_hand(models, family):
  lm, icl = models[family]
  greedy_text = lm.generate("Ba ko mi", max_new_tokens=3)[0]
  requests = REQUESTS + [("Ba ko mi", greedy_text)]
  got = icl.loglikelihood(requests)
  want = [_by_hand(lm, family, *r) for r in requests]
  np.testing.assert_allclose([g[0] for g in got], [w[0] for w in want], rtol=1e-5, atol=1e-5)
  assert [g[1] for g in got] == [w[1] for w in want]
  assert got[-1][1], "the model's own greedy continuation is greedy"
  assert icl.examples["loglikelihood"] == len(requests) and icl.seconds["loglikelihood"] > 0


@pytest.mark.parametrize("family", GENERATES)
def test_batched_scores_equal_one_at_a_time(models, family):
  _, icl = models[family]
  requests = REQUESTS * 4  # several batches of 8 rows, of different widths
  batched = icl.loglikelihood(requests)
  alone = [icl.loglikelihood([r])[0] for r in requests]
  np.testing.assert_allclose([b[0] for b in batched], [a[0] for a in alone], rtol=1e-5,
                             atol=1e-5)
  assert [b[1] for b in batched] == [a[1] for a in alone]


def test_rolling_on_a_short_text_is_one_full_pass(models):
  lm, icl = models["decoder"]
  text = "Ba ko mi tu ze. Lo pa ri 7 seven."
  tokens = lm.tokenizer.encode(text)
  assert len(tokens) < icl.max_len
  logp = _log_probs(lm, [lm.tokenizer.bos_id] + tokens[:-1])
  (total, count), = icl.loglikelihood_rolling([text])
  assert count == len(tokens)
  np.testing.assert_allclose(total, _scored(logp, 0, tokens)[0], rtol=1e-5, atol=1e-5)


def test_rolling_windows_a_text_longer_than_the_model(models):
  lm, icl = models["decoder"]
  text = " ".join(["Ba ko mi tu ze lo pa ri 7 seven 42."] * 12)
  tokens = lm.tokenizer.encode(text)
  assert len(tokens) > 2 * icl.max_len
  windows = rolling_windows(tokens, lm.tokenizer.bos_id, icl.max_len)
  assert sum((target for _, target in windows), []) == tokens
  assert all(len(context) + len(target) == icl.max_len + 1 for context, target in windows[1:])
  want = 0.0
  for context, target in windows:
    ids = context + target
    want += _scored(_log_probs(lm, ids[:-1]), len(context) - 1, target)[0]
  (total, count), (short, _) = icl.loglikelihood_rolling([text, "Ba ko."])
  assert count == len(tokens)
  np.testing.assert_allclose(total, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(short, icl.loglikelihood_rolling(["Ba ko."])[0][0], rtol=1e-5)


@pytest.mark.parametrize("family", GENERATES)
def test_generate_until_is_lm_generates_greedy_text(models, family):
  lm, icl = models[family]
  prompts = ["Ba ko mi", "Lo pa ri 7 seven", "Ze"]
  full = [t[0] for t in lm.generate(prompts, max_new_tokens=12)]
  kwargs = {"until": "never", "max_gen_toks": 12, "do_sample": False, "temperature": 0.0}
  assert icl.generate_until([(p, kwargs) for p in prompts]) == full
  with pytest.raises(ConfigError, match="do_sample"):
    icl.generate_until([("Ba", {"do_sample": True})])


def test_generate_until_stops_at_the_first_stop_string(models):
  lm, icl = models["decoder"]  # the tiny encoder-decoder's greedy text is empty
  prompts = ["Ba ko mi", "Lo pa ri 7 seven", "Ze"]
  full = [t[0] for t in lm.generate(prompts, max_new_tokens=12)]
  assert all(len(text) > 4 for text in full)
  stops = [text[len(text) // 2:len(text) // 2 + 2] for text in full]
  got = icl.generate_until([(p, {"until": ["never", s], "max_gen_toks": 12})
                            for p, s in zip(prompts, stops)])
  assert got == [text[:text.find(s)] for text, s in zip(full, stops)]
  assert icl.examples["generate_until"] >= 3 and icl.examples_per_second("generate_until") > 0


def test_an_encoder_is_refused_and_an_encoder_decoder_has_no_rolling(pretrained, models):
  with pytest.raises(ConfigError, match="in-context evaluation needs a decoder or "
                     "encoder-decoder"):
    lm_of(load_lib.load(pretrained["encoder"]))
  with pytest.raises(ConfigError, match="needs a decoder"):
    models["encoder_decoder"][1].loglikelihood_rolling(["Ba ko."])


def test_the_context_is_the_length_a_run_was_trained_on(models):
  """Positions past data.seq_len were never trained (the tiny runs: 32 of max_len 64)."""
  lm, icl = models["decoder"]
  assert (lm.config.data.seq_len, lm.model_config.max_len, icl.max_len) == (32, 64, 32)


def test_contexts_longer_than_the_model_are_cut_and_counted(models):
  _, icl = models["decoder"]
  before = icl.truncated
  long_context = " ".join(["ba ko mi"] * 40)
  icl.loglikelihood([("ba ko", " mi"), (long_context, " mi")])
  icl.generate_until([(long_context, {"until": ["\n"], "max_gen_toks": 4})])
  assert icl.truncated - before == 2
