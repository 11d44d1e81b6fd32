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


def make_manager(workdir: str, *, keep: int, subdir: str = "checkpoints", items=("state", "data"),
                 read_only: bool = False, **options) -> ocp.CheckpointManager:
  """workdir/checkpoints (state + data iterator); fine-tuning keeps its best state in
  workdir/best (items=("state",), with best_fn/best_mode options). A read-only manager (of
  another run, or for evaluation) creates, cleans and deletes nothing."""
  if read_only:
    options.update(create=False, max_to_keep=None)
  else:
    options.update(max_to_keep=keep, cleanup_tmp_directories=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), subdir),
                               options=ocp.CheckpointManagerOptions(**options), item_names=items)


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator, *, force=False,
         metrics: dict | None = None) -> bool:
  """Starts an async save of `state` and the iterator's position at `step` (a manager without a
  data item: data_iterator None). `metrics` are kept with it, for best_fn."""
  items = dict(state=ocp.args.StandardSave(state))
  if data_iterator is not None:
    items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
  return manager.save(step, args=ocp.args.Composite(**items), force=force or metrics is not None,
                      metrics={k: float(v) for k, v in metrics.items()} if metrics else None)


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


def restore_params(manager: ocp.CheckpointManager, step: int, abstract_params):
  """Only the parameters of the state saved at `step` (Orbax partial restore), into
  `abstract_params` (ShapeDtypeStructs with shardings; a subset of the saved tree is fine)."""
  target = {"params": abstract_params}
  try:
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True)))
  except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
    raise CheckpointError(
        f"cannot restore the parameters of checkpoint step {step} in {manager.directory} into "
        f"this model ({type(e).__name__}: {str(e).splitlines()[0][:300]})") from e
  params = restored.state["params"]
  for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(abstract_params),
                               jax.tree.leaves(params)):
    if want.shape != got.shape:
      raise CheckpointError(f"parameter {jax.tree_util.keystr(path)} is {got.shape} in "
                            f"{manager.directory} step {step} but this model needs {want.shape}")
  return params
