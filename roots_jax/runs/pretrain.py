"""Pretraining runs (kind "pretrain"): a model of any family trained on its objective from
scratch or, continued pretraining, from another run's parameters (init_from: a pretraining,
converted or distilled run), resumed from the newest checkpoint in its workdir; and using one
(and a converted run, which holds a pretrained model's parameters) once trained.

  train(config_lib.load_config("configs/quickstart.py"), "/tmp/run")
"""

import hashlib
import logging
import os
import time
from typing import Callable

import jax
import ml_collections
import sentencepiece as spm
from flax import linen as nn

from roots_jax import config as config_lib
from roots_jax import evals, models, objectives
from roots_jax.data import load_tokenizer, sentencepiece, sources
from roots_jax.data.sentencepiece import train_tokenizer
from roots_jax.data.tokenizers import BaseTokenizer, check_vocab_size, write_atomically
from roots_jax.errors import ConfigError, DataError
from roots_jax.models.config import ModelConfig
from roots_jax.runs import assemble, cache, loop, workdir as workdir_lib
from roots_jax.training import checkpoints, distributed, optimizers, partitioning

log = logging.getLogger("roots_jax")

# How long other processes wait for process 0 to train the shared tokenizer.
_WAIT_S = 1800
# The checkpoint a pretrained model is used from.
DEFAULT_CHECKPOINT = "latest"


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (or resumes) the configured model in `workdir`; returns the last eval metrics. A
  converted run's config (kind "converted") trains a new model of its architecture."""
  if config.kind == "finetune":
    raise ConfigError("this is a fine-tuning config (kind=finetune); run it with "
                      "python -m roots_jax.finetune")
  workdir_lib.check_workdir(workdir)
  distributed.maybe_initialize(config.distributed)
  source = continued_from(config)
  config_lib.validate(config, jax.device_count())
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  t, rules = config.train, partitioning.logical_rules(config)

  # Mesh.
  mesh = partitioning.make_mesh(config)
  log.info("mesh %s over %d devices (%d processes), rules %s", dict(mesh.shape), jax.device_count(),
           jax.process_count(), config.mesh.parallelism if not config.mesh.rules else "custom")
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):

    # Data.
    tokenizer = load_or_train_tokenizer(config, workdir)
    shard = dict(process_index=jax.process_index(), process_count=jax.process_count())
    train_iter = iter(objectives.dataset(config, tokenizer, "train", **shard))

    parts = build(config, mesh)
    log.info("model: %s, %.2fM parameters", config.model.family, parts.num_params / 1e6)

    # Restore, or initialise.
    manager = checkpoints.make_manager(workdir, keep=t.keep_checkpoints)
    state = assemble.restore(parts, manager, train_iter)
    if state is None:
      state = parts.init(jax.random.key(config.seed))
      if source is not None:
        state = state.replace(params=checkpoints.restore_params(
            workdir_lib.checkpoint_manager(source.workdir), source.step,
            checkpoints.abstract_like(parts.abstract_state.params,
                                      parts.state_sharding.params)))
        log.info("continued pretraining from %s step %d (a fresh optimizer and data position)",
                 source.workdir, source.step)
    else:
      log.info("resumed from checkpoint step %d", int(state.step))
      if int(state.step) >= t.steps:
        log.info("the run is complete (train.steps=%d); raise train.steps to train further", t.steps)
    # Only once the workdir's checkpoint (if any) has been read with this config: a refused
    # resume leaves the run's own config.json and tokenizer as they were.
    with config.unlocked():
      config.kind = "pretrain"
    if is_main:
      workdir_lib.write_config(config, workdir)
      workdir_lib.save_run_copy(tokenizer, workdir)

    # Loop.
    evaluate = evaluator(config, tokenizer, parts.scorer, max_batches=t.eval_batches)
    return loop.run_loop(config, workdir, parts, state, manager, train_iter, evaluate,
                         tokens_per_step=t.batch_size * config.data.seq_len,
                         flops_per_token=flops_per_token(config, parts.model_config))


def continued_from(config: ml_collections.ConfigDict) -> workdir_lib.Pretrained | None:
  """The run init_from names, with the config made to match it: its model (a field set to
  another value is an error naming it, run-time fields aside) and its tokenizer (another
  tokenizer.path is an error: the embeddings belong to its ids); None without init_from."""
  if not config.init_from:
    return None
  source = workdir_lib.resolve_init_from(config.init_from)
  workdir_lib.merge_model(config, source)
  if config.tokenizer.path:
    mine, theirs = load_tokenizer(config.tokenizer.path), load_tokenizer(source.tokenizer_path)
    if mine.contents() != theirs.contents():
      raise ConfigError(f"tokenizer.path {config.tokenizer.path} is not the tokenizer of init_from "
                        f"{source.workdir} ({source.tokenizer_path}); leave tokenizer.path empty "
                        "to use that one")
  with config.unlocked():
    config.init_from = os.path.join(source.workdir, "checkpoints", str(source.step))
    config.tokenizer.path = source.tokenizer_path
  return source


def build(config: ml_collections.ConfigDict, mesh) -> assemble.Parts:
  """The pretraining model, its objective's loss and the optimizer, assembled for `mesh`. Call
  inside `jax.set_mesh(mesh)` and `nn.logical_axis_rules(rules)`."""
  m = model_for(config)
  return assemble.assemble(config, mesh, m.model_config, m.model, m.loss, m.init_batch,
                           optimizers.make_optimizer(config.optimizer, config.train.steps))


def flops_per_token(config: ml_collections.ConfigDict, model_config: ModelConfig) -> float:
  """Training FLOPs per token (an encoder-decoder's encoder token) of the objective's rows."""
  return models.flops_per_token(model_config, config.data.seq_len,
                                objectives.target_len(config.data) or None)


def model_for(config: ml_collections.ConfigDict, workdir: str = "") -> assemble.RunModel:
  """The model of config.model and its objective's loss."""
  del workdir
  model_config = ModelConfig.from_config(config.model)
  objective = objectives.get(config.data.objective, model_config.family)
  init_batch = objective.loss.init_batch(config.data.seq_len, objectives.target_len(config.data))
  return assemble.RunModel(model_config, models.build_model(model_config), objective.loss,
                           init_batch)


def eval_split(config: ml_collections.ConfigDict, split: str) -> tuple[str, str]:
  """(what results.json calls the split scored for `split`, and the run) of a pretraining run:
  its held-out split."""
  if split not in ("", "eval"):
    raise ConfigError(f"a pretraining run is scored on its held-out split (eval), not {split!r}; "
                      "score a file with --config.data.eval_files")
  return config.data.eval_files or "eval", "pretraining"


def evaluate(loaded, split: str) -> tuple[dict, dict]:
  """A loaded run's metrics on its held-out split, all of it (and no details)."""
  del split
  return evaluator(loaded.config, loaded.tokenizer, loaded.scorer, max_batches=None).report(
      loaded.params)


def evaluator(config: ml_collections.ConfigDict, tokenizer: BaseTokenizer, scorer: evals.Scorer,
              *, max_batches: int | None) -> Callable:
  """evaluate(params) -> the loss terms, loss and perplexity over the held-out split's first
  `max_batches` batches (None: all of them)."""
  shard = dict(process_index=jax.process_index(), process_count=jax.process_count())
  split = evals.Split(config.data.eval_files or "eval",
                      lambda: objectives.dataset(config, tokenizer, "eval", **shard),
                      max_batches=max_batches)
  return evals.get("perplexity")(scorer, split)


def load_or_train_tokenizer(config: ml_collections.ConfigDict, workdir: str, *,
                            process_index: int | None = None) -> BaseTokenizer:
  """tokenizer.path if set (a sentencepiece model or a Hugging Face tokenizer directory, the
  one the run has a copy of, if it has one); else workdir/tokenizer/spm.model, trained on the
  training split (or taken from the user's cache) by process 0 (default: `jax.process_index()`)
  the first time, while the others wait for the file: the workdir must be shared, and every
  process gets the very same model."""
  if process_index is None:
    process_index = jax.process_index()
  vocab_size = config.model.vocab_size
  if config.tokenizer.path:
    tokenizer = load_tokenizer(config.tokenizer.path)
    workdir_lib.check_run_copy(tokenizer, workdir)
    fix = (f"set model.vocab_size={tokenizer.vocab_size}"
           + " or more" * tokenizer.fits_model_vocab(tokenizer.vocab_size + 1))
  else:
    path = os.path.join(workdir, "tokenizer", "spm.model")
    if not os.path.exists(path):
      if process_index == 0:
        write_atomically(path, _cached_or_trained_tokenizer(config))
      else:
        _wait_for(path)
    tokenizer = load_tokenizer(path)
    fix = f"delete {path} to retrain it, or set model.vocab_size={tokenizer.vocab_size}"
  check_vocab_size(tokenizer, vocab_size, fix)
  return tokenizer


def _cached_or_trained_tokenizer(config: ml_collections.ConfigDict) -> bytes:
  """The sentencepiece model trained on the training split with the config's settings: from
  the user's cache when one was trained on the same text with the same settings (and trainer),
  else trained and cached."""
  objective = objectives.get(config.data.objective)
  settings = dict(vocab_size=config.model.vocab_size, model_type=config.tokenizer.model_type,
                  max_bytes=int(config.tokenizer.train_max_bytes), sentinels=objective.sentinels)
  source = sources.make_source(config.data, "train", pairs=objective.reads_pairs)
  with open(sentencepiece.__file__, "rb") as f:
    trainer = [spm.__version__, hashlib.sha256(f.read()).hexdigest()]
  cached = cache.path("tokenizers", cache.key(settings, _corpus(config, source), trainer),
                      "spm.model")
  if os.path.exists(cached):
    log.info("tokenizer: reused cached %s", cached)
    with open(cached, "rb") as f:
      return f.read()
  model = train_tokenizer(sources.DocumentStream(source, repeat=False, seed=config.seed),
                          **settings)
  try:
    write_atomically(cached, model)
  except OSError as e:
    log.warning("tokenizer: could not cache it in %s (%s)", cached, e.strerror or e)
  return model


def _corpus(config: ml_collections.ConfigDict, source) -> dict:
  """What decides the text a tokenizer is trained on: the training split's files (with their
  sizes and times), the built-in corpus's listing or the dataset (TFDS, Hugging Face: its name,
  split and size, and a local directory's files), and the order read."""
  data = config.data
  if isinstance(source, sources.BuiltinSource):
    corpus = dict(root=source.root, files=source.files)
  elif isinstance(source, sources.FileSource):
    corpus = dict(files=cache.file_stamps(source.paths), formats=source.formats,
                  eval_fraction=source.eval_fraction)
  else:
    corpus = {k: data[k] for k in ("tfds_name", "tfds_data_dir", "hf_path", "hf_name",
                                    "hf_streaming", "train_split")}
    local = sorted(os.path.join(d, n) for d, _, names in os.walk(data.hf_path) for n in names)
    corpus.update(records=source.num_units, files=cache.file_stamps(local))
  fields = {k: data[k] for k in ("text_field", "input_field", "target_field")}
  return dict(corpus, **fields, source=data.source, max_document_bytes=data.max_document_bytes,
              seed=config.seed)


def _wait_for(path: str) -> None:
  deadline = time.monotonic() + _WAIT_S
  while not os.path.exists(path):
    if time.monotonic() > deadline:
      raise DataError(f"waited {_WAIT_S} s for process 0 to write {path}; the workdir must be "
                      "shared by all processes (or set tokenizer.path)")
    time.sleep(1.0)
