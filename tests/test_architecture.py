"""The import rules in .importlinter hold: commands on top of the run library, each layer
importing only the ones below it, and no import cycles in any package."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# import-linter's command closes the streams it writes to: run it in a process of its own.
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(sys.argv[1], no_cache=True, no_logo=True))")


def test_import_contracts_are_kept():
  result = subprocess.run([sys.executable, "-c", LINT, os.path.join(REPO, ".importlinter")],
                          capture_output=True, text=True, cwd=REPO)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "2 kept, 0 broken" in result.stdout
