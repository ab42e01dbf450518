"""A Hydra multirun's jobs and one report row each.

Finds a sweep's job directories (one ``<job>/.hydra/`` each), the jobs the sweep expects
(``SWEEP_DIR/multirun.yaml``, else a job's saved Hydra config: the Optuna sweeper writes
no ``multirun.yaml``) and the swept keys, and reads per job its overrides, the best
validation mIoU with the score threshold chosen at that epoch (from the TensorBoard
events, else the CSV logger's ``metrics.csv``, else the best checkpoint's file name), the
test mIoU of ``metrics.json``, the wall time (``<job>/job.json``, else the job's file
times) and its status: ``ok`` (tested, or finished without error), ``failed`` (raised,
or left neither test metrics nor a validation value, or never started: a job that the
sweep expects but that has no directory; the note says why, with the last error of the
job's log) or ``running-or-incomplete`` (validated but not tested; while the sweep still
runs, also the jobs that have not validated or not started yet).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

log = logging.getLogger(__name__)

OK, FAILED, INCOMPLETE = "ok", "failed", "running-or-incomplete"
JOB_FILE = "job.json"  # written by SweepReportCallback into each job directory
VAL_MIOU, VAL_THRESHOLD = "val/miou", "val/best_threshold"
_CKPT_MIOU = re.compile(r"miou(\d+(?:\.\d+)?)")


# --------------------------------------------------------------------------- sweep layout
def _plain_key(key: str) -> str:
    """An override's key without its ``+``/``++``/``~`` prefix."""
    return key.lstrip("+~")


def split_override(override: str) -> tuple[str, str]:
    """``"optimizer.lr=0.01"`` -> ``("optimizer.lr", "0.01")`` (prefixes dropped)."""
    key, _, value = override.partition("=")
    return _plain_key(key.strip()), value.strip()


def _load_yaml(path: Path) -> Any:
    """A YAML file as plain Python objects, interpolations left unresolved."""
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def find_job_dirs(sweep_dir: Path) -> dict[int, Path]:
    """Job number -> directory, for every job directory (one holding ``.hydra/``)."""
    jobs: dict[int, Path] = {}
    for pattern in ("*/.hydra/hydra.yaml", "*/*/.hydra/hydra.yaml"):
        for hydra_yaml in sorted(sweep_dir.glob(pattern)):
            job_dir = hydra_yaml.parent.parent
            num = _job_number(hydra_yaml)
            if num is None and job_dir.name.isdigit():
                num = int(job_dir.name)
            if num is not None:
                jobs.setdefault(num, job_dir)
    return jobs


def _job_number(hydra_yaml: Path) -> int | None:
    """``hydra.job.num`` of a job's saved Hydra config, if readable."""
    try:
        num = _load_yaml(hydra_yaml)["hydra"]["job"]["num"]
        return int(num)
    except Exception:  # unreadable or not a job's config
        return None


def job_overrides(job_dir: Path) -> list[str]:
    """The command-line overrides a job ran with (``.hydra/overrides.yaml``)."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(o) for o in _load_yaml(path) or []]


def expected_jobs(
    sweep_dir: Path, job_dirs: Sequence[Path] = ()
) -> tuple[dict[int, list[str] | None], list[str]]:
    """The jobs the sweep asks for (number -> overrides, when known) and its swept keys.

    From ``multirun.yaml`` (the basic sweeper writes it), else from a job's saved Hydra
    config (the Optuna sweeper writes no ``multirun.yaml``: its ``params`` and
    ``n_trials`` are there). Both are empty when neither can be read.
    """
    path = sweep_dir / "multirun.yaml"
    from_job = not path.is_file()
    if from_job:
        path = next((d / ".hydra" / "hydra.yaml" for d in job_dirs), path)
    if not path.is_file():
        return {}, []
    try:
        hydra_cfg = _load_yaml(path)["hydra"]
        sweeper = hydra_cfg.get("sweeper") or {}
        params = sweeper.get("params") or {}
        arguments = [f"{k}={v}" for k, v in params.items()]
        if not from_job:  # a job's own overrides hold its values, not the sweep
            arguments += [str(o) for o in hydra_cfg["overrides"]["task"]]
        jobs, keys = _sweeper_jobs(sweeper, arguments)
    except Exception as err:  # a sweep we cannot expand: use the directories found
        log.warning("%s: cannot expand the sweep (%s); listing job directories only", path, err)
        return {}, []
    return ({} if from_job and _is_basic(sweeper) else jobs), keys


def _is_basic(sweeper: dict[str, Any]) -> bool:
    return str(sweeper.get("_target_", "")).endswith("BasicSweeper")


def _sweeper_jobs(
    sweeper: dict[str, Any], arguments: list[str]
) -> tuple[dict[int, list[str] | None], list[str]]:
    """Expand a sweep: the basic sweeper's cartesian product, or ``n_trials`` jobs."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(arguments)
    keys = [_plain_key(o.get_key_element()) for o in parsed if o.is_sweep_override()]
    if _is_basic(sweeper):
        batches = BasicSweeper.split_arguments(parsed, None)[0]
        return {i: list(job) for i, job in enumerate(batches)}, keys
    trials = sweeper.get("n_trials")
    if isinstance(trials, int):
        return dict.fromkeys(range(trials)), keys
    return {}, keys


def swept_keys(declared: Sequence[str], overrides: Iterable[Sequence[str]]) -> list[str]:
    """Declared sweep keys, then every other key whose value differs between jobs."""
    per_job = [dict(split_override(o) for o in job) for job in overrides]
    keys = list(dict.fromkeys(declared))
    for job in per_job:
        for key in job:
            if key in keys:
                continue
            if len({str(j.get(key)) for j in per_job}) > 1:
                keys.append(key)
    return keys


# ----------------------------------------------------------------------- one job's values
def best_validation(job_dir: Path) -> tuple[float | None, float | None, int]:
    """(best val mIoU, score threshold chosen at that epoch, number of validations).

    From the TensorBoard events, else the CSV logger's ``metrics.csv``, else the best
    checkpoint's file name (``...-miou0.1234.ckpt``; no threshold then).
    """
    for reader in (_tensorboard_series, _csv_series):
        miou, threshold = reader(job_dir)
        if miou:
            step = max(miou, key=lambda s: miou[s])
            chosen = threshold.get(step)  # float32 in the events: 0.05 -> 0.0500000007
            return miou[step], None if chosen is None else round(chosen, 6), len(miou)
    names = [_CKPT_MIOU.search(p.name) for p in (job_dir / "checkpoints").glob("*.ckpt")]
    values = [float(m.group(1)) for m in names if m]
    return (max(values), None, 0) if values else (None, None, 0)


def _tensorboard_series(job_dir: Path) -> tuple[dict[int, float], dict[int, float]]:
    """step -> val mIoU and step -> best threshold from every event file of the job."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    guidance = {"scalars": 0, "images": 1, "tensors": 1, "histograms": 1, "audio": 1}
    miou: dict[int, float] = {}
    threshold: dict[int, float] = {}
    for folder in sorted({p.parent for p in job_dir.rglob("events.out.tfevents.*")}):
        events = EventAccumulator(str(folder), size_guidance=guidance)
        with _quiet("tensorboard"):
            events.Reload()
        tags = set(events.Tags().get("scalars", []))
        for tag, series in ((VAL_MIOU, miou), (VAL_THRESHOLD, threshold)):
            if tag in tags:
                series.update({e.step: float(e.value) for e in events.Scalars(tag)})
    return miou, threshold


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Silence a logger's INFO lines (TensorBoard announces every event file it reads)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _csv_series(job_dir: Path) -> tuple[dict[int, float], dict[int, float]]:
    """The same series from Lightning's CSV logger files."""
    miou: dict[int, float] = {}
    threshold: dict[int, float] = {}
    for path in sorted(job_dir.rglob("metrics.csv")):
        with path.open(newline="") as f:
            for i, row in enumerate(csv.DictReader(f)):
                step = int(row.get("step") or i)
                if row.get(VAL_MIOU):
                    miou[step] = float(row[VAL_MIOU])
                if row.get(VAL_THRESHOLD):
                    threshold[step] = float(row[VAL_THRESHOLD])
    return miou, threshold


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when missing or unreadable (being written)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def wall_time(job_dir: Path, record: dict[str, Any] | None) -> float | None:
    """Seconds the job ran: from ``job.json`` when it finished, else from file times
    (its saved ``.hydra`` config, written as it starts, to its newest file)."""
    if record and record.get("wall_s") is not None:
        return float(record["wall_s"])
    starts = [p.stat().st_mtime for p in (job_dir / ".hydra").glob("*.yaml")]
    if not starts:
        return None
    newest = max(
        os.stat(os.path.join(root, name)).st_mtime
        for root, _, files in os.walk(job_dir)
        for name in files
    )
    return round(max(newest - min(starts), 0.0), 1)


def last_logged_error(job_dir: Path, limit: int = 300) -> str | None:
    """The last ERROR record of the job's log files (``<job>/*.log``) on one line."""
    found: list[str] | None = None
    record: list[str] | None = None
    for path in sorted(job_dir.glob("*.log")):
        with path.open(errors="replace") as f:
            for line in f:
                if "][ERROR] - " in line:
                    record = found = [line.split("][ERROR] - ", 1)[1].strip()]
                elif line.startswith("["):
                    record = None  # the next record begins
                elif record is not None and line.strip():
                    record.append(line.strip())
    return " ".join(found)[:limit] if found else None


def job_status(
    job_dir: Path | None, record: dict[str, Any] | None, tested: bool, validated: bool, done: bool
) -> tuple[str, str]:
    """(status, note) of one job; ``done``: the sweep has ended (no job will start)."""
    if job_dir is None:
        return (FAILED, "never started") if done else (INCOMPLETE, "not started yet")
    record = record or {}
    state = record.get("status")
    if state == FAILED:
        return FAILED, str(record.get("error") or "failed")
    if tested or state == OK:
        return OK, ""
    if validated:
        return INCOMPLETE, "validated, not tested"
    if state == "running" and not done:
        return INCOMPLETE, "running"
    return FAILED, "no test metrics and no validation value"


def job_row(
    num: int, job_dir: Path | None, overrides: Sequence[str], keys: Sequence[str], done: bool
) -> dict[str, Any]:
    """The report row of one job."""
    record = _read_json(job_dir / JOB_FILE) if job_dir else None
    metrics = _read_json(job_dir / "metrics.json") if job_dir else None
    best, threshold, epochs = best_validation(job_dir) if job_dir else (None, None, 0)
    test_miou = metrics.get("miou") if metrics else None
    status, note = job_status(job_dir, record, metrics is not None, best is not None, done)
    if status == FAILED and job_dir and not (record or {}).get("error"):
        logged = last_logged_error(job_dir)
        note = f"{note}; log: {logged}" if logged else note
    values = dict(split_override(o) for o in overrides)
    return {
        "job": num,
        "status": status,
        "overrides": " ".join(overrides),
        **{key: values.get(key, "") for key in keys},
        "best_val_miou": best,
        "best_threshold": threshold,
        "val_epochs": epochs,
        "test_miou": None if test_miou is None else float(test_miou),
        "wall_s": wall_time(job_dir, record) if job_dir else None,
        "note": note,
        "dir": str(job_dir) if job_dir else "",
    }


# ------------------------------------------------------------------------------ all jobs
def sweep_rows(sweep_dir: Path, finished: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
    """Every job's row (sorted by job number) and the swept keys."""
    found = find_job_dirs(sweep_dir)
    expected, declared = expected_jobs(sweep_dir, [found[n] for n in sorted(found)])
    overrides = {n: job_overrides(d) for n, d in found.items()}
    for num, job in expected.items():
        if num not in overrides:
            overrides[num] = list(job or [])
    keys = swept_keys(declared, (overrides[n] for n in sorted(found) or sorted(overrides)))
    rows = [job_row(n, found.get(n), overrides[n], keys, finished) for n in sorted(overrides)]
    return rows, keys
