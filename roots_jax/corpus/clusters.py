"""The duplicate-groups stage (one task): exact groups from the exact hashes, near clusters from
datatrove's MinHash bucket matches (transitively joined, as datatrove's MinhashDedupCluster),
and what the final stage's filters and the user read: per rank the documents of each group,
every removed document's key, and duplicates.jsonl.

A document removed as an exact duplicate is not a near one too; it still joins clusters (A' a
copy of A, B near A': B is recorded as near A). Of each group the first document by (rank,
position) is kept, so the kept one is the same however the corpus is split into tasks.
"""

import json
import os
from typing import Callable

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from roots_jax.corpus import dedup_files

PAIR_DTYPE = np.dtype([("f1", "<u4"), ("d1", "<u4"), ("f2", "<u4"), ("d2", "<u4")])


def _groups(hashes: np.ndarray, keys: np.ndarray) -> list[np.ndarray]:
  """The keys sharing a hash, each group ascending, groups of one left out."""
  order = np.lexsort((keys, hashes))
  hashes, keys = hashes[order], keys[order]
  starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
  bounds = np.r_[starts, len(hashes)]
  return [keys[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b - a > 1]


class _UnionFind:
  """Joins toward the smaller key, so a cluster's root is its first document."""

  def __init__(self):
    self.parent: dict[int, int] = {}

  def find(self, x: int) -> int:
    parent = self.parent
    parent.setdefault(x, x)
    while parent[x] != x:
      parent[x] = parent[parent[x]]
      x = parent[x]
    return x

  def union(self, a: int, b: int) -> None:
    ra, rb = self.find(a), self.find(b)
    if ra != rb:
      self.parent[max(ra, rb)] = min(ra, rb)


class DedupClusters(PipelineStep):
  type = "roots_jax"
  name = "dedup clusters"

  def __init__(self, dedup_dir: str, exact: bool, near: bool, num_buckets: int,
               hashes_per_bucket: int, min_similarity: float):
    super().__init__()
    self.dedup_dir, self.exact, self.near = dedup_dir, exact, near
    self.num_buckets, self.rows, self.min_similarity = num_buckets, hashes_per_bucket, min_similarity

  def exact_groups(self) -> list[np.ndarray]:
    hashes, keys = [np.zeros(0, np.uint64)], [np.zeros(0, np.uint64)]
    for rank, path in dedup_files.rank_files(self.dedup_dir, "exact/sigs", ".npy"):
      sigs = np.load(path)
      hashes.append(sigs["hash"])
      keys.append(dedup_files.key(rank, sigs["index"]))
    return _groups(np.concatenate(hashes), np.concatenate(keys))

  def signatures(self, nodes: np.ndarray) -> np.ndarray:
    """[len(nodes), num_buckets * rows]: the full MinHash signatures of `nodes` (sorted keys),
    gathered from the band files."""
    sigs = np.zeros((len(nodes), self.num_buckets * self.rows), np.uint64)
    for b in range(self.num_buckets):
      for rank, path in dedup_files.rank_files(self.dedup_dir, f"minhash/sigs/bucket_{b:03d}",
                                          ".minhash.sig"):
        records = np.fromfile(path, dtype=dedup_files.bucket_dtype(self.rows, False))
        keys = dedup_files.key(rank, records["doc"])
        pos = np.minimum(np.searchsorted(nodes, keys), max(len(nodes) - 1, 0))
        found = nodes[pos] == keys if len(nodes) else np.zeros(len(keys), bool)
        sigs[pos[found], b * self.rows:(b + 1) * self.rows] = records["sig"][found]
    return sigs

  def near_clusters(self) -> tuple[list[list[int]], Callable[[int, int], float]]:
    """Clusters (ascending keys, of two or more) and the estimated Jaccard of two members."""
    pairs = [np.fromfile(os.path.join(self.dedup_dir, "minhash", "buckets", n), dtype=PAIR_DTYPE)
             for n in sorted(os.listdir(os.path.join(self.dedup_dir, "minhash", "buckets")))
             if n.endswith(".dups")]
    pairs = np.concatenate(pairs or [np.zeros(0, PAIR_DTYPE)])
    a, b = dedup_files.key(pairs["f1"], pairs["d1"]), dedup_files.key(pairs["f2"], pairs["d2"])
    nodes = np.unique(np.r_[a, b])
    sigs = self.signatures(nodes)

    def similarity(x: int, y: int) -> float:
      row = np.searchsorted(nodes, [x, y])
      return float(np.mean(sigs[row[0]] == sigs[row[1]]))

    union = _UnionFind()
    for x, y in zip(a.tolist(), b.tolist()):
      if similarity(x, y) >= self.min_similarity:
        union.union(x, y)
    clusters: dict[int, list[int]] = {}
    for node in nodes.tolist():
      clusters.setdefault(union.find(node), []).append(node)
    return [c for c in clusters.values() if len(c) > 1], similarity

  def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1):
    # entries[kind]: (key, group size, kept key or None, similarity or None)
    entries = {"exact": [], "near": []}
    removed = set()
    with self.track_time():
      for group in self.exact_groups() if self.exact else []:
        group = group.tolist()
        entries["exact"].append((group[0], len(group), None, None))
        entries["exact"] += [(k, len(group), group[0], 1.0) for k in group[1:]]
        removed.update(group[1:])
      clusters, similarity = self.near_clusters() if self.near else ([], None)
      for cluster in clusters:
        members = [k for k in cluster if k not in removed]
        if len(members) > 1:
          entries["near"].append((members[0], len(members), None, None))
          entries["near"] += [(k, len(members), members[0], similarity(k, members[0]))
                              for k in members[1:]]
      removed.update(k for k, _, kept, _ in entries["near"] if kept is not None)
      for kind, rows in entries.items():
        self.stat_update(f"{kind}_removed", value=sum(kept is not None for _, _, kept, _ in rows))
      self.write(entries, removed)

  def write(self, entries: dict, removed: set[int]) -> None:
    d = self.dedup_dir
    keys = {k for rows in entries.values() for row in rows for k in (row[0], row[2]) if k is not None}
    by_rank: dict[int, list[int]] = {}
    for k in keys:
      by_rank.setdefault(k >> 32, []).append(k & 0xFFFFFFFF)
    ids = {}
    for r, indices in by_rank.items():
      ids.update({dedup_files.key(r, i).item(): v for i, v in dedup_files.read_ids(d, r, indices).items()})
    duplicates = []
    for kind, rows in entries.items():
      for _, path in dedup_files.rank_files(d, f"{kind}/ranks", ".jsonl"):  # a previous run's
        os.remove(path)
      per_rank: dict[int, list] = {}
      for k, size, kept, sim in sorted(rows):
        per_rank.setdefault(k >> 32, []).append(json.dumps(
            {"id": ids[k], "size": size, "kept": None if kept is None else ids[kept],
             "similarity": sim}))
        if kept is not None:
          duplicates.append((ids[k], kind, ids[kept], sim))
      for r, lines in per_rank.items():
        dedup_files.write_lines(dedup_files.rank_path(d, f"{kind}/ranks", r, ".jsonl"), lines)
    dedup_files.save(os.path.join(d, "removed.npy"), np.array(sorted(removed), np.uint64))
    dedup_files.write_lines(os.path.join(d, "duplicates.jsonl"), (
        json.dumps({"removed": r, "kept": k, "kind": kind, "similarity": s})
        for r, kind, k, s in sorted(duplicates)))
