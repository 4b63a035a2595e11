"""examples/quickstart.ipynb runs top to bottom (nbclient, this interpreter's python3 kernel): every cell
without an error, the widgets as anywidget views, the figures as Plotly."""
from __future__ import annotations

import pytest

import os
import time

import nbformat
from nbclient import NotebookClient

from conftest import ROOT

pytestmark = pytest.mark.slow  # whole-pipeline runs: `make test`, not `make test-fast`

NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    work = tmp_path / "run"
    work.mkdir()
    started = time.perf_counter()
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    seconds = time.perf_counter() - started
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    kinds = [k for o in outputs for k in o.get("data", {})]
    assert kinds.count("application/vnd.jupyter.widget-view+json") == 2  # the two attention widgets
    assert kinds.count("application/vnd.plotly.v1+json") == 4  # frequencies, kernel, features, sweep
    assert (work / "attention_128px.html").stat().st_size > 100_000
    assert seconds < 120, seconds
