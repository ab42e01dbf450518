"""The sweep report: a fake multirun directory, the Hydra callback, and real multiruns."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import TINY
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from fashionseg.reporting.sweep import main, write_sweep_report
from fashionseg.reporting.sweep_hydra_callback import SweepReportCallback
from fashionseg.reporting.sweep_jobs import FAILED, INCOMPLETE, JOB_FILE, OK
from fashionseg.reporting.sweep_render import plot_axes, plot_sweep

CONF = Path(__file__).resolve().parents[1] / "conf"
BASIC = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
SWEEP = ["task=clothing", "optimizer.lr=1e-3,1e-2", "data.batch_size=2,4"]
# the 4 jobs the basic sweeper makes of SWEEP, in its order
JOBS = [("0.001", "2"), ("0.001", "4"), ("0.01", "2"), ("0.01", "4")]


def _write_yaml(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _job(sweep: Path, num: int, overrides: list[str]) -> Path:
    """A job directory as Hydra leaves it before the task runs."""
    job = sweep / str(num)
    _write_yaml(job / ".hydra" / "hydra.yaml", {"hydra": {"job": {"num": num}}})
    _write_yaml(job / ".hydra" / "overrides.yaml", overrides)
    _write_yaml(job / ".hydra" / "config.yaml", {"seed": 0})
    return job


def _val_events(job: Path, miou: list[float], thresholds: list[float]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(job / "tensorboard"))
    for step, (m, t) in enumerate(zip(miou, thresholds, strict=True), start=1):
        writer.add_scalar("train/loss", 1.0 / step, step)
        writer.add_scalar("val/miou", m, 10 * step)
        writer.add_scalar("val/best_threshold", t, 10 * step)
    writer.close()


@pytest.fixture
def fake_sweep(tmp_path: Path) -> Path:
    """A 4-job basic sweep: two tested jobs, one that left nothing, one never started."""
    sweep = tmp_path / "sweep"
    _write_yaml(
        sweep / "multirun.yaml",
        {
            "hydra": {
                "sweeper": {"_target_": BASIC, "max_batch_size": None, "params": None},
                "overrides": {"hydra": [], "task": SWEEP},
            }
        },
    )
    for num in (0, 1, 2):
        lr, batch = JOBS[num]
        _job(sweep, num, ["task=clothing", f"optimizer.lr={lr}", f"data.batch_size={batch}"])
    _val_events(sweep / "0", [0.2, 0.5, 0.4], [0.3, 0.6, 0.7])
    (sweep / "0" / "metrics.json").write_text(json.dumps({"miou": 0.45, "threshold": 0.6}))
    _val_events(sweep / "1", [0.3], [0.1])
    (sweep / "1" / "metrics.json").write_text(json.dumps({"miou": 0.25, "threshold": 0.1}))
    return sweep


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_report_has_a_row_per_job_with_failed_ones(fake_sweep: Path) -> None:
    rows = write_sweep_report(fake_sweep)
    assert [r["status"] for r in rows] == [OK, OK, FAILED, FAILED]
    assert rows[0]["best_val_miou"] == pytest.approx(0.5)
    assert rows[0]["best_threshold"] == pytest.approx(0.6)  # at the best epoch, not the last
    assert rows[0]["val_epochs"] == 3
    assert rows[0]["test_miou"] == pytest.approx(0.45)
    assert rows[0]["wall_s"] is not None and rows[0]["wall_s"] >= 0
    assert rows[2]["best_val_miou"] is None and "no test metrics" in rows[2]["note"]
    assert rows[3]["dir"] == "" and rows[3]["note"] == "never started"

    table = _read_csv(fake_sweep / "sweep_report.csv")
    assert list(table[0])[:5] == ["job", "status", "overrides", "optimizer.lr", "data.batch_size"]
    assert [(r["optimizer.lr"], r["data.batch_size"]) for r in table] == JOBS
    assert table[1]["overrides"] == "task=clothing optimizer.lr=0.001 data.batch_size=4"
    assert float(table[1]["best_val_miou"]) == pytest.approx(0.3)
    assert float(table[1]["test_miou"]) == pytest.approx(0.25)
    assert table[2]["best_val_miou"] == "" and table[3]["status"] == FAILED

    md = (fake_sweep / "sweep_report.md").read_text()
    assert "4 jobs: 2 ok, 2 failed, 0 running-or-incomplete." in md
    assert "Best val mIoU: 50.00 % (job 0: optimizer.lr=0.001 data.batch_size=2)" in md
    assert "Every job: `task=clothing`" in md
    assert "| 0 | ok | 0.001 | 2 | 50.00 | 0.60 | 45.00 |" in md
    assert "| 3 | failed | 0.01 | 4 |  |  |  |  | never started |" in md

    png = Image.open(fake_sweep / "sweep_report.png")
    assert png.format == "PNG" and png.size == (640, 420)


def test_report_while_the_sweep_runs_and_into_another_dir(fake_sweep: Path) -> None:
    out = fake_sweep.parent / "report"
    rows = write_sweep_report(fake_sweep, out, finished=False)
    assert [r["status"] for r in rows] == [OK, OK, FAILED, INCOMPLETE]
    assert rows[3]["note"] == "not started yet"
    assert sorted(p.name for p in out.iterdir()) == [
        "sweep_report.csv",
        "sweep_report.md",
        "sweep_report.png",
    ]
    assert not (fake_sweep / "sweep_report.csv").exists()


def test_validated_but_untested_job_is_incomplete(fake_sweep: Path) -> None:
    (fake_sweep / "1" / "metrics.json").unlink()
    row = write_sweep_report(fake_sweep)[1]
    assert row["status"] == INCOMPLETE and row["test_miou"] is None
    assert row["best_val_miou"] == pytest.approx(0.3)


def test_job_file_status_and_log_error_are_used(fake_sweep: Path) -> None:
    (fake_sweep / "1" / JOB_FILE).write_text(
        json.dumps({"status": FAILED, "error": "ValueError: boom", "wall_s": 12.5})
    )
    (fake_sweep / "2" / "train.log").write_text(
        "[2026-01-01 10:00:00,000][fashionseg][INFO] - start\n"
        "[2026-01-01 10:00:01,000][fashionseg][ERROR] - 1 problem in /data:\n"
        "  /data: dataset directory not found\n"
        "[2026-01-01 10:00:02,000][fashionseg][INFO] - bye\n"
    )
    rows = write_sweep_report(fake_sweep)
    assert (rows[1]["status"], rows[1]["note"], rows[1]["wall_s"]) == (
        FAILED,
        "ValueError: boom",
        12.5,
    )
    assert rows[2]["note"].endswith("log: 1 problem in /data: /data: dataset directory not found")


def test_checkpoint_name_is_the_last_resort_for_val_miou(fake_sweep: Path) -> None:
    ckpts = fake_sweep / "2" / "checkpoints"
    ckpts.mkdir()
    (ckpts / "epoch003-miou0.4200.ckpt").write_bytes(b"")
    (ckpts / "last.ckpt").write_bytes(b"")
    row = write_sweep_report(fake_sweep)[2]
    assert row["status"] == INCOMPLETE
    assert (row["best_val_miou"], row["best_threshold"]) == (0.42, None)


def test_sweep_without_multirun_yaml_uses_the_job_configs(tmp_path: Path) -> None:
    """The Optuna sweeper writes no multirun.yaml: params and n_trials come from a job."""
    sweep = tmp_path / "optuna"
    params = {"optimizer.lr": "tag(log, interval(1e-4, 1e-2))", "data.batch_size": "choice(2,4)"}
    hydra_cfg = {
        "job": {"num": 0},
        "sweeper": {"_target_": "x.OptunaSweeper", "n_trials": 3, "params": params},
    }
    for num, (lr, batch) in enumerate([("0.0002", "4"), ("0.003", "4")]):
        job = _job(sweep, num, [f"optimizer.lr={lr}", f"data.batch_size={batch}", "task=person"])
        _write_yaml(job / ".hydra" / "hydra.yaml", {"hydra": {**hydra_cfg, "job": {"num": num}}})
        _val_events(job, [0.1 * (num + 1)], [0.5])
        (job / "metrics.json").write_text(json.dumps({"miou": 0.1}))
    rows = write_sweep_report(sweep)
    assert [r["job"] for r in rows] == [0, 1, 2]
    assert [r["status"] for r in rows] == [OK, OK, FAILED]
    header = _read_csv(sweep / "sweep_report.csv")[0]
    assert list(header)[3:5] == ["optimizer.lr", "data.batch_size"]  # swept, even if constant
    assert plot_axes(["optimizer.lr", "data.batch_size"], rows) == (
        "optimizer.lr",
        "data.batch_size",
    )


@pytest.mark.parametrize(
    ("keys", "axes"),
    [
        ([], (None, None)),
        (["data.batch_size"], ("data.batch_size", None)),
        (["model", "optimizer.lr", "seed"], ("optimizer.lr", "model")),
    ],
)
def test_plot_handles_zero_one_and_many_swept_keys(
    tmp_path: Path, keys: list[str], axes: tuple[str | None, str | None]
) -> None:
    rows = [
        {
            "job": i,
            "status": OK,
            "best_val_miou": 0.1 * i if i else None,
            "optimizer.lr": lr,
            "data.batch_size": str(2 * i),
            "model": "maskrcnn_r50_fpn" if i % 2 else "maskrcnn_mobilenet",
            "seed": str(i),
        }
        for i, lr in enumerate(["1e-4", "1e-3", "1e-2", "1e-1"])
    ]
    assert plot_axes(keys, rows) == axes
    path = plot_sweep(rows, keys, tmp_path / "plot.png")
    assert Image.open(path).format == "PNG"


def test_cli_prints_the_table_and_refuses_a_missing_dir(
    fake_sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(fake_sweep)]) == 0
    out = capsys.readouterr().out
    assert "| 2 | failed |" in out and "sweep_report.csv" in out
    assert main([str(fake_sweep / "nope")]) == 2
    assert "no such sweep directory" in capsys.readouterr().err


def _job_config(sweep: Path, num: int, mode: str = "MULTIRUN") -> object:
    return OmegaConf.create(
        {
            "hydra": {
                "mode": mode,
                "sweep": {"dir": str(sweep), "subdir": str(num)},
                "runtime": {"output_dir": str(sweep / str(num))},
                "job": {"num": num},
                "overrides": {"task": [f"optimizer.lr={JOBS[num][0]}"]},
            }
        }
    )


def test_callback_times_jobs_records_failures_and_reports(
    fake_sweep: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fashionseg.reporting.sweep_hydra_callback")
    callback = SweepReportCallback()
    config = _job_config(fake_sweep, 2)
    callback.on_multirun_start(config)
    callback.on_job_start(config, task_function=None)
    assert json.loads((fake_sweep / "2" / JOB_FILE).read_text())["status"] == "running"
    failed = JobReturn(status=JobStatus.FAILED, _return_value=ValueError("lr too high"))
    callback.on_job_end(config, job_return=failed)
    record = json.loads((fake_sweep / "2" / JOB_FILE).read_text())
    assert record["status"] == FAILED and record["error"] == "ValueError: lr too high"
    assert record["wall_s"] >= 0
    interim = _read_csv(fake_sweep / "sweep_report.csv")  # refreshed after the job
    assert [r["status"] for r in interim] == [OK, OK, FAILED, INCOMPLETE]
    assert interim[2]["note"] == "ValueError: lr too high"

    callback.on_multirun_end(config)
    final = _read_csv(fake_sweep / "sweep_report.csv")
    assert [r["status"] for r in final] == [OK, OK, FAILED, FAILED]
    assert "sweep report (4 jobs, 2 failed)" in caplog.text


def test_callback_never_raises_and_ignores_single_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    callback = SweepReportCallback()
    config = _job_config(tmp_path / "missing", 0, mode="RUN")
    callback.on_job_start(config, task_function=None)
    callback.on_job_end(config, job_return=JobReturn(status=JobStatus.COMPLETED))
    assert not (tmp_path / "missing").exists()  # single runs get no job.json
    callback.on_multirun_end(config)  # no such sweep directory: logged, not raised
    assert "no such sweep directory" in caplog.text


def _compose(*overrides: str) -> DictConfig:
    """``conf/train.yaml`` with Hydra's own config, as ``--cfg hydra`` shows it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def _select(group: str, option: str) -> str:
    """``group=option``, or ``+group=option`` while train.yaml's defaults lack the group."""
    defaults = OmegaConf.load(CONF / "train.yaml").defaults
    listed = any(isinstance(d, DictConfig) and group in d for d in defaults)
    return f"{'' if listed else '+'}{group}={option}"


def test_sweep_report_callback_is_registered() -> None:
    callbacks = _compose().hydra.callbacks
    assert (
        callbacks.sweep_report._target_
        == "fashionseg.reporting.sweep_hydra_callback.SweepReportCallback"
    )


def test_optuna_search_config_composes() -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")  # the optional `sweep` extra
    sweeper = _compose(_select("hparams_search", "optuna")).hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert (sweeper.direction, sweeper.sampler.seed) == ("maximize", 1234)
    assert dict(sweeper.params) == {
        "optimizer.lr": "tag(log, interval(1e-4, 1e-2))",
        "data.batch_size": "choice(2, 4, 8)",
        "optimizer.weight_decay": "interval(0.0, 1e-3)",
    }


def test_slurm_launcher_config_composes() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")  # the optional `sweep` extra
    launcher = _compose(_select("launcher", "submitit_slurm")).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (1, 1, 1)
    assert launcher.partition is None  # the cluster's own name goes here


def _multirun(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fashionseg.train", "-m", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_real_multirun_writes_the_report(tmp_path: Path) -> None:
    from fashionseg.data.synthetic import generate

    data = generate(tmp_path / "data", num_images=10, seed=3, height=64, width=48)
    sweep = tmp_path / "sweep"
    proc = _multirun(
        tmp_path,
        "task=clothing",
        f"data.root={data}",
        *TINY,
        "optimizer.lr=1e-4,1e-3",  # 1e-2 makes many more detections: 4x slower here
        "data.batch_size=2",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"sweep report: {sweep / 'sweep_report.md'}" in proc.stderr
    rows = _read_csv(sweep / "sweep_report.csv")
    assert [(r["job"], r["status"], r["optimizer.lr"]) for r in rows] == [
        ("0", OK, "0.0001"),
        ("1", OK, "0.001"),
    ]
    for row in rows:
        assert 0.0 <= float(row["best_val_miou"]) <= 1.0
        assert any(float(row["best_threshold"]) == pytest.approx(t) for t in (0.05, 0.5, 0.9))
        assert 0.0 <= float(row["test_miou"]) <= 1.0
        assert float(row["wall_s"]) > 0
        assert json.loads((Path(row["dir"]) / JOB_FILE).read_text())["status"] == OK
    assert Image.open(sweep / "sweep_report.png").format == "PNG"


@pytest.mark.slow
def test_multirun_with_failing_jobs_still_reports_them(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    missing = tmp_path / "no_data"
    proc = _multirun(
        tmp_path,
        "task=clothing",
        "data=fashion",
        f"data.root={missing}/a,{missing}/b",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode != 0
    rows = _read_csv(sweep / "sweep_report.csv")
    assert [(r["job"], r["status"]) for r in rows] == [("0", FAILED), ("1", FAILED)]
    assert "dataset directory not found" in rows[0]["note"]


def test_command_line_module_is_the_sweep_report() -> None:
    """``python -m fashionseg.sweep_report`` (README, pyproject) runs the sweep report."""
    import fashionseg.reporting.sweep
    import fashionseg.sweep_report

    assert fashionseg.sweep_report.main is fashionseg.reporting.sweep.main
