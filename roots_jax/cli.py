"""What the commands share: one argument parser (--help, `--config.KEY=VALUE` overrides), logging
to the console, and the one place where a user error (RootsError) becomes one line on stderr
and exit status 2."""

import argparse
import logging
import sys
from typing import Callable

from roots_jax import progress
from roots_jax.errors import ConfigError, RootsError

log = logging.getLogger("roots_jax")


class Done(Exception):
  """--help (or --config.help) was answered: the command ends with `status`."""

  def __init__(self, status: int = 0):
    super().__init__(status)
    self.status = status


class ArgumentParser(argparse.ArgumentParser):
  """Every command's parser: --help prints the usage, the command's docstring and its flags
  (exit 0); a bad argument is a ConfigError (one line, exit 2), not argparse's usage message.
  With `overrides`, any number of `--config.KEY=VALUE` (or `--config.KEY VALUE`) set config
  keys; with `keys_help`, `--config.help` asks for the list of config keys."""

  def __init__(self, *args, overrides: bool = False, keys_help: bool = False, **kwargs):
    kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    super().__init__(*args, **kwargs)
    self.overrides, self.keys_help = overrides, keys_help
    if overrides:
      self.epilog = ("config overrides:\n  --config.SECTION.KEY=VALUE  sets a config key, "
                     "parsed as the key's type; repeat for more" + (
                         "\n  --config.help               lists the config keys with their "
                         "types, values (--config's,\n                              else the "
                         "defaults) and meanings" if keys_help else ""))

  def parse(self, argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments, with `.overrides` (["KEY=VALUE", ...]) and `.config_help` (bool)."""
    args, overrides, keys_help = list(sys.argv[1:] if argv is None else argv), [], False
    rest = []
    while args:
      arg = args.pop(0)
      if not (self.overrides and arg.startswith("--config.")):
        rest.append(arg)
      elif arg == "--config.help" and self.keys_help:
        keys_help = True
      elif "=" in arg:
        overrides.append(arg[len("--config."):])
      elif args and not args[0].startswith("--"):
        overrides.append(f"{arg[len('--config.'):]}={args.pop(0)}")
      else:
        self.error(f"{arg} needs a value (--config.KEY=VALUE)")
    if keys_help:  # the keys are listed without a run: nothing else is required
      for action in self._actions:
        action.required = False
    namespace, unknown = self.parse_known_args(rest)
    if unknown:
      self.error(f"unknown argument {unknown[0]!r}")
    namespace.overrides, namespace.config_help = overrides, keys_help
    return namespace

  def error(self, message):
    raise ConfigError(f"{message}; see {self.prog} --help")

  def exit(self, status=0, message=None):
    if message:
      print(message, end="", file=sys.stderr)
    raise Done(status)


def run(command: Callable[[], int | None]) -> int:
  """command()'s exit status (0 when it returns None, or answered --help); a RootsError is
  printed as one line, status 2."""
  try:
    status = command()
  except Done as done:
    return done.status
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
