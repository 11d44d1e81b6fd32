"""roots_jax.api: loading runs (and Hugging Face directories), generate against roots_jax.decoding,
score, embed, logits, forward and fill-mask against the model's own forward pass computed here,
fine-tune + predict against the evaluate driver, the articles' snippet as written, save_pretrained
round trips through from_pretrained and the commands, pipelines, and the errors a user gets."""

import gc
import json
import logging
import os
import shutil

import jax
import numpy as np
import pytest
import sklearn.metrics
from flax import linen as nn

import roots_jax
from roots_jax import decoding, metrics
from roots_jax import api, evaluate as evaluate_cli, generate as generate_cli
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
def classifier(pretrained, task_files, tmp_path_factory):
  """The GPT fine-tuned for 4 steps on the classification task files, in a kept workdir."""
  texts, labels = _read(task_files["classification"][0])
  eval_texts, eval_labels = _read(task_files["classification"][1])
  workdir = str(tmp_path_factory.mktemp("api_classifier"))
  lm = LanguageModel.from_pretrained(pretrained["decoder"])
  tuned = lm.finetune(texts, labels, eval_texts=eval_texts, eval_labels=eval_labels,
                      workdir=workdir, steps=4, batch_size=8, learning_rate=1e-3,
                      train__eval_every=4)
  assert tuned is lm  # in place
  return tuned


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


def test_seq2seq_finetune_predicts_what_evaluate_generates(pretrained, task_files):
  """In a temporary workdir, removed with the model."""
  texts, targets = _read(task_files["seq2seq"][0])
  eval_texts, eval_targets = _read(task_files["seq2seq"][1])
  tuned = LanguageModel.from_pretrained(pretrained["encoder_decoder"]).finetune(
      texts, targets, kind="seq2seq", eval_texts=eval_texts, eval_labels=eval_targets, steps=2,
      batch_size=8, frozen=True, train__eval_every=2)
  assert tuned.task == "seq2seq" and tuned.config.finetune.mode == "frozen"
  predictions = tuned.predict(eval_texts)
  assert len(predictions) == len(eval_texts) and all(isinstance(p, str) for p in predictions)
  results = evaluate_run(tuned.workdir, split="validation")["metrics"]
  assert metrics.rouge(predictions, eval_targets)["rougeL"] == pytest.approx(results["rougeL"])
  assert metrics.exact_match(predictions, eval_targets) == pytest.approx(results["exact_match"])
  # forward: the tuned backbone's hidden states (no pretrained LM logits).
  ids = np.array([tuned.tokenizer.encode(eval_texts[0])])
  out = tuned.forward(ids, decoder_ids=ids[:, :3])
  assert set(out) == {"hidden_states", "encoder_hidden_states"}
  encoded = tuned.model.apply({"params": _host(tuned.params)}, ids, method=lambda m, x: (
      m.backbone.encode(x)))
  np.testing.assert_allclose(out["encoder_hidden_states"], encoded, rtol=1e-5, atol=1e-5)
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
      (lambda: roots_jax.pipeline("fill-mask", model=gpt), ConfigError,
       "needs a pretrained encoder"),
      (lambda: bert.fill_mask("ba ko"), ConfigError, "has no [MASK]"),
      (lambda: bert.fill_mask("ba [MASK]", top_k=0), ConfigError, "top_k must be"),
      (lambda: classifier.logits([1, 2]), ConfigError, "use predict()"),
      (lambda: t5.logits([1, 2]), ConfigError, "give decoder_ids="),
      (lambda: gpt.logits([1, 2], token_types=[0, 0]), ConfigError, "token_types are BERT's"),
      (lambda: gpt.logits([[1.5]]), ConfigError, "array of ints"),
      (lambda: gpt.logits([1, 10 ** 6]), ConfigError, "outside the vocabulary"),
      (lambda: gpt.logits([[1, 2]], mask=[[1]]), ConfigError, "not that of its ids"),
  ]
  for call, error, message in cases:
    with pytest.raises(error) as info:
      call()
    assert message in str(info.value), (message, str(info.value))


@pytest.fixture
def api_log(caplog):
  """The roots_jax logger's lines (it does not propagate to the root logger once on console)."""
  logger = logging.getLogger("roots_jax")
  logger.addHandler(caplog.handler)
  caplog.set_level(logging.INFO, logger="roots_jax")
  yield caplog
  logger.removeHandler(caplog.handler)


@pytest.mark.parametrize("family", ["decoder", "encoder"])
def test_the_articles_snippet_as_written(family, pretrained, api_log):
  """Fine-tuned in place: predict works on the same object and gives the labels' own type; two
  examples are too few to hold any out, and the log says so; the run stays while the model
  lives."""
  PATH = pretrained[family]  # pylint: disable=invalid-name
  texts, labels = ["This is a positive sentence.", "This is a negative sentence."], [1, 0]
  # pylint: disable=g-import-not-at-top,redefined-outer-name,reimported,line-too-long
  # --- the articles' example, word for word ---
  from roots_jax import LanguageModel
  model = LanguageModel.from_pretrained(PATH)
  model.finetune(texts, labels)            # texts = ["This is a positive sentence.", ...], labels = [1, 0]
  prediction = model.predict("This is a great movie!")
  # ---
  assert type(prediction) is int and prediction in (0, 1)  # pylint: disable=unidiomatic-typecheck
  assert model.task == "classification" and model.labels.values == (0, 1)
  assert "no validation: none of the 2 examples can be held out" in api_log.text
  with open(os.path.join(model.workdir, "metrics.jsonl")) as f:
    assert not [r for r in map(json.loads, f) if r["split"] == "eval"]  # nothing scored
  assert model.step == 3 and os.path.isdir(model.workdir)  # 3 epochs of one batch
  assert model.predict(texts) == [model.labels.values[i]
                                  for i in model.class_probabilities(texts).argmax(-1)]


def test_finetune_holds_out_validation_and_saves(pretrained, tmp_path, api_log):
  """Without eval data a tenth of 20 examples is held out (both classes keep training examples),
  the run scores it as validation; bool labels come back as bools, also from the saved run, which
  the evaluate command scores like predict. The temporary run goes with the model."""
  words = ["ba", "ko", "mi", "tu", "ze", "lo", "pa"]
  texts = [" ".join(words[j % 7] for j in range(i, i + 3 + i % 4)) for i in range(20)]
  labels = [i % 3 == 0 for i in range(20)]
  lm = LanguageModel.from_pretrained(pretrained["encoder"])
  assert lm.finetune(texts, labels, steps=2, batch_size=8) is lm
  assert "held out 2 of the 20 examples for validation" in api_log.text
  split = {}
  for name in ("train", "validation"):
    with open(os.path.join(lm.workdir, "data", f"{name}.jsonl")) as f:
      split[name] = [json.loads(line) for line in f]
  assert len(split["validation"]) == 2 and {r["label"] for r in split["train"]} == {True, False}
  assert sorted(r["text"] for r in split["train"] + split["validation"]) == sorted(texts)
  examples = [{"text": t, "label": l} for t, l in zip(texts, labels)]
  again = api._hold_out(examples, "classification")  # pylint: disable=protected-access
  assert again[1] == split["validation"]  # deterministic
  with open(os.path.join(lm.workdir, "metrics.jsonl")) as f:
    assert [r["step"] for r in map(json.loads, f) if r["split"] == "eval"] == [1, 2]
  predictions = lm.predict(texts)
  assert all(type(p) is bool for p in predictions)  # pylint: disable=unidiomatic-typecheck

  saved = str(tmp_path / "saved")
  lm.save_pretrained(saved)
  loaded = LanguageModel.from_pretrained(saved)
  assert loaded.config.kind == "finetune" and loaded.step == lm.step
  assert loaded.predict(texts) == predictions
  np.testing.assert_array_equal(loaded.class_probabilities(texts), lm.class_probabilities(texts))
  assert evaluate_cli.main(["--workdir", saved]) == 0
  with open(os.path.join(saved, "results.json")) as f:
    accuracy = json.load(f)["metrics"]["accuracy"]
  held = [r["text"] for r in split["validation"]]
  assert accuracy == pytest.approx(metrics.accuracy(
      np.array(loaded.predict(held)), np.array([r["label"] for r in split["validation"]])))
  workdir = lm.workdir
  del lm
  gc.collect()
  assert not os.path.exists(workdir) and loaded.predict(texts) == predictions


def test_save_pretrained_writes_a_run_the_commands_read(gpt, tmp_path, capsys):
  """A pretrained model saves as a run of kind "converted" (parameters only) at its step, with
  its tokenizer; an earlier save is replaced, anything else refused."""
  saved = str(tmp_path / "gpt")
  gpt.save_pretrained(saved)
  assert sorted(os.listdir(saved)) == ["checkpoints", "config.json", "tokenizer"]
  again = LanguageModel.from_pretrained(saved)
  assert (again.config.kind, again.step, again.family) == ("converted", gpt.step, "decoder")
  jax.tree.map(np.testing.assert_array_equal, _host(again.params), _host(gpt.params))
  assert again.generate(PROMPTS, max_new_tokens=5) == gpt.generate(PROMPTS, max_new_tokens=5)
  capsys.readouterr()
  assert generate_cli.main(["--workdir", saved, "--prompt", PROMPTS[0],
                            "--max_new_tokens", "5"]) == 0
  assert gpt.generate(PROMPTS[0], max_new_tokens=5)[0] in capsys.readouterr().out
  assert evaluate_cli.main(["--workdir", saved]) == 0
  gpt.save_pretrained(saved)  # replaces the earlier save
  assert LanguageModel.from_pretrained(saved).step == gpt.step
  other = tmp_path / "other"
  other.mkdir()
  (other / "notes.txt").write_text("mine")
  with pytest.raises(ConfigError, match="exists and is not a roots_jax run"):
    gpt.save_pretrained(str(other))
  assert os.listdir(other) == ["notes.txt"]
  with pytest.raises(ConfigError, match="this model's own run"):
    gpt.save_pretrained(gpt.workdir)


def _padded_ids(lm, rows=2, length=9, seed=0):
  """Random ids [rows, length] and a mask whose second row is right-padded after 5 tokens."""
  rng = np.random.default_rng(seed)
  mask = np.ones((rows, length), np.int32)
  mask[1, 5:] = 0
  return rng.integers(5, lm.model_config.vocab_size, (rows, length)).astype(np.int32) * mask, mask


@pytest.mark.parametrize("family", ["decoder", "encoder", "encoder_decoder"])
def test_logits_and_forward_are_the_models_own(family, gpt, bert, t5):
  """One call for every family; its outputs are model.apply's with the family's own keywords
  (compared at real positions: padding differs)."""
  lm = {"decoder": gpt, "encoder": bert, "encoder_decoder": t5}[family]
  variables = {"params": _host(lm.params)}
  ids, mask = _padded_ids(lm)
  real = mask.astype(bool)
  if family == "decoder":
    out = lm.forward(ids, mask=mask)
    want = {"logits": lm.model.apply(variables, ids, segment_ids=mask),
            "hidden_states": lm.model.apply(variables, ids, segment_ids=mask, features=True)}
    logits = lm.logits(ids, mask=mask)
  elif family == "encoder":
    types = (np.arange(ids.shape[1]) >= 3).astype(np.int32)[None] * mask
    out = lm.forward(ids, mask=mask, token_types=types)
    mlm, nsp = lm.model.apply(variables, ids, token_types=types, segment_ids=mask)
    hidden, pooled = lm.model.apply(variables, ids, token_types=types, segment_ids=mask,
                                    features=True)
    want = {"logits": mlm, "hidden_states": hidden, "pooled": pooled, "nsp_logits": nsp}
    logits = lm.logits(ids, mask=mask, token_types=types)
  else:
    decoder_ids, decoder_mask = _padded_ids(lm, length=6, seed=1)
    out = lm.forward(ids, mask=mask, decoder_ids=decoder_ids, decoder_mask=decoder_mask)
    want = {"logits": lm.model.apply(variables, ids, decoder_ids, encoder_segment_ids=mask,
                                     decoder_segment_ids=decoder_mask),
            "encoder_hidden_states": lm.model.apply(variables, ids, encoder_segment_ids=mask,
                                                    method="encode")}
    logits = lm.logits(ids, mask=mask, decoder_ids=decoder_ids, decoder_mask=decoder_mask)
    real = decoder_mask.astype(bool)
  assert set(out) == set(want) | {"hidden_states"}
  for name, value in want.items():
    value = np.asarray(value)
    at = mask.astype(bool) if name == "encoder_hidden_states" else real
    got = out[name][at] if value.ndim == 3 else out[name]
    np.testing.assert_allclose(got, value[at] if value.ndim == 3 else value, rtol=1e-5,
                               atol=1e-5, err_msg=name)
  np.testing.assert_array_equal(logits, out["logits"])
  assert out["logits"].dtype == np.float32
  if family == "decoder":  # one row as [T]
    np.testing.assert_allclose(lm.logits(ids[0]), out["logits"][0], rtol=1e-5, atol=1e-5)


def _softmax(logits):
  logits = np.asarray(logits, np.float64)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_fill_mask_is_the_softmax_of_the_mlm_logits(bert):
  """Hugging Face's fill-mask output, scores and tokens from a numpy softmax over model.apply's
  masked-LM logits at the mask; several masks give a list per mask; targets restrict the
  candidates; the pipeline is the method."""
  tok = bert.tokenizer
  cls, sep, mask = (tok.piece_id(p) for p in ("[CLS]", "[SEP]", "[MASK]"))
  ids = [cls] + tok.encode("ba ko") + [mask] + tok.encode("tu ze") + [sep]
  at = ids.index(mask)
  mlm, _ = bert.model.apply({"params": _host(bert.params)}, np.array([ids]))
  probs = _softmax(np.asarray(mlm)[0, at])
  top = np.argsort(-probs)[:3]
  out = bert.fill_mask("ba ko [MASK] tu ze", top_k=3)
  assert [o["token"] for o in out] == top.tolist()
  np.testing.assert_allclose([o["score"] for o in out], probs[top], rtol=1e-5)
  filled = list(ids)
  filled[at] = int(top[0])
  assert out[0]["token_str"] == tok.decode([int(top[0])])
  assert out[0]["sequence"] == tok.decode(filled)
  targets = bert.fill_mask("ba ko [MASK] tu ze", targets=["mi", "lo", "pa"])
  candidates = [tok.encode(w)[0] for w in ("mi", "lo", "pa")]
  order = sorted(candidates, key=lambda t: -probs[t])
  assert [o["token"] for o in targets] == order
  np.testing.assert_allclose([o["score"] for o in targets], probs[order], rtol=1e-5)
  two = bert.fill_mask("[MASK] ko [MASK]", top_k=2)
  assert len(two) == 2 and all(len(x) == 2 and "[MASK]" in x[0]["sequence"] for x in two)
  pipe = roots_jax.pipeline("fill-mask", model=bert)
  assert pipe(["ba ko [MASK] tu ze", "[MASK] ko [MASK]"], top_k=3)[0] == out


def test_a_model_without_tokenizer_files_reads_ids(pretrained, bert, tmp_path, monkeypatch,
                                                   capsys):
  """An exported run whose tokenizer is not Hugging Face's has no tokenizer files: it loads,
  its logits on ids are the run's, it saves; what needs text says what to add."""
  monkeypatch.setenv("ROOTS_JAX_CACHE", str(tmp_path / "cache"))
  hf_dir = str(tmp_path / "hf")
  assert convert.export_hf(pretrained["encoder"], hf_dir)["tokenizer_files"] == []
  lm = LanguageModel.from_pretrained(hf_dir)
  assert lm.tokenizer is None
  ids, mask = _padded_ids(lm)
  np.testing.assert_allclose(lm.logits(ids, mask=mask), bert.logits(ids, mask=mask),
                             rtol=1e-5, atol=1e-5)
  for call in (lambda: lm.fill_mask("ba [MASK]"), lambda: lm.embed("ba"),
               lambda: lm.finetune(["a"], [1])):
    with pytest.raises(ConfigError, match=f"no tokenizer.*{hf_dir} has no tokenizer files: add "
                       "the model's \\(vocab.txt for BERT"):
      call()
  saved = str(tmp_path / "saved")
  lm.save_pretrained(saved)
  again = LanguageModel.from_pretrained(saved)
  np.testing.assert_array_equal(again.logits(ids, mask=mask), lm.logits(ids, mask=mask))
  gpt_dir = str(tmp_path / "gpt_hf")
  convert.export_hf(pretrained["decoder"], gpt_dir)
  capsys.readouterr()
  assert generate_cli.main(["--workdir", gpt_dir, "--prompt", "ba"]) == 2
  err = capsys.readouterr().err  # after the conversion's log line, one line
  assert err.splitlines()[-1].startswith("error: ") and "has no tokenizer files" in err
  assert err.count("error: ") == 1 and "Traceback" not in err
