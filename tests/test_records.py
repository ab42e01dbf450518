"""Results records: a finished row is recorded from its run's outputs, and the docs'
tables and the README summary are generated from the records (pure functions, tmp files)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import torch

from fashionseg.files import write_json, write_text
from fashionseg.metrics import metrics_dict
from fashionseg.reporting.records import (
    CARRIED_OVER,
    RecordError,
    family_of,
    load_records,
    make_record,
    read_record,
    record_path,
    record_run,
)
from fashionseg.reporting.results_table import main, write_tables
from fashionseg.reporting.tables import (
    begin_marker,
    end_marker,
    replace_block,
    results_block,
    summary_block,
)

PERSON = ["background", "person"]
NOW = dt.datetime(2026, 12, 6, 22, 0, tzinfo=dt.timezone.utc)


def fake_run(run_dir: Path, cm: list[list[int]], **kwargs: object) -> None:
    write_json(run_dir / "metrics.json", metrics_dict(torch.tensor(cm), PERSON, **kwargs))
    write_json(
        run_dir / "report_timing.json",
        {"seconds": 600.0, "cpu_seconds": 540.0, "hardware": "CPU, 2 cores, 1 thread"},
    )
    write_text(
        run_dir / ".hydra" / "config.yaml",
        "model:\n  _target_: fashionseg.model.module.MaskRCNNModule\n"
        "  net:\n    arch: maskrcnn_resnet18_fpn\n    min_size: 200\n"
        "trainer:\n  max_epochs: 3\nseed: 0\n",
    )


def record(row: str, miou: float, family: str = "Mask R-CNN", **kw: object) -> dict:
    return make_record(
        row=row,
        task="person",
        family=family,
        command=["python", "-m", "fashionseg.train", f"experiment={row}", "task=person"],
        metrics={"iou": {"background": 0.9, "person": miou - 0.1}, "miou": miou, **kw},
        conditions="CPU, 2 cores, 1 thread",
        wall_s=120.0,
        cpu_s=None,
        date="2026-12-01",
    )


def test_a_finished_run_is_recorded_from_its_outputs(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    fake_run(run_dir, [[8, 2], [0, 10]], threshold=0.35)
    records = tmp_path / "records"
    cmd = ["python", "-m", "fashionseg.train", "experiment=ccp_report", "task=person", "x=1"]
    path = record_run(
        records, run_dir, row="ccp_report", task="person", command=cmd, overrides=["x=1"], now=NOW
    )
    assert path == records / "person-ccp_report.json"
    r = read_record(path)
    assert (r["row"], r["task"], r["date"], r["source"]) == (
        "ccp_report",
        "person",
        "2026-12-06",
        "run",
    )
    assert r["family"] == "Mask R-CNN" and r["command"] == " ".join(cmd)
    assert r["metrics"]["miou"] == pytest.approx((0.8 + 10 / 12) / 2)
    assert r["metrics"]["threshold"] == 0.35 and "confusion_matrix" not in r["metrics"]
    assert (r["wall_s"], r["cpu_s"]) == (600.0, 540.0)
    assert r["config"] == {
        "experiment": "ccp_report",
        "overrides": ["x=1"],
        "settings": {
            "model.net.arch": "maskrcnn_resnet18_fpn",
            "model.net.min_size": 200,
            "trainer.max_epochs": 3,
            "seed": 0,
        },
    }


def test_a_run_replaces_a_carried_over_record_and_keeps_its_history(tmp_path: Path) -> None:
    records = tmp_path / "records"
    old = record("ccp_report", 0.5)
    old.update(source=CARRIED_OVER, history=["2026-11-25: trained beside another row"])
    write_json(record_path(records, "person", "ccp_report"), old)
    fake_run(tmp_path / "run", [[8, 2], [0, 10]])
    path = record_run(
        records, tmp_path / "run", row="ccp_report", task="person", command=["c"], now=NOW
    )
    assert read_record(path)["history"] == [
        "2026-11-25: trained beside another row",
        f"2026-12-06: replaced the record of 2026-12-01 ({CARRIED_OVER}, mIoU 50.0 %)",
    ]


def test_the_model_family_comes_from_the_config() -> None:
    semantic = {"model": {"_target_": "fashionseg.model.semantic.SemanticModule"}}
    panoptic = {"model": {"_target_": "x.MaskRCNNModule", "net": {"semantic_head": True}}}
    assert family_of(semantic) == "semantic"
    assert family_of(panoptic) == "Panoptic FPN"
    assert family_of({"model": {"_target_": "x.MaskRCNNModule"}}) == "Mask R-CNN"
    with pytest.raises(ValueError, match="family"):
        record("r", 0.5, family="YOLO")


def test_a_file_that_is_not_a_record_is_named(tmp_path: Path) -> None:
    (tmp_path / "person-x.json").write_text("{not json")
    with pytest.raises(RecordError, match="person-x.json: not a readable results record"):
        load_records(tmp_path)
    (tmp_path / "person-x.json").write_text('{"row": "x"}')
    with pytest.raises(RecordError, match="no task, family, date, metrics"):
        load_records(tmp_path)


def test_results_block_shows_every_row_with_its_command_and_history() -> None:
    a = record("ccp_report", 0.8, threshold=0.35)
    b = record("ccp_semantic", 0.9, family="semantic")
    b.update(source=CARRIED_OVER, history=["rerun gave the same weights"], cpu_s=60.0)
    text = results_block([b, a], {"person": PERSON}, {"ccp_report": "R", "ccp_semantic": "S"})
    lines = text.splitlines()
    assert (
        "| ccp_report | 90.0 | 70.0 | **80.0** | n/a | 0.35 | not measured | not measured "
        "| 2.0 min | n/a | 2026-12-01 | run |" in lines
    )
    assert (
        "| ccp_semantic | 90.0 | 80.0 | **90.0** | n/a | argmax | - | - | 2.0 min | 1.0 min "
        "| 2026-12-01 | carried over |" in lines
    )
    assert lines.index("#### ccp_report") < lines.index("#### ccp_semantic")  # rows' order
    assert "    - rerun gave the same weights" in lines
    assert any("`python -m fashionseg.train experiment=ccp_report task=person`" in x for x in lines)


def test_summary_picks_the_recipe_the_best_mask_rcnn_row_and_the_best_row() -> None:
    rows = [
        record("ccp_report", 0.70),
        record("ccp_panoptic", 0.85, family="Panoptic FPN"),
        record("ccp_improved", 0.80),
        record("ccp_semantic", 0.90, family="semantic"),
    ]
    seed = {"person": {"person IoU": "~46"}, "note": "As the report stated them."}
    lines = summary_block(rows, seed).splitlines()
    assert lines[0] == "Test split, IoU in %; as recorded on 2026-12-01."
    assert "| the seed report's own figures | - | ~46 | not stated | not stated |" in lines
    assert "| the seed report's recipe, here | `ccp_report` | 60.0 | 70.0 | n/a |" in lines
    assert (
        "| our best Mask R-CNN (or Panoptic FPN) row | `ccp_panoptic` | 75.0 | 85.0 | n/a |"
        in lines
    )
    assert "| our best row | `ccp_semantic` | 80.0 | 90.0 | n/a |" in lines
    assert lines[-1] == "As the report stated them."
    assert "**clothing**" not in lines  # no clothing records, no clothing table


def test_only_the_text_between_the_markers_is_replaced() -> None:
    text = f"intro\n{begin_marker('x')}\nold\n{end_marker('x')}\noutro\n"
    assert replace_block(text, "x", "new") == (
        f"intro\n{begin_marker('x')}\nnew\n{end_marker('x')}\noutro\n"
    )
    with pytest.raises(ValueError, match="no generated block 'y'"):
        replace_block(text, "y", "new")


def _checkout(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "checkout"
    for name, path in (("summary", "README.md"), ("results", "docs/results.md")):
        write_text(root / path, f"# {name}\n{begin_marker(name)}\n{end_marker(name)}\nend\n")
    records = root / "results" / "records"
    write_json(record_path(records, "person", "ccp_report"), record("ccp_report", 0.8))
    return root, records


def test_tables_check_then_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, records = _checkout(tmp_path)
    assert write_tables(records, root, check=True) == 1
    assert "its generated tables differ from the records" in capsys.readouterr().out
    assert main(["--tables", "--records", str(records), "--root", str(root)]) == 0
    assert "| ccp_report | 90.0 | 70.0 | **80.0** |" in (root / "docs/results.md").read_text()
    assert "| the seed report's recipe, here | `ccp_report` |" in (root / "README.md").read_text()
    assert write_tables(records, root, check=True) == 0
    assert (root / "README.md").read_text().endswith("<!-- end generated: summary -->\nend\n")


def test_tables_errors_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, records = _checkout(tmp_path)
    assert write_tables(tmp_path / "none", root) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'none'}: no records folder"
    (root / "README.md").write_text("no markers\n")
    assert write_tables(records, root) == 2
    assert capsys.readouterr().err.startswith("error: no generated block 'summary'")
    assert (root / "README.md").read_text() == "no markers\n"  # nothing overwritten


def test_report_records_kept_rows_whose_record_is_carried_over(tmp_path: Path) -> None:
    out, records = tmp_path / "results", tmp_path / "records"
    fake_run(out / "person-ccp_semantic", [[8, 2], [0, 10]])
    old = record("ccp_semantic", 0.5, family="semantic")
    old["source"] = CARRIED_OVER
    write_json(record_path(records, "person", "ccp_semantic"), old)
    args = ["--out", str(out), "--records", str(records), "--tasks", "person"]
    assert main([*args, "--rows", "ccp_semantic"]) == 0  # kept (finished), recorded
    recorded = json.loads(record_path(records, "person", "ccp_semantic").read_text())
    assert recorded["source"] == "run" and recorded["metrics"]["miou"] != 0.5
    before = record_path(records, "person", "ccp_semantic").read_text()
    assert main([*args, "--rows", "ccp_semantic"]) == 0  # a run's record is kept as it is
    assert record_path(records, "person", "ccp_semantic").read_text() == before


def test_a_many_class_task_gets_one_line_per_class_and_a_summary_line() -> None:
    names = ["background", *(f"c{i}" for i in range(1, 20))]
    iou: dict[str, float | None] = {n: 0.5 for n in names}
    iou["c7"] = None  # absent from the test split and never predicted
    r = make_record(
        row="ccp_semantic_plus",
        task="many",
        family="semantic",
        command=["python", "-m", "fashionseg.train", "experiment=ccp_semantic_plus", "task=many"],
        metrics={"iou": iou, "miou": 0.5, "pixel_accuracy": 0.8},
        conditions="CPU, 2 cores, 1 thread",
        wall_s=1800.0,
        cpu_s=1700.0,
        date="2026-12-07",
    )
    lines = results_block([r], {"many": names}, {"ccp_semantic_plus": "S"}).splitlines()
    assert (
        "| ccp_semantic_plus | 19 of 20 | **50.0** | 80.0 | 30.0 min | 28.3 min | 2026-12-07 "
        "| run |" in lines
    )
    assert "| 7 | c7 | n/a |" in lines and "| 19 | c19 | 50.0 |" in lines
    assert not any(line.startswith("| row | background |") for line in lines)  # not wide
    summary = summary_block([r], {}).splitlines()
    assert (
        "**many** (20 classes): `ccp_semantic_plus` 50.0 % mIoU over the 19 classes of the test "
        "split, pixel accuracy 80.0 %, trained in 30.0 min (28.3 min CPU) with `python -m "
        "fashionseg.train experiment=ccp_semantic_plus task=many`; every class: "
        "[docs/results.md](docs/results.md#many)."
    ) in summary
