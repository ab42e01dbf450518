"""The results report: table from run directories, finished rows kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from fashionseg.files import write_json
from fashionseg.metrics import metrics_dict
from fashionseg.reporting.results_table import (
    ROW_OVERRIDES,
    ROWS,
    TASKS,
    main,
    row_command,
    run_row,
    table,
)
from fashionseg.tasks import get_task


def fake_row(out: Path, task: str, row: str, cm: torch.Tensor, **kwargs: object) -> None:
    names = get_task(task).class_names
    write_json(out / f"{task}-{row}" / "metrics.json", metrics_dict(cm, names, **kwargs))
    write_json(
        out / f"{task}-{row}" / "report_timing.json",
        {"seconds": 90.0, "hardware": "CPU, 2 cores, 2 threads", "command": []},
    )


def test_table_lists_each_row_with_its_command(tmp_path: Path) -> None:
    cm = torch.tensor([[8, 2], [0, 10]])  # IoU 0.8 background, 10/12 person
    fake_row(tmp_path, "person", "ccp_report", cm, threshold=0.35)
    fake_row(tmp_path, "person", "ccp_semantic", cm)
    text = table(tmp_path, ["ccp_report", "ccp_improved", "ccp_semantic"], ["person"], "D")
    lines = text.splitlines()
    hw = "CPU, 2 cores, 2 threads"
    assert (
        f"| ccp_report | 80.0 | 83.3 | **81.7** | 90.0 | 0.35 | - | - | 1.5 min | {hw} |" in lines
    )
    assert (
        f"| ccp_semantic | 80.0 | 83.3 | **81.7** | 90.0 | argmax | - | - | 1.5 min | {hw} |"
        in lines
    )
    assert any(line.startswith("| ccp_improved | not run") for line in lines)
    table_lines = [line for line in lines if line.startswith("|")]
    assert len({line.count("|") for line in table_lines}) == 1  # every row fills every column
    assert (
        "- ccp_report: `python -m fashionseg.train experiment=ccp_report task=person "
        "optimizer.lr=2e-3 data.root=D`" in lines
    )


def test_per_class_thresholds_are_shown_without_background(tmp_path: Path) -> None:
    cm = torch.eye(7, dtype=torch.int64) * 5
    fake_row(
        tmp_path,
        "clothing",
        "ccp_improved",
        cm,
        threshold=0.5,
        class_thresholds=[0.5, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7],
    )
    text = table(tmp_path, ["ccp_improved"], ["clothing"], None)
    assert "per class 0.10/0.20/0.30/0.40/0.60/0.70" in text
    assert "| 100.0 | 100.0 |" in text


def test_finished_rows_are_kept_and_the_table_written(tmp_path: Path, capsys) -> None:
    cm = torch.tensor([[8, 2], [0, 10]])
    fake_row(tmp_path, "person", "ccp_semantic", cm)
    assert run_row("ccp_semantic", "person", None, tmp_path) == tmp_path / "person-ccp_semantic"
    assert "done, kept" in capsys.readouterr().out
    assert main(["--out", str(tmp_path), "--tasks", "person", "--rows", "ccp_semantic"]) == 0
    assert "| ccp_semantic | 80.0 |" in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("row", list(ROWS))
def test_every_row_composes_and_builds(row: str, task: str) -> None:
    """Each row's command gives a config whose data module and model instantiate."""
    overrides = row_command(row, task, None)[3:]
    assert overrides[:2] == [f"experiment={row}", f"task={task}"]
    assert overrides[2:] == ROW_OVERRIDES.get((row, task), [])
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    assert cfg.data.root == "../shared/data/ccp-fashion600" and cfg.task.name == task
    datamodule = instantiate(cfg.data)  # reads nothing until setup
    assert datamodule.task.name == task
    module = instantiate(cfg.model, _recursive_=False)
    assert module.task.name == task
    assert module.hparams.net["weights"] == "none"  # every row trains from random init


def test_command_line_module_is_the_results_table() -> None:
    """``python -m fashionseg.report`` (README, Makefile, pyproject) runs the results table."""
    import fashionseg.report
    import fashionseg.reporting.results_table

    assert fashionseg.report.main is fashionseg.reporting.results_table.main
