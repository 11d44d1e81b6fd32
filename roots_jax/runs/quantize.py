"""Post-training quantization of a run into a quantized run (runs.quantized) with Qwix:

  summary = quantize("/tmp/run", "/tmp/run-int8", "int8_weight")
  summary = quantize("/tmp/run", "/tmp/run-a8", "int8", calibration_batches=4)

The run (any checkpoint of a pretraining, converted or fine-tuning run, or a Hugging Face model
directory) is loaded, its trained block kernels are quantized per output channel
(training.quantization), and the result is written with runs.load.save. Scheme int8 quantizes
the matmul inputs too: per token at run time (dynamic), or with calibration_batches > 0 with one
static scale per matmul input, the mean over that many batches of the run's training data of
each token's largest magnitude (Qwix's static-range calibration).
"""

import itertools
import logging
import os

import jax

from roots_jax import config as config_lib
from roots_jax import objectives, progress
from roots_jax.errors import ConfigError, DataError
from roots_jax.runs import assemble, load, quantized, workdir as workdir_lib
from roots_jax.training import quantization

log = logging.getLogger("roots_jax")


def quantize(run: str, out: str, scheme: str, *, calibration_batches: int = 0,
             checkpoint: int | str | None = None) -> dict:
  """Writes the run (or checkpoint) at `run` quantized to `scheme` as the run `out`. Returns a
  summary: scheme, source, step, out, bytes (of the float and the quantized parameters, as
  training.quantization.Bytes) and disk_bytes (of the written checkpoint)."""
  quantization.check_scheme(scheme, "--scheme")
  if calibration_batches < 0 or (calibration_batches and scheme != "int8"):
    raise ConfigError(f"--calibration_batches ({calibration_batches}) calibrates the static "
                      "activation scales of --scheme int8: give a positive number with it, or 0")
  quantization.qwix()  # a missing extra fails before the run is read
  loaded = load.load(run, checkpoint=checkpoint)
  if loaded.config.kind == "quantized":
    raise ConfigError(f"{loaded.workdir} is quantized already; quantize the run it was made "
                      f"from ({loaded.config.quantize.source})")
  out = load.check_save_directory(loaded, out)
  config = quantized_config(loaded, scheme, calibration_batches)
  with loaded.context(), progress.Progress(f"quantize {scheme}", 2, unit="stage") as stages:
    m = quantized.model_for(config, loaded.workdir)
    abstract = assemble.unbox(assemble.abstract_params(m.model, m.loss, m.init_batch,
                                                       config.seed))
    stats = calibrate(loaded, scheme, calibration_batches) if calibration_batches else None
    stages.update(postfix="calibrated" if stats else "read")
    params = quantization.quantize_params(loaded.params, abstract, stats)
    load.save(loaded, params, out, config=config)
    stages.update(postfix="written")
  summary = dict(scheme=scheme, source=loaded.workdir, step=loaded.step, out=out,
                 float_bytes=quantization.stored_bytes(loaded.params),
                 bytes=quantization.stored_bytes(params),
                 disk_bytes=checkpoint_disk_bytes(out, loaded.step))
  log.info("quantized %s step %d to %s in %.1f s", loaded.workdir, loaded.step, scheme,
           stages.elapsed())
  return summary


def quantized_config(loaded: load.Loaded, scheme: str, calibration_batches: int):
  """The quantized run's config: the source run's as written, kind "quantized", and how."""
  written = workdir_lib.read_config(loaded.workdir)  # load may have changed the mesh
  config = config_lib.quantized_config(written.kind)
  with config.unlocked():
    config.update(written.to_dict())
    config.kind = "quantized"
    config.quantize.update(scheme=scheme, calibration_batches=calibration_batches,
                           source=loaded.workdir, source_step=loaded.step,
                           source_kind=written.kind)
  config.lock()
  return config


def calibrate(loaded: load.Loaded, scheme: str, num_batches: int) -> dict:
  """The activation statistics ("quant_stats") of the static `scheme` over the first
  `num_batches` batches of the run's training data. Call inside loaded.context()."""
  model = quantization.calibration_model(loaded.model, scheme)

  def step(params, stats, batch):
    args, kwargs = loaded.loss.model_inputs(batch)
    variables = {"params": params, **({"quant_stats": stats} if stats else {})}
    return model.apply(variables, *args, **kwargs, mutable=["quant_stats"])[1]["quant_stats"]

  step = jax.jit(step)
  stats, seen = None, 0
  for batch in itertools.islice(training_batches(loaded), num_batches):
    stats = step(loaded.params, stats, loaded.scorer.global_batch(batch))
    seen += 1
  if not seen:
    raise DataError(f"{loaded.workdir} has no training data to calibrate on")
  return jax.device_get(stats)


def training_batches(loaded: load.Loaded):
  """This process's batches of the run's training split: its task's (a fine-tuned model) or its
  pretraining objective's."""
  if loaded.tokenizer is None:
    raise ConfigError(f"calibration reads the run's text, and {loaded.no_tokenizer}")
  shard = dict(process_index=jax.process_index(), process_count=jax.process_count())
  if loaded.task:
    return iter(loaded.task.dataset(loaded.config, loaded.tokenizer, loaded.labels,
                                    loaded.examples("train"), family=loaded.family,
                                    split="train", **shard))
  return iter(objectives.dataset(loaded.config, loaded.tokenizer, "train", **shard))


def checkpoint_disk_bytes(run: str, step: int) -> int:
  """Bytes on disk of the files of checkpoints/<step> of `run`."""
  root = os.path.join(run, "checkpoints", str(step))
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(root) for f in names)
