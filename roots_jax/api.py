"""The Python API: a trained model as an object that generates, scores, embeds, fine-tunes and
predicts, for notebooks and scripts, on the run library (runs.load loads it, runs.finetune
fine-tunes it): no second way to load or train a run.

  lm = roots_jax.LanguageModel.from_pretrained("/tmp/run")       # a run, a checkpoint, an HF dir
  lm.generate("def add(a, b):", max_new_tokens=20)                # -> [continuation]
  lm.score(["x = 1"])                                             # -> [{"log_likelihood", ...}]
  lm.embed(["some text"])                                         # -> [N, D] float32
  ft = lm.finetune(texts, labels, kind="classification", steps=50)
  ft.predict(["new text"])                                        # -> ["label"]
  roots_jax.pipeline("text-generation", model=lm)("Hello", max_length=30)  # roots_jax.pipelines

Parameters are restored into a mesh built from the run's config (or, when that mesh does not
fit the devices here, a data-parallel one over all of them); batches are padded to a multiple
of the data-parallel size with padding rows that change nothing. Each call is jitted once per
(kind of call, input shapes, generation settings); prompt and text widths are rounded up to a
multiple of WIDTH_MULTIPLE so that varied inputs share compilations.
"""

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import weakref
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from roots_jax import config as config_lib
from roots_jax import decoding, progress, tasks
from roots_jax.cli import log_to_console
from roots_jax.decoding import GenerationConfig
from roots_jax.errors import ConfigError
from roots_jax.models.config import BOUNDED_POSITIONS
from roots_jax.models.heads import FinetuneModel
from roots_jax.runs import finetune as finetune_run, load as load_lib
from roots_jax.tasks.base import text_ids

log = logging.getLogger("roots_jax")

WIDTH_MULTIPLE = 16
# Prompts per jitted call of generate; texts per call of score, embed and predict.
GENERATE_BATCH = 32
BATCH = 64
# Hugging Face's default when neither max_length nor max_new_tokens is given.
DEFAULT_MAX_NEW_TOKENS = 20
# The task kinds finetune() takes texts and labels for.
FINETUNE_KINDS = ("classification", "regression", "seq2seq")


class LanguageModel:
  """A pretraining or fine-tuning run's model, tokenizer and parameters, ready to use.

  Attributes: workdir (the run), step (its checkpoint), family (decoder | encoder |
  encoder_decoder), task (the fine-tuned task kind, None for a pretrained model), config (the
  run's resolved config), tokenizer, model (a Flax module), params, mesh.
  """

  def __init__(self, loaded: load_lib.Loaded):
    self._loaded = loaded
    self.workdir, self.step, self.config = loaded.workdir, loaded.step, loaded.config
    self.tokenizer, self.model, self.params = loaded.tokenizer, loaded.model, loaded.params
    self.model_config = loaded.model_config
    self._family = loaded.family
    self.family = self._family.name
    self._task = loaded.task
    self.task = self._task.name if self._task else None
    self.labels = loaded.labels
    self.mesh = loaded.mesh
    self._batch_sharding = loaded.batch_sharding
    spec = loaded.batch_sharding.spec[0] if loaded.batch_sharding.spec else None
    axes = () if spec is None else (spec if isinstance(spec, tuple) else (spec,))
    self._row_multiple = int(np.prod([loaded.mesh.shape[a] for a in axes]))
    self._fns: dict[Any, Callable] = {}

  def __repr__(self):
    what = f"fine-tuned for {self.task}" if self.task else "pretrained"
    return f"LanguageModel({self.family}, {what}, {self.workdir} step {self.step})"

  # Loading.

  @classmethod
  def from_pretrained(cls, path: str, *, checkpoint: int | str | None = None) -> "LanguageModel":
    """Loads a roots_jax run directory (a pretraining run's newest checkpoint; a fine-tuning
    run's best/ one, else its newest), one of its `checkpoints/<step>` directories, or a Hugging
    Face model directory (converted once into a run under $ROOTS_JAX_CACHE, default
    ~/.cache/roots_jax). `checkpoint`: "best", "latest" or a step number."""
    return cls(load_lib.load(path, checkpoint=checkpoint))

  def _jit(self, key, make: Callable) -> Callable:
    """The jitted function `make()` cached under `key` (jit itself caches per input shape)."""
    if key not in self._fns:
      self._fns[key] = jax.jit(make())
    return self._fns[key]

  def _run(self, fn: Callable, batch: dict[str, np.ndarray], rows: int, *args):
    """fn(params, batch, *args) on `batch` padded with all-zero rows to a multiple of the
    data-parallel size; the first `rows` rows of every output, as numpy."""
    total = -(-rows // self._row_multiple) * self._row_multiple
    padded = {k: np.concatenate([v, np.zeros((total - rows, *v.shape[1:]), v.dtype)])
              for k, v in batch.items()}
    with self._loaded.context():
      out = fn(self.params, jax.device_put(padded, self._batch_sharding), *args)
    return jax.tree.map(lambda x: np.asarray(x)[:rows], jax.device_get(out))

  # Generation.

  def generate(self, prompts: str | Sequence[str], *, max_length: int | None = None,
               max_new_tokens: int | None = None, num_return_sequences: int = 1,
               do_sample: bool = False, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, repetition_penalty: float = 1.0, num_beams: int = 1,
               length_penalty: float = 1.0, early_stopping: bool = True, seed: int = 0,
               use_cache: bool = True) -> list[str] | list[list[str]]:
    """Continues each prompt: a str gives a list of num_return_sequences continuations, a list
    of str a list of such lists. As Hugging Face's generate: max_length counts the prompt (the
    longest, in tokens) plus the new tokens for a decoder, the decoder's start token plus the
    new tokens for an encoder-decoder; max_new_tokens, when given, wins; default 20 new tokens.
    A decoder's prompt starts with bos (where the tokenizer has one), an encoder-decoder's
    input ends with eos (T5); a fine-tuned seq2seq model reads its task's input layout."""
    texts, single = as_texts(prompts, "prompts")
    self.check_generates()
    encoded = [self._prompt_ids(t) for t in texts]
    longest = max(len(ids) for ids in encoded)
    if max_new_tokens is None:
      if max_length is None:
        max_new_tokens = DEFAULT_MAX_NEW_TOKENS
      else:
        used, what = (1, "the decoder's start token") if self._family.has_encoder else (
            longest, "the longest prompt")
        max_new_tokens = max_length - used
        if max_new_tokens < 1:
          raise ConfigError(f"max_length={max_length} leaves no room for new tokens after {what} "
                            f"({used} tokens): raise it or set max_new_tokens")
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_k=top_k,
        top_p=top_p, repetition_penalty=repetition_penalty, num_beams=num_beams,
        length_penalty=length_penalty, early_stopping=early_stopping,
        num_return_sequences=num_return_sequences, seed=seed)
    config.validate()
    self._check_positions(longest, max_new_tokens)
    # The seed is an argument of the compiled function, not part of its static config.
    static = dataclasses.replace(config, seed=0)
    fn = self._jit(("generate", static, use_cache), lambda: self._generate_fn(static, use_cache))
    prefix = self._family.prompt_prefix
    results = []
    for start in progress.track(range(0, len(encoded), GENERATE_BATCH), "generate",
                                unit="batch"):
      chunk = encoded[start:start + GENERATE_BATCH]
      width = _round_up(max(len(ids) for ids in chunk))
      tokens, segments = _left_padded(chunk, width)
      out = self._run(fn, {f"{prefix}inputs": tokens, f"{prefix}segment_ids": segments},
                      len(chunk), np.int32(seed))
      for row_tokens, row_lengths in zip(out.tokens, out.lengths):
        results.append([self._text(t[:n]) for t, n in zip(row_tokens, row_lengths)])
    return results[0] if single else results

  def _generate_fn(self, config: GenerationConfig, use_cache: bool) -> Callable:
    # The jitted functions hold no reference to self (which would keep it from being freed).
    model, family, eos_id = self.model, self._family, self.tokenizer.eos_id
    method = model.lm_logits if self.task else None
    pad_id = max(self.tokenizer.pad_id, 0)
    return lambda params, prompts, seed: decoding.generate(
        model, params, prompts, family=family, config=config, eos_id=eos_id, pad_id=pad_id,
        use_cache=use_cache, method=method, seed=seed)

  def check_generates(self) -> None:
    """ConfigError unless this model generates text (a decoder or encoder-decoder, pretrained
    or fine-tuned for seq2seq)."""
    if not self._family.generates:
      raise ConfigError("this is an encoder-only (BERT) model, which does not generate text: use "
                        "embed() for features, or finetune() it for classification or regression")
    if self.task and self.task != "seq2seq":
      raise ConfigError(f"this model is fine-tuned for {self.task}, which does not generate "
                        "text: use predict()")

  def _prompt_ids(self, text: str) -> list[int]:
    """A prompt's token ids: a fine-tuned seq2seq model's input as its task lays it out
    (roots_jax.tasks.seq2seq); else text [eos] (encoder-decoder) or [bos] text (decoder)."""
    tok = self.tokenizer
    if self._task:
      return self._task.prompt_ids(text, family=self._family, tokenizer=tok,
                                   max_len=self.config.task.max_len)
    ids = tok.encode(text)
    if self._family.has_encoder:
      return ids + [tok.eos_id]
    ids = ([tok.bos_id] if tok.bos_id >= 0 else []) + ids
    if not ids:
      raise ConfigError("an empty prompt needs a tokenizer with a bos token; this one has none")
    return ids

  def _check_positions(self, prompt_len: int, new_tokens: int) -> None:
    """Learned and sinusoidal positions stop at model.max_len (relative and RoPE do not)."""
    m = self.model_config
    if m.position not in BOUNDED_POSITIONS:
      return
    if self._family.has_encoder:
      if prompt_len > m.max_len or new_tokens > m.max_len:
        raise ConfigError(f"the longest input ({prompt_len} tokens) and the new tokens "
                          f"({new_tokens}) must each fit the model's max_len {m.max_len} "
                          f"({m.position} positions)")
    elif prompt_len + new_tokens > m.max_len:
      raise ConfigError(f"the longest prompt ({prompt_len} tokens) + {new_tokens} new tokens = "
                        f"{prompt_len + new_tokens} exceeds the model's max_len {m.max_len} "
                        f"({m.position} positions): shorten the prompt or lower max_new_tokens "
                        "(max_length)")

  def _text(self, ids) -> str:
    """Generated ids (eos included, if reached) as text."""
    ids = [int(i) for i in ids]
    if ids and ids[-1] == self.tokenizer.eos_id:
      ids = ids[:-1]
    return self.tokenizer.decode(ids)

  @property
  def continues_prompts(self) -> bool:
    """Whether generations continue their prompt's text: a pretrained decoder's do; an
    encoder-decoder's, or a fine-tuned seq2seq model's, are outputs of their own."""
    return self._family.generates and not self._family.has_encoder and not self.task

  # Scoring.

  def score(self, texts: str | Sequence[str],
            targets: str | Sequence[str] | None = None) -> list[dict[str, float]]:
    """Log-likelihoods under the language model, one dict per text: log_likelihood (natural
    log), num_tokens (the predicted tokens) and perplexity = exp(-log_likelihood / num_tokens).
    Decoder: [bos] text [eos], every token after the first predicted from those before it; with
    `targets`, [bos] text target [eos] scores only target [eos] (log p(target | text)).
    Encoder-decoder: needs targets: log p(target [eos] | text [eos])."""
    texts, single = as_texts(texts, "texts")
    if targets is not None:
      targets, _ = as_texts(targets, "targets")
      if len(targets) != len(texts):
        raise ConfigError(f"score got {len(texts)} texts but {len(targets)} targets")
    if not self._family.generates or self.task:
      what = f"a model fine-tuned for {self.task}" if self.task else "an encoder-only (BERT) model"
      raise ConfigError(f"score needs a pretrained language model (decoder or encoder-decoder), "
                        f"not {what}")
    if self._family.has_encoder and targets is None:
      raise ConfigError("an encoder-decoder model scores a target given an input: "
                        "score(texts, targets=[...])")
    rows = [self._score_ids(i, t, None if targets is None else targets[i])
            for i, t in enumerate(texts)]
    fn = self._jit("score", self._score_fn)
    results = []
    for start in range(0, len(rows), BATCH):
      chunk = rows[start:start + BATCH]
      sums = self._run(fn, self._score_batch(chunk), len(chunk))
      for (*_, weights), total in zip(chunk, sums):
        n = int(sum(weights))
        results.append({"log_likelihood": float(total), "num_tokens": n,
                        "perplexity": float(np.exp(-total / n)) if n else float("nan")})
    return results[0] if single else results

  def _score_ids(self, index: int, text: str, target: str | None):
    """(model inputs, encoder inputs or None, targets, weights) of one text, unpadded. Position
    i predicts ids[i + 1]; with a target only the target's tokens and the eos count."""
    tok = self.tokenizer
    if self._family.has_encoder:
      source = tok.encode(text) + [tok.eos_id]
      scored = tok.encode(target) + [tok.eos_id]
      self._check_text_length(index, max(len(source), len(scored)))
      return [0] + scored[:-1], source, scored, [1.0] * len(scored)
    context = ([tok.bos_id] if tok.bos_id >= 0 else []) + tok.encode(text)
    ids = context + (tok.encode(target) if target is not None else []) + [tok.eos_id]
    first = 0 if target is None else len(context) - 1
    weights = [float(i >= first) for i in range(len(ids) - 1)]
    self._check_text_length(index, len(ids) - 1)
    return ids[:-1], None, ids[1:], weights

  def _check_text_length(self, index: int, length: int) -> None:
    m = self.model_config
    if m.position in BOUNDED_POSITIONS and length > m.max_len:
      raise ConfigError(f"text {index} needs {length} positions with its special tokens, more "
                        f"than the model's max_len {m.max_len} ({m.position} positions): "
                        "shorten it")

  def _score_batch(self, rows) -> dict[str, np.ndarray]:
    width = _round_up(max(len(r[0]) for r in rows))
    batch = {"inputs": _right_padded([r[0] for r in rows], width),
             "segment_ids": _right_padded([[1] * len(r[0]) for r in rows], width),
             "targets": _right_padded([r[2] for r in rows], width),
             "weights": _right_padded([r[3] for r in rows], width, np.float32)}
    if self._family.has_encoder:
      width = _round_up(max(len(r[1]) for r in rows))
      batch["encoder_inputs"] = _right_padded([r[1] for r in rows], width)
      batch["encoder_segment_ids"] = _right_padded([[1] * len(r[1]) for r in rows], width)
    return batch

  def _score_fn(self) -> Callable:
    """(params, batch) -> [B] sums of the log-probabilities of the weighted targets."""
    model, has_encoder = self.model, self._family.has_encoder

    def fn(params, b):
      segments = b["segment_ids"]
      if has_encoder:
        encoder_segments = b["encoder_segment_ids"]
        logits = model.apply({"params": params}, b["encoder_inputs"], b["inputs"],
                             encoder_segment_ids=encoder_segments, decoder_segment_ids=segments,
                             encoder_positions=_positions(encoder_segments),
                             decoder_positions=_positions(segments))
      else:
        logits = model.apply({"params": params}, b["inputs"], positions=_positions(segments),
                             segment_ids=segments)
      logp = jax.nn.log_softmax(logits.astype(jnp.float32))                      # [B, T, V]
      picked = jnp.take_along_axis(logp, b["targets"][..., None], axis=-1)[..., 0]
      return (picked * b["weights"]).sum(-1)                                      # [B]
    return fn

  # Features.

  def embed(self, texts: str | Sequence[str], pooling: str | None = None) -> np.ndarray:
    """The frozen model as a feature extractor: [N, D] float32 (a str gives [D]). pooling:
    encoder (BERT) "first" (the pooled [CLS], default) or "mean"; decoder "last" (the last real
    token, the eos after the text; default) or "mean"; encoder-decoder "mean" of the encoder
    states (default) or "last" (the decoder's last token over the input shifted right). The
    inputs and the features are those a fine-tuned head reads (roots_jax.models.heads); texts
    longer than the model's max_len are truncated."""
    texts, single = as_texts(texts, "texts")
    pooling = pooling or self._family.embed_pooling
    fits = (self._family.default_pooling, "mean")
    if pooling not in fits:
      raise ConfigError(f"pooling={pooling!r} does not fit a {self.family} model: use "
                        f"{' or '.join(fits)}")
    cap = self.model_config.max_len
    width = min(_round_up(max(len(self.tokenizer.encode(t)) for t in texts) + 2), cap)
    rows = self._text_rows(texts, width)
    fn = self._jit(("embed", pooling), lambda: self._embed_fn(pooling))
    out = np.concatenate([self._run(fn, _stack(rows[i:i + BATCH]), len(rows[i:i + BATCH]))
                          for i in range(0, len(rows), BATCH)])
    return out.astype(np.float32)[0] if single else out.astype(np.float32)

  def _embed_fn(self, pooling: str) -> Callable:
    extractor = FinetuneModel(self.model_config, reads="pooled", num_outputs=1, pooling=pooling)
    backbone = (lambda p: p["backbone"]) if self.task else (lambda p: p)
    return lambda params, batch: extractor.apply(
        {"params": {"backbone": backbone(params)}}, batch, deterministic=True,
        method=FinetuneModel.features)

  def _text_rows(self, texts: Sequence[str], width: int) -> list[dict]:
    """Each text as the row a pooled head reads (a classification or regression task's,
    roots_jax.tasks), without labels."""
    rows = []
    for text in texts:
      ids, second = text_ids({"text": text}, self._family, self.tokenizer, width)
      rows.append(self._family.text_row(ids, width, "pooled", second))
    return rows

  # Fine-tuning.

  def finetune(self, texts: Sequence[str], labels: Sequence, *, kind: str = "classification",
               eval_texts: Sequence[str] | None = None, eval_labels: Sequence | None = None,
               workdir: str | None = None, steps: int = 100, batch_size: int = 16,
               learning_rate: float | None = None, frozen: bool = False,
               **overrides) -> "LanguageModel":
    """Fine-tunes this (pretrained) model as a fine-tuning run (roots_jax.runs.finetune) on
    these examples and returns the result (its best checkpoint by the validation metric). kind:
    classification (labels: class names or ints), regression (floats) or seq2seq (target
    texts). The run lives in `workdir` (default: a temporary directory, removed with the
    returned model), which keeps the examples as JSONL for evaluating or resuming it; without
    eval data the training examples are scored, once at the end. learning_rate defaults to
    configs/finetune/package.py's: 3e-4, or 3e-3 with a frozen backbone. task.max_len (and
    target_len) fit the data. `overrides` set any fine-tune config key, `__` for the dot:
    finetune__pooling="mean", train__eval_every=20."""
    if self.task:
      raise ConfigError(f"this model is already fine-tuned ({self.task}); fine-tune the "
                        f"pretrained model it came from ({self.config.init_from})")
    if kind not in FINETUNE_KINDS:
      raise ConfigError(f"kind={kind!r}: finetune takes one of {', '.join(FINETUNE_KINDS)}")
    task_kind = tasks.get(kind)
    task_kind.check_family(self._family)
    train = _examples(texts, labels, kind, "texts", "labels")
    evaluation = train if eval_texts is None else _examples(eval_texts, eval_labels, kind,
                                                            "eval_texts", "eval_labels")
    # The config first, so that a bad override fails before anything is written.
    config = config_lib.finetune_config()
    max_len, target_len = self._task_lengths(train + evaluation, kind)
    rate = learning_rate if learning_rate is not None else (3e-3 if frozen else 3e-4)
    values = {
        "init_from": os.path.join(self.workdir, "checkpoints", str(self.step)),
        "task.kind": kind, "task.source": "files", "task.max_len": max_len,
        "task.target_len": target_len, "finetune.mode": "frozen" if frozen else "full",
        "train.steps": steps, "train.batch_size": batch_size,
        "train.log_every": max(steps // 10, 1),
        "train.eval_every": steps if eval_texts is None else max(steps // 5, 1),
        "train.checkpoint_every": steps, "train.keep_checkpoints": 1,
        "optimizer.learning_rate": rate, "optimizer.warmup_steps": max(steps // 10, 1),
    }
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    config.lock()
    for key, value in values.items():
      config_lib.apply_override(config, f"{key}={value}")

    temporary = workdir is None
    workdir = tempfile.mkdtemp(prefix="roots_jax_finetune_") if temporary else os.path.abspath(
        workdir)
    try:
      os.makedirs(os.path.join(workdir, "data"), exist_ok=True)
      examples = {}
      for split, records in (("train", train), ("validation", evaluation)):
        path = os.path.join(workdir, "data", f"{split}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
          f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        config_lib.apply_override(config, f"task.{split}_files={path}")
        examples[split] = [task_kind.example(r, config.task, f"{split} example {i}")
                           for i, r in enumerate(records)]
      config_lib.apply_override(config, f"task.test_files={config.task.validation_files}")
      examples["test"] = examples["validation"]
      config_lib.validate(config)
      log_to_console()
      finetune_run.finetune(config, workdir, examples=examples)
      tuned = LanguageModel.from_pretrained(workdir)
    except BaseException:
      if temporary:
        shutil.rmtree(workdir, ignore_errors=True)
      raise
    if temporary:
      weakref.finalize(tuned, shutil.rmtree, workdir, True)
    return tuned

  def _task_lengths(self, examples: list[dict], kind: str) -> tuple[int, int]:
    """task.max_len and target_len that fit the examples' tokens (with their special tokens),
    up to the fine-tune config's defaults (128, 32) and the model's positions."""
    tok = self.tokenizer
    longest = max(len(tok.encode(e["text"])) for e in examples)
    max_len = min(_round_up(longest + 3), 128)
    target_len = 2
    if kind == "seq2seq":
      target_len = min(_round_up(max(len(tok.encode(e["label"])) for e in examples) + 1, 8), 32)
    m = self.model_config
    if m.position in BOUNDED_POSITIONS:
      # A decoder's seq2seq rows hold the targets after the input.
      targets = tasks.get(kind).row_length(self._family, max_len, target_len) - max_len
      max_len = min(max_len, m.max_len - targets)
    return max_len, target_len

  def predict(self, texts: str | Sequence[str]) -> list:
    """A fine-tuned model's predictions: class names (str), scores (float) or generated texts
    (greedy, up to task.target_len tokens, as the evaluate driver generates them)."""
    texts, single = as_texts(texts, "texts")
    if self.task is None:
      raise ConfigError("predict needs a fine-tuned model: call finetune() first, or load a "
                        "fine-tuning run")
    if self.task == "seq2seq":
      out = self.generate(texts, max_new_tokens=self.config.task.target_len)
      predictions = [o[0] for o in out]
    elif self.task == "classification":
      probs = self.class_probabilities(texts)
      predictions = [self.labels.names[i] for i in probs.argmax(-1)]
    elif self.task == "regression":
      predictions = [float(x) for x in self._head_outputs(texts)]
    else:
      raise ConfigError(f"predict does not support {self.task}; score the run with "
                        "python -m roots_jax.evaluate")
    return predictions[0] if single else predictions

  def class_probabilities(self, texts: Sequence[str]) -> np.ndarray:
    """A fine-tuned classifier's class probabilities [N, C], classes in `labels.names` order."""
    texts, _ = as_texts(texts, "texts")
    if self.task != "classification":
      raise ConfigError("class_probabilities needs a model fine-tuned for classification")
    logits = self._head_outputs(texts).astype(np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return (probs / probs.sum(-1, keepdims=True)).astype(np.float32)

  def _head_outputs(self, texts: Sequence[str]) -> np.ndarray:
    """The fine-tuned head's outputs: logits [N, C] or scores [N]."""
    rows = self._text_rows(texts, self.config.task.max_len)
    model = self.model
    fn = self._jit("head", lambda: lambda params, batch: model.apply({"params": params}, batch))
    return np.concatenate([self._run(fn, _stack(rows[i:i + BATCH]), len(rows[i:i + BATCH]))
                           for i in range(0, len(rows), BATCH)])


# Inputs.


def as_texts(value, name: str) -> tuple[list[str], bool]:
  """(list of texts, whether a single str was given); ConfigError naming `name` otherwise."""
  if isinstance(value, str):
    return [value], True
  if isinstance(value, np.ndarray) and value.ndim == 1:
    value = value.tolist()
  if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
    return list(value), False
  empty = " (empty)" if isinstance(value, (list, tuple)) and not value else ""
  raise ConfigError(f"{name} must be a str or a non-empty list of str; got "
                    f"{type(value).__name__}{empty}")


def _examples(texts, labels, kind: str, texts_name: str, labels_name: str) -> list[dict]:
  """Fine-tuning examples as the task files hold them: {"text", "label"}."""
  texts, _ = as_texts(texts, texts_name)
  if isinstance(labels, np.ndarray):
    labels = labels.tolist()  # numpy scalars as Python's
  if labels is None or isinstance(labels, str) or len(labels) != len(texts):
    got = "none" if labels is None else (1 if isinstance(labels, str) else len(labels))
    raise ConfigError(f"{labels_name} must be a list with one label per text: {len(texts)} "
                      f"{texts_name} but {got} {labels_name}")
  for i, label in enumerate(labels):
    ok = {"classification": isinstance(label, (str, int)) and not isinstance(label, bool),
          "regression": isinstance(label, (int, float)) and not isinstance(label, bool),
          "seq2seq": isinstance(label, str)}[kind]
    if not ok:
      want = {"classification": "a class name (str or int)", "regression": "a number",
              "seq2seq": "a target text"}[kind]
      raise ConfigError(f"{labels_name}[{i}] is {label!r}: a {kind} label is {want}")
  return [{"text": t, "label": l} for t, l in zip(texts, labels)]


def _round_up(n: int, multiple: int = WIDTH_MULTIPLE) -> int:
  return -(-max(n, 1) // multiple) * multiple


def _left_padded(rows: list[list[int]], width: int) -> tuple[np.ndarray, np.ndarray]:
  """tokens, segment ids [B, width], each row at the right end (generation's prompt layout)."""
  tokens = np.zeros((len(rows), width), np.int32)
  segments = np.zeros((len(rows), width), np.int32)
  for i, ids in enumerate(rows):
    tokens[i, width - len(ids):] = ids
    segments[i, width - len(ids):] = 1
  return tokens, segments


def _right_padded(rows: list[list], width: int, dtype=np.int32) -> np.ndarray:
  out = np.zeros((len(rows), width), dtype)
  for i, values in enumerate(rows):
    out[i, :len(values)] = values
  return out


def _stack(rows: list[dict]) -> dict[str, np.ndarray]:
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def _positions(segments: jax.Array) -> jax.Array:
  """[B, T] positions of right-padded rows (0 on padding)."""
  return jnp.where(segments > 0, jnp.arange(segments.shape[1])[None], 0)
