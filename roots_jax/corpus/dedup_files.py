"""Where the deduplication stages leave their work under `dedup_dir`, and how they name a
document between them: its key, rank << 32 | its position in that rank's input as the signature
stage read it (the final stage reads the same files with the same task count, so rank r holds
the same documents; its filters match them by id, so a filter that drops documents before them
shifts nothing).

  ids/{rank}.txt                  the rank's document ids in order, one JSON string a line
  exact/sigs/{rank}.npy           (hash, index) of each document's normalised text, by hash
  minhash/sigs/bucket_{b}/{rank}.minhash.sig, minhash/buckets/*.dups   datatrove's MinHash files
  lines/sigs/{rank}.npy           (hash, index) of each document's distinct lines, by hash
  exact/ranks/{rank}.jsonl, near/ranks/{rank}.jsonl   the rank's documents in a duplicate group
  removed.npy                     the keys of every document the exact and near stages remove
  lines/boilerplate/{task}.npy    (hash, keeper key) of each boilerplate line
  duplicates.jsonl                {"removed", "kept", "kind", "similarity"} by removed id
"""

import json
import os

import numpy as np

SIG_DTYPE = np.dtype([("hash", "<u8"), ("index", "<u4")])


def bucket_dtype(rows: int, split: bool) -> np.dtype:
  """A record of datatrove's .minhash.sig files: `rows` hashes then the document's index;
  `split` names each hash (to sort by them in order), else one [rows] field."""
  if split:
    return np.dtype([(f"h{i}", "<u8") for i in range(rows)] + [("doc", "<u4")])
  return np.dtype([("sig", "<u8", (rows,)), ("doc", "<u4")])


def key(rank: int, index) -> np.ndarray:
  return (np.uint64(rank) << np.uint64(32)) | np.asarray(index, np.uint64)


def rank_path(dedup_dir: str, sub: str, rank: int, suffix: str) -> str:
  return os.path.join(dedup_dir, sub, f"{rank:05d}{suffix}")


def rank_files(dedup_dir: str, sub: str, suffix: str) -> list[tuple[int, str]]:
  """(rank, path) of the files in `sub` named by rank, by rank."""
  directory = os.path.join(dedup_dir, sub)
  if not os.path.isdir(directory):
    return []
  names = sorted(n for n in os.listdir(directory) if n.endswith(suffix))
  return [(int(n[:-len(suffix)]), os.path.join(directory, n)) for n in names]


def save(path: str, array: np.ndarray) -> None:
  """Atomically, so a task that dies leaves no half file for its rerun to trust."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "wb") as f:
    np.save(f, array)
  os.replace(path + ".tmp", path)


def write_lines(path: str, lines) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    for line in lines:
      f.write(line + "\n")
  os.replace(path + ".tmp", path)


def read_ids(dedup_dir: str, rank: int, indices) -> dict[int, str]:
  """The ids of the rank's documents at `indices`, streaming the rank's id file."""
  wanted = set(np.asarray(indices).tolist())
  found = {}
  if wanted:
    with open(rank_path(dedup_dir, "ids", rank, ".txt"), encoding="utf-8") as f:
      for i, line in enumerate(f):
        if i in wanted:
          found[i] = json.loads(line)
  return found


def removed_keys(dedup_dir: str) -> np.ndarray:
  path = os.path.join(dedup_dir, "removed.npy")
  return np.load(path) if os.path.exists(path) else np.zeros(0, np.uint64)


def misaligned(n: int, step: str) -> str:
  return (f"{n} documents that the deduplication stages listed never reached the {step} step: "
          "read the signature stage's folder with the same task count in the final stage, and "
          "put the deduplication filters first after the reader")
