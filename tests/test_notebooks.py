"""The notebooks run top to bottom on tiny synthetic data, and match make_notebooks.py."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TINY_ENV = {"FASHIONSEG_NB_IMAGES": "10", "FASHIONSEG_NB_SIZE": "64x48"}


def _kernel_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> None:
    """A ``python3`` kernel on this interpreter (not a system-wide one) and the given env."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    for name in ("DATA_ROOT", "RUN_DIR", "MPLBACKEND"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**TINY_ENV, **env}.items():
        monkeypatch.setenv(name, value)


def _execute(name: str, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, when one fails
    return nb


def _outputs(nb: nbformat.NotebookNode) -> tuple[str, int]:
    """All text a notebook printed or displayed, and the number of pictures it showed."""
    texts, pictures = [], 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            data = output.get("data", {})
            texts.append(data.get("text/markdown", ""))
            pictures += "image/png" in data
    return "".join(texts), pictures


def test_notebooks_are_generated_and_have_no_outputs() -> None:
    make = runpy.run_path(str(NOTEBOOKS / "make_notebooks.py"))
    assert make["main"](["--check"]) == 0
    for name in make["NOTEBOOKS"]:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.mark.slow
def test_dataset_notebook_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _kernel_env(monkeypatch, tmp_path)
    text, pictures = _outputs(_execute("01_dataset.ipynb", tmp_path))
    assert "10 photos with clothing masks" in text
    assert "| skin |" in text and "0 problems" in text
    assert pictures == 2  # the photo/mask grid, the class bar charts


@pytest.mark.slow
def test_results_notebook_trains_a_tiny_run_and_shows_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _kernel_env(monkeypatch, tmp_path, FASHIONSEG_NB_EPOCHS="1")
    text, pictures = _outputs(_execute("02_results.ipynb", tmp_path))
    assert "task clothing, 4 test photos" in text
    assert "score threshold" in text
    assert pictures == 4  # losses, threshold curve, per-class IoU, prediction gallery
