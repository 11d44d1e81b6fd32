"""One table comparing a model with its compressed variants: for each run, its kind and how it
was made, its parameters, the bytes of its weights and of the checkpoint it is used from on disk,
its metric on one split (the first run's), and eval and decode tokens/s on this machine.

  rows = report(["/tmp/run", "/tmp/run-w8", "/tmp/run-pruned"], eval_batches=20)
  print(format_table(rows))

Every run is scored with the first run's data section (its held-out split, batch size and seed)
and so on the same batches: perplexity for a pretraining-kind run (pretrain, converted, distill,
or one quantized from those), the task's metric for a fine-tuned run on the first run's task
section. The runs must share the first run's tokenizer. Eval tokens/s is tokens scored over
seconds, the faster of two timed passes after one untimed batch (the compilation); decode
tokens/s is greedy generation of `decode_tokens` new tokens for one prompt from the split (no
eos stop), the fastest of the calls timed after one untimed call; an encoder (BERT) or a
classifier does not generate ("-"). The
weights' bytes are the parameters' as the model holds them (int8 or int4 values with their
float32 scales where quantized): what compression saves, plotted against the metric. Bytes on
disk are those of the checkpoint's files as they are: a pretraining run's hold its optimizer
state too, a converted, quantized or pruned run's the parameters only.
"""

import dataclasses
import itertools
import logging
import os
import time

import jax
import numpy as np

from roots_jax import decoding, objectives
from roots_jax.errors import ConfigError
from roots_jax.runs import finetune, load, pretrain, quantize
from roots_jax.training import quantization

log = logging.getLogger("roots_jax")

# The metric shown for a fine-tuned run, by task kind (a pretraining-kind run's: perplexity).
TASK_METRICS = {"classification": "accuracy", "regression": "pearson",
                "token_classification": "accuracy", "seq2seq": "exact_match"}
PROMPT_TOKENS = 16
# Decode is timed over 3 calls or this many seconds, whichever is longer; eval over this many
# passes over its batches. Each reports its fastest: a host's other work only slows a call.
DECODE_SECONDS = 1.0
EVAL_PASSES = 2


@dataclasses.dataclass
class Row:
  """One run's line of the report."""
  run: str
  kind: str
  made: str                      # how the run was made
  parameters: int
  nonzero: int | None            # a run trained with unstructured sparsity: its nonzero weights
  weight_bytes: int              # of the parameters as the model holds them
  disk_bytes: int
  metric: str                    # perplexity, or the task's metric
  value: float
  eval_tokens_per_s: float
  decode_tokens_per_s: float | None  # None: the model does not generate


def report(runs: list[str], *, eval_batches: int = 20, decode_tokens: int = 32) -> list[Row]:
  """A Row for each of `runs` (run directories, checkpoints/<step> directories or Hugging Face
  model directories), scored on the first run's split."""
  if not runs:
    raise ConfigError("give at least one run to report on")
  if eval_batches < 1 or decode_tokens < 1:
    raise ConfigError(f"--eval_batches ({eval_batches}) and --decode_tokens ({decode_tokens}) "
                      "must be positive")
  targets = [load.resolve(run) for run in runs]
  reference = _config(targets[0][0])
  rows, first = [], None
  for (workdir, which), path in zip(targets, runs):
    loaded = load.load_run(workdir, _config(workdir, reference), which)
    if first is None:
      first = loaded
      prompt = _prompt(loaded)
    else:
      _check_tokenizer(first, loaded, path)
    with loaded.context():
      metric, value, eval_rate = _evaluate(loaded, eval_batches)
      decode_rate = _decode(loaded, prompt, decode_tokens)
    parameters, nonzero = _count(loaded)
    rows.append(Row(run=workdir, kind=loaded.config.kind, made=_made(loaded, first),
                    parameters=parameters, nonzero=nonzero, weight_bytes=_weight_bytes(loaded),
                    disk_bytes=quantize.checkpoint_disk_bytes(workdir, loaded.step),
                    metric=metric, value=value, eval_tokens_per_s=eval_rate,
                    decode_tokens_per_s=decode_rate))
    log.info("%s: %s %.4f, %.0f eval tokens/s", workdir, metric, value, eval_rate)
  return rows


def _config(workdir: str, reference=None):
  """The run's config on this machine's devices, with `reference`'s (the first run's) data
  section (its own objective kept), batch size, seed and task section."""
  config = load.config_here(workdir)
  with config.unlocked():
    if reference is not None:
      if ("task" in config) != ("task" in reference):
        raise ConfigError(f"{workdir} is a {config.kind} run and the first run a "
                          f"{reference.kind} run: a report compares runs scored the same way "
                          "(all pretraining-kind, or all fine-tuned for one task)")
      objective = config.data.objective
      config.data = reference.data.copy_and_resolve_references()
      config.data.objective = objective
      config.train.batch_size, config.seed = reference.train.batch_size, reference.seed
      if "task" in config:
        config.task = reference.task.copy_and_resolve_references()
  return config


def _check_tokenizer(first: load.Loaded, loaded: load.Loaded, path: str) -> None:
  a, b = first.tokenizer, loaded.tokenizer
  if (type(a) is not type(b) or a.vocab_size != b.vocab_size
      or a.contents() != b.contents()):
    raise ConfigError(f"{path} has another tokenizer than {first.workdir}: a report scores "
                      "every run on the first run's split, which needs the same tokenizer")


def _evaluate(loaded: load.Loaded, eval_batches: int) -> tuple[str, float, float]:
  """(metric name, its value, tokens/s) over the first `eval_batches` batches of the split."""
  if loaded.task is None:
    evaluator, metric = pretrain.evaluator(loaded.config, loaded.tokenizer, loaded.scorer,
                                           max_batches=None), "perplexity"
  else:
    split, _ = finetune.eval_split(loaded.config, "")
    evaluator = finetune.evaluator(loaded.config, loaded, loaded.scorer, split, generate=True)
    metric = TASK_METRICS[loaded.task.name]
  split = evaluator.split
  evaluator.split = dataclasses.replace(split, batches=lambda: itertools.islice(split.batches(), 1))
  evaluator.report(loaded.params)  # compiles
  evaluator.split = dataclasses.replace(
      split, batches=lambda: itertools.islice(split.batches(), eval_batches))
  seconds = []
  for _ in range(EVAL_PASSES):  # the fastest: a busy host slows a pass, never speeds it
    began = time.perf_counter()
    values, _ = evaluator.report(loaded.params)
    seconds.append(time.perf_counter() - began)
  return metric, float(values[metric]), values["tokens"] / min(seconds)


def _prompt(loaded: load.Loaded) -> np.ndarray:
  """[PROMPT_TOKENS] ids: the start of the first row of the split's first batch."""
  shard = dict(process_index=jax.process_index(), process_count=jax.process_count())
  if loaded.task is None:
    data = objectives.dataset(loaded.config, loaded.tokenizer, "eval", **shard)
  else:
    split, _ = finetune.eval_split(loaded.config, "")
    data = loaded.task.dataset(loaded.config, loaded.tokenizer, loaded.labels,
                               loaded.examples(split), family=loaded.family, split=split, **shard)
  batch = next(iter(data))
  key = "encoder_inputs" if "encoder_inputs" in batch else "inputs"
  segments = batch[key.replace("inputs", "segment_ids")][0]
  ids = np.asarray(batch[key][0])[np.asarray(segments) > 0]
  return ids[:PROMPT_TOKENS].astype(np.int32)


def _generates(loaded: load.Loaded) -> bool:
  return loaded.family.generates and (loaded.task is None or loaded.task.name == "seq2seq")


def _decode(loaded: load.Loaded, prompt: np.ndarray, new_tokens: int) -> float | None:
  """Greedy tokens/s of one prompt (padded with empty rows to the data-parallel size): the
  fastest of the calls timed after one untimed call, at least 3 of them and DECODE_SECONDS;
  None for a model that does not generate."""
  if not _generates(loaded):
    return None
  spec = loaded.batch_sharding.spec[0] if loaded.batch_sharding.spec else None
  axes = () if spec is None else (spec if isinstance(spec, tuple) else (spec,))
  rows = int(np.prod([loaded.mesh.shape[a] for a in axes]))
  tokens = np.zeros((rows, len(prompt)), np.int32)
  tokens[0] = prompt
  segments = np.zeros_like(tokens)
  segments[0] = 1
  prefix = loaded.family.prompt_prefix
  prompts = jax.device_put({f"{prefix}inputs": tokens, f"{prefix}segment_ids": segments},
                           loaded.batch_sharding)
  config = decoding.GenerationConfig(max_new_tokens=new_tokens)
  model, family = loaded.model, loaded.family
  method = model.lm_logits if loaded.task else None
  run = jax.jit(lambda params, batch: decoding.generate(
      model, params, batch, family=family, config=config, eos_id=-1, method=method).tokens)
  jax.block_until_ready(run(loaded.params, prompts))
  times, began = [], time.perf_counter()
  while len(times) < 3 or time.perf_counter() - began < DECODE_SECONDS:
    start = time.perf_counter()
    jax.block_until_ready(run(loaded.params, prompts))
    times.append(time.perf_counter() - start)
  return new_tokens / min(times)


def _count(loaded: load.Loaded) -> tuple[int, int | None]:
  """(parameters, nonzero ones where the run was trained with unstructured sparsity); a
  quantized array counts its logical elements."""
  parameters = quantization.num_values(loaded.params)
  nonzero = None
  if loaded.config.prune.method:
    nonzero = sum(int(np.count_nonzero(jax.device_get(x)))
                  for x in jax.tree.leaves(loaded.params))
  return parameters, nonzero


def _made(loaded: load.Loaded, first: load.Loaded) -> str:
  """How the run was made, from its config.json's sections."""
  config, parts = loaded.config, []
  if config.kind == "quantized":
    q = config.quantize
    how = f", static scales from {q.calibration_batches} batches" if q.calibration_batches else ""
    parts.append(f"quantized {q.scheme} of {q.source} step {q.source_step}{how}")
  elif config.kind == "distill":
    parts.append(f"distilled from {config.teacher}")
  elif config.kind == "pretrain":
    parts.append(f"pretrained {loaded.step} steps")
  elif config.kind == "finetune":
    parts.append(f"fine-tuned for {config.task.kind}, step {loaded.step}")
  else:
    parts.append("converted")
  m, f = loaded.model_config, first.model_config
  same_shape = (m.family, m.num_layers, m.embed_dim) == (f.family, f.num_layers, f.embed_dim)
  if config.prune.kept_heads or (loaded is not first and same_shape and (
      m.num_heads, m.mlp_dim) != (f.num_heads, f.mlp_dim)):
    parts.append(f"pruned: heads {m.num_heads}/{f.num_heads}, mlp {m.mlp_dim}/{f.mlp_dim}")
  p = config.prune
  if p.method == "magnitude":
    parts.append(f"sparsity {p.target_sparsity:.0%} (magnitude, {p.scope})")
  elif p.method == "n_m":
    parts.append(f"sparsity {p.n}:{p.m}")
  return "; ".join(parts)


def _weight_bytes(loaded: load.Loaded) -> int:
  """Bytes of the run's parameters: a quantized run's QArrays as stored (values and scales)."""
  if loaded.config.kind == "quantized":
    return quantization.stored_bytes(loaded.params).total
  return sum(x.nbytes for x in jax.tree.leaves(loaded.params))


def _size(n: int) -> str:
  return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


HEADER = ("run", "kind", "made", "parameters", "weights", "on disk", "metric", "eval tok/s",
          "decode tok/s")


def cells(row: Row) -> tuple[str, ...]:
  """A row's table cells."""
  parameters = f"{row.parameters:,}" + (f" ({row.nonzero:,} nonzero)"
                                        if row.nonzero is not None else "")
  decode = "-" if row.decode_tokens_per_s is None else f"{row.decode_tokens_per_s:,.0f}"
  return (os.path.basename(row.run.rstrip("/")), row.kind, row.made, parameters,
          _size(row.weight_bytes), _size(row.disk_bytes), f"{row.metric} {row.value:.4f}",
          f"{row.eval_tokens_per_s:,.0f}", decode)


def format_table(rows: list[Row]) -> str:
  """The rows as aligned columns, as the benchmarks print them."""
  table = [HEADER] + [cells(r) for r in rows]
  widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
                   for line in table)


def markdown(rows: list[Row]) -> str:
  """The rows as a Markdown table."""
  lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
  lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |" for r in rows]
  return "\n".join(lines) + "\n"


def plot(rows: list[Row], path: str) -> bool:
  """Writes the metric against the weights' bytes (log x), one labelled point per run, as a PNG at
  `path`; False (and one log line) without matplotlib."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    log.info("the quality-against-size plot needs matplotlib (pip install matplotlib): "
             "wrote the table only")
    return False
  fig, ax = plt.subplots(figsize=(6, 4))
  for row in rows:
    ax.scatter(row.weight_bytes, row.value)
    ax.annotate(os.path.basename(row.run.rstrip("/")), (row.weight_bytes, row.value),
                textcoords="offset points", xytext=(4, 4), fontsize=8)
  ax.set_xscale("log")
  ax.set_xlabel("bytes of the weights")
  ax.set_ylabel(rows[0].metric if rows else "")
  ax.set_title("quality against size")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return True
