"""The import rules in .importlinter hold: commands on top of the run library, each layer
importing only the ones below it, and no import cycles in any package."""

import os

from importlinter import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_contracts_are_kept(capsys):
  code = cli.lint_imports(os.path.join(REPO, ".importlinter"), no_cache=True, no_logo=True)
  assert code == 0, capsys.readouterr().out
