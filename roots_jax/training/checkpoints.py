"""Orbax checkpoints holding the train state and the data iterator's position together.

Saves are asynchronous and atomic (Orbax writes to a temporary directory and renames it when the
save is complete), so a run killed mid-save never leaves a checkpoint that restore would pick up.
Restoring takes abstract targets carrying the *current* mesh's shardings, so a checkpoint written
on one mesh restores into another.
"""

import json
import logging
import os
import sys

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from roots_jax.errors import CheckpointError
from roots_jax.training import distributed

log = logging.getLogger("roots_jax")


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


def restore(manager: ocp.CheckpointManager, abstract_state, data_iterator):
  """Restores the newest readable checkpoint into `abstract_state`'s shapes and shardings and
  moves `data_iterator` to the saved position. Returns the state, or None when there is no
  checkpoint.

  A damaged checkpoint (truncated or missing files, bad checksums) is moved to
  workdir/damaged_checkpoints with a warning naming it, and the one before it is tried. One that
  is readable but does not fit this run (another model, optimizer or process count) is an error:
  the config is what should change, and the run's checkpoints stay where they are."""
  damaged = []
  for step in sorted(manager.all_steps(), reverse=True):
    state, damage = _restore_step(manager, step, abstract_state, data_iterator)
    if not distributed.any_process(damage is not None):
      return state
    damaged.append(_set_aside(manager, step))
    log.warning("checkpoint %d is damaged (%s); moved it to %s and trying the one before it",
                step, damage or "on another process", damaged[-1])
  if damaged:
    raise CheckpointError(
        f"no checkpoint in {manager.directory} could be read; the damaged ones are in "
        f"{_damaged_dir(manager)}: rerun to start the run from scratch, or use a new --workdir")
  return None


def _restore_step(manager, step: int, abstract_state, data_iterator):
  """-> (state, None) or (None, what is damaged). Raises CheckpointError when the checkpoint is
  whole but was written by another model, optimizer or process count."""
  _quiet_cancelled_reads()
  try:
    saved = _saved_tree(manager, step)
  except Exception as e:  # a missing or truncated _METADATA fails in several ways
    return None, f"its state metadata is unreadable: {_first_line(e)}"
  _check_tree(saved, abstract_state, f"checkpoint step {step} in {manager.directory}")
  try:
    state = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state))).state
  except Exception as e:  # the tree fits, so this is the files: tensorstore's DATA_LOSS etc.
    return None, f"its arrays are unreadable: {_first_line(e)}"
  damage = _restore_data(manager, step, data_iterator)
  return (None, damage) if damage else (state, None)


def saved_fields(manager: ocp.CheckpointManager, step: int) -> set[str]:
  """The top-level fields of the state saved at `step` (whether a pruning run's masks are)."""
  return set(_saved_tree(manager, step))


def _saved_tree(manager, step: int):
  """The tree of the state saved at `step`, from its metadata (shapes and dtypes, no arrays)."""
  handler = ocp.StandardCheckpointHandler()
  try:
    return handler.metadata(epath.Path(manager.directory) / str(step) / "state").tree
  finally:
    handler.close()


def _restore_data(manager, step: int, data_iterator) -> str | None:
  """Moves the iterator to the position saved at `step`; -> what is damaged, or None."""
  directory = epath.Path(manager.directory) / str(step) / "data"
  name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
  saved = sorted(p.name for p in directory.glob("process_*.json")) if directory.exists() else []
  if name not in saved:
    if saved:
      raise CheckpointError(
          f"checkpoint step {step} in {manager.directory} was written by "
          f"{saved[0].rsplit('-of-', 1)[1][:-len('.json')]} processes, and the data position is "
          "per process: resume with that many processes, or use a new --workdir")
    return "its data iterator position is missing"
  try:
    json.loads((directory / name).read_text())
  except (OSError, ValueError) as e:
    return f"its data iterator position is unreadable: {_first_line(e)}"
  try:
    manager.restore(step, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointRestore(data_iterator)))
  except Exception as e:  # the file is whole: the pipeline differs
    raise CheckpointError(
        f"the data position in checkpoint step {step} in {manager.directory} does not fit this "
        f"run's data pipeline ({_first_line(e)}); keep data.* and train.batch_size as the run "
        "was started, or use a new --workdir") from e
  return None


def _check_tree(saved, abstract_state, where: str) -> None:
  """CheckpointError naming the first leaf that differs between the saved and the wanted tree."""
  saved, wanted = _leaf_shapes(saved), _leaf_shapes(abstract_state)
  for path in sorted(set(saved) | set(wanted), key=lambda p: (p[0] != "params", p)):
    if saved.get(path) != wanted.get(path):
      have = lambda tree: f"shape {tree[path]}" if path in tree else "absent"
      raise CheckpointError(
          f"{where} was written by another model or optimizer: {'/'.join(path)} is "
          f"{have(saved)} there but {have(wanted)} in this run; use the config the checkpoint "
          "was written with, or a new --workdir")


def _leaf_shapes(tree) -> dict[tuple[str, ...], tuple[int, ...]]:
  """path (names and indices, as Orbax stores them) -> shape."""
  key = lambda k: str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
  return {tuple(key(k) for k in path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _damaged_dir(manager) -> str:
  return os.path.join(os.path.dirname(os.fspath(manager.directory)), "damaged_checkpoints")


def _set_aside(manager, step: int) -> str:
  """Moves a damaged step out of the manager's sight (process 0; the others wait)."""
  target = os.path.join(_damaged_dir(manager), str(step))
  if jax.process_index() == 0:
    os.makedirs(_damaged_dir(manager), exist_ok=True)
    suffix = 0
    while os.path.exists(target + (f".{suffix}" if suffix else "")):
      suffix += 1
    target += f".{suffix}" if suffix else ""
    os.rename(os.path.join(os.fspath(manager.directory), str(step)), target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
  manager.reload()
  return target


def _quiet_cancelled_reads() -> None:
  """A failed read of a damaged checkpoint leaves tensorstore callbacks that find Orbax's event
  loop closed; Python would print each as an ignored exception. Only those are silenced."""
  previous = sys.unraisablehook
  if getattr(previous, "quiets_cancelled_reads", False):
    return

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed"):
      previous(unraisable)

  hook.quiets_cancelled_reads = True
  sys.unraisablehook = hook


def _first_line(e: Exception) -> str:
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0][:200] if text else ''}"


def abstract_like(tree, shardings):
  """ShapeDtypeStructs with the given shardings: the restore target for a (new) mesh."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def restore_params(manager: ocp.CheckpointManager, step: int, abstract_params):
  """Only the parameters of the state saved at `step` (Orbax partial restore), into
  `abstract_params` (ShapeDtypeStructs with shardings; a subset of the saved tree is fine). The
  saved shapes are compared with the wanted ones first, so a checkpoint of another model is a
  CheckpointError naming the parameter, and Orbax never starts reading it."""
  where = f"checkpoint step {step} in {manager.directory}"
  _quiet_cancelled_reads()
  try:
    saved = _saved_tree(manager, step)
  except Exception as e:  # a missing or truncated _METADATA fails in several ways
    raise CheckpointError(f"the state metadata of {where} is unreadable: {_first_line(e)}") from e
  if not isinstance(saved, dict) or "params" not in saved:
    raise CheckpointError(f"{where} holds no parameters")
  have, want = _leaf_shapes(saved["params"]), _leaf_shapes(abstract_params)
  for path in sorted(want):
    if have.get(path) != want[path]:
      there = f"{have[path]}" if path in have else "absent"
      raise CheckpointError(
          f"parameter {'/'.join(path)} is {there} in {where} but this model needs {want[path]}; "
          "use the model config the checkpoint was written with")
  target = {"params": abstract_params}
  try:
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True)))
  except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
    raise CheckpointError(f"cannot restore the parameters of {where}: {_first_line(e)}") from e
  return restored.state["params"]
