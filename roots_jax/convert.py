"""Hugging Face checkpoints <-> roots_jax runs (GPT-2, BERT, T5).

  python -m roots_jax.convert import HF_DIR RUN [--config.SECTION.KEY=VALUE ...]
  python -m roots_jax.convert export RUN HF_DIR [--step N]

import reads a local Hugging Face model directory (config.json and model.safetensors or
pytorch_model.bin, sharded or not; .bin files need torch: pip install 'roots_jax[hf]') of
GPT2LMHeadModel / GPT2Model, BertForPreTraining / BertForMaskedLM / BertModel (the heads those
lack are initialised fresh, and the command says which), T5ForConditionalGeneration (v1.0 and
v1.1) or MT5ForConditionalGeneration. It writes a new RUN laid out like a pretraining run:
config.json (the base config with the model section from Hugging Face's; overrides such as
--config.model.scan_layers=false may change run-time fields, not the architecture),
checkpoints/0 (the parameters only: `restore_params` reads them) and tokenizer/ (the Hugging Face
tokenizer files, which tokenizer.path names). Fine-tune it (--config.init_from=RUN), evaluate or
generate from it; `roots_jax.train --workdir RUN` refuses to resume it (there is no optimizer or
data state to resume): pretrain further from a new workdir.

export writes RUN's newest (or --step) parameters as config.json + model.safetensors that
transformers' from_pretrained loads (GPT2LMHeadModel, BertForPreTraining,
T5ForConditionalGeneration), with the run's Hugging Face tokenizer files if it has them. A model
Hugging Face's class cannot represent (RoPE, grouped-query attention, SwiGLU in GPT-2, ...) is
refused with the config field that stands in the way.
"""

import argparse
import os
import shutil
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from roots_jax import config as config_lib
from roots_jax import models
from roots_jax.errors import CheckpointError, ConfigError, RootsError
from roots_jax.hf import architectures, files, mapping
from roots_jax.models.config import ModelConfig
from roots_jax.models.layers import INIT_STD
from roots_jax.training import checkpoints

OBJECTIVES = {"decoder": "causal", "encoder": "mlm_nsp", "encoder_decoder": "span_corruption"}
# Model fields an import may override: they change how the model runs, not its parameters.
IMPORT_OVERRIDABLE = (*config_lib.RUNTIME_MODEL_KEYS, "scan_layers")


def abstract_params(model_config: ModelConfig) -> dict:
  """The model's parameters as ShapeDtypeStructs (nothing is computed)."""
  model = models.build_model(model_config)
  tokens = jnp.zeros((1, 1), jnp.int32)
  args = (tokens, tokens) if model_config.family == "encoder_decoder" else (tokens,)
  return nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), *args))["params"]


def run_config(fields: dict, tokenizer_path: str, overrides=()):
  """A pretraining run's full config with the model section `fields` (from Hugging Face)."""
  config = config_lib.base_config()
  for key, value in fields.items():
    config.model[key] = type(config.model[key])(value)
  family = config.model.family
  config.data.objective = OBJECTIVES[family]
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
  model_config = ModelConfig.from_config(config.model)
  shapes = {path: leaf.shape for path, leaf in
            traverse_util.flatten_dict(abstract_params(model_config)).items()}

  tensors = module.canonical(files.read_weights(hf_dir), model_config)
  params, missing, unused = mapping.import_params(module.layout(model_config), tensors, shapes,
                                                  scan=model_config.scan_layers)
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
    config_lib.save_config(config, os.path.join(tmp, "config.json"))
    if os.path.isdir(run_dir):
      os.rmdir(run_dir)  # empty, checked above
    os.replace(tmp, run_dir)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
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


def write_params(run_dir: str, params) -> None:
  """checkpoints/0 of `run_dir` holding the state {"params": params} (no optimizer, no data
  iterator): what restore_params reads from a pretraining run's checkpoint."""
  manager = checkpoints.make_manager(run_dir, keep=1, items=("state",))
  try:
    checkpoints.save(manager, 0, {"params": jax.tree.map(jnp.asarray, params)}, None, force=True)
    manager.wait_until_finished()
  finally:
    manager.close()


def export_hf(run_dir: str, hf_dir: str, *, step: int | None = None) -> dict:
  """Writes the run's parameters at `step` (default: the newest) as a Hugging Face model in
  `hf_dir`. Returns a summary: architecture, step, tokenizer_files (empty: not exported)."""
  run_dir, hf_dir = os.path.abspath(run_dir), os.path.abspath(hf_dir)
  config_path = os.path.join(run_dir, "config.json")
  if not os.path.isfile(config_path):
    raise ConfigError(f"{run_dir} is not a roots_jax run ({config_path} is missing)")
  config = config_lib.read_config(config_path)
  if "task" in config:
    raise ConfigError(f"{run_dir} is a fine-tuning run; export a pretraining (or converted) run")
  model_config = ModelConfig.from_config(config.model)
  module = architectures.for_family(model_config.family)
  hf_config = module.hf_config(model_config)
  if os.path.exists(hf_dir) and (not os.path.isdir(hf_dir) or os.listdir(hf_dir)):
    raise ConfigError(f"{hf_dir} already exists; give a new directory for the Hugging Face model")

  manager = checkpoints.make_manager(run_dir, keep=1, read_only=True)
  steps = sorted(manager.all_steps())
  if not steps:
    raise CheckpointError(f"{run_dir} has no complete checkpoint in {run_dir}/checkpoints")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise CheckpointError(f"--step {step}: {run_dir}/checkpoints has steps {steps}")
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          abstract_params(model_config))
  params = jax.device_get(checkpoints.restore_params(manager, step, abstract))
  manager.close()
  flat = traverse_util.flatten_dict(params)
  tensors = module.finish(mapping.export_params(module.layout(model_config), flat,
                                                scan=model_config.scan_layers), model_config)

  files.write_model(hf_dir, hf_config, tensors)
  tokenizer = config.tokenizer.path
  if not os.path.exists(tokenizer):  # a moved run: its own copy
    tokenizer = os.path.join(run_dir, "tokenizer")
  tokenizer_files = files.copy_tokenizer(tokenizer, hf_dir) if os.path.isdir(tokenizer) else []
  return dict(architecture=hf_config["architectures"][0], step=step,
              tokenizer_files=tokenizer_files)


def _import(args, overrides) -> None:
  summary = import_hf(args.hf_dir, args.run, overrides)
  print(f"imported {summary['architecture']} ({summary['parameters']:,} parameters) into "
        f"{args.run}")
  if summary["fresh"]:
    print(f"note: the checkpoint has no {', '.join(summary['fresh'])}: initialised fresh "
          "(random); fine-tune before using those heads")
  if not summary["tokenizer_files"]:
    print(f"note: {args.hf_dir} has no tokenizer files; copy them into {args.run}/tokenizer")


def _export(args, overrides) -> None:
  if overrides:
    raise ConfigError(f"export takes no config overrides; got {overrides[0]}")
  summary = export_hf(args.run, args.hf_dir, step=args.step)
  print(f"exported {args.run} step {summary['step']} as {summary['architecture']} into "
        f"{args.hf_dir}")
  if not summary["tokenizer_files"]:
    print("note: the run's tokenizer is not a Hugging Face tokenizer directory (a sentencepiece "
          "model trained by roots_jax has no faithful Hugging Face equivalent): not exported")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m roots_jax.convert", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="command", required=True)
  imp = commands.add_parser("import", help="a Hugging Face model directory -> a new roots_jax run")
  imp.add_argument("hf_dir")
  imp.add_argument("run")
  imp.set_defaults(run_command=_import)
  exp = commands.add_parser("export", help="a roots_jax run -> a new Hugging Face model directory")
  exp.add_argument("run")
  exp.add_argument("hf_dir")
  exp.add_argument("--step", type=int, default=None, help="the checkpoint step (default: newest)")
  exp.set_defaults(run_command=_export)
  args, rest = parser.parse_known_args(argv)
  try:
    bad = [a for a in rest if not (a.startswith("--config.") and "=" in a)]
    if bad:
      raise ConfigError(f"unknown argument {bad[0]!r}; overrides look like "
                        "--config.model.scan_layers=false")
    args.run_command(args, [a[len("--config."):] for a in rest])
  except RootsError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
