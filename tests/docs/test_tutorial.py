"""docs/tutorial.ipynb: stored without outputs, and runs offline top to bottom (nbclient, the
venv's own Python as the kernel)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "docs" / "tutorial.ipynb"
DEV_SET = (REPO / ".." / "shared" / "data" / "imagenet-val-dev").resolve()


def test_tutorial_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "the tutorial has no code cells"
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, (f"code cells {dirty} of {NOTEBOOK.name} hold outputs: strip them "
                       f"(jupyter nbconvert --clear-output --inplace {NOTEBOOK})")


@pytest.mark.devset
def test_tutorial_runs_offline(tmp_path, monkeypatch):
    if not (DEV_SET / "metadata" / "image_ids.txt").is_file():
        pytest.skip(f"dev set not found at {DEV_SET}: the tutorial's evaluation and probe need it")
    nbformat = pytest.importorskip("nbformat", reason="nbformat is a dev extra")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is a dev extra")
    pytest.importorskip("ipykernel", reason="ipykernel is a dev extra")
    # the kernel is this interpreter (the venv's), whatever kernels the machine has installed
    kdir = tmp_path / "jupyter" / "kernels" / "camloc-venv"
    kdir.mkdir(parents=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "camloc venv", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.delenv("MPLBACKEND", raising=False)      # the kernel draws inline
    monkeypatch.setenv("PYTHONPATH", str(REPO / "src"))
    monkeypatch.setenv("CAMLOC_CACHE", str(tmp_path / "cache"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="camloc-venv",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    start = time.monotonic()
    client.execute()
    seconds = time.monotonic() - start
    outputs = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                        for o in c.get("outputs", []))
    assert "dev set not found" not in outputs
    assert "top-1" in outputs and "new classes:" in outputs
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []))
    assert images >= 3, "the figures were not drawn"
    print(f"tutorial ran in {seconds:.1f} s")
