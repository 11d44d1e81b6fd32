"""What the commands share: parsing `--name value` and `--config.KEY=VALUE` arguments, logging
to the console, and the one place where a user error (RootsError) becomes one line on stderr
and exit status 2."""

import argparse
import logging
import sys
from typing import Callable

from roots_jax import progress
from roots_jax.errors import ConfigError, RootsError

log = logging.getLogger("roots_jax")


def parse_args(argv: list[str], usage: str, names=("config", "workdir"), required=None):
  """-> ({name: value}, overrides) from `--name value` / `--name=value` and `--config.a.b=v`.
  The `required` names (default: all) must be given."""
  values, overrides = {}, []
  args = list(argv)
  while args:
    arg = args.pop(0)
    flag, eq, value = arg.partition("=")
    name = flag[2:]
    if not flag.startswith("--") or (name not in names and not name.startswith("config.")):
      raise ConfigError(f"unknown argument {arg!r}; {usage}")
    if not eq:
      if not args:
        raise ConfigError(f"{flag} needs a value; {usage}")
      value = args.pop(0)
    if name.startswith("config."):
      overrides.append(f"{name[len('config.'):]}={value}")
    else:
      values[name] = value
  missing = [n for n in (names if required is None else required) if n not in values]
  if missing:
    raise ConfigError(f"missing --{missing[0]}; {usage}")
  return values, overrides


class ArgumentParser(argparse.ArgumentParser):
  """argparse whose bad arguments are a ConfigError (one line, exit 2), not its usage message."""

  def error(self, message):
    raise ConfigError(f"{message}; see {self.prog} --help")


def run(command: Callable[[], int | None]) -> int:
  """command()'s exit status (0 when it returns None); a RootsError is printed as one line,
  status 2."""
  try:
    status = command()
  except RootsError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0 if status is None else status


class _StderrHandler(logging.StreamHandler):
  """Writes to whatever sys.stderr is when a record comes (notebooks and pytest replace it),
  under the progress bars."""

  @property
  def stream(self):
    return sys.stderr

  @stream.setter
  def stream(self, value):
    del value

  def emit(self, record):
    try:
      progress.write(self.format(record), file=self.stream)
    except Exception:  # pylint: disable=broad-except
      self.handleError(record)


def log_to_console() -> None:
  """Our own handler: absl (imported by grain and Orbax) owns the root logger."""
  if not log.handlers:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
