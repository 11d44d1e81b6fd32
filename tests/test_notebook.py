"""notebooks/quickstart.ipynb runs top to bottom in a fresh kernel, as a user runs it (one CPU
device), and leaves its runs and plot in ROOTS_JAX_NOTEBOOK_DIR."""

import importlib.util
import json
import os
import subprocess
import sys
import zipfile

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks", "quickstart.ipynb")


def test_the_committed_notebook_has_no_outputs():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert code and all(not c.outputs and c.execution_count is None for c in code)


def _fake_checkout(root):
  (root / "roots_jax").mkdir(parents=True)
  (root / "roots_jax" / "__init__.py").write_text("")
  (root / "setup.py").write_text("")


def test_install_cell_installs_an_uploaded_or_mounted_checkout(tmp_path, monkeypatch):
  """On Colab roots_jax is not installed: the install cell finds a zip (with its top folder) or
  a folder the user uploaded, and pip-installs it; with neither, it says what to upload."""
  install = next(c for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code")
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "roots_jax" else find_spec(name, *a))
  pip = []
  monkeypatch.setattr(subprocess, "run", lambda args, **kwargs: pip.append(args))
  monkeypatch.setattr(sys, "path", list(sys.path))

  upload = tmp_path / "zip" / "content"
  _fake_checkout(tmp_path / "repo" / "roots_jax-main")  # as GitHub's "Download ZIP" packs it
  upload.mkdir(parents=True)
  with zipfile.ZipFile(upload / "roots_jax-main.zip", "w") as z:
    for path in (tmp_path / "repo").rglob("*"):
      z.write(path, path.relative_to(tmp_path / "repo"))
  folder = tmp_path / "folder" / "content"
  _fake_checkout(folder / "roots_jax")  # a checkout folder named like the package
  for cwd, repo in ((upload, upload / "roots_jax-main_unpacked" / "roots_jax-main"),
                    (folder, folder / "roots_jax")):
    monkeypatch.chdir(cwd)
    exec(compile(install.source, "install cell", "exec"), {})  # pylint: disable=exec-used
    assert pip.pop() == [sys.executable, "-m", "pip", "install", "-q", "-e", str(repo)]
    assert sys.path[0] == str(repo)

  (tmp_path / "empty" / "content").mkdir(parents=True)
  monkeypatch.chdir(tmp_path / "empty" / "content")
  with pytest.raises(FileNotFoundError, match="upload roots_jax.zip or a roots_jax folder"):
    exec(compile(install.source, "install cell", "exec"), {})  # pylint: disable=exec-used


@pytest.mark.slow
def test_quickstart_runs_top_to_bottom(tmp_path):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}})
  # One CPU device, as on a laptop or Colab's CPU runtime (not the suite's 8 simulated ones).
  env = {**os.environ, "ROOTS_JAX_NOTEBOOK_DIR": str(tmp_path), "XLA_FLAGS": "",
         "JAX_PLATFORMS": "cpu", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
  client.execute(env=env)  # raises CellExecutionError, with the cell and traceback, on an error

  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  assert "validation loss" in text and "--- greedy" in text and "--- sample 3" in text
  assert "test accuracy" in text and "perplexity" in text
  assert any("image/png" in o.get("data", {}) for o in outputs)  # the loss curve, shown

  assert (tmp_path / "loss.png").stat().st_size > 0
  with open(tmp_path / "pretrain" / "metrics.jsonl") as f:
    assert max(json.loads(line)["step"] for line in f) == 100
  with open(tmp_path / "package" / "results.json") as f:
    results = json.load(f)
  assert results["split"] == "test" and 0.0 <= results["metrics"]["accuracy"] <= 1.0
