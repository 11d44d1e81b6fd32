"""Run configuration: the keys a run understands with their defaults and meanings (the model
fields' in roots_jax.models.config), loading, CLI overrides, validation and config.json.

A config file is a Python file with `get_config(arg=None)` returning a ConfigDict built on
`base_config()` (pretraining), `finetune_config()` or `distill_config()`; the shipped ones
(configs/) go by name. `load_config("gpt2:small", ["train.batch_size=64"])` imports it, applies
`key=value` overrides (typed by the existing field, so an unknown key or a wrong type is an
error), validates, and returns a locked config. Its `kind` is what it runs, and what a run
directory's config.json says the run is.
"""

import ast
import copy
import dataclasses
import difflib
import importlib.util
import json
import os
import re
from typing import Sequence

import ml_collections
from ml_collections.config_dict import placeholder

from roots_jax import objectives, tasks
from roots_jax.data import builtin_tasks
from roots_jax.errors import ConfigError
from roots_jax.models import config as model_config
from roots_jax.models.config import ModelConfig
from roots_jax.training import distillation, metric_writer, partitioning


def base_config() -> ml_collections.ConfigDict:
  """Every key a pretraining run understands, with defaults that suit a small CPU run."""
  c = _section(
      "",
      kind=("pretrain", "what the config runs, recorded in the run's config.json: pretrain | "
            "finetune | converted (a Hugging Face checkpoint's parameters) | distill | "
            "quantized"),
      seed=(0, "the seed of initialisation, data order, masking and dropout"),
      init_from=("", "the run whose parameters training starts from, a run directory (its "
                 "newest checkpoint) or one of its checkpoints/<step> directories: pretraining, "
                 "a pretraining, converted or distilled run to continue pretraining (its model "
                 "and tokenizer; a fresh optimizer and data position), empty: random; "
                 "fine-tuning, the pretrained backbone"),
  )

  # Model fields, with their meanings: roots_jax.models.config.ModelConfig.
  c.model = ml_collections.ConfigDict(dataclasses.asdict(ModelConfig()))

  c.tokenizer = _section(
      "tokenizer",
      path=("", "a sentencepiece .model or a Hugging Face tokenizer directory (GPT-2, BERT, T5 "
            "files); empty: train one into workdir/tokenizer"),
      model_type=("unigram", "unigram | bpe"),
      train_max_bytes=(8_000_000, "text sampled from the training split to train the tokenizer"),
  )

  c.data = _section(
      "data",
      source=("builtin", "builtin (Python stdlib) | files | tfds | hf (HF datasets) | prepared "
              "(the output of python -m roots_jax.prep)"),
      objective=("causal", "causal (GPT) | mlm_nsp (BERT) | span_corruption (T5) | seq2seq"),
      target_len=(0, "encoder_decoder: decoder length; 0 = derived from the objective"),
      mask_rate=(0.15, "mlm: fraction of tokens selected (BERT: 0.15, then 80/10/10)"),
      whole_word_masking=(False, "mlm: select whole words (pieces starting with a word "
                          "boundary)"),
      next_sentence_prediction=(True, "mlm_nsp: B is the true next segment with probability 0.5"),
      noise_density=(0.15, "span_corruption: fraction of tokens noised (T5 paper: 0.15)"),
      mean_noise_span_length=(3.0, "span_corruption: mean noise span length (T5 paper: 3)"),
      input_field=("input", "seq2seq: JSONL / TFDS field of the input of the pairs"),
      target_field=("target", "seq2seq: JSONL / TFDS field of the target of the pairs"),
      train_files=("", "comma-separated paths or globs (.txt, .jsonl, .parquet)"),
      eval_files=("", "like train_files; empty: hold out eval_fraction of the documents"),
      format=("auto", "auto (by extension) | text | jsonl | parquet"),
      text_field=("text", "JSONL / Parquet / TFDS field holding the text"),
      max_document_bytes=(64 << 20, "memory budget per document: a JSONL line or Parquet value "
                          "over it is skipped with a warning, text is cut to it (and 1 MiB)"),
      tfds_name=("", "source=tfds: the dataset name (e.g. lm1b)"),
      tfds_data_dir=("", "source=tfds: the directory of the prepared dataset"),
      prepared_dir=("", "source=prepared: a python -m roots_jax.prep workdir (its manifest.json "
                    "lists the shards)"),
      prepared_languages=("", "source=prepared: the languages read, comma-separated (en,fr); "
                          "empty: all"),
      hf_path=("", "hf: load_dataset's path (data files' directory, cached or hub name) or a "
               "save_to_disk directory of a DatasetDict"),
      hf_name=("", "hf: the dataset's configuration (e.g. wikitext-103-raw-v1)"),
      hf_streaming=(False, "hf: stream the files instead of converting them all to Arrow"),
      train_split=("train", "tfds / hf split (tfds and unstreamed hf: slices like train[:98%])"),
      eval_split=("validation", "tfds / hf: the held-out split"),
      eval_fraction=(0.02, "without eval_files: the fraction of documents held out"),
      seq_len=(128, "tokens per training sequence (packed documents)"),
      shuffle_window=(1024, "examples (seq_len windows) shuffled within a window; the file or "
                      "record order is re-permuted every epoch; below ~256 is slow"),
      num_workers=(0, "grain worker processes; fixed within a run"),
      prefetch=(2, "batches prepared ahead of the train step"),
  )

  c.optimizer = _section(
      "optimizer",
      name=("adamw", "adamw | sgd | adafactor | lion"),
      learning_rate=(3e-4, "the peak learning rate, after warmup"),
      b1=(0.9, "adamw, lion: first-moment decay"),
      b2=(0.95, "adamw, lion: second-moment decay (GPT-3: 0.95)"),
      eps=(1e-8, "adamw: added to the second moment's root"),
      weight_decay=(0.1, "decoupled; never on norms, biases or embeddings"),
      momentum=(0.9, "sgd"),
      nesterov=(False, "sgd"),
      clip_norm=(1.0, "global-norm clipping; 0 disables"),
      schedule=("cosine", "cosine | linear | inverse_sqrt | constant (after linear warmup)"),
      warmup_steps=(100, "steps of linear warmup from 0 to learning_rate"),
      decay_steps=(0, "steps to the end of the schedule; 0: train.steps"),
      end_lr_fraction=(0.1, "final learning rate as a fraction of the peak"),
  )

  c.train = _section(
      "train",
      batch_size=(32, "global, in sequences of data.seq_len tokens"),
      steps=(1000, "optimizer steps of the whole run"),
      grad_accum_steps=(1, "micro-batches whose gradients are summed into one step"),
      z_loss=(0.0, "weight of the log-partition penalty (PaLM uses 1e-4)"),
      log_every=(50, "steps between metrics rows (and host syncs)"),
      eval_every=(500, "steps between evaluations on the held-out split"),
      eval_batches=(10, "batches per evaluation"),
      checkpoint_every=(500, "steps between checkpoints"),
      keep_checkpoints=(3, "the newest checkpoints kept"),
      bad_steps=("halt", "a step with a non-finite loss or gradient norm is never applied; "
                 "halt: stop the run there | skip: drop it, count it and go on"),
      spike_sigma=(0.0, "skip: also drop a step whose loss is above the mean of the recent "
                   "losses by this many standard deviations; 0: off"),
      spike_window=(100, "steps of loss history for spike_sigma (an exponential average); "
                    "spikes count once this many steps were applied"),
      profile_start=(0, "trace steps profile_start.. with jax.profiler into workdir/profile "
                     "(TensorBoard, Perfetto); 0: no trace"),
      profile_steps=(3, "steps traced from profile_start"),
      loggers=("tensorboard", "where metric rows go besides metrics.jsonl, comma-separated: "
               "tensorboard | wandb (Weights & Biases: pip install wandb) | none"),
  )

  c.prune = _section(
      "prune",
      method=("", "unstructured pruning while training (training.pruning): magnitude (gradual, "
              "Zhu & Gupta 2017) | n_m (n of every m weights kept, 2:4) | empty: off"),
      target_sparsity=(0.5, "magnitude: the share of prunable weights zeroed from end_step on "
                       "(0.5-0.9 is usual for BERT, Chen et al. 2020)"),
      scope=("layer", "magnitude: layer (each kernel's, each layer's, own share) | global (one "
             "threshold over all prunable weights)"),
      begin_step=(0, "the step the sparsity starts rising from 0 (n_m: the step it is imposed)"),
      end_step=(0, "the step target_sparsity is reached; masks are fixed after it"),
      frequency=(100, "steps between mask updates (Zhu & Gupta: 100-1000)"),
      n=(2, "n_m: weights kept of every m consecutive along the input dimension"),
      m=(4, "n_m: group size (NVIDIA sparse tensor cores: 2:4)"),
      kept_heads=((), "a record, written by python -m roots_jax.prune: per layer the original "
                  "indices of the attention heads kept (Hugging Face export: pruned_heads)"),
  )

  c.mesh = _section(
      "mesh",
      shape=((-1, 1, 1), "(data, fsdp, tensor); -1: the rest of the devices"),
      parallelism=("fsdp", "dp | fsdp | fsdp_tp: the logical-axis rules preset"),
      rules=((), "explicit ((logical, mesh_axes), ...); empty: the preset's"),
  )

  c.distributed = _section(
      "distributed",
      initialize=("auto", "auto (when the platform says so) | yes | no: jax.distributed"),
      coordinator_address=("", "host:port of process 0; empty: the platform's"),
      num_processes=(0, "0: the platform's"),
      process_id=(-1, "this process's index; -1: the platform's"),
  )

  c.hardware = _section(
      "hardware",
      peak_flops_per_device=(0.0, "for MFU; 0: the device kind's in "
                             "training.profiling.PEAK_FLOPS, a CPU's measured at start"),
  )

  c.quant = _section(
      "quant",
      qat_scheme=("", "quantization-aware training of the blocks' matmuls (Qwix fake "
                  "quantization, straight-through gradients): int8 | int8_weight | int4_weight; "
                  "empty: off. Quantize the run after with python -m roots_jax.quantize"),
      fp8=(False, "the blocks' matmuls in fp8 (e4m3 forward, e5m2 gradients; Qwix): GPUs with "
           "fp8 matmuls (H100 and later) only"),
  )
  return c


def finetune_config() -> ml_collections.ConfigDict:
  """Every key the fine-tune driver understands: the pretraining sections without `data`, the
  checkpoint to start from, the task's data and how the model is fine-tuned. Model fields are
  placeholders (None): the pretraining run's values fill them, and a value set here must equal
  the checkpoint's, except the models.config.RUNTIME_FIELDS, which it overrides."""
  c = base_config()
  c.kind = "finetune"
  del c["data"]
  for key, value in list(c.model.items()):
    c.model[key] = placeholder(type(value))

  c.task = _section(
      "task",
      kind=("classification", "classification | regression | token_classification | seq2seq | "
            "extractive_qa | chat"),
      source=("builtin", "builtin (from the stdlib corpus) | files | tfds"),
      builtin=("package", "package: a function's docstring -> its top-level stdlib package "
               "(classification); summary: a function's code -> the first line of its "
               "docstring (seq2seq); identifier: a docstring sentence with a parameter blanked "
               "-> the parameter's span in the code (extractive_qa); instructions: questions "
               "about a function's code and their answers (chat)"),
      train_files=("", "comma-separated paths or globs (.csv, .tsv, .jsonl)"),
      validation_files=("", "like train_files, for the validation split"),
      test_files=("", "like train_files, for the test split"),
      format=("auto", "auto (by extension) | csv | tsv | jsonl | squad (the official SQuAD "
              ".json: one record per question)"),
      text_field=("text", "the text; token_classification: the list of words"),
      text_pair_field=("", "a second text (sentence pairs, e.g. glue/mrpc); empty: none"),
      label_field=("label", "the class, score, tag list or target text"),
      labels=((), "class (tag) names in id order; empty: the sorted labels of the train split, "
              "or the TFDS ClassLabel names"),
      tfds_name=("", "e.g. glue/sst2, glue/mrpc, glue/stsb, cnn_dailymail"),
      tfds_data_dir=("", "source=tfds: the directory of the prepared dataset"),
      train_split=("train", "the split trained on"),
      validation_split=("validation", "the split scored every train.eval_every steps"),
      test_split=("test", "the split evaluate --split test scores"),
      max_len=(128, "input tokens, special tokens included"),
      target_len=(32, "seq2seq: target tokens, eos included"),
      doc_stride=(128, "extractive_qa: context tokens shared by consecutive windows (HF: 128 "
                  "for max_len 384)"),
      max_question_len=(64, "extractive_qa: question tokens kept"),
      max_answer_len=(30, "extractive_qa: the longest answer predicted, in tokens (HF: 30)"),
      chat_template=("", "chat: a Jinja chat template; empty: the chat_template of the "
                     "tokenizer's tokenizer_config.json, else the built-in one "
                     "(data.chat_template); the run records the one it trained with"),
      packing=(True, "chat: several conversations per decoder training row, never attending "
               "across"),
  )

  c.finetune = _section(
      "finetune",
      mode=("full", "full: every parameter trains | frozen: a feature extractor, only the head "
            "(and the top trainable_layers) train"),
      trainable_layers=(0, "frozen: also train the top k layers (the decoder's, for "
                        "encoder_decoder) and the final norm"),
      from_scratch=(False, "random backbone with init_from's architecture and tokenizer: the "
                    "baseline that shows what pretraining is worth"),
      head_learning_rate=(0.0, "the head's peak rate; 0: optimizer.learning_rate"),
      head_dropout=(0.1, "on the pooled features (BERT: 0.1)"),
      pooling=("", "classification, regression: first (BERT's pooled [CLS]) | last (GPT, T5: "
               "the last token) | mean (of the token features); empty: the family's own"),
      label_smoothing=(0.0, "classification cross-entropy (0.1 is common)"),
      class_weights=((), "per class id, for the cross-entropy; empty: all 1"),
      metric=("", "validation metric choosing the best checkpoint and stopping early; empty: "
              "the task kind's usual one"),
      patience=(0, "evaluations without improvement before stopping; 0: never"),
  )
  c.finetune.lora = _section(
      "finetune.lora",
      rank=(0, "LoRA (Hu et al. 2021): the adapters' rank r (4-64 is usual); 0: no adapters. "
            "The base stays frozen; the adapters (and a new task head) train and are saved"),
      alpha=(16.0, "the adapters' output is scaled by alpha / rank (PEFT's default alpha: 8-32)"),
      dropout=(0.0, "on an adapter's input, in training (PEFT: 0.05-0.1)"),
      modules=("attention", "the adapted dense layers: attention (query, key, value, out of "
               "every attention) | all (those and the MLP's) | a regex over module paths such "
               "as backbone/layers/mlp/wi"),
      quantize=("", "QLoRA: the frozen base held as int8_weight or int4_weight (per output "
                "channel, as python -m roots_jax.quantize); empty: float"),
  )
  c.train.update(steps=500, eval_every=100, checkpoint_every=100, log_every=20)
  c.optimizer.update(learning_rate=5e-5, warmup_steps=50, schedule="linear", end_lr_fraction=0.0,
                     weight_decay=0.01)
  return c


def distill_config(task: bool = False) -> ml_collections.ConfigDict:
  """Every key a distillation run understands: a pretraining run's (the student's model, its
  data and objective, training; model fields left unset are the teacher's) or, with `task`, a
  fine-tuning run's (a student fine-tuned from init_from on a fine-tuned teacher's task), plus
  the teacher and the distillation loss. The student reads the teacher's tokenizer."""
  c = finetune_config() if task else base_config()
  c.kind = "distill"
  if not task:  # a fine-tuning config's model fields are init_from's already
    for key, value in list(c.model.items()):  # None: the teacher's
      c.model[key] = placeholder(type(value))
    del c["init_from"]  # a student starts random or from the teacher (distill.init_layers)
  c.update(_section(
      "",
      teacher=("", "the teacher: a run directory (its newest checkpoint), one of its "
               "checkpoints/<step> directories, or a Hugging Face model directory"),
  ))
  c.distill = _section(
      "distill",
      alpha=(0.5, "weight of the soft targets, T^2 KL(teacher_T || student_T); 1 - alpha "
             "weighs the objective's own loss"),
      temperature=(2.0, "T: both distributions are softmax(logits / T)"),
      hidden_loss=("", "empty (none) | cosine (DistilBERT) | mse: between matched layer outputs"),
      hidden_weight=(1.0, "weight of the hidden-state loss"),
      hidden_layers=((), "the teacher layer each student layer's output is matched to, one per "
                     "student layer (-1: unmatched); empty: the last layer of each; a learned "
                     "projection maps a narrower student to the teacher's width"),
      init_layers=("", "the teacher layers the student starts from, with the teacher's "
                   "embeddings, norms and heads: every_other (DistilBERT: 0, 2, 4, ...; an unset "
                   "model.num_layers becomes half the teacher's) or indices 0,2,5; empty: random"),
      teacher_dtype=("", "the teacher's compute and parameter dtype, e.g. bfloat16; empty: "
                     "its own"),
      teacher_fingerprint=("", "set by the run: the teacher checkpoint's fingerprint, which a "
                           "resumed run must match"),
  )
  return c


def prep_config() -> ml_collections.ConfigDict:
  """Every key of a corpus preparation (python -m roots_jax.prep, roots_jax.runs.prep): the raw
  input, each step's settings (the ROOTS filters' per-language thresholds are data:
  roots_jax/corpus/roots_parameters.json) and the datatrove executor that runs them."""
  c = _section("", kind=("prep", "what the config runs: prep (a prepared corpus)"),
               seed=(0, "the seed of the MinHash functions"))
  c.input = _section(
      "input",
      source=("auto", "auto (files when input.files is set, else builtin) | builtin (Python "
              "stdlib) | files | tfds | hf"),
      files=("", "comma-separated paths or globs (.txt, .jsonl, .parquet), streamed"),
      format=("auto", "auto (by extension) | text | jsonl | parquet"),
      text_field=("text", "JSONL / Parquet / TFDS / HF field holding the text"),
      tfds_name=("", "source=tfds: the dataset name"),
      tfds_data_dir=("", "source=tfds: the directory of the prepared dataset"),
      hf_path=("", "source=hf: load_dataset's path or a save_to_disk directory"),
      hf_name=("", "source=hf: the dataset's configuration"),
      hf_streaming=(False, "source=hf: stream the files"),
      split=("train", "tfds / hf: the split prepared"),
      max_document_bytes=(64 << 20, "a JSONL line or Parquet value over it is skipped with a "
                          "warning, text is cut to it"),
  )
  c.normalize = _section(
      "normalize",
      fix_unicode=(True, "ftfy: mojibake, HTML entities, odd quotes"),
      whitespace=(True, "exotic spaces to ' ', non-printing characters out, runs collapsed"),
      html=(False, "crawled pages: HTML to text (script and style dropped)"),
  )
  c.language = _section(
      "language",
      enabled=(True, "identify each document's language (fastText lid.176, bundled)"),
      keep=("", "comma-separated language codes kept (en,fr); empty: all"),
      min_confidence=(-1.0, "drop below this language-id confidence; -1: the ROOTS table's "
                      "value for the language (English 0.80)"),
  )
  c.quality = _section(
      "quality",
      enabled=(True, "the ROOTS quality filters"),
      table=("", "a JSON file of per-language parameters like roots_jax/corpus/"
             "roots_parameters.json; empty: the ROOTS table"),
      filters=(",".join(PREP_FILTERS), "the filters applied, comma-separated"),
      default_language=("en", "whose parameters apply to a language the table lacks"),
  )
  c.ngram = _section(
      "ngram",
      order=(5, "n of the modified Kneser-Ney model (ROOTS: KenLM 5-grams)"),
      discount=("modified", "modified (three discounts per order, Chen & Goodman) | a number"),
      reference_files=("", "the text it is trained on (paths or globs); empty: the built-in "
                       "corpus's training split"),
      eval_fraction=(0.02, "built-in reference: the modules held out, as training runs hold "
                     "them out (data.eval_fraction)"),
      tokenizer=("", "a sentencepiece .model or Hugging Face tokenizer directory (e.g. a run's "
                 "RUN/tokenizer/spm.model); empty: one trained on the reference (cached)"),
      vocab_size=(4096, "the trained tokenizer's pieces (the quickstart's)"),
      tokenizer_train_bytes=(4_000_000, "text the tokenizer is trained on (the quickstart's)"),
  )
  c.redact = _section(
      "redact",
      enabled=(True, "replace personal data by tags (PI:EMAIL, ...), BigScience's regexes"),
      kinds=("email,ip_address,key,user", "what is redacted, comma-separated"),
  )
  c.decontaminate = _section(
      "decontaminate",
      enabled=(True, "drop documents sharing long n-grams with evaluation sets"),
      eval_files=("", "evaluation sets (paths or globs: JSONL, text); empty: the built-in "
                  "fine-tuning tasks' test splits"),
      eval_fields=("text", "eval_files: the JSONL fields compared, comma-separated"),
      n=(13, "words per n-gram (GPT-3: 13)"),
      min_matches=(1, "n-grams shared with the evaluation sets that drop a document"),
  )
  c.dedup = _section(
      "dedup",
      exact=(True, "drop documents whose normalised text repeats an earlier one's"),
      near=(True, "drop near duplicates: MinHash LSH on word n-grams"),
      lines=(True, "drop boilerplate lines repeated across documents (CCNet-style)"),
      ngram_size=(5, "near: words per shingle"),
      num_buckets=(14, "near: LSH bands (FineWeb: 14)"),
      hashes_per_bucket=(8, "near: rows per band; 14 x 8 finds pairs above Jaccard ~0.72"),
      near_min_similarity=(0.0, "near: colliding pairs whose estimated Jaccard is below this "
                           "are not joined; 0: every LSH collision is"),
      line_min_docs=(10, "lines: a line in this many documents is boilerplate"),
      line_min_chars=(40, "lines: shorter lines are never boilerplate (`if __name__ == "
                      "'__main__':` has 26 characters)"),
  )
  c.executor = _section(
      "executor",
      kind=("local", "local (processes on this machine) | slurm | ray"),
      tasks=(4, "tasks of the per-document stages (and output shards)"),
      workers=(0, "tasks run at once; 0: one per CPU core (local), all (slurm, ray)"),
      partition=("", "slurm: the partition"),
      time=("24:00:00", "slurm: a task's time limit"),
      cpus_per_task=(1, "slurm, ray: CPUs per task"),
      mem_per_cpu_gb=(2, "slurm, ray: memory per CPU"),
      env_command=("", "slurm: run before each task (e.g. source ~/venv/bin/activate)"),
      sbatch_args=("", "slurm: more sbatch options, key=value,key=value"),
  )
  return c


# Dotted key -> meaning, recorded by _section as the schemas declare their keys.
_MEANINGS: dict[str, str] = {}


def _section(prefix: str, **fields) -> ml_collections.ConfigDict:
  """A section of `fields` given as (default, meaning); `prefix` is its key ("" at the top)."""
  for name, (_, meaning) in fields.items():
    _MEANINGS[f"{prefix}.{name}" if prefix else name] = meaning
  return ml_collections.ConfigDict({name: default for name, (default, _) in fields.items()})


def quantized_config(source_kind: str = "pretrain") -> ml_collections.ConfigDict:
  """A quantized run's keys (roots_jax.runs.quantized): those of the kind of run it was made
  from, and how it was quantized."""
  if source_kind not in ("pretrain", "converted", "finetune", "distill"):
    raise ConfigError(f"quantize.source_kind must be pretrain, converted, finetune or distill; "
                      f"got {source_kind!r}")
  c = SCHEMAS[source_kind]()
  c.kind = "quantized"
  c.quantize = _section(
      "quantize",
      scheme=("int8_weight", "int8_weight | int8 (weights and activations) | int4_weight"),
      calibration_batches=(0, "int8: batches the static activation scales were calibrated on; "
                           "0: dynamic (per-token scales at run time)"),
      source=("", "the run quantized"),
      source_step=(0, "its checkpoint step"),
      source_kind=(source_kind, "its kind (pretrain | converted | finetune | distill)"),
  )
  return c


# The keys of each kind of run: its config.json is read into this schema (a quantized run's
# takes the kind it was made from, quantize.source_kind).
SCHEMAS = {"pretrain": base_config, "finetune": finetune_config, "converted": base_config,
           "distill": distill_config, "quantized": quantized_config}


def meanings() -> dict[str, str]:
  """Dotted key -> its one-line meaning, for the keys of every schema: declared beside the keys
  (in base_config and finetune_config, the model's in ModelConfig's fields)."""
  for schema in set(SCHEMAS.values()):
    schema()  # declaring the sections records their meanings
  return {**{f"model.{f.name}": f.metadata["help"] for f in dataclasses.fields(ModelConfig)},
          **_MEANINGS}


def describe(config: ml_collections.ConfigDict) -> str:
  """Every key of `config` with its type, value and meaning, a line each (--config.help)."""
  meaning = meanings()
  rows = []

  def walk(node, prefix):
    for name in node.keys():
      key = f"{prefix}{name}"
      if isinstance(node[name], ml_collections.ConfigDict):
        walk(node[name], f"{key}.")
      else:
        rows.append((key, node.get_type(name).__name__, repr(node[name]), meaning.get(key, "")))

  walk(config, "")
  widths = [max(len(row[i]) for row in rows) for i in range(2)] + [
      min(24, max(len(row[2]) for row in rows))]
  return "\n".join(f"{key:<{widths[0]}}  {kind:<{widths[1]}}  {value:<{widths[2]}}  {text}"
                   for key, kind, value, text in rows)


# The configs that ship with roots_jax, by name (`gpt2`, `finetune/package`): the checkout's
# top-level configs/, which setup.py installs as roots_jax/configs.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def shipped_configs_dir() -> str:
  """roots_jax/configs in an installed wheel; the checkout's configs/ (also an editable
  install's)."""
  inside = os.path.join(_PACKAGE_DIR, "configs")
  return inside if os.path.isdir(inside) else os.path.join(os.path.dirname(_PACKAGE_DIR),
                                                           "configs")


def shipped_configs() -> list[str]:
  """The names of the shipped configs: their paths in configs/ without .py."""
  root = shipped_configs_dir()
  return sorted(os.path.relpath(os.path.join(d, f), root)[:-len(".py")].replace(os.sep, "/")
                for d, _, files in os.walk(root) for f in files
                if f.endswith(".py") and not f.startswith("_"))


def config_argument_help() -> str:
  """What --config takes, for the commands' --help."""
  return (f"a shipped config by name ({', '.join(shipped_configs())}) or a config file "
          "FILE.py, with :ARG for its get_config (gpt2:small)")


def config_file(name: str) -> str:
  """The file of a config named by path or as a shipped config."""
  if os.path.isfile(name):
    return name
  shipped = os.path.join(shipped_configs_dir(), name + ".py")
  if not name.endswith(".py") and os.path.isfile(shipped):
    return shipped
  raise ConfigError(f"config {name!r} does not exist: give a config file FILE.py or a shipped "
                    f"config ({', '.join(shipped_configs())})")


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """Loads `name[:arg]` (a shipped config or a file), applies `key=value` overrides, validates
  and locks the result."""
  name, _, arg = spec.partition(":")
  path = config_file(name)
  module_spec = importlib.util.spec_from_file_location("roots_jax_user_config", path)
  if module_spec is None:
    raise ConfigError(f"config file {path!r} is not a Python file (FILE.py)")
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # the user's code: a syntax error, a missing import, ...
    text = str(e).strip().splitlines()
    raise ConfigError(f"config file {path!r} cannot be loaded: {type(e).__name__}: "
                      f"{text[0] if text else ''}") from e
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path!r} has no get_config(arg=None) function")
  try:
    config = module.get_config(arg or None)
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise ConfigError(f"{spec}: {e}") from e
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
    **{f"model.{key}": values for key, values in model_config.CHOICES.items()},
    "kind": tuple(SCHEMAS),
    "tokenizer.model_type": ("unigram", "bpe"),
    "data.source": ("builtin", "files", "tfds", "hf", "prepared"),
    "data.objective": objectives.NAMES,
    "data.format": ("auto", "text", "jsonl", "parquet"),
    "optimizer.name": ("adamw", "sgd", "adafactor", "lion"),
    "optimizer.schedule": ("cosine", "linear", "inverse_sqrt", "constant"),
    "mesh.parallelism": tuple(partitioning.RULE_PRESETS),
    "distributed.initialize": ("auto", "yes", "no"),
    "train.bad_steps": ("halt", "skip"),
    "prune.method": ("", "magnitude", "n_m"),
    "prune.scope": ("layer", "global"),
    "task.kind": tasks.NAMES,
    "task.source": ("builtin", "files", "tfds"),
    "task.builtin": tuple(builtin_tasks.KINDS),
    "task.format": ("auto", "csv", "tsv", "jsonl", "squad"),
    "finetune.mode": ("full", "frozen"),
    "finetune.pooling": ("", "first", "last", "mean"),
    "distill.hidden_loss": ("", *distillation.HIDDEN_LOSSES),
    "distill.teacher_dtype": ("", "float32", "bfloat16", "float16"),
    "quant.qat_scheme": ("", "int8", "int8_weight", "int4_weight"),
    "quantize.scheme": ("int8_weight", "int8", "int4_weight"),
}


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
  """Rejects impossible values and combinations with a one-line message. Device-dependent checks
  (batch vs. mesh) run when `num_devices` is given."""
  if config.kind == "prep":
    _validate_prep(config)
    return
  for key, choices in _CHOICES.items():
    *section, name = key.split(".")
    node = config[section[0]] if section and section[0] in config else None if section else config
    value = node[name] if node is not None else None
    if value is not None and value not in choices:
      raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")
  if None not in config.model.values():  # a fine-tune config's model is known after loading
    model_config.validate(config.model)
  if "data" in config:
    _validate_data(config)
  if "task" in config:
    _validate_finetune(config)
  if "distill" in config:
    _validate_distill(config)
  if "prune" in config:
    _validate_prune(config.prune, None if None in config.model.values() else config.model)
  t = config.train
  for key in ("batch_size", "steps", "grad_accum_steps", "log_every", "eval_every", "eval_batches",
              "checkpoint_every", "keep_checkpoints"):
    if t[key] <= 0:
      raise ConfigError(f"train.{key} must be positive; got {t[key]}")
  metric_writer.parse_loggers(t.loggers)
  if config.quant.qat_scheme and config.quant.fp8:
    raise ConfigError("quant.qat_scheme and quant.fp8 are two ways to train the matmuls; set one")
  if t.spike_sigma < 0 or (t.spike_sigma > 0 and t.bad_steps != "skip"):
    raise ConfigError(f"train.spike_sigma ({t.spike_sigma}) must be 0, or positive with "
                      "train.bad_steps=skip")
  if t.spike_window <= 0 or t.profile_start < 0 or t.profile_steps <= 0:
    raise ConfigError("train.spike_window and train.profile_steps must be positive and "
                      "train.profile_start at least 0 (0: no trace)")
  if t.batch_size % t.grad_accum_steps:
    raise ConfigError(f"train.grad_accum_steps ({t.grad_accum_steps}) must divide train.batch_size "
                      f"({t.batch_size})")
  axes = partitioning.MESH_AXES
  if len(config.mesh.shape) != len(axes):
    raise ConfigError(f"mesh.shape needs {len(axes)} sizes for {axes}; got {config.mesh.shape}")
  if num_devices is not None:
    shape = partitioning.mesh_shape(config, num_devices)
    dp = shape[0] * shape[1]
    micro = t.batch_size // t.grad_accum_steps
    if micro % dp:
      raise ConfigError(f"the batch per accumulation step ({micro} = train.batch_size / "
                        f"train.grad_accum_steps) must be divisible by the data-parallel size "
                        f"data*fsdp = {dp} of mesh {shape}")


def _validate_data(config: ml_collections.ConfigDict) -> None:
  m, d = config.model, config.data
  if d.seq_len <= 0 or (m.position in model_config.BOUNDED_POSITIONS and d.seq_len > m.max_len):
    raise ConfigError(f"data.seq_len ({d.seq_len}) must be in 1..model.max_len ({m.max_len})")
  if d.source == "files" and not d.train_files:
    raise ConfigError("data.source=files needs data.train_files (paths or globs)")
  if d.source == "tfds" and not d.tfds_name:
    raise ConfigError("data.source=tfds needs data.tfds_name (e.g. lm1b)")
  if d.source == "hf" and not d.hf_path:
    raise ConfigError("data.source=hf needs data.hf_path (a Hugging Face dataset's name or a "
                      "local directory)")
  if d.source == "prepared" and not d.prepared_dir:
    raise ConfigError("data.source=prepared needs data.prepared_dir (a python -m roots_jax.prep "
                      "workdir)")
  if objectives.get(d.objective).reads_pairs and d.source == "builtin":
    raise ConfigError(f"data.objective={d.objective} needs (input, target) pairs: set "
                      "data.source=files, tfds or hf with data.input_field and data.target_field, "
                      "or pretrain with data.objective=span_corruption on the built-in corpus")
  if not 0.0 <= d.eval_fraction < 1.0:
    raise ConfigError(f"data.eval_fraction must be in [0, 1); got {d.eval_fraction}")
  if d.max_document_bytes <= 0:
    raise ConfigError(f"data.max_document_bytes must be positive; got {d.max_document_bytes}")


def _validate_prep(config: ml_collections.ConfigDict) -> None:
  for key, choices in _PREP_CHOICES.items():
    section, name = key.split(".")
    if config[section][name] not in choices:
      raise ConfigError(f"{key} must be one of {', '.join(choices)}; got "
                        f"{config[section][name]!r}")
  i = config.input
  if i.source == "files" and not i.files:
    raise ConfigError("input.source=files needs input.files (paths or globs)")
  if i.source == "tfds" and not i.tfds_name:
    raise ConfigError("input.source=tfds needs input.tfds_name")
  if i.source == "hf" and not i.hf_path:
    raise ConfigError("input.source=hf needs input.hf_path")
  positive = {"ngram.order": config.ngram.order, "decontaminate.n": config.decontaminate.n,
              "decontaminate.min_matches": config.decontaminate.min_matches,
              "dedup.ngram_size": config.dedup.ngram_size,
              "dedup.num_buckets": config.dedup.num_buckets,
              "dedup.hashes_per_bucket": config.dedup.hashes_per_bucket,
              "dedup.line_min_docs": config.dedup.line_min_docs,
              "executor.tasks": config.executor.tasks,
              "executor.cpus_per_task": config.executor.cpus_per_task,
              "input.max_document_bytes": i.max_document_bytes}
  for key, value in positive.items():
    if value <= 0:
      raise ConfigError(f"{key} must be positive; got {value}")
  if config.dedup.line_min_docs < 2:
    raise ConfigError(f"dedup.line_min_docs must be at least 2; got {config.dedup.line_min_docs}")
  if config.executor.workers < 0:
    raise ConfigError(f"executor.workers must be >= 0 (0: all); got {config.executor.workers}")
  if config.ngram.discount != "modified":
    try:
      value = float(config.ngram.discount)
    except ValueError:
      value = -1.0
    if not 0.0 < value < 1.0:
      raise ConfigError(f"ngram.discount must be modified or a number in (0, 1); got "
                        f"{config.ngram.discount!r}")
  if not 0.0 <= config.ngram.eval_fraction < 1.0:
    raise ConfigError(f"ngram.eval_fraction must be in [0, 1); got {config.ngram.eval_fraction}")
  if config.executor.kind == "slurm" and not config.executor.partition:
    raise ConfigError("executor.kind=slurm needs executor.partition")
  if any("=" not in item for item in config.executor.sbatch_args.split(",") if item.strip()):
    raise ConfigError(f"executor.sbatch_args takes key=value items, comma-separated; got "
                      f"{config.executor.sbatch_args!r}")
  for name in (f.strip() for f in config.quality.filters.split(",") if f.strip()):
    if name not in PREP_FILTERS:
      raise ConfigError(f"quality.filters has unknown filter {name!r}; use "
                        f"{', '.join(PREP_FILTERS)}")


# The ROOTS quality filters, in the order they are applied: roots_jax.corpus.quality.FILTERS,
# which config may not import (datatrove is the optional prep extra); a test keeps them equal.
PREP_FILTERS = ("words", "character_repetition", "word_repetition", "special_characters",
                "stopwords", "flagged_words", "perplexity")
_PREP_CHOICES = {
    "input.source": ("auto", "builtin", "files", "tfds", "hf"),
    "input.format": ("auto", "text", "jsonl", "parquet"),
    "executor.kind": ("local", "slurm", "ray"),
}


def _validate_prune(p: ml_collections.ConfigDict, m: ml_collections.ConfigDict | None) -> None:
  """The prune section; `m` the model section (None while a fine-tune config's is unknown)."""
  if not p.method:
    return
  if p.begin_step < 0 or p.end_step < p.begin_step or p.frequency <= 0:
    raise ConfigError(f"prune needs 0 <= begin_step <= end_step and frequency > 0; got "
                      f"begin_step={p.begin_step}, end_step={p.end_step}, "
                      f"frequency={p.frequency}")
  if p.method == "magnitude" and not 0.0 <= p.target_sparsity < 1.0:
    raise ConfigError(f"prune.target_sparsity must be in [0, 1); got {p.target_sparsity}")
  if p.method == "n_m":
    if not 0 < p.n < p.m:
      raise ConfigError(f"prune.n must be in 1..prune.m - 1 ({p.m - 1}); got n={p.n}")
    if m is not None:
      head = m.head_dim or m.embed_dim // m.num_heads
      widths = {"model.embed_dim": m.embed_dim, "model.mlp_dim": m.mlp_dim,
                "the attention width (num_heads x head dim)": m.num_heads * head}
      for name, width in widths.items():
        if width % p.m:
          raise ConfigError(f"prune.m ({p.m}) must divide {name} ({width}): n_m groups run "
                            "along each kernel's input dimension")


def _validate_finetune(config: ml_collections.ConfigDict) -> None:
  task, f = config.task, config.finetune
  if task.source == "files" and not task.train_files:
    raise ConfigError("task.source=files needs task.train_files (paths or globs)")
  if task.source == "tfds" and not task.tfds_name:
    raise ConfigError("task.source=tfds needs task.tfds_name (e.g. glue/sst2)")
  tasks.get(task.kind).validate(task)
  if f.trainable_layers < 0:
    raise ConfigError(f"finetune.trainable_layers must be >= 0; got {f.trainable_layers}")
  if f.trainable_layers and f.mode != "frozen":
    raise ConfigError("finetune.trainable_layers applies to finetune.mode=frozen (full trains all)")
  if not 0.0 <= f.label_smoothing < 1.0:
    raise ConfigError(f"finetune.label_smoothing must be in [0, 1); got {f.label_smoothing}")
  if f.patience < 0:
    raise ConfigError(f"finetune.patience must be >= 0; got {f.patience}")
  _validate_lora(config)


def _validate_lora(config: ml_collections.ConfigDict) -> None:
  f, lora = config.finetune, config.finetune.lora
  if lora.rank < 0:
    raise ConfigError(f"finetune.lora.rank must be >= 0 (0: no adapters); got {lora.rank}")
  if lora.quantize not in ("", "int8_weight", "int4_weight"):
    raise ConfigError(f"finetune.lora.quantize must be int8_weight, int4_weight or empty; got "
                      f"{lora.quantize!r}")
  if not lora.rank:
    if lora.quantize:
      raise ConfigError("finetune.lora.quantize holds the base of LoRA adapters: set "
                        "finetune.lora.rank too")
    return
  if config.kind != "finetune":
    raise ConfigError(f"finetune.lora applies to fine-tuning runs; this is a {config.kind} run: "
                      "set finetune.lora.rank=0")
  if f.mode != "full" or f.from_scratch:
    raise ConfigError("finetune.lora trains adapters on a pretrained base: use it with "
                      "finetune.mode=full and without finetune.from_scratch")
  if lora.alpha <= 0:
    raise ConfigError(f"finetune.lora.alpha must be positive; got {lora.alpha}")
  if not 0.0 <= lora.dropout < 1.0:
    raise ConfigError(f"finetune.lora.dropout must be in [0, 1); got {lora.dropout}")
  try:
    re.compile(lora.modules)
  except re.error as e:
    raise ConfigError(f"finetune.lora.modules={lora.modules!r} is not a regex ({e}): give "
                      "attention, all or a regex over module paths") from e


def _validate_distill(config: ml_collections.ConfigDict) -> None:
  d = config.distill
  if not 0.0 <= d.alpha <= 1.0:
    raise ConfigError(f"distill.alpha must be in [0, 1]; got {d.alpha}")
  if d.temperature <= 0:
    raise ConfigError(f"distill.temperature must be positive; got {d.temperature}")
  if d.hidden_weight < 0:
    raise ConfigError(f"distill.hidden_weight must be at least 0; got {d.hidden_weight}")
  if d.hidden_layers and not d.hidden_loss:
    raise ConfigError("distill.hidden_layers needs distill.hidden_loss (cosine or mse)")
  if "task" in config and d.init_layers:
    raise ConfigError("distill.init_layers starts a pretraining student from the teacher; a "
                      "task's student starts from init_from")


def read_config(path: str) -> ml_collections.ConfigDict:
  """A run's config.json as a locked config of its kind's schema."""
  try:
    with open(path) as f:
      values = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"cannot read the run config {path}: {e}") from e
  if not isinstance(values, dict):
    raise ConfigError(f"{path} holds a JSON {type(values).__name__}, not a run config")
  if "kind" not in values:  # written before runs recorded their kind
    values["kind"] = "finetune" if "task" in values else "pretrain"
  if values["kind"] not in SCHEMAS:
    raise ConfigError(f"{path} is a run of kind {values['kind']!r}, which this version does not "
                      f"know ({', '.join(SCHEMAS)})")
  if values["kind"] == "quantized":
    config = quantized_config(values.get("quantize", {}).get("source_kind", "pretrain"))
  elif values["kind"] == "distill":
    config = distill_config(task="task" in values)
  else:
    config = SCHEMAS[values["kind"]]()
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
