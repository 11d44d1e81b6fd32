"""The user's cache ($ROOTS_JAX_CACHE, default ~/.cache/roots_jax): what is costly to make and
the same for every run that asks for it (Hugging Face models converted into runs, trained
tokenizers), each under a key of everything it was made from."""

import hashlib
import json
import os

# ROOTS_JAX_CACHE overrides.
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "roots_jax")


def path(*parts: str) -> str:
  """A path in the cache."""
  return os.path.join(os.environ.get("ROOTS_JAX_CACHE") or CACHE_DIR, *parts)


def key(*made_from) -> str:
  """16 hex digits of a hash of `made_from` (JSON values)."""
  text = json.dumps(made_from, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_stamps(paths) -> list[str]:
  """"path:size:mtime_ns" of each file: a file that changes changes its stamp."""
  stamps = []
  for p in paths:
    stat = os.stat(p)
    stamps.append(f"{p}:{stat.st_size}:{stat.st_mtime_ns}")
  return stamps
