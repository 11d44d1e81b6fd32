"""notebooks/quickstart.ipynb runs top to bottom in a fresh kernel, as a user runs it (one CPU
device), and leaves its runs and plot in ROOTS_JAX_NOTEBOOK_DIR."""

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks", "quickstart.ipynb")


def test_the_committed_notebook_has_no_outputs():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert code and all(not c.outputs and c.execution_count is None for c in code)


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
