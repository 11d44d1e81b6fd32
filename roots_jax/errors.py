"""The project's exception types: user mistakes get one of these, with a message saying what to change.

The CLIs catch `RootsError`, print its message on one line and exit with status 2.
"""


class RootsError(Exception):
  """Base of every error caused by user input (config, data, checkpoints, CLI arguments)."""


class ConfigError(RootsError):
  """A config key, type, value or combination that cannot work."""


class DataError(RootsError):
  """Missing, unreadable or unusable data or tokenizer files."""


class CheckpointError(RootsError):
  """A checkpoint that is missing, corrupted or does not match the model."""


class TrainingHalted(RootsError):
  """Training stopped on purpose (e.g. a non-finite loss); the last good checkpoint is intact."""
