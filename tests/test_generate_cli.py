"""python -m roots_jax.generate: numbered continuations per prompt; user errors are one line and
exit status 2."""

import os
import subprocess
import sys

import pytest

from roots_jax import generate


def test_prints_each_prompts_continuations(pretrained):
  """A subprocess, as a user runs it: greedy beams, numbered under their prompt."""
  result = subprocess.run(
      [sys.executable, "-m", "roots_jax.generate", "--workdir", pretrained["decoder"],
       "--prompt", "ba ko", "--prompt", "mi tu ze", "--max_length", "12",
       "--num_return_sequences", "3", "--num_beams", "3"],
      capture_output=True, text=True, check=False, env={**os.environ, "XLA_FLAGS": ""})
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  headers = [i for i, line in enumerate(lines) if line.startswith("prompt ")]
  assert [lines[i] for i in headers] == ["prompt 1: ba ko", "prompt 2: mi tu ze"]
  for header, prompt in zip(headers, ("ba ko", "mi tu ze")):
    numbered = [line for line in lines[header + 1:] if line[:1] == "["][:3]
    assert [line[:4] for line in numbered] == ["[1] ", "[2] ", "[3] "]
    assert all(line[4:].startswith(prompt) for line in numbered)  # a decoder continues it


def test_a_bad_run_exits_2_with_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "roots_jax.generate", "--workdir", str(tmp_path / "nope"),
       "--prompt", "x"], capture_output=True, text=True, check=False)
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
  assert "does not exist" in result.stderr


@pytest.mark.parametrize("family,args,message", [
    ("encoder", [], "does not generate"),
    ("decoder", ["--do_sample", "--temperature", "0"], "temperature must be > 0"),
    ("decoder", ["--num_return_sequences", "2"], "needs do_sample or num_beams >= 2"),
    ("decoder", ["--checkpoint", "7"], "one of the steps [3]"),
    ("decoder", ["--top_k", "many"], "invalid int value"),
    ("decoder", ["--beams", "2"], "unknown argument '--beams'"),
    (None, [], "--workdir"),
])
def test_user_errors_exit_2(family, args, message, pretrained, capsys):
  workdir = ["--workdir", pretrained[family]] if family else []
  assert generate.main([*workdir, "--prompt", "ba", *args]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
