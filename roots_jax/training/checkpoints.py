"""Orbax checkpoints holding the train state and the data iterator's position together.

Saves are asynchronous and atomic (Orbax writes to a temporary directory and renames it when the
save is complete), so a run killed mid-save never leaves a checkpoint that restore would pick up.
Restoring takes abstract targets carrying the *current* mesh's shardings, so a checkpoint written
on one mesh restores into another.
"""

import os

import grain
import jax
import orbax.checkpoint as ocp

from roots_jax.errors import CheckpointError


def make_manager(workdir: str, *, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), "checkpoints"),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, cleanup_tmp_directories=True),
      item_names=("state", "data"))


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator, *, force=False) -> bool:
  """Starts an async save of `state` and the iterator's position at `step`."""
  return manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=grain.checkpoint.CheckpointSave(data_iterator)), force=force)


def restore(manager: ocp.CheckpointManager, abstract_state, data_iterator, step: int | None = None):
  """Restores the latest (or given) step into `abstract_state`'s shapes and shardings and moves
  `data_iterator` to the saved position. Returns the state, or None when there is no checkpoint."""
  step = manager.latest_step() if step is None else step
  if step is None:
    return None
  try:
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=grain.checkpoint.CheckpointRestore(data_iterator)))
  except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
    raise CheckpointError(
        f"checkpoint step {step} in {manager.directory} does not match this run's model or "
        f"optimizer ({type(e).__name__}: {str(e).splitlines()[0][:300]}); use a new --workdir or "
        "the config the checkpoint was written with") from e
  return restored.state


def abstract_like(tree, shardings):
  """ShapeDtypeStructs with the given shardings: the restore target for a (new) mesh."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
