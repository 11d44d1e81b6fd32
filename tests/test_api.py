"""roots_jax.api: loading runs (and Hugging Face directories), generate against roots_jax.decoding,
score and embed against the model's own forward pass computed here, fine-tune + predict against
the evaluate driver, pipelines, and the errors a user gets."""

import gc
import json
import os
import shutil

import jax
import numpy as np
import pytest
import sklearn.metrics
from flax import linen as nn

import roots_jax
from roots_jax import decoding, metrics
from roots_jax.api import LanguageModel
from roots_jax.errors import CheckpointError, ConfigError
from roots_jax.models.families import last_token, mean_tokens
from roots_jax.runs import convert
from roots_jax.runs.evaluation import evaluate_run
from roots_jax.training import partitioning

PROMPTS = ["ba ko mi", "tu ze lo pa ri ba ko"]
# Sampling settings shared by the tests (each settings' compilation is cached on the model).
SAMPLED = dict(max_new_tokens=6, do_sample=True, top_k=20, num_return_sequences=2, seed=3)


@pytest.fixture(scope="module")
def gpt(pretrained):
  return LanguageModel.from_pretrained(pretrained["decoder"])


@pytest.fixture(scope="module")
def t5(pretrained):
  return LanguageModel.from_pretrained(pretrained["encoder_decoder"])


@pytest.fixture(scope="module")
def bert(pretrained):
  return LanguageModel.from_pretrained(pretrained["encoder"])


@pytest.fixture(scope="module")
def classifier(gpt, task_files, tmp_path_factory):
  """The GPT fine-tuned for 4 steps on the classification task files, in a kept workdir."""
  texts, labels = _read(task_files["classification"][0])
  eval_texts, eval_labels = _read(task_files["classification"][1])
  workdir = str(tmp_path_factory.mktemp("api_classifier"))
  return gpt.finetune(texts, labels, eval_texts=eval_texts, eval_labels=eval_labels,
                      workdir=workdir, steps=4, batch_size=8, learning_rate=1e-3,
                      train__eval_every=4)


def _read(path):
  with open(path) as f:
    rows = [json.loads(line) for line in f]
  return [r["text"] for r in rows], [r["label"] for r in rows]


def _host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def test_from_pretrained_runs_and_checkpoints(gpt, t5, bert, pretrained):
  assert (gpt.family, t5.family, bert.family) == ("decoder", "encoder_decoder", "encoder")
  assert gpt.step == t5.step == 3 and gpt.task is None
  again = LanguageModel.from_pretrained(os.path.join(pretrained["decoder"], "checkpoints", "3"))
  assert again.step == 3
  jax.tree.map(np.testing.assert_array_equal, _host(again.params), _host(gpt.params))
  assert "step 3" in repr(gpt)
  assert roots_jax.LanguageModel is LanguageModel
  assert roots_jax.GenerationConfig is decoding.GenerationConfig


@pytest.mark.parametrize("family", ["decoder", "encoder_decoder"])
def test_generate_equals_decoding_generate(family, gpt, t5):
  """The strings are decoding.generate's tokens for the prompts laid out by hand (left-padded,
  bos first or eos last), over the same padded batch of rows."""
  lm = gpt if family == "decoder" else t5
  got = lm.generate(PROMPTS, **SAMPLED)
  tok = lm.tokenizer
  ids = [([tok.bos_id] + tok.encode(p)) if family == "decoder" else tok.encode(p) + [tok.eos_id]
         for p in PROMPTS]
  rows, width = jax.device_count(), 16
  tokens = np.zeros((rows, width), np.int32)
  segments = np.zeros((rows, width), np.int32)
  for i, row in enumerate(ids):
    tokens[i, width - len(row):], segments[i, width - len(row):] = row, 1
  prefix = "" if family == "decoder" else "encoder_"
  config = decoding.GenerationConfig(**SAMPLED)
  with jax.set_mesh(lm.mesh), nn.logical_axis_rules(partitioning.logical_rules(lm.config)):
    out = jax.jit(lambda p, b: decoding.generate(
        lm.model, p, b, family=family, config=config, eos_id=tok.eos_id, pad_id=tok.pad_id))(
            lm.params, {f"{prefix}inputs": tokens, f"{prefix}segment_ids": segments})
  out = jax.device_get(out)
  for i in range(len(PROMPTS)):
    for r in range(2):
      want = [int(t) for t in out.tokens[i, r, :out.lengths[i, r]] if t != tok.eos_id]
      assert got[i][r] == tok.decode(want)


def test_generate_shapes_lengths_and_seeds(gpt, t5):
  """A str gives a list of strings, a list of prompts a list of such lists; max_length is what
  Hugging Face means by it; the seed picks the samples."""
  many = gpt.generate(PROMPTS, **SAMPLED)
  assert [len(x) for x in many] == [2, 2] and all(isinstance(s, str) for x in many for s in x)
  assert gpt.generate(PROMPTS, **{**SAMPLED, "seed": 4}) != many
  # The longest prompt (bos included) + new tokens; the decoder's start token + new tokens.
  longest = max(len(gpt.tokenizer.encode(p)) + 1 for p in PROMPTS)
  greedy = gpt.generate(PROMPTS, max_new_tokens=6)
  assert [len(x) for x in greedy] == [1, 1]
  assert gpt.generate(PROMPTS[1], max_new_tokens=6) == greedy[1]  # alone or in a batch
  assert gpt.generate(PROMPTS, max_length=longest + 6) == greedy
  assert gpt.generate(PROMPTS, max_new_tokens=6, use_cache=False) == greedy
  assert t5.generate(PROMPTS, max_length=7) == t5.generate(PROMPTS, max_new_tokens=6)


def _log_softmax(logits):
  logits = np.asarray(logits, np.float64)
  return logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
      - logits.max(-1, keepdims=True)


def test_score_is_the_sum_of_log_softmax_at_the_targets(gpt, t5):
  tok, params = gpt.tokenizer, _host(gpt.params)
  texts = ["ba ko mi tu", "ze"]
  got = gpt.score(texts)[0]
  ids = [tok.bos_id] + tok.encode(texts[0]) + [tok.eos_id]
  logp = _log_softmax(gpt.model.apply({"params": params}, np.array([ids[:-1]])))[0]
  want = sum(logp[i, t] for i, t in enumerate(ids[1:]))
  assert got["log_likelihood"] == pytest.approx(want, rel=1e-4)
  assert got["num_tokens"] == len(ids) - 1
  assert got["perplexity"] == pytest.approx(np.exp(-want / (len(ids) - 1)), rel=1e-4)
  assert gpt.score(texts[0]) == pytest.approx(got)  # alone or in a batch
  # With a target, only the target's tokens (and eos) count.
  context = [tok.bos_id] + tok.encode("ba ko")
  target = tok.encode(" mi tu") + [tok.eos_id]
  logp = _log_softmax(gpt.model.apply({"params": params}, np.array([(context + target)[:-1]])))[0]
  want = sum(logp[len(context) - 1 + i, t] for i, t in enumerate(target))
  got = gpt.score("ba ko", targets=" mi tu")
  assert got["log_likelihood"] == pytest.approx(want, rel=1e-4)
  assert got["num_tokens"] == len(target)

  tok, params = t5.tokenizer, _host(t5.params)
  got = t5.score(["ba ko mi", "tu"], targets=["ze lo", "pa ri ba"])[1]
  scored = tok.encode("pa ri ba") + [tok.eos_id]
  logits = t5.model.apply({"params": params}, np.array([tok.encode("tu") + [tok.eos_id]]),
                          np.array([[0] + scored[:-1]]))
  want = sum(_log_softmax(logits)[0, i, t] for i, t in enumerate(scored))
  assert got["log_likelihood"] == pytest.approx(want, rel=1e-4)
  assert got["num_tokens"] == len(scored)


def test_embed_is_the_backbone_features(gpt, t5, bert):
  texts = ["ba ko mi tu", "ze"]
  out = gpt.embed(texts)
  assert out.shape == (2, gpt.model_config.embed_dim) and out.dtype == np.float32
  mean = gpt.embed(texts, pooling="mean")
  tok = gpt.tokenizer
  for i, text in enumerate(texts):
    ids = np.array([[tok.bos_id] + tok.encode(text) + [tok.eos_id]])
    hidden = gpt.model.apply({"params": _host(gpt.params)}, ids, features=True)
    segments = np.ones_like(ids)
    np.testing.assert_allclose(out[i], last_token(hidden, segments)[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mean[i], mean_tokens(hidden, segments)[0], rtol=1e-4, atol=1e-5)
  assert gpt.embed("ze").shape == (gpt.model_config.embed_dim,)

  tok = bert.tokenizer
  ids = np.array([[tok.piece_id("[CLS]")] + tok.encode("ba ko") + [tok.piece_id("[SEP]")]])
  _, pooled = bert.model.apply({"params": _host(bert.params)}, ids, features=True)
  np.testing.assert_allclose(bert.embed(["ba ko"])[0], pooled[0], rtol=1e-4, atol=1e-5)

  tok = t5.tokenizer
  ids = np.array([tok.encode("ba ko") + [tok.eos_id]])
  encoded = t5.model.apply({"params": _host(t5.params)}, ids, method=t5.model.encode)
  np.testing.assert_allclose(t5.embed("ba ko"), np.asarray(encoded)[0].mean(0), rtol=1e-4,
                             atol=1e-5)


def test_finetune_and_predict_agree_with_evaluate(classifier, task_files):
  """predict's labels score the validation split as the evaluate driver scores the run."""
  assert classifier.task == "classification" and classifier.labels.names == ("digits", "none")
  texts, labels = _read(task_files["classification"][1])
  predictions = classifier.predict(texts)
  assert set(predictions) <= {"digits", "none"}
  probs = classifier.class_probabilities(texts)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  assert predictions == [classifier.labels.names[i] for i in probs.argmax(-1)]
  results = evaluate_run(classifier.workdir, split="validation")
  assert results["checkpoint_step"] == classifier.step
  assert metrics.accuracy(np.array(predictions), np.array(labels)) == pytest.approx(
      results["metrics"]["accuracy"])
  assert results["metrics"]["examples"] == len(texts)
  # Per class, as scikit-learn reports the same predictions.
  names = list(classifier.labels.names)
  reference = sklearn.metrics.precision_recall_fscore_support(labels, predictions, labels=names,
                                                             zero_division=0)
  for name, expected in zip(("precision", "recall", "f1", "support"), reference):
    np.testing.assert_allclose([results["per_class"][c][name] for c in names], expected,
                               rtol=1e-12, err_msg=name)
  assert classifier.predict(texts[0]) == predictions[0]


def test_seq2seq_finetune_predicts_what_evaluate_generates(t5, task_files):
  """In a temporary workdir, removed with the model."""
  texts, targets = _read(task_files["seq2seq"][0])
  eval_texts, eval_targets = _read(task_files["seq2seq"][1])
  tuned = t5.finetune(texts, targets, kind="seq2seq", eval_texts=eval_texts,
                      eval_labels=eval_targets, steps=2, batch_size=8, frozen=True,
                      train__eval_every=2)
  assert tuned.task == "seq2seq" and tuned.config.finetune.mode == "frozen"
  predictions = tuned.predict(eval_texts)
  assert len(predictions) == len(eval_texts) and all(isinstance(p, str) for p in predictions)
  results = evaluate_run(tuned.workdir, split="validation")["metrics"]
  assert metrics.rouge(predictions, eval_targets)["rougeL"] == pytest.approx(results["rougeL"])
  assert metrics.exact_match(predictions, eval_targets) == pytest.approx(results["exact_match"])
  workdir = tuned.workdir
  del tuned
  gc.collect()
  assert not os.path.exists(workdir)


def test_pipelines(gpt, t5, classifier):
  pipe = roots_jax.pipeline("text-generation", model=gpt)
  out = pipe("ba ko", **SAMPLED)
  assert len(out) == 2 and all(o["generated_text"].startswith("ba ko") for o in out)
  assert [o["generated_text"] for o in out] == [
      "ba ko" + c for c in gpt.generate("ba ko", **SAMPLED)]
  assert pipe("ba ko", max_new_tokens=6, return_full_text=False) == [
      {"generated_text": gpt.generate("ba ko", max_new_tokens=6)[0]}]
  batch = pipe(PROMPTS, max_new_tokens=6)
  assert len(batch) == 2 and all(len(x) == 1 and "generated_text" in x[0] for x in batch)
  # An encoder-decoder's output is not a continuation of its input.
  assert roots_jax.pipeline("text-generation", model=t5)("ba", max_new_tokens=6) == [
      {"generated_text": t5.generate("ba", max_new_tokens=6)[0]}]
  features = roots_jax.pipeline("feature-extraction", model=gpt)(["ba", "ko"])
  np.testing.assert_allclose(features, gpt.embed(["ba", "ko"]), rtol=1e-6)
  result = roots_jax.pipeline("text-classification", model=classifier)("ba 42 ko")
  assert len(result) == 1 and result[0]["label"] in ("digits", "none")
  assert 0.5 <= result[0]["score"] <= 1.0


def test_from_pretrained_a_hugging_face_directory(gpt, pretrained, corpus, tmp_path,
                                                  monkeypatch):
  """An exported run with a sentencepiece tokenizer (spiece.model, no sentinels) converts once
  into the cache and generates what the run generates."""
  hf_dir = tmp_path / "hf"
  convert.export_hf(pretrained["decoder"], str(hf_dir))
  shutil.copy(corpus / "spm.model", hf_dir / "spiece.model")
  (hf_dir / "tokenizer_config.json").write_text(json.dumps({"extra_ids": 0}))
  monkeypatch.setenv("ROOTS_JAX_CACHE", str(tmp_path / "cache"))
  lm = LanguageModel.from_pretrained(str(hf_dir))
  assert lm.workdir.startswith(str(tmp_path / "cache"))
  assert lm.generate(PROMPTS, max_new_tokens=5) == gpt.generate(PROMPTS, max_new_tokens=5)
  monkeypatch.setattr(convert, "import_hf", lambda *a, **k: pytest.fail("converted twice"))
  assert LanguageModel.from_pretrained(str(hf_dir)).workdir == lm.workdir


def test_user_errors(gpt, t5, bert, classifier, pretrained, tmp_path):
  cases = [
      (lambda: LanguageModel.from_pretrained(str(tmp_path / "missing")), ConfigError,
       "does not exist"),
      (lambda: LanguageModel.from_pretrained(str(tmp_path)), ConfigError, "no config.json"),
      (lambda: LanguageModel.from_pretrained(pretrained["decoder"], checkpoint=99),
       CheckpointError, "one of the steps"),
      (lambda: bert.generate("ba"), ConfigError, "does not generate"),
      (lambda: classifier.generate("ba"), ConfigError, "use predict()"),
      (lambda: bert.score("ba"), ConfigError, "not an encoder-only"),
      (lambda: t5.score("ba"), ConfigError, "targets="),
      (lambda: gpt.predict("ba"), ConfigError, "fine-tuned model"),
      (lambda: gpt.generate(" ".join(["ba"] * 60), max_new_tokens=10), ConfigError,
       "exceeds the model's max_len 64"),
      (lambda: gpt.score(" ".join(["ba"] * 70)), ConfigError, "max_len 64"),
      (lambda: gpt.generate(PROMPTS, max_length=3), ConfigError, "leaves no room"),
      (lambda: gpt.generate("ba", do_sample=True, temperature=0.0), ConfigError,
       "temperature must be > 0"),
      (lambda: gpt.generate("ba", num_return_sequences=2), ConfigError, "needs do_sample"),
      (lambda: gpt.generate(["ba", 3]), ConfigError, "list of str"),
      (lambda: gpt.generate([]), ConfigError, "non-empty"),
      (lambda: gpt.embed("ba", pooling="first"), ConfigError, "last or mean"),
      (lambda: gpt.finetune(["a"], ["x"], kind="tagging"), ConfigError, "classification"),
      (lambda: gpt.finetune(["a", "b"], ["x"]), ConfigError, "one label per text"),
      (lambda: gpt.finetune(["a"], [None], kind="regression"), ConfigError, "a number"),
      (lambda: bert.finetune(["a"], ["b"], kind="seq2seq"), ConfigError, "encoder"),
      (lambda: classifier.finetune(["a"], ["x"]), ConfigError, "already fine-tuned"),
      (lambda: gpt.finetune(["a"], ["x"], train__stepz=3), ConfigError, "train.steps"),
      (lambda: roots_jax.pipeline("summarization", model=gpt), ConfigError,
       "text-generation, feature-extraction, text-classification"),
      (lambda: roots_jax.pipeline("text-generation", model=bert), ConfigError,
       "does not generate"),
      (lambda: roots_jax.pipeline("text-classification", model=gpt), ConfigError,
       "fine-tuned for classification"),
      (lambda: roots_jax.pipeline("text-generation"), ConfigError, "model="),
  ]
  for call, error, message in cases:
    with pytest.raises(error) as info:
      call()
    assert message in str(info.value), (message, str(info.value))
