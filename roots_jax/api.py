"""The Python API: a trained model as an object that generates, scores, embeds, fills masks,
fine-tunes and predicts, for notebooks and scripts, on the run library (runs.load loads and saves
it, runs.finetune fine-tunes it): no second way to load or train a run.

  lm = roots_jax.LanguageModel.from_pretrained("/tmp/run")       # a run, a checkpoint, an HF dir
  lm.generate("def add(a, b):", max_new_tokens=20)                # -> [continuation]
  lm.score(["x = 1"])                                             # -> [{"log_likelihood", ...}]
  lm.embed(["some text"])                                         # -> [N, D] float32
  lm.logits(ids)                                                  # -> [B, T, V] (forward: more)
  bert.fill_mask("The [MASK] sat.")                               # -> [{"score", "token", ...}]
  lm.finetune(texts, labels, kind="classification", steps=50)     # in place; returns lm
  lm.predict(["new text"])                                        # -> [label], typed as given
  qa.predict({"question": "...", "context": "..."})  # extractive_qa: {"answer", "score", ...}
  lm.save_pretrained("/tmp/tuned")                                # a run from_pretrained reads
  roots_jax.pipeline("text-generation", model=lm)("Hello", max_length=30)  # roots_jax.pipelines

Parameters are restored into a mesh built from the run's config (or, when that mesh does not
fit the devices here, a data-parallel one over all of them); batches are padded to a multiple
of the data-parallel size with padding rows that change nothing. Each call is jitted once per
(kind of call, input shapes, generation settings); prompt and text widths are rounded up to a
multiple of evals.lm_rows.WIDTH_MULTIPLE so that varied inputs share compilations.
"""

import collections
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
from roots_jax.data import chat_template, qa_spans
from roots_jax.decoding import GenerationConfig
from roots_jax.errors import ConfigError
from roots_jax.evals import lm_rows
from roots_jax.models.config import BOUNDED_POSITIONS
from roots_jax.models.heads import FinetuneModel
from roots_jax.runs import finetune as finetune_run, load as load_lib, quantized
from roots_jax.tasks.base import text_ids

log = logging.getLogger("roots_jax")

# Prompts per jitted call of generate; texts per call of score, embed and predict.
GENERATE_BATCH = 32
BATCH = 64
# Hugging Face's default when neither max_length nor max_new_tokens is given.
DEFAULT_MAX_NEW_TOKENS = 20
# The task kinds finetune() takes texts and labels for.
FINETUNE_KINDS = ("classification", "regression", "seq2seq")
# Without eval data, finetune() holds out this share of the examples for validation (as
# scikit-learn's train_test_split and Hugging Face's examples do), when it has at least
# HOLD_OUT_MIN of them.
HOLD_OUT = 0.1
HOLD_OUT_MIN = 10
# finetune()'s default length in passes over the examples (Hugging Face Trainer's
# num_train_epochs).
EPOCHS = 3
# What fill_mask() fills (BERT's mask token).
MASK = "[MASK]"


class LanguageModel:
  """A pretraining or fine-tuning run's model, tokenizer and parameters, ready to use.

  Attributes: workdir (the run), step (its checkpoint), family (decoder | encoder |
  encoder_decoder), task (the fine-tuned task kind, None for a pretrained model), config (the
  run's resolved config), tokenizer (None for a model without one: it reads token ids only),
  model (a Flax module), params, mesh.
  """

  def __init__(self, loaded: load_lib.Loaded):
    self._use(loaded)

  def _use(self, loaded: load_lib.Loaded) -> None:
    """Makes this object the model of `loaded` (loading, and fine-tuning in place)."""
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
    self._row_multiple = lm_rows.data_parallel_size(loaded.batch_sharding)
    self._fns: dict[Any, Callable] = {}
    self._chat_format = None

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

  def save_pretrained(self, directory: str) -> None:
    """Writes this model as a run in `directory` (config.json with its kind, the tokenizer,
    the checkpoint; a fine-tuned model's labels and examples) that from_pretrained and the
    commands (python -m roots_jax.evaluate / generate --workdir DIRECTORY) read. An earlier
    run there is replaced; any other non-empty directory is refused."""
    load_lib.save(self._loaded, self.params, directory)

  def _needs_text(self) -> None:
    """ConfigError when this model has no tokenizer (what to add, and what works without)."""
    if self.tokenizer is None:
      raise ConfigError(f"this model has no tokenizer, so it takes token ids only (logits, "
                        f"forward): {self._loaded.no_tokenizer}")

  def _jit(self, key, make: Callable) -> Callable:
    """The jitted function `make()` cached under `key` (jit itself caches per input shape)."""
    if key not in self._fns:
      self._fns[key] = jax.jit(make())
    return self._fns[key]

  def _run(self, fn: Callable, batch: dict[str, np.ndarray], rows: int, *args):
    """fn(params, batch, *args) on `batch` padded with all-zero rows to a multiple of the
    data-parallel size; the first `rows` rows of every output, as numpy."""
    total = lm_rows.round_up(rows, self._row_multiple)
    return lm_rows.run_padded(fn, self.params, batch, rows, total, self._batch_sharding,
                              self._loaded.context, *args)

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
    input ends with eos (T5); a fine-tuned seq2seq model reads its task's input layout, a
    chat-tuned one each prompt as a user's message (see chat())."""
    texts, single = as_texts(prompts, "prompts")
    self.check_generates()
    self._needs_text()
    results = self._generate_ids(
        [self._prompt_ids(t) for t in texts], max_length=max_length,
        max_new_tokens=max_new_tokens, num_return_sequences=num_return_sequences,
        do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
        repetition_penalty=repetition_penalty, num_beams=num_beams,
        length_penalty=length_penalty, early_stopping=early_stopping, seed=seed,
        use_cache=use_cache, stop_id=self._chat().end_of_turn_id if self.task == "chat" else None)
    return results[0] if single else results

  def chat(self, messages: str | Sequence[dict[str, str]], **generation) -> str | list[str]:
    """The assistant's reply to a conversation: a list of {"role": "system" | "user" |
    "assistant", "content"} (a str: one user message). It is rendered with the chat template a
    chat-tuned run trained with (another model's: its tokenizer's, else the built-in one; see
    roots_jax.data.chat_template) and the generation prompt, tokenized as the training rows
    were, and continued up to the end of the turn (the template's end-of-turn token: eos for
    the built-in one). `generation`: generate()'s keyword arguments; num_return_sequences > 1
    gives a list of replies."""
    if isinstance(messages, str):
      messages = [{"role": "user", "content": messages}]
    self.check_generates()
    if self.task not in (None, "chat"):
      raise ConfigError(f"chat needs a pretrained or chat-tuned model; this one is fine-tuned for "
                        f"{self.task}: use generate()")
    self._needs_text()
    ids = self.chat_ids(messages)
    replies = self._generate_ids([ids], stop_id=self._chat().end_of_turn_id,
                                 **generation)[0]
    return replies if len(replies) > 1 else replies[0]

  def chat_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
    """The token ids chat() continues for `messages` (a chat-tuned run's: its task.max_len
    last ones, as its evaluation rows)."""
    max_len = self.config.task.max_len if self.task == "chat" else None
    return tasks.get("chat").chat_ids(list(messages), family=self._family,
                                      chat=self._chat(), max_len=max_len)

  def _chat(self) -> chat_template.ChatFormat:
    """The chat template (with this tokenizer) chat() renders with."""
    if self._chat_format is None:
      template = self.config.task.chat_template if self.task == "chat" else ""
      self._chat_format = chat_template.ChatFormat(
          chat_template.resolve(template, self.tokenizer), self.tokenizer)
    return self._chat_format

  def _generate_ids(self, encoded: list[list[int]], *, max_length: int | None = None,
                    max_new_tokens: int | None = None, num_return_sequences: int = 1,
                    do_sample: bool = False, temperature: float = 1.0, top_k: int = 0,
                    top_p: float = 1.0, repetition_penalty: float = 1.0, num_beams: int = 1,
                    length_penalty: float = 1.0, early_stopping: bool = True, seed: int = 0,
                    use_cache: bool = True, stop_id: int | None = None) -> list[list[str]]:
    """Each prompt's (token ids') continuations as text (see generate), each ending at
    `stop_id` (default eos)."""
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
    stop_id = self.tokenizer.eos_id if stop_id is None else stop_id
    fn = self._jit(("generate", static, use_cache, stop_id),
                   lambda: self._generate_fn(static, use_cache, stop_id))
    prefix = self._family.prompt_prefix
    results = []
    for start in progress.track(range(0, len(encoded), GENERATE_BATCH), "generate",
                                unit="batch"):
      chunk = encoded[start:start + GENERATE_BATCH]
      width = lm_rows.round_up(max(len(ids) for ids in chunk))
      tokens, segments = lm_rows.left_padded(chunk, width)
      out = self._run(fn, {f"{prefix}inputs": tokens, f"{prefix}segment_ids": segments},
                      len(chunk), np.int32(seed))
      for row_tokens, row_lengths in zip(out.tokens, out.lengths):
        results.append([self._text(t[:n], stop_id) for t, n in zip(row_tokens, row_lengths)])
    return results

  def _generate_fn(self, config: GenerationConfig, use_cache: bool, eos_id: int) -> Callable:
    # The jitted functions hold no reference to self (which would keep it from being freed).
    model, family = self.model, self._family
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
    if self.task and self.task not in ("seq2seq", "chat"):
      raise ConfigError(f"this model is fine-tuned for {self.task}, which does not generate "
                        "text: use predict()")

  def _prompt_ids(self, text: str) -> list[int]:
    """A prompt's token ids: a fine-tuned seq2seq model's input as its task lays it out
    (roots_jax.tasks.seq2seq); else text [eos] (encoder-decoder) or [bos] text (decoder)."""
    tok = self.tokenizer
    if self.task == "chat":
      return self.chat_ids([{"role": "user", "content": text}])
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

  def _text(self, ids, stop_id: int) -> str:
    """Generated ids (eos included, if reached) as text."""
    ids = [int(i) for i in ids]
    if ids and ids[-1] == stop_id:
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
    self._needs_text()
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
    encoder_width = lm_rows.round_up(max(len(r[1]) for r in rows)) if (
        self._family.has_encoder) else None
    return lm_rows.scored_batch(rows, lm_rows.round_up(max(len(r[0]) for r in rows)),
                                encoder_width)

  def _score_fn(self) -> Callable:
    """(params, batch) -> [B] sums of the log-probabilities of the weighted targets."""
    scores = lm_rows.target_scores(self.model, self._family.has_encoder)
    return lambda params, batch: scores(params, batch)[0]

  # Features.

  def embed(self, texts: str | Sequence[str], pooling: str | None = None) -> np.ndarray:
    """The frozen model as a feature extractor: [N, D] float32 (a str gives [D]). pooling:
    encoder (BERT) "first" (the pooled [CLS], default) or "mean"; decoder "last" (the last real
    token, the eos after the text; default) or "mean"; encoder-decoder "mean" of the encoder
    states (default) or "last" (the decoder's last token over the input shifted right). The
    inputs and the features are those a fine-tuned head reads (roots_jax.models.heads); texts
    longer than the model's max_len are truncated."""
    texts, single = as_texts(texts, "texts")
    self._needs_text()
    pooling = pooling or self._family.embed_pooling
    fits = (self._family.default_pooling, "mean")
    if pooling not in fits:
      raise ConfigError(f"pooling={pooling!r} does not fit a {self.family} model: use "
                        f"{' or '.join(fits)}")
    cap = self.model_config.max_len
    width = min(lm_rows.round_up(max(len(self.tokenizer.encode(t)) for t in texts) + 2), cap)
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

  # Token ids in, logits and hidden states out.

  def logits(self, ids, *, mask=None, token_types=None, decoder_ids=None,
             decoder_mask=None) -> np.ndarray:
    """A pretrained model's vocabulary logits, float32 [B, T, V] ([T, V] for 1-D ids): the
    decoder's next-token logits over `ids`, the encoder's (BERT's) masked-LM logits over `ids`,
    the encoder-decoder's over `decoder_ids` given the input `ids`. Arguments as forward's."""
    if self.task:
      raise ConfigError(f"logits are a pretrained model's language-model logits; this one is "
                        f"fine-tuned for {self.task}: use predict(), or forward() for its hidden "
                        "states")
    return self.forward(ids, mask=mask, token_types=token_types, decoder_ids=decoder_ids,
                        decoder_mask=decoder_mask)["logits"]

  def forward(self, ids, *, mask=None, token_types=None, decoder_ids=None,
              decoder_mask=None) -> dict[str, np.ndarray]:
    """The model on token ids, the same call for every family: ids [B, T] (or [T]) int, with
    mask (1 real, 0 padding; rows right-padded; default all real), token_types (BERT's sentence
    A/B: 0/1) and, for an encoder-decoder, decoder_ids and decoder_mask [B, T']. Returns float32
    numpy arrays: hidden_states [B, T, D] (the final layer's, after its norm; an encoder-
    decoder's decoder), logits [B, T, V] (a pretrained model), and by family
    encoder_hidden_states [B, T, D] (encoder-decoder) or pooled [B, D] and nsp_logits [B, 2]
    (encoder)."""
    if self.task and self._family.has_encoder and "decoder" not in self.params["backbone"]:
      raise ConfigError(f"this model is fine-tuned for {self.task} on its encoder alone, without "
                        "a decoder to run: use predict(), or embed() for its features")
    single = np.ndim(ids) == 1
    batch = {"ids": self._ids(ids, "ids"), "mask": None, "token_types": None}
    batch["mask"] = self._ids(mask, "mask", like=batch["ids"], default=1)
    if self._family.has_encoder:
      if decoder_ids is None:
        raise ConfigError("an encoder-decoder model reads ids (the input) and decoder_ids: "
                          "give decoder_ids=")
      batch["decoder_ids"] = self._ids(decoder_ids, "decoder_ids")
      batch["decoder_mask"] = self._ids(decoder_mask, "decoder_mask", like=batch["decoder_ids"],
                                        default=1)
    elif decoder_ids is not None or decoder_mask is not None:
      raise ConfigError(f"decoder_ids are an encoder-decoder's; a {self.family} model reads ids")
    if self._family.name == "encoder":
      batch["token_types"] = self._ids(token_types, "token_types", like=batch["ids"], default=0)
    elif token_types is not None:
      raise ConfigError(f"token_types are BERT's (an encoder's); a {self.family} model has none")
    batch = {k: v for k, v in batch.items() if v is not None}
    fn = self._jit("forward", self._forward_fn)
    out = self._run(fn, batch, len(batch["ids"]))
    return {k: (v[0] if single else v).astype(np.float32) for k, v in out.items()}

  def _ids(self, value, name: str, *, like: np.ndarray | None = None,
           default: int | None = None) -> np.ndarray:
    """`value` as int32 [B, T] (a 1-D one as one row); None: `default` everywhere, shaped
    `like`. ConfigError for another shape, or token ids outside the vocabulary."""
    if value is None:
      return np.full(like.shape, default, np.int32)
    array = np.asarray(value)
    if array.ndim == 1:
      array = array[None]
    if array.ndim != 2 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
      raise ConfigError(f"{name} must be a non-empty [batch, length] (or [length]) array of "
                        f"ints; got shape {array.shape} of {array.dtype}")
    if like is not None and array.shape != like.shape:
      raise ConfigError(f"{name} has shape {array.shape}, not that of its ids {like.shape}")
    vocab = self.model_config.vocab_size
    if name.endswith("ids") and (array.min() < 0 or array.max() >= vocab):
      raise ConfigError(f"{name} holds ids outside the vocabulary 0..{vocab - 1}")
    return array.astype(np.int32)

  def _forward_fn(self) -> Callable:
    """(params, batch) -> forward's outputs, from the stack (a fine-tuned model's backbone)."""
    stack = quantized.quantized_like(self.config, self._family.build(self.model_config))
    name, lm = self._family.name, not self.task
    backbone = (lambda p: p["backbone"]) if self.task else (lambda p: p)

    def fn(params, b):
      variables, segments = {"params": backbone(params)}, b["mask"]
      positions = lm_rows.positions(segments)
      if name == "encoder":
        args = dict(token_types=b["token_types"], positions=positions, segment_ids=segments)
        hidden, pooled = stack.apply(variables, b["ids"], features=True, **args)
        out = {"hidden_states": hidden, "pooled": pooled}
        if lm:
          out["logits"], out["nsp_logits"] = stack.apply(variables, b["ids"], **args)
        return out
      if name == "decoder":
        args = dict(positions=positions, segment_ids=segments)
        out = {"hidden_states": stack.apply(variables, b["ids"], features=True, **args)}
        if lm:
          out["logits"] = stack.apply(variables, b["ids"], **args)
        return out
      encoded = stack.apply(variables, b["ids"], encoder_segment_ids=segments,
                            encoder_positions=positions, method="encode")
      args = dict(encoder_segment_ids=segments, decoder_segment_ids=b["decoder_mask"],
                  decoder_positions=lm_rows.positions(b["decoder_mask"]), method="decode")
      out = {"encoder_hidden_states": encoded,
             "hidden_states": stack.apply(variables, encoded, b["decoder_ids"], features=True,
                                          **args)}
      if lm:
        out["logits"] = stack.apply(variables, encoded, b["decoder_ids"], **args)
      return out
    return fn

  # Masked tokens (an encoder's MLM head).

  def fill_mask(self, texts: str | Sequence[str], *, top_k: int = 5,
                targets: str | Sequence[str] | None = None) -> list:
    """A pretrained encoder's (BERT's) top_k guesses for each [MASK] in a text, as Hugging
    Face's fill-mask pipeline gives them: [{"score", "token", "token_str", "sequence"}, ...]
    best first, scores the softmax of the masked-LM logits at the mask (a list of such lists for
    a text with several masks, and one result per text for a list). `targets`: score these
    words (their first token each) instead of the whole vocabulary."""
    texts, single = as_texts(texts, "texts")
    self.check_fills_masks()
    self._needs_text()
    tok = self.tokenizer
    candidates = None
    if targets is not None:
      words, _ = as_texts(targets, "targets")
      candidates = tuple(dict.fromkeys(self._target_id(w) for w in words))
    k = min(top_k, len(candidates) if candidates else self.model_config.vocab_size)
    if k < 1:
      raise ConfigError(f"top_k must be at least 1; got {top_k}")
    rows = [self._masked_ids(i, text) for i, text in enumerate(texts)]
    fn = self._jit(("fill_mask", k, candidates), lambda: self._fill_mask_fn(k, candidates))
    mask_id = tok.piece_id(MASK)
    results = []
    for start in range(0, len(rows), BATCH):
      chunk = rows[start:start + BATCH]
      width = lm_rows.round_up(max(len(r) for r in chunk))
      batch = {"ids": lm_rows.right_padded(chunk, width),
               "mask": lm_rows.right_padded([[1] * len(r) for r in chunk], width),
               "token_types": np.zeros((len(chunk), width), np.int32)}
      scores, ids = self._run(fn, batch, len(chunk))
      for row, row_scores, row_ids in zip(chunk, scores, ids):
        masks = [i for i, t in enumerate(row) if t == mask_id]
        found = [[self._filled(row, at, int(t), float(p)) for p, t in zip(row_scores[at],
                                                                          row_ids[at])]
                 for at in masks]
        results.append(found[0] if len(found) == 1 else found)
    return results[0] if single else results

  def check_fills_masks(self) -> None:
    """ConfigError unless this is a pretrained encoder (BERT), whose MLM head fills masks."""
    if self._family.name != "encoder" or self.task:
      what = f"fine-tuned for {self.task}" if self.task else f"a {self.family} model"
      raise ConfigError(f"fill-mask needs a pretrained encoder (BERT) with its masked-LM head; "
                        f"this model is {what}")

  def _masked_ids(self, index: int, text: str) -> list[int]:
    """[CLS] text [SEP] with the mask id for each [MASK] (the text around it encoded apart,
    without its surrounding spaces, as Hugging Face splits out special tokens)."""
    tok = self.tokenizer
    parts = text.split(MASK)
    if len(parts) < 2:
      raise ConfigError(f"text {index} has no {MASK}: fill_mask fills the {MASK} tokens of a "
                        "text")
    ids = [tok.piece_id("[CLS]")]
    for j, part in enumerate(parts):
      ids += ([tok.piece_id(MASK)] if j else []) + tok.encode(part.strip())
    ids.append(tok.piece_id("[SEP]"))
    self._check_text_length(index, len(ids))
    return ids

  def _target_id(self, word: str) -> int:
    ids = self.tokenizer.encode(word)
    if not ids:
      raise ConfigError(f"target {word!r} has no tokens")
    return ids[0]

  def _filled(self, row: list[int], at: int, token: int, score: float) -> dict:
    """One guess in Hugging Face's form: the text with the mask at `at` filled (any other masks
    shown as [MASK]; [CLS] and [SEP] left out, unlike Hugging Face's for several masks)."""
    tok, mask_id = self.tokenizer, self.tokenizer.piece_id(MASK)
    pieces, run = [], []
    for i, t in enumerate(row[1:-1], 1):
      if i == at:
        run.append(token)
      elif t == mask_id:
        pieces += [tok.decode(run), MASK]
        run = []
      else:
        run.append(t)
    pieces.append(tok.decode(run))
    text = tok.id_to_piece(token) if tok.is_special(token) else tok.decode([token])
    return {"score": score, "token": token, "token_str": text,
            "sequence": " ".join(p for p in pieces if p)}

  def _fill_mask_fn(self, k: int, candidates: tuple[int, ...] | None) -> Callable:
    """(params, batch) -> the top k probabilities [B, T, k] and their token ids [B, T, k]."""
    forward = self._forward_fn()

    def fn(params, batch):
      probs = jax.nn.softmax(forward(params, batch)["logits"].astype(jnp.float32))  # [B, T, V]
      if candidates is not None:
        probs = probs[..., jnp.array(candidates)]                                   # [B, T, C]
      values, index = jax.lax.top_k(probs, k)
      ids = index if candidates is None else jnp.array(candidates)[index]
      return values, ids
    return fn

  # Fine-tuning.

  def finetune(self, texts: Sequence[str], labels: Sequence, *, kind: str = "classification",
               eval_texts: Sequence[str] | None = None, eval_labels: Sequence | None = None,
               workdir: str | None = None, steps: int | None = None, batch_size: int = 16,
               learning_rate: float | None = None, frozen: bool = False,
               **overrides) -> "LanguageModel":
    """Fine-tunes this (pretrained) model in place, as a fine-tuning run (roots_jax.runs.finetune)
    on these examples, and returns it: afterwards it is the fine-tuned model (its best checkpoint
    by the validation metric, else its last). kind: classification (labels: class names, ints or
    bools; predict returns them as given), regression (numbers) or seq2seq (target texts).
    Without eval data a deterministic HOLD_OUT share of the examples (at least one, from
    HOLD_OUT_MIN examples on) is held out for validation; with fewer there is none, and a log
    line says so. The run lives in `workdir` (default: a temporary directory that lives as long
    as this object; save_pretrained keeps it), which keeps the examples as JSONL for evaluating
    or resuming it. steps default to EPOCHS passes over the training examples. learning_rate
    defaults to configs/finetune/package.py's: 3e-4, or 3e-3 with a frozen backbone.
    task.max_len (and target_len) fit the data. `overrides` set any fine-tune config key, `__`
    for the dot: finetune__pooling="mean", train__eval_every=20."""
    if self.task:
      raise ConfigError(f"this model is already fine-tuned ({self.task}); fine-tune the "
                        f"pretrained model it came from ({self.config.init_from})")
    self._needs_text()
    if kind not in FINETUNE_KINDS:
      raise ConfigError(f"kind={kind!r}: finetune takes one of {', '.join(FINETUNE_KINDS)}")
    task_kind = tasks.get(kind)
    task_kind.check_family(self._family)
    train = _examples(texts, labels, kind, "texts", "labels")
    if eval_texts is None:
      train, evaluation = _hold_out(train, kind)
    else:
      evaluation = _examples(eval_texts, eval_labels, kind, "eval_texts", "eval_labels")
    if steps is None:
      steps = EPOCHS * -(-len(train) // batch_size)
    # The config first, so that a bad override fails before anything is written.
    config = config_lib.finetune_config()
    max_len, target_len = self._task_lengths(train + evaluation, kind)
    rate = learning_rate if learning_rate is not None else (3e-3 if frozen else 3e-4)
    values = {
        "init_from": os.path.join(self.workdir, "checkpoints", str(self.step)),
        "task.kind": kind, "task.source": "files", "task.max_len": max_len,
        "task.target_len": target_len, "finetune.mode": "frozen" if frozen else "full",
        "train.steps": steps, "train.batch_size": batch_size,
        "train.log_every": max(steps // 10, 1), "train.eval_every": max(steps // 5, 1),
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
      examples = {"validation": []}
      for split, records in (("train", train), ("validation", evaluation)):
        if not records:
          continue
        path = os.path.join(workdir, "data", f"{split}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
          f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        config_lib.apply_override(config, f"task.{split}_files={path}")
        examples[split] = [task_kind.example(r, config.task, f"{split} example {i}")
                           for i, r in enumerate(records)]
      if evaluation:
        config_lib.apply_override(config, f"task.test_files={config.task.validation_files}")
        examples["test"] = examples["validation"]
      config_lib.validate(config)
      log_to_console()
      if eval_texts is None and evaluation:
        log.info("held out %d of the %d examples for validation (pass eval_texts and eval_labels "
                 "to choose them)", len(evaluation), len(train) + len(evaluation))
      elif eval_texts is None:
        log.info("no validation: none of the %d examples can be held out (it takes %d or more, "
                 "each class keeping one); the model is the one after the last step",
                 len(train), HOLD_OUT_MIN)
      finetune_run.finetune(config, workdir, examples=examples)
      loaded = load_lib.load(workdir)
    except BaseException:
      if temporary:
        shutil.rmtree(workdir, ignore_errors=True)
      raise
    self._use(loaded)
    if temporary:
      weakref.finalize(self, shutil.rmtree, workdir, True)
    return self

  def _task_lengths(self, examples: list[dict], kind: str) -> tuple[int, int]:
    """task.max_len and target_len that fit the examples' tokens (with their special tokens),
    up to the fine-tune config's defaults (128, 32) and the model's positions."""
    tok = self.tokenizer
    longest = max(len(tok.encode(e["text"])) for e in examples)
    max_len = min(lm_rows.round_up(longest + 3), 128)
    target_len = 2
    if kind == "seq2seq":
      longest_target = max(len(tok.encode(e["label"])) for e in examples)
      target_len = min(lm_rows.round_up(longest_target + 1, 8), 32)
    m = self.model_config
    if m.position in BOUNDED_POSITIONS:
      # A decoder's seq2seq rows hold the targets after the input.
      targets = tasks.get(kind).row_length(self._family, max_len, target_len) - max_len
      max_len = min(max_len, m.max_len - targets)
    return max_len, target_len

  def predict(self, texts: str | Sequence[str] | dict | Sequence[dict]) -> list:
    """A fine-tuned model's predictions: classes as its training labels gave them (str, int or
    bool), scores (float) or generated texts (greedy, up to task.target_len tokens, as the
    evaluate driver generates them). A model fine-tuned for extractive_qa answers
    {"question", "context"} dicts (one, or a list) with {"answer", "score", "start", "end"}
    (see `answer`)."""
    if self.task == "extractive_qa":
      return self.answer(texts)
    texts, single = as_texts(texts, "texts")
    self._needs_text()
    if self.task is None:
      raise ConfigError("predict needs a fine-tuned model: call finetune() first, or load a "
                        "fine-tuning run")
    if self.task in ("seq2seq", "chat"):  # a chat model's text is a user's message
      out = self.generate(texts, max_new_tokens=self.config.task.target_len)
      predictions = [o[0] for o in out]
    elif self.task == "classification":
      probs = self.class_probabilities(texts)
      predictions = [self.labels.values[i] for i in probs.argmax(-1)]
    elif self.task == "regression":
      predictions = [float(x) for x in self._head_outputs(texts)]
    else:
      raise ConfigError(f"predict does not support {self.task}; score the run with "
                        "python -m roots_jax.evaluate")
    return predictions[0] if single else predictions

  def class_probabilities(self, texts: Sequence[str]) -> np.ndarray:
    """A fine-tuned classifier's class probabilities [N, C], classes in `labels.names` order."""
    texts, _ = as_texts(texts, "texts")
    self._needs_text()
    if self.task != "classification":
      raise ConfigError("class_probabilities needs a model fine-tuned for classification")
    logits = self._head_outputs(texts).astype(np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return (probs / probs.sum(-1, keepdims=True)).astype(np.float32)

  def answer(self, questions: dict | Sequence[dict], *,
             max_answer_len: int | None = None) -> dict | list[dict]:
    """An extractive_qa model's answers to {"question", "context"} dicts (a list of answers for
    a list), as Hugging Face's question-answering pipeline gives them: {"answer": the span's
    text, "score": its start probability x end probability (softmax over its window's context
    tokens and [CLS]), "start", "end": its characters in the context}, the best span (at most
    max_answer_len tokens, default task.max_answer_len) over all windows of the context read
    as in training (task.max_len, doc_stride, max_question_len). An answer is the tokens' text,
    not widened to whole words (HF's align_to_words)."""
    single = isinstance(questions, dict)
    items = [questions] if single else questions
    if not isinstance(items, (list, tuple)) or not items or not all(
        isinstance(q, dict) and isinstance(q.get("question"), str)
        and isinstance(q.get("context"), str) for q in items):
      raise ConfigError("answer (predict) takes a {\"question\": str, \"context\": str} dict or a "
                        "non-empty list of them")
    if self.task != "extractive_qa":
      raise ConfigError(f"answering questions needs a model fine-tuned for extractive_qa; this "
                        f"one is {'fine-tuned for ' + self.task if self.task else 'pretrained'}")
    self._needs_text()
    task = self.config.task
    rows, owner = [], []
    for i, item in enumerate(items):
      for window in self._task.windows(item, tokenizer=self.tokenizer, max_len=task.max_len,
                                       doc_stride=task.doc_stride,
                                       max_question_len=task.max_question_len):
        rows.append(self._task.row(window, i, family=self._family, max_len=task.max_len))
        owner.append(i)
    logits = self._head_outputs(rows=rows)                                       # [R, L, 2]
    owner = np.asarray(owner)
    results = []
    for i, item in enumerate(items):
      mine = np.flatnonzero(owner == i)
      span = qa_spans.best_span(item["context"],
                                [(logits[r, :, 0], logits[r, :, 1]) for r in mine],
                                [rows[r]["offsets"] for r in mine],
                                max_answer_len=max_answer_len or task.max_answer_len,
                                probability=True)
      results.append({"answer": span.text, "score": span.score, "start": span.start,
                      "end": span.end})
    return results[0] if single else results

  def _head_outputs(self, texts: Sequence[str] = (),
                    rows: list[dict] | None = None) -> np.ndarray:
    """The fine-tuned head's outputs on `texts` (or on a task's `rows`): logits [N, C] or
    scores [N] (start and end logits [N, L, 2] of an extractive_qa model's rows)."""
    if rows is None:
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
  if labels is not None and not isinstance(labels, str):
    labels = [l.item() if isinstance(l, np.generic) else l for l in labels]  # numpy as Python's
  if labels is None or isinstance(labels, str) or len(labels) != len(texts):
    got = "none" if labels is None else (1 if isinstance(labels, str) else len(labels))
    raise ConfigError(f"{labels_name} must be a list with one label per text: {len(texts)} "
                      f"{texts_name} but {got} {labels_name}")
  for i, label in enumerate(labels):
    ok = {"classification": isinstance(label, (str, int)),
          "regression": isinstance(label, (int, float)) and not isinstance(label, bool),
          "seq2seq": isinstance(label, str)}[kind]
    if not ok:
      want = {"classification": "a class name (str, int or bool)", "regression": "a number",
              "seq2seq": "a target text"}[kind]
      raise ConfigError(f"{labels_name}[{i}] is {label!r}: a {kind} label is {want}")
  return [{"text": t, "label": l} for t, l in zip(texts, labels)]


def _hold_out(examples: list[dict], kind: str) -> tuple[list[dict], list[dict]]:
  """(train, validation): a HOLD_OUT share of the examples (at least one; none under
  HOLD_OUT_MIN) drawn by a fixed seed, leaving every class at least one training example."""
  if len(examples) < HOLD_OUT_MIN:
    return examples, []
  want = max(1, int(len(examples) * HOLD_OUT))
  left = collections.Counter(str(e["label"]) for e in examples)
  held = []
  for i in np.random.default_rng(0).permutation(len(examples)):
    label = str(examples[i]["label"])
    if kind == "classification" and left[label] < 2:
      continue
    left[label] -= 1
    held.append(int(i))
    if len(held) == want:
      break
  kept = set(range(len(examples))) - set(held)
  return [examples[i] for i in sorted(kept)], [examples[i] for i in sorted(held)]


def _stack(rows: list[dict]) -> dict[str, np.ndarray]:
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}
