"""Run configuration: the defaults every config file starts from, loading, CLI overrides, validation.

A config file is a Python file with `get_config(arg=None)` returning a ConfigDict built on
`base_config()`. `load_config("configs/gpt2.py:small", ["train.batch_size=64"])` imports it,
applies `key=value` overrides (typed by the existing field, so an unknown key or a wrong type is
an error), validates, and returns a locked config.
"""

import ast
import copy
import difflib
import importlib.util
import json
import os
from typing import Sequence

import ml_collections
from ml_collections.config_dict import placeholder

from roots_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis -> mesh axes. Flax never maps one mesh axis twice in a spec, so activations
# [batch, length, embed] keep `embed` unsharded where `batch` already took `fsdp`.
RULE_PRESETS = {
    "dp": (("batch", ("data", "fsdp")),),
    "fsdp": (("batch", ("data", "fsdp")), ("embed", "fsdp")),
    "fsdp_tp": (
        ("batch", ("data", "fsdp")),
        ("embed", "fsdp"),
        ("heads", "tensor"),
        ("kv_heads", "tensor"),
        ("mlp", "tensor"),
        ("vocab", "tensor"),
    ),
}

# Dense peak FLOP/s per device for the compute dtype (bf16 on accelerators), used for MFU.
# CPU: the fp32 sgemm ceiling measured on a 2-core AVX-512 host (OpenBLAS, 2048^3), the whole
# host as one device; XLA's own CPU matmul reaches about 87e9 there.
PEAK_FLOPS = {
    "cpu": 190e9,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
    "NVIDIA A100": 312e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
}


def base_config() -> ml_collections.ConfigDict:
  """Every key a run understands, with defaults that suit a small CPU run."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ml_collections.ConfigDict(dict(
      family="decoder",          # decoder (GPT) | encoder (BERT) | encoder_decoder (Transformer, T5)
      vocab_size=8192,
      num_layers=2,              # encoder_decoder: the encoder's
      num_decoder_layers=0,      # encoder_decoder: 0 = num_layers
      embed_dim=128,
      num_heads=4,
      num_kv_heads=0,            # 0: same as num_heads (MHA); 1: MQA; in between: GQA
      head_dim=0,                # 0: embed_dim // num_heads
      mlp_dim=512,
      mlp_activation="gelu",     # gelu (tanh approx., GPT-2) | gelu_exact (erf, BERT) | relu (2017
                                 # Transformer, T5 v1.0) | swiglu | geglu (T5 v1.1)
      norm="layernorm",          # layernorm | rmsnorm
      norm_eps=1e-5,
      norm_placement="pre",      # pre (GPT-2, T5) | post (BERT, the 2017 Transformer)
      position="learned",        # learned | sinusoidal | rope | relative (T5 bucketed bias)
      max_len=1024,
      rope_theta=10000.0,
      relative_buckets=32,       # T5: 32 buckets, max distance 128
      relative_max_distance=128,
      type_vocab_size=0,         # BERT token types (segments A/B): 2; 0 = none
      scale_embeddings=False,    # multiply embeddings by sqrt(embed_dim) (the 2017 Transformer)
      scaled_attention=True,     # q k^T / sqrt(head_dim); T5 folds the scale into its init: False
      dropout_rate=0.0,
      attention_dropout_rate=0.0,
      use_bias=True,
      tie_embeddings=True,
      attention_impl="xla",      # xla (einsum) | dot_product_attention (jax.nn, XLA) | cudnn
      remat_policy="none",       # none | full | dots | dots_no_batch
      scan_layers=True,
      dtype="float32",           # compute dtype; params stay param_dtype
      param_dtype="float32",
  ))

  c.tokenizer = ml_collections.ConfigDict(dict(
      path="",                   # a sentencepiece .model or a Hugging Face tokenizer directory (GPT-2,
                                 # BERT, T5 files); empty: train one into workdir/tokenizer
      model_type="unigram",      # unigram | bpe
      train_max_bytes=8_000_000, # text sampled from the training split to train the tokenizer
  ))

  c.data = ml_collections.ConfigDict(dict(
      source="builtin",          # builtin (Python stdlib) | files | tfds
      objective="causal",        # causal (GPT) | mlm_nsp (BERT) | span_corruption (T5) | seq2seq
      target_len=0,              # encoder_decoder: decoder length; 0 = derived from the objective
      mask_rate=0.15,            # mlm: fraction of tokens selected (BERT: 0.15, then 80/10/10)
      whole_word_masking=False,  # mlm: select whole words (pieces starting with a word boundary)
      next_sentence_prediction=True,  # mlm_nsp: B is the true next segment with probability 0.5
      noise_density=0.15,        # span_corruption (T5 paper: 0.15)
      mean_noise_span_length=3.0,  # span_corruption (T5 paper: 3)
      input_field="input",       # seq2seq: JSONL / TFDS fields of the (input, target) pairs
      target_field="target",
      train_files="",            # comma-separated paths or globs (.txt, .jsonl, .parquet)
      eval_files="",             # empty: hold out eval_fraction of the documents
      format="auto",             # auto (by extension) | text | jsonl | parquet
      text_field="text",         # JSONL / Parquet / TFDS field holding the text
      max_document_bytes=64 << 20,  # memory budget per document: a JSONL line or Parquet value
                                 # over it is skipped with a warning, text is cut to it (and 1 MiB)
      tfds_name="",
      tfds_data_dir="",
      train_split="train",
      eval_split="validation",
      eval_fraction=0.02,
      seq_len=128,
      shuffle_window=1024,       # examples (seq_len windows) shuffled within a window; the file or
                                 # record order is re-permuted every epoch; below ~256 is slow
      num_workers=0,             # grain worker processes; fixed within a run
      prefetch=2,
  ))

  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw",              # adamw | sgd | adafactor | lion
      learning_rate=3e-4,
      b1=0.9,
      b2=0.95,
      eps=1e-8,
      weight_decay=0.1,          # decoupled; never on norms, biases or embeddings
      momentum=0.9,              # sgd
      nesterov=False,            # sgd
      clip_norm=1.0,             # global-norm clipping; 0 disables
      schedule="cosine",         # cosine | linear | inverse_sqrt | constant (after linear warmup)
      warmup_steps=100,
      decay_steps=0,             # 0: train.steps
      end_lr_fraction=0.1,       # final learning rate as a fraction of the peak
  ))

  c.train = ml_collections.ConfigDict(dict(
      batch_size=32,             # global, in sequences of data.seq_len tokens
      steps=1000,
      grad_accum_steps=1,
      z_loss=0.0,                # PaLM uses 1e-4
      log_every=50,
      eval_every=500,
      eval_batches=10,
      checkpoint_every=500,
      keep_checkpoints=3,
      bad_steps="halt",          # a step with a non-finite loss or gradient norm is never applied;
                                 # halt: stop the run there | skip: drop it, count it and go on
      spike_sigma=0.0,           # skip: also drop a step whose loss is above the mean of the
                                 # recent losses by this many standard deviations; 0: off
      spike_window=100,          # steps of loss history for spike_sigma (an exponential
                                 # average); spikes count once this many steps were applied
      profile_start=0,           # trace steps profile_start.. with jax.profiler into
                                 # workdir/profile (TensorBoard, Perfetto); 0: no trace
      profile_steps=3,
  ))

  c.mesh = ml_collections.ConfigDict(dict(
      shape=(-1, 1, 1),          # (data, fsdp, tensor); -1: the rest of the devices
      parallelism="fsdp",        # dp | fsdp | fsdp_tp: the logical-axis rules preset
      rules=(),                  # explicit ((logical, mesh_axes), ...); empty: the preset's
  ))

  c.distributed = ml_collections.ConfigDict(dict(
      initialize="auto",         # auto (when the platform says so) | yes | no
      coordinator_address="",
      num_processes=0,
      process_id=-1,
  ))

  c.hardware = ml_collections.ConfigDict(dict(
      peak_flops_per_device=0.0,  # 0: look the device kind up in PEAK_FLOPS
  ))
  return c


# Model fields a fine-tune run may change without changing the parameters.
RUNTIME_MODEL_KEYS = ("dropout_rate", "attention_dropout_rate", "attention_impl", "remat_policy",
                      "dtype", "param_dtype")


def finetune_config() -> ml_collections.ConfigDict:
  """Every key the fine-tune driver understands: the pretraining sections without `data`, the
  checkpoint to start from, the task's data and how the model is fine-tuned. Model fields are
  placeholders (None): the pretraining run's values fill them, and a value set here must equal
  the checkpoint's, except the RUNTIME_MODEL_KEYS, which it overrides."""
  c = base_config()
  del c["data"]
  for key, value in list(c.model.items()):
    c.model[key] = placeholder(type(value))
  c.init_from = ""               # a pretraining workdir, or one of its checkpoints/<step> directories

  c.task = ml_collections.ConfigDict(dict(
      kind="classification",     # classification | regression | token_classification | seq2seq
      source="builtin",          # builtin (from the stdlib corpus) | files | tfds
      builtin="package",         # package: a function's docstring -> its top-level stdlib package
                                 # (classification); summary: a function's code -> the first line
                                 # of its docstring (seq2seq)
      train_files="",            # comma-separated paths or globs (.csv, .tsv, .jsonl)
      validation_files="",
      test_files="",
      format="auto",             # auto (by extension) | csv | tsv | jsonl
      text_field="text",         # token_classification: the list of words
      text_pair_field="",        # a second text (sentence pairs, e.g. glue/mrpc); empty: none
      label_field="label",       # the class, score, tag list or target text
      labels=(),                 # class (tag) names in id order; empty: the sorted labels of the
                                 # train split, or the TFDS ClassLabel names
      tfds_name="",              # e.g. glue/sst2, glue/mrpc, glue/stsb, cnn_dailymail
      tfds_data_dir="",
      train_split="train",
      validation_split="validation",
      test_split="test",
      max_len=128,               # input tokens, special tokens included
      target_len=32,             # seq2seq: target tokens, eos included
  ))

  c.finetune = ml_collections.ConfigDict(dict(
      mode="full",               # full: every parameter trains | frozen: a feature extractor,
                                 # only the head (and the top trainable_layers) train
      trainable_layers=0,        # frozen: also train the top k layers (the decoder's, for
                                 # encoder_decoder) and the final norm
      from_scratch=False,        # random backbone with init_from's architecture and tokenizer: the
                                 # baseline that shows what pretraining is worth
      head_learning_rate=0.0,    # the head's peak rate; 0: optimizer.learning_rate
      head_dropout=0.1,          # on the pooled features (BERT: 0.1)
      pooling="",                # classification, regression: first (BERT's pooled [CLS]) | last
                                 # (GPT, T5: the last token) | mean (of the token features);
                                 # empty: the family's own
      label_smoothing=0.0,       # classification cross-entropy (0.1 is common)
      class_weights=(),          # per class id, for the cross-entropy; empty: all 1
      metric="",                 # validation metric choosing the best checkpoint and stopping
                                 # early; empty: the task kind's usual one
      patience=0,                # evaluations without improvement before stopping; 0: never
  ))
  c.train.update(steps=500, eval_every=100, checkpoint_every=100, log_every=20)
  c.optimizer.update(learning_rate=5e-5, warmup_steps=50, schedule="linear", end_lr_fraction=0.0,
                     weight_decay=0.01)
  return c


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """Loads `path.py[:arg]`, applies `key=value` overrides, validates and locks the result."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path!r} does not exist")
  module_spec = importlib.util.spec_from_file_location("roots_jax_user_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path!r} has no get_config(arg=None) function")
  try:
    config = module.get_config(arg or None)
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise ConfigError(f"{path}:{arg}: {e}") from e
  config = copy.deepcopy(config)  # our own copy, locked below (placeholders keep their type)
  config.lock()
  for item in overrides:
    apply_override(config, item)
  validate(config)
  return config


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
  """Sets `a.b=value`, parsing the value as the type the field already has."""
  key, sep, text = item.partition("=")
  if not sep:
    raise ConfigError(f"override {item!r} must look like key=value, e.g. train.batch_size=64")
  *parents, leaf = key.split(".")
  node = config
  for i, name in enumerate(parents):
    node = _child(node, name, ".".join(parents[:i + 1]))
    if not isinstance(node, ml_collections.ConfigDict):
      raise ConfigError(f"config key {'.'.join(parents[:i + 1])!r} is a value, not a section")
  old = _child(node, leaf, key)
  if isinstance(old, ml_collections.ConfigDict):
    raise ConfigError(f"config key {key!r} is a section; set one of its fields instead")
  with node.unlocked():
    node[leaf] = _parse(text, old, key, node.get_type(leaf))


def _child(node, name, key):
  if name not in node:
    close = difflib.get_close_matches(name, list(node.keys()), n=1)
    hint = f"; did you mean {key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{close[0]}?" if close else ""
    raise ConfigError(f"unknown config key {key!r}{hint}")
  return node[name]


def _parse(text: str, old, key: str, kind: type):
  """`text` as a `kind` (the field's type, also known for a placeholder whose value is None)."""
  try:
    if kind is bool:
      low = text.lower()
      if low not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError
      return low in ("true", "1", "yes")
    if kind is int:
      return int(text)
    if kind is float:
      return float(text)
    if kind is str:
      return text
    if kind in (tuple, list):
      value = ast.literal_eval(text if text.strip().startswith(("(", "[")) else f"({text},)")
      return kind(_tuplify(value))
  except (ValueError, SyntaxError):
    pass
  example = f" (e.g. {old!r})" if old is not None else ""
  name = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
          "tuple": "a tuple", "list": "a list"}.get(kind.__name__, kind.__name__)
  raise ConfigError(f"config key {key!r} takes {name}{example}, not {text!r}")


def _tuplify(value):
  return tuple(_tuplify(v) for v in value) if isinstance(value, (list, tuple)) else value


_CHOICES = {
    "model.family": ("decoder", "encoder", "encoder_decoder"),
    "model.mlp_activation": ("gelu", "gelu_exact", "relu", "swiglu", "geglu"),
    "model.norm_placement": ("pre", "post"),
    "model.norm": ("layernorm", "rmsnorm"),
    "model.position": ("learned", "sinusoidal", "rope", "relative"),
    "model.attention_impl": ("xla", "dot_product_attention", "cudnn"),
    "model.remat_policy": ("none", "full", "dots", "dots_no_batch"),
    "model.dtype": ("float32", "bfloat16", "float16"),
    "model.param_dtype": ("float32", "bfloat16"),
    "tokenizer.model_type": ("unigram", "bpe"),
    "data.source": ("builtin", "files", "tfds"),
    "data.objective": ("causal", "mlm_nsp", "span_corruption", "seq2seq"),
    "data.format": ("auto", "text", "jsonl", "parquet"),
    "optimizer.name": ("adamw", "sgd", "adafactor", "lion"),
    "optimizer.schedule": ("cosine", "linear", "inverse_sqrt", "constant"),
    "mesh.parallelism": tuple(RULE_PRESETS),
    "distributed.initialize": ("auto", "yes", "no"),
    "train.bad_steps": ("halt", "skip"),
    "task.kind": ("classification", "regression", "token_classification", "seq2seq"),
    "task.source": ("builtin", "files", "tfds"),
    "task.builtin": ("package", "summary"),
    "task.format": ("auto", "csv", "tsv", "jsonl"),
    "finetune.mode": ("full", "frozen"),
    "finetune.pooling": ("", "first", "last", "mean"),
}


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
  """Rejects impossible values and combinations with a one-line message. Device-dependent checks
  (batch vs. mesh) run when `num_devices` is given."""
  for key, choices in _CHOICES.items():
    section, name = key.split(".")
    value = config[section][name] if section in config else None
    if value is not None and value not in choices:
      raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")
  if None not in config.model.values():  # a fine-tune config's model is known after loading
    _validate_model(config.model)
  if "data" in config:
    _validate_data(config)
  if "task" in config:
    _validate_finetune(config)
  t = config.train
  for key in ("batch_size", "steps", "grad_accum_steps", "log_every", "eval_every", "eval_batches",
              "checkpoint_every", "keep_checkpoints"):
    if t[key] <= 0:
      raise ConfigError(f"train.{key} must be positive; got {t[key]}")
  if t.spike_sigma < 0 or (t.spike_sigma > 0 and t.bad_steps != "skip"):
    raise ConfigError(f"train.spike_sigma ({t.spike_sigma}) must be 0, or positive with "
                      "train.bad_steps=skip")
  if t.spike_window <= 0 or t.profile_start < 0 or t.profile_steps <= 0:
    raise ConfigError("train.spike_window and train.profile_steps must be positive and "
                      "train.profile_start at least 0 (0: no trace)")
  if t.batch_size % t.grad_accum_steps:
    raise ConfigError(f"train.grad_accum_steps ({t.grad_accum_steps}) must divide train.batch_size "
                      f"({t.batch_size})")
  if len(config.mesh.shape) != len(MESH_AXES):
    raise ConfigError(f"mesh.shape needs {len(MESH_AXES)} sizes for {MESH_AXES}; got {config.mesh.shape}")
  if num_devices is not None:
    shape = mesh_shape(config, num_devices)
    dp = shape[0] * shape[1]
    micro = t.batch_size // t.grad_accum_steps
    if micro % dp:
      raise ConfigError(f"the batch per accumulation step ({micro} = train.batch_size / "
                        f"train.grad_accum_steps) must be divisible by the data-parallel size "
                        f"data*fsdp = {dp} of mesh {shape}")


def _validate_model(m: ml_collections.ConfigDict) -> None:
  for key in ("vocab_size", "num_layers", "embed_dim", "num_heads", "mlp_dim", "max_len"):
    if m[key] <= 0:
      raise ConfigError(f"model.{key} must be positive; got {m[key]}")
  if m.head_dim == 0 and m.embed_dim % m.num_heads:
    raise ConfigError(f"model.num_heads ({m.num_heads}) must divide model.embed_dim ({m.embed_dim}), "
                      "or set model.head_dim")
  kv_heads = m.num_kv_heads or m.num_heads
  if m.num_heads % kv_heads:
    raise ConfigError(f"model.num_kv_heads ({kv_heads}) must divide model.num_heads ({m.num_heads})")
  if m.attention_dropout_rate > 0 and m.attention_impl != "xla":
    raise ConfigError("model.attention_dropout_rate > 0 needs model.attention_impl=xla "
                      "(the fused kernels have no attention dropout)")
  if m.position == "rope" and (m.head_dim or m.embed_dim // m.num_heads) % 2:
    raise ConfigError("rope needs an even head dimension")


def _validate_data(config: ml_collections.ConfigDict) -> None:
  m, d = config.model, config.data
  if d.seq_len <= 0 or (m.position not in ("rope", "relative") and d.seq_len > m.max_len):
    raise ConfigError(f"data.seq_len ({d.seq_len}) must be in 1..model.max_len ({m.max_len})")
  if d.source == "files" and not d.train_files:
    raise ConfigError("data.source=files needs data.train_files (paths or globs)")
  if d.source == "tfds" and not d.tfds_name:
    raise ConfigError("data.source=tfds needs data.tfds_name (e.g. lm1b)")
  if d.objective == "seq2seq" and d.source == "builtin":
    raise ConfigError("data.objective=seq2seq needs (input, target) pairs: set data.source=files "
                      "or tfds with data.input_field and data.target_field, or pretrain with "
                      "data.objective=span_corruption on the built-in corpus")
  if not 0.0 <= d.eval_fraction < 1.0:
    raise ConfigError(f"data.eval_fraction must be in [0, 1); got {d.eval_fraction}")
  if d.max_document_bytes <= 0:
    raise ConfigError(f"data.max_document_bytes must be positive; got {d.max_document_bytes}")


def _validate_finetune(config: ml_collections.ConfigDict) -> None:
  task, f = config.task, config.finetune
  if task.source == "files" and not task.train_files:
    raise ConfigError("task.source=files needs task.train_files (paths or globs)")
  if task.source == "tfds" and not task.tfds_name:
    raise ConfigError("task.source=tfds needs task.tfds_name (e.g. glue/sst2)")
  if task.source == "builtin" and (task.kind == "seq2seq") != (task.builtin == "summary"):
    raise ConfigError(f"the built-in task {task.builtin!r} does not fit task.kind={task.kind}: use "
                      "task.builtin=package with classification, summary with seq2seq")
  if task.max_len < 4 or (task.kind == "seq2seq" and task.target_len < 2):
    raise ConfigError(f"task.max_len ({task.max_len}) must be at least 4 and task.target_len "
                      f"({task.target_len}) at least 2")
  if f.trainable_layers < 0:
    raise ConfigError(f"finetune.trainable_layers must be >= 0; got {f.trainable_layers}")
  if f.trainable_layers and f.mode != "frozen":
    raise ConfigError("finetune.trainable_layers applies to finetune.mode=frozen (full trains all)")
  if not 0.0 <= f.label_smoothing < 1.0:
    raise ConfigError(f"finetune.label_smoothing must be in [0, 1); got {f.label_smoothing}")
  if f.patience < 0:
    raise ConfigError(f"finetune.patience must be >= 0; got {f.patience}")


def mesh_shape(config: ml_collections.ConfigDict, num_devices: int) -> tuple[int, ...]:
  """Resolves a -1 in mesh.shape to the remaining devices and checks the product."""
  shape = list(config.mesh.shape)
  if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise ConfigError(f"mesh.shape {tuple(shape)} may hold at most one -1 and otherwise positive sizes")
  known = 1
  for s in shape:
    known *= s if s > 0 else 1
  if -1 in shape:
    if num_devices % known:
      raise ConfigError(f"mesh.shape {tuple(shape)} does not fit {num_devices} devices")
    shape[shape.index(-1)] = num_devices // known
  elif known != num_devices:
    raise ConfigError(f"mesh.shape {tuple(shape)} needs {known} devices; there are {num_devices}")
  return tuple(shape)


def logical_rules(config: ml_collections.ConfigDict) -> tuple:
  """The logical-axis rules in force: mesh.rules if given, else the parallelism preset's."""
  return tuple(config.mesh.rules) or RULE_PRESETS[config.mesh.parallelism]


def read_config(path: str) -> ml_collections.ConfigDict:
  """A workdir's config.json as a locked config (a pretraining or a fine-tuning one)."""
  try:
    with open(path) as f:
      values = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"cannot read the run config {path}: {e}") from e
  config = finetune_config() if "task" in values else base_config()
  config.lock()
  _update(config, values, path, "")
  return config


def _update(node: ml_collections.ConfigDict, values: dict, path: str, prefix: str) -> None:
  for key, value in values.items():
    if key not in node:
      raise ConfigError(f"{path} has the key {prefix}{key}, which this version does not know")
    if isinstance(value, dict):
      _update(node[key], value, path, f"{prefix}{key}.")
    else:
      with node.unlocked():
        node[key] = _tuplify(value) if isinstance(value, list) else value


def save_config(config: ml_collections.ConfigDict, path: str) -> None:
  with open(path, "w") as f:
    json.dump(config.to_dict(), f, indent=2, sort_keys=True)
