"""CI runs the README's test command, with the optional extras installed and required: the tests
that compare with torch/transformers are skipped on a machine without them, and fail in CI."""

import os
import re
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..")
PARITY_TEST = "tests/data/test_hf_tokenizers.py::test_ids_and_text_match_transformers[gpt2]"


def test_ci_runs_the_readme_test_command_with_the_extras_required():
  with open(os.path.join(ROOT, "README.md")) as f:
    block = re.search(r"```bash\n(.*?)```", f.read(), re.S).group(1).splitlines()
  test_command = block[1]
  assert "pytest" in test_command and "hf" not in test_command  # no torch for a plain run
  with open(os.path.join(ROOT, ".ci", "run")) as f:
    lines = [l for l in f.read().splitlines() if l and not l.startswith("#")]
  assert lines[-1] == test_command
  setup = lines[:-1]
  assert 'python -m pip install -q "torch==2.13.0"' in setup  # the CPU build, before the extra
  assert any(re.search(r"pip install .*-e \"\.\[.*hf.*\]\"", l) for l in setup)
  assert "export ROOTS_JAX_REQUIRE_EXTRAS=1" in setup


def _run_without_torch(tmp_path, require: bool) -> tuple[int, str]:
  """pytest's exit status and report on one transformers parity test, with torch and
  transformers hidden."""
  for name in ("torch", "transformers"):
    (tmp_path / f"{name}.py").write_text("raise ImportError('hidden by the test')\n")
  env = {k: v for k, v in os.environ.items() if k != "ROOTS_JAX_REQUIRE_EXTRAS"}
  env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), os.path.abspath(ROOT)])
  if require:
    env["ROOTS_JAX_REQUIRE_EXTRAS"] = "1"
  result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider",
                           PARITY_TEST], cwd=ROOT, env=env, capture_output=True, text=True)
  return result.returncode, result.stdout


def test_parity_tests_skip_without_torch_and_fail_when_required(tmp_path):
  code, out = _run_without_torch(tmp_path, require=False)
  assert code == 0 and "1 skipped" in out, out
  assert "needs torch and transformers (the hf extra)" in out and "whl/cpu" in out
  code, out = _run_without_torch(tmp_path, require=True)  # an error in setup: CI fails
  assert code == 1 and "1 error" in out, out
  assert "ROOTS_JAX_REQUIRE_EXTRAS=1 but this test needs torch" in out
