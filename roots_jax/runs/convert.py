"""Hugging Face checkpoints <-> roots_jax runs (GPT-2, GPT-NeoX, Llama, BERT, T5): converted
runs (kind "converted") and the export of pretraining ones (`python -m roots_jax.convert`), and
of language models fine-tuned on an LM head (seq2seq, chat: with their chat template).

A converted run is laid out like a pretraining run: config.json (the pretraining keys with the
model section from Hugging Face's, kind "converted"), checkpoints/0 (the parameters only:
`restore_params` reads them) and tokenizer/ (the Hugging Face tokenizer files, which
tokenizer.path names). It fine-tunes (init_from), evaluates and generates like a pretraining
run; `roots_jax.train --workdir RUN` refuses to resume it (there is no optimizer or data state
to resume): pretrain further from a new workdir.
"""

import json
import logging
import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from roots_jax import config as config_lib, progress, tasks
from roots_jax.errors import CheckpointError, ConfigError
from roots_jax.hf import architectures, files, mapping, tokenizer_json
from roots_jax.models import families
from roots_jax.models.config import RUNTIME_FIELDS, ModelConfig
from roots_jax.models.layers import INIT_STD
from roots_jax.runs import cache, lora, workdir as workdir_lib
from roots_jax.training import checkpoints

log = logging.getLogger("roots_jax")

# Model fields an import may override: they change how the model runs, not its parameters.
IMPORT_OVERRIDABLE = (*RUNTIME_FIELDS, "scan_layers")


def abstract_params(model_config: ModelConfig) -> dict:
  """The model's parameters as ShapeDtypeStructs (nothing is computed)."""
  family = families.get(model_config.family)
  tokens = jnp.zeros((1, 1), jnp.int32)
  return nn.meta.unbox(jax.eval_shape(family.build(model_config).init, jax.random.key(0),
                                      *family.init_args(tokens)))["params"]


def run_config(fields: dict, tokenizer_path: str, overrides=()):
  """A converted run's full config (the pretraining keys) with the model section `fields` (from
  Hugging Face) and its family's pretraining objective."""
  config = config_lib.base_config()
  config.kind = "converted"
  for key, value in fields.items():
    config.model[key] = type(config.model[key])(value)
  config.data.objective = families.get(config.model.family).pretraining_objective
  config.data.seq_len = config.model.max_len
  config.tokenizer.path = tokenizer_path
  config.lock()
  for item in overrides:
    config_lib.apply_override(config, item)
  for key, value in fields.items():
    if config.model[key] != value and key not in IMPORT_OVERRIDABLE and not (
        key == "max_len" and config.model.position == "relative"):
      raise ConfigError(f"model.{key} comes from the checkpoint's config.json ({value!r}); only "
                        f"{', '.join(IMPORT_OVERRIDABLE)} may be overridden")
  config_lib.validate(config)
  return config


def import_hf(hf_dir: str, run_dir: str, overrides=()) -> dict:
  """Converts the Hugging Face model in `hf_dir` into the new run `run_dir`. Returns a summary:
  architecture, parameters, fresh (our modules initialised fresh), tokenizer_files."""
  hf_dir, run_dir = os.path.abspath(hf_dir), os.path.abspath(run_dir)
  if os.path.exists(run_dir) and (not os.path.isdir(run_dir) or os.listdir(run_dir)):
    raise ConfigError(f"{run_dir} already exists; give a new directory for the converted run")
  hf_config = files.read_config(hf_dir)
  module, architecture = architectures.for_hf_config(hf_config, os.path.join(hf_dir, "config.json"))
  config = run_config(module.model_fields(hf_config), os.path.join(run_dir, "tokenizer"), overrides)
  kept_heads = getattr(module, "kept_heads", lambda _: ())(hf_config)  # head-pruned BERT
  with config.unlocked():
    config.prune.kept_heads = kept_heads
  model_config = ModelConfig.from_config(config.model)
  shapes = {path: leaf.shape for path, leaf in
            traverse_util.flatten_dict(abstract_params(model_config)).items()}

  with progress.Progress(f"import {architecture}", 3, unit="stage") as stages:
    tensors = module.canonical(files.read_weights(hf_dir), model_config)
    stages.update(postfix="read")
    params, missing, unused = mapping.import_params(module.layout(model_config), tensors, shapes,
                                                    scan=model_config.scan_layers)
    stages.update(postfix="mapped")
    needed = [name for path, name in missing if path[0] not in module.FRESH]
    if needed:
      raise CheckpointError(f"{hf_dir} lacks {len(needed)} of the weights of {architecture}: "
                            f"{', '.join(needed[:4])}{', ...' if len(needed) > 4 else ''}")
    if unused:
      raise CheckpointError(f"{hf_dir} holds weights that {architecture} with its config.json does "
                            f"not use, e.g. {', '.join(unused[:4])}: a variant roots_jax does not "
                            "convert")
    fresh = sorted({path[0] for path, _ in missing})
    rng = np.random.default_rng(config.seed)
    params.update({path: fresh_param(path, shapes[path], rng) for path, _ in missing})

    tmp = f"{run_dir}.tmp-convert"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
      os.makedirs(tmp)
      tokenizer_files = files.copy_tokenizer(hf_dir, os.path.join(tmp, "tokenizer"))
      write_params(tmp, traverse_util.unflatten_dict(params))
      workdir_lib.write_config(config, tmp)
      if os.path.isdir(run_dir):
        os.rmdir(run_dir)  # empty, checked above
      os.replace(tmp, run_dir)
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
    stages.update(postfix="written")
  log.info("imported %s in %.1f s", hf_dir, stages.elapsed())
  return dict(architecture=architecture, parameters=sum(int(np.size(v)) for v in params.values()),
              fresh=fresh, tokenizer_files=tokenizer_files)


def fresh_param(path: tuple[str, ...], shape: tuple[int, ...], rng: np.random.Generator):
  """A head's parameter as the model initialises it (models.layers: N(0, INIT_STD) kernels, zero
  biases, unit norm scales), drawn in numpy: compiling the whole model's init takes seconds."""
  if path[-1] == "kernel":
    return rng.normal(0.0, INIT_STD, shape).astype(np.float32)
  if path[-1] in ("bias", "scale"):
    return np.full(shape, float(path[-1] == "scale"), np.float32)
  raise CheckpointError(f"internal: no initialiser for the missing parameter {'/'.join(path)}")


def write_params(run_dir: str, params, step: int = 0) -> None:
  """checkpoints/<step> of `run_dir` holding the state {"params": params} (no optimizer, no data
  iterator): what restore_params reads from a pretraining run's checkpoint."""
  manager = checkpoints.make_manager(run_dir, keep=1, items=("state",))
  try:
    checkpoints.save(manager, step, {"params": jax.tree.map(jnp.asarray, params)}, None,
                     force=True)
    manager.wait_until_finished()
  finally:
    manager.close()


def export_hf(run_dir: str, hf_dir: str, *, step: int | None = None) -> dict:
  """Writes the run's parameters at `step` (default: the newest) as a Hugging Face model in
  `hf_dir`, with its tokenizer: a Hugging Face one's files copied, a sentencepiece model's
  written as a fast tokenizer (hf.tokenizer_json). Returns a summary: architecture, step,
  tokenizer_files (empty: not exported) and tokenizer_note (why not, where that is known)."""
  run_dir, hf_dir = os.path.abspath(run_dir), os.path.abspath(hf_dir)
  config = workdir_lib.read_config(run_dir)
  finetuned = "task" in config
  if finetuned:
    _check_exports_finetuned(run_dir, config)
  model_config = ModelConfig.from_config(config.model)
  module = architectures.for_model(model_config)
  kept_heads = tuple(config.prune.kept_heads)  # structured pruning's record (runs.prune)
  if kept_heads and not hasattr(module, "kept_heads"):
    raise ConfigError(f"{run_dir} was pruned to {model_config.num_heads} heads per layer; of "
                      "the Hugging Face formats here only BERT records pruned heads")
  hf_config = module.hf_config(model_config, **({"kept_heads": kept_heads} if kept_heads else {}))
  if os.path.exists(hf_dir) and (not os.path.isdir(hf_dir) or os.listdir(hf_dir)):
    raise ConfigError(f"{hf_dir} already exists; give a new directory for the Hugging Face model")

  manager = workdir_lib.checkpoint_manager(run_dir)
  steps = sorted(manager.all_steps())
  if not steps:
    raise CheckpointError(f"{run_dir} has no complete checkpoint in {run_dir}/checkpoints")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise CheckpointError(f"--step {step}: {run_dir}/checkpoints has steps {steps}")
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = abstract_params(model_config)
  if finetuned:  # the backbone and its LM head
    family = families.get(model_config.family)
    abstract = {"backbone": abstract, "head": {"kernel": jax.eval_shape(
        lambda b: family.output_kernel(model_config, b), abstract)}}
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          abstract)
  with progress.Progress(f"export step {step}", 3, unit="stage") as stages:
    params = jax.device_get(checkpoints.restore_params(manager, step, abstract))
    manager.close()
    if finetuned:
      params = _with_lm_head(run_dir, model_config, params)
    stages.update(postfix="read")
    flat = traverse_util.flatten_dict(params)
    tensors = module.finish(mapping.export_params(module.layout(model_config), flat,
                                                  scan=model_config.scan_layers), model_config)
    stages.update(postfix="mapped")
    tokenizer = config.tokenizer.path
    if not os.path.exists(tokenizer):  # a moved run: its own copy
      tokenizer = workdir_lib.run_copy(run_dir) or ""
    written, note = {}, ""
    if os.path.isfile(tokenizer):  # a sentencepiece model: written as a fast tokenizer
      try:
        written, ids = tokenizer_json.hf_files(_read(tokenizer), tokenizer, model_config.family,
                                               model_config.max_len)
        hf_config.update(ids)
      except ConfigError as e:
        note = str(e)
    files.write_model(hf_dir, hf_config, tensors)
    if os.path.isdir(tokenizer):
      tokenizer_files = files.copy_tokenizer(tokenizer, hf_dir)
    else:
      tokenizer_files = files.write_tokenizer(hf_dir, written)
    template = config.task.get("chat_template") if finetuned else ""
    if template and "tokenizer_config.json" in tokenizer_files:
      _add_chat_template(hf_dir, template)
    stages.update(postfix="written")
  log.info("exported %s step %d in %.1f s", run_dir, step, stages.elapsed())
  return dict(architecture=hf_config["architectures"][0], step=step,
              tokenizer_files=tokenizer_files, tokenizer_note=note)


def _check_exports_finetuned(run_dir: str, config) -> None:
  """ConfigError unless the fine-tuned run is a language model Hugging Face can hold: an LM head
  task's, its adapters merged."""
  if tasks.get(config.task.kind).reads != "lm":
    raise ConfigError(f"{run_dir} is fine-tuned for {config.task.kind}, whose head has no Hugging "
                      "Face form here; export a pretraining or converted run, or a language model "
                      "fine-tuned for seq2seq or chat")
  if lora.enabled(config):
    raise ConfigError(f"{run_dir} is an adapter run, whose checkpoints hold its adapters only: "
                      "merge them first (python -m roots_jax.lora merge --run RUN --out DIR) and "
                      "export that")


def _with_lm_head(run_dir: str, model_config: ModelConfig, params: dict) -> dict:
  """A fine-tuned language model's backbone parameters holding its task's LM head: an untied
  model's lm_head is that head; a tied model's head must be its embedding's (as LoRA keeps
  it), since Hugging Face ties them too."""
  backbone, head = params["backbone"], params["head"]["kernel"]
  if not model_config.tie_embeddings:
    return {**backbone, "lm_head": {"kernel": head}}
  family = families.get(model_config.family)
  tied = jax.jit(lambda b: family.output_kernel(model_config, b))(backbone)
  if not np.array_equal(np.asarray(tied), head):
    raise ConfigError(f"{run_dir} trained an LM head apart from its tied embeddings "
                      "(model.tie_embeddings), which Hugging Face cannot hold; fine-tune with "
                      "LoRA (finetune.lora.rank: the base's head stays) or an untied model")
  return backbone


def _add_chat_template(hf_dir: str, template: str) -> None:
  """Records a chat run's template in the exported tokenizer_config.json, as Hugging Face's
  tokenizers carry theirs (apply_chat_template reads it)."""
  path = os.path.join(hf_dir, "tokenizer_config.json")
  with open(path) as f:
    values = json.load(f)
  values["chat_template"] = template
  with open(path, "w") as f:
    json.dump(values, f, ensure_ascii=False, indent=2)


def _read(path: str) -> bytes:
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise ConfigError(f"cannot read the run's tokenizer {path}: {e.strerror or e}") from e


def is_hf_model(directory: str) -> bool:
  """Whether directory/config.json is a Hugging Face model's (a roots_jax run's has a model
  section)."""
  path = workdir_lib.config_path(directory)
  try:
    with open(path) as f:
      values = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"cannot read {path}: {e}") from e
  return isinstance(values, dict) and "model" not in values and (
      "architectures" in values or "model_type" in values)


def converted_run(hf_dir: str) -> str:
  """The run that `import_hf` makes of `hf_dir`, converted on first use into the cache, under a
  key of the directory's path and its files' sizes and times."""
  names = sorted(e.path for e in os.scandir(hf_dir) if e.is_file())
  key = cache.key(hf_dir, cache.file_stamps(names))
  run_dir = cache.path("hf", f"{os.path.basename(hf_dir)}-{key}")
  if not os.path.isfile(os.path.join(run_dir, "config.json")):
    os.makedirs(os.path.dirname(run_dir), exist_ok=True)
    summary = import_hf(hf_dir, run_dir)
    log.info("converted %s (%s) into %s", hf_dir, summary["architecture"], run_dir)
    if summary["fresh"]:
      log.warning("%s has no %s: initialised fresh (random)", hf_dir, ", ".join(summary["fresh"]))
  return run_dir
