"""The exploration notebook runs top to bottom on the embedded default (offline)."""

import shutil
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore.ipynb"


def test_notebook_executes(ray_session, synthesized, monkeypatch, tmp_path):
    # The kernel joins this session's Ray cluster, as a user's notebook joins theirs, and
    # resumes into a copy of the session's synthesis output, so its synthesis step finds
    # the samples already made (a fresh folder would synthesize them, a few minutes more).
    monkeypatch.setenv("RAY_ADDRESS", ray_session.get_runtime_context().gcs_address)
    out = tmp_path / "notebook_out"
    shutil.copytree(synthesized[0], out)
    monkeypatch.setenv("RAY_LCB_NOTEBOOK_OUT", str(out))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "INSTRUCTION:" in text and "NIAH mean score:" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3  # bar chart, histogram, heatmap
    assert (out / "eval" / "niah_heatmap.png").exists()
