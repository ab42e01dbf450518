"""The notebooks run top to bottom on tiny synthetic data; each ``.ipynb`` is its script.

The sources are the jupytext percent scripts ``notebooks/*.py`` (linted by ruff); the
paired ``.ipynb`` are regenerated from them (``jupytext --sync notebooks/*.py``) and
committed without outputs. The tests execute the scripts' cells in a Jupyter kernel.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SCRIPTS = ("01_dataset.py", "02_results.py")
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


def _execute(script: str, cwd: Path) -> nbformat.NotebookNode:
    """Run the cells of a percent script in a kernel, as Jupyter runs its notebook."""
    nb = jupytext.read(NOTEBOOKS / script)
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


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


@pytest.mark.parametrize("script", SCRIPTS)
def test_notebook_is_its_script_and_has_no_outputs(script: str) -> None:
    """The committed ``.ipynb`` holds the script's cells (run ``jupytext --sync``)."""
    text = jupytext.read(NOTEBOOKS / script)
    assert text.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    nb = nbformat.read(NOTEBOOKS / script.replace(".py", ".ipynb"), as_version=4)
    assert _cells(nb) == _cells(text), f"out of date: jupytext --sync notebooks/{script}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


def test_notebooks_folder_holds_only_paired_notebooks() -> None:
    """Every notebook has its script and every script its notebook."""
    scripts = sorted(p.name for p in NOTEBOOKS.glob("*.py"))
    notebooks = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert scripts == list(SCRIPTS)
    assert notebooks == [s.replace(".py", ".ipynb") for s in SCRIPTS]


@pytest.mark.slow
def test_dataset_notebook_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _kernel_env(monkeypatch, tmp_path)
    text, pictures = _outputs(_execute("01_dataset.py", tmp_path))
    assert "10 photos with clothing masks" in text
    assert "| skin |" in text and "0 problems" in text
    assert pictures == 2  # the photo/mask grid, the class bar charts


@pytest.mark.slow
def test_results_notebook_trains_a_tiny_run_and_shows_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _kernel_env(monkeypatch, tmp_path, FASHIONSEG_NB_EPOCHS="1")
    text, pictures = _outputs(_execute("02_results.py", tmp_path))
    assert "task clothing, 4 test photos" in text
    assert "score threshold" in text
    assert pictures == 4  # losses, threshold curve, per-class IoU, prediction gallery
