"""Test setup: 8 simulated CPU devices, so sharding is exercised for real, and one persistent
compilation cache for the session (its xdist workers and the processes tests start), since many
tests compile the same tiny models; a roots_jax cache of the session's own."""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the first process of the session
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="roots_jax_test_cache_")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
# The user's cache (converted models, trained tokenizers) stays out of the tests: one per session.
if not os.path.basename(os.environ.get("ROOTS_JAX_CACHE", "")).startswith("roots_jax_test_"):
  os.environ["ROOTS_JAX_CACHE"] = tempfile.mkdtemp(prefix="roots_jax_test_")
  atexit.register(shutil.rmtree, os.environ["ROOTS_JAX_CACHE"], ignore_errors=True)

import functools
import importlib
import json
import logging
import random
import subprocess
import sys

import pytest

# The optional extras some tests need (marked extra("hf"), extra("datasets"), extra("wandb")):
# the hf extra's reference implementations (torch, transformers), Hugging Face datasets
# (data.source=hf) and Weights & Biases (train.loggers=wandb).
EXTRAS = {
    "hf": (("torch", "transformers"), "pip install torch --index-url "
           "https://download.pytorch.org/whl/cpu && pip install -e '.[hf]'"),
    "datasets": (("datasets",), "pip install -e '.[datasets]'"),
    "wandb": (("wandb",), "pip install -e '.[wandb]'"),
    "quant": (("qwix",), "pip install -e '.[quant]'"),
    "compare": (("starlette", "uvicorn"), "pip install -e '.[compare]'"),
    # Selenium driving Debian's headless Chromium (the programs below).
    "browser": (("selenium",), "pip install selenium && apt-get install chromium chromium-driver"),
    "lmeval": (("lm_eval",), "pip install -e '.[lmeval]'"),
}
# The programs an extra needs besides its packages, found on PATH.
EXTRA_PROGRAMS = {"browser": ("chromium", "chromedriver")}
# Set (as .ci/run does) to make a missing extra fail those tests instead of skipping them.
REQUIRE_EXTRAS = "ROOTS_JAX_REQUIRE_EXTRAS"


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: a test of a minute or more (deselect: -m 'not slow')")
  config.addinivalue_line("markers", "extra(name): needs an optional extra (hf: torch and "
                          "transformers, datasets, wandb, quant: qwix, compare: starlette and "
                          "uvicorn, browser: selenium and chromium, lmeval: lm-eval); skipped "
                          "without it, failed "
                          f"instead when {REQUIRE_EXTRAS}=1")


@functools.cache
def _missing(packages: tuple[str, ...]) -> tuple[str, ...]:
  missing = []
  for name in packages:
    try:
      importlib.import_module(name)
    except ImportError:
      missing.append(name)
  return tuple(missing)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
  """The one place that decides what a missing extra means for a test marked extra(name)."""
  for marker in item.iter_markers("extra"):
    packages, install = EXTRAS[marker.args[0]]
    missing = _missing(packages) + tuple(
        p for p in EXTRA_PROGRAMS.get(marker.args[0], ()) if shutil.which(p) is None)
    if missing:
      reason = f"needs {' and '.join(missing)} (the {marker.args[0]} extra): {install}"
      if os.environ.get(REQUIRE_EXTRAS) == "1":
        pytest.fail(f"{REQUIRE_EXTRAS}=1 but this test {reason}", pytrace=False)
      pytest.skip(reason)


def _vocabulary(rng: random.Random, size: int = 400) -> list[str]:
  syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
  return ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(size)]


def _document(rng: random.Random, words: list[str]) -> str:
  """Sentences of Zipf-distributed words: learnable structure for a few training steps."""
  weights = [1.0 / (rank + 1) for rank in range(len(words))]
  sentences = []
  for _ in range(rng.randint(3, 12)):
    sentence = rng.choices(words, weights, k=rng.randint(4, 12))
    sentences.append(" ".join(sentence).capitalize() + ".")
  return " ".join(sentences)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
  """Small JSONL train/validation files and a sentencepiece model trained on them (vocab 512)."""
  root = tmp_path_factory.mktemp("corpus")
  rng = random.Random(0)
  words = _vocabulary(rng)
  for name, count in (("train.jsonl", 600), ("val.jsonl", 60)):
    with open(root / name, "w") as f:
      for _ in range(count):
        f.write(json.dumps({"text": _document(rng, words)}) + "\n")
  subprocess.run([sys.executable, "-m", "roots_jax.tokenizer", "train", "--input",
                  str(root / "train.jsonl"), "--vocab_size", "512", "--output",
                  str(root / "spm.model")], check=True, capture_output=True)
  return root


PRETRAINING = {
    "decoder": ("configs/gpt2.py:tiny", {}),
    "encoder": ("configs/bert.py:tiny", {}),
    "encoder_decoder": ("configs/t5.py:tiny", {"model__head_dim": 16}),
}
WORDS = ["ba", "ko", "mi", "tu", "ze", "lo", "pa", "ri", "7", "42", "seven"]


@pytest.fixture(scope="session")
def pretrained(corpus, tmp_path_factory):
  """family -> a pretraining workdir of 3 steps on the corpus fixture."""
  from roots_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from roots_jax.runs.pretrain import train  # pylint: disable=g-import-not-at-top
  from tiny_gpt import tiny_overrides  # pylint: disable=g-import-not-at-top
  runs = {}
  for family, (spec, extra) in PRETRAINING.items():
    workdir = tmp_path_factory.mktemp(f"pretrained_{family}")
    train(config_lib.load_config(spec, tiny_overrides(corpus, train__steps=3, **extra)),
          str(workdir))
    runs[family] = str(workdir)
  return runs


@pytest.fixture(scope="session")
def task_files(tmp_path_factory):
  """kind -> (train, validation, test) JSONL files of a small learnable task."""
  root = tmp_path_factory.mktemp("tasks")
  rng = random.Random(0)

  def example(kind):
    words = rng.choices(WORDS, k=rng.randint(3, 10))
    if kind == "classification":  # string labels, mapped to ids by the driver
      return {"text": " ".join(words), "label": "digits" if "42" in words or "7" in words else "none"}
    if kind == "regression":
      return {"text": " ".join(words), "label": words.count("ba") / len(words)}
    if kind == "token_classification":
      return {"text": words, "label": ["NUM" if w.isdigit() else "O" for w in words]}
    return {"text": " ".join(words), "label": " ".join(reversed(words[:3]))}

  files = {}
  for kind in ("classification", "regression", "token_classification", "seq2seq"):
    paths = []
    for split, count in (("train", 64), ("validation", 12), ("test", 10)):
      path = root / f"{kind}_{split}.jsonl"
      path.write_text("".join(json.dumps(example(kind)) + "\n" for _ in range(count)))
      paths.append(str(path))
    files[kind] = paths
  return files


@pytest.fixture(autouse=True)
def _roots_jax_logger():
  """Each test finds the roots_jax logger as Python leaves it: a command run in-process puts it
  on the console (cli.log_to_console: its own handler, no propagation), where caplog no longer
  sees its records."""
  logger = logging.getLogger("roots_jax")
  handlers, propagate, level = logger.handlers[:], logger.propagate, logger.level
  yield
  logger.handlers[:] = handlers
  logger.propagate, logger.level = propagate, level


# Small data fixtures for the data, objectives and tasks tests: a tokenizer trained once, tiny
# configs and document files.

VOCAB_SIZE = 512


@pytest.fixture(scope="session")
def tokenizer():
  """BPE on 300 KB of the built-in corpus: about a second, and real code to learn from."""
  from roots_jax.data import sources  # pylint: disable=g-import-not-at-top
  from roots_jax.data.sentencepiece import (  # pylint: disable=g-import-not-at-top
      SentencePieceTokenizer, train_tokenizer)
  docs = sources.DocumentStream(sources.BuiltinSource("train", 0.02), repeat=False, seed=0)
  return SentencePieceTokenizer(train_tokenizer(docs, vocab_size=VOCAB_SIZE, model_type="bpe",
                                                max_bytes=300_000))


@pytest.fixture
def make_config():
  """config(**data_fields): seq_len 32, global batch 4, the test tokenizer's vocabulary."""
  from roots_jax.config import base_config  # pylint: disable=g-import-not-at-top

  def make(**data):
    config = base_config()
    config.model.vocab_size = VOCAB_SIZE
    config.train.batch_size = 4
    config.data.update(dict(seq_len=32, shuffle_window=64, prefetch=0))
    config.data.update(data)
    return config

  return make


def documents(n: int, tag: str = "") -> list[str]:
  """n distinct documents from a few tokens to several 32-token windows long."""
  words = ["alpha", "beta", "gamma", "def", "return", "(x)", "é", "\t", "42", "\n"]
  return [f"doc{tag}{i}: " + " ".join(words[(i * j) % len(words)] for j in range(i * 7 % 60 + 1))
          for i in range(n)]


@pytest.fixture
def jsonl_files(tmp_path):
  """Three JSONL files of 20 documents each; returns (glob, all documents in file order)."""
  docs = []
  for k in range(3):
    part = documents(20, tag=f"f{k}-")
    with open(tmp_path / f"part{k}.jsonl", "w", encoding="utf-8") as f:
      f.writelines(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(part))
    docs += part
  return str(tmp_path / "part*.jsonl"), docs
