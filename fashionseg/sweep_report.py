"""One table and one plot for a Hydra multirun: which settings won, which jobs failed.

    python -m fashionseg.sweep_report SWEEP_DIR [--out DIR] [--in-progress]

Reads a multirun directory (``SWEEP_DIR/multirun.yaml`` and one ``<job>/.hydra/`` per
job) and writes ``sweep_report.csv``, ``sweep_report.md`` and ``sweep_report.png`` into
``SWEEP_DIR`` (or ``--out``). One row per job: its number, its overrides (all of them as
``k=v k=v`` and one column per swept key), its status, the best validation mIoU with the
score threshold chosen at that epoch (from the TensorBoard events, else the CSV logger's
``metrics.csv``, else the best checkpoint's file name), the test mIoU of ``metrics.json``
and the wall time (``<job>/job.json``, else the job's file times). The plot shows best
val mIoU against the learning rate (log axis), one line per value of the other swept key.

Status: ``ok`` (tested, or finished without error), ``failed`` (raised, or left neither
test metrics nor a validation value, or never started: a job that the sweep expects but
that has no directory; the note says why, with the last error of the job's log) and
``running-or-incomplete`` (validated but not tested; with ``--in-progress``, while the
sweep still runs, also the jobs that have not validated or not started yet).

:class:`SweepReportCallback` (registered in ``conf/hydra/default.yaml``) writes the
report at the end of every multirun, times each job into ``<job>/job.json`` and
refreshes the report after every job. Hydra's basic sweeper raises the first failed
job's exception once all jobs of the batch have run, and then skips
``on_multirun_end``; a job that exits the process (``SystemExit``) ends the sweep
there. The callback therefore also writes the report from an exit handler, so both
cases still leave a report with the failed rows. Only a killed process (SIGKILL, out of
memory) leaves none: run ``python -m fashionseg.sweep_report SWEEP_DIR`` by hand then.
"""

from __future__ import annotations

import argparse
import atexit
import csv
import io
import json
import logging
import math
import os
import re
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fashionseg.io_utils import atomic_path, write_json, write_text

log = logging.getLogger(__name__)

OK, FAILED, INCOMPLETE = "ok", "failed", "running-or-incomplete"
JOB_FILE = "job.json"  # written by SweepReportCallback into each job directory
REPORT_NAME = "sweep_report"
VAL_MIOU, VAL_THRESHOLD = "val/miou", "val/best_threshold"
COLUMNS = (
    "job",
    "status",
    "overrides",
    "best_val_miou",
    "best_threshold",
    "val_epochs",
    "test_miou",
    "wall_s",
    "note",
    "dir",
)
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


# -------------------------------------------------------------------------------- report
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


def write_sweep_report(
    sweep_dir: Path, out_dir: Path | None = None, *, finished: bool = True
) -> list[dict[str, Any]]:
    """Write ``sweep_report.{csv,md,png}`` for the multirun in ``sweep_dir``; return the rows.

    ``out_dir`` defaults to ``sweep_dir``. ``finished=False`` (while a sweep is still
    going) reports jobs that have not started as ``running-or-incomplete``, not failed.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such sweep directory")
    out_dir = Path(out_dir) if out_dir is not None else sweep_dir
    rows, keys = sweep_rows(sweep_dir, finished)
    write_text(out_dir / f"{REPORT_NAME}.csv", format_csv(rows, keys))
    write_text(out_dir / f"{REPORT_NAME}.md", format_markdown(rows, keys, sweep_dir))
    plot_sweep(rows, keys, out_dir / f"{REPORT_NAME}.png")
    return rows


def _columns(keys: Sequence[str]) -> list[str]:
    return [*COLUMNS[:3], *keys, *COLUMNS[3:]]


def format_csv(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> str:
    """The rows as CSV (fractions, not percentages; empty cells for missing values)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(keys), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def _percent(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def _short(value: Any) -> str:
    """A swept value for display: floats with 4 significant digits, others as they are."""
    text = str(value)
    number = _as_float(text)
    if number is None or text.lstrip("+-").isdigit():
        return text
    return format(number, ".4g")


def _number(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _summary(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[str]:
    """Count of jobs per status and the best job."""
    counts = {s: sum(r["status"] == s for r in rows) for s in (OK, FAILED, INCOMPLETE)}
    lines = [f"{len(rows)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + "."]
    scored = [r for r in rows if r["best_val_miou"] is not None]
    if scored:
        best = max(scored, key=lambda r: r["best_val_miou"])
        settings = " ".join(f"{k}={_short(best[k])}" for k in keys) or best["overrides"]
        lines.append(
            f"Best val mIoU: {_percent(best['best_val_miou'])} % (job {best['job']}"
            + (f": {settings}" if settings else "")
            + ")."
        )
    return lines


def format_markdown(rows: Sequence[dict[str, Any]], keys: Sequence[str], sweep_dir: Path) -> str:
    """A Markdown page: summary, settings shared by every job, one table row per job."""
    lines = [f"# Sweep report: `{sweep_dir}`", "", *_summary(rows, keys), ""]
    shared = _shared_overrides(rows, keys)
    if shared:
        lines += ["Every job: `" + " ".join(shared) + "`", ""]
    setting_cols = list(keys) or ["overrides"]
    header = [
        "job",
        "status",
        *setting_cols,
        "val mIoU (%)",
        "threshold",
        "test mIoU (%)",
        "wall (s)",
        "note",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            str(row["job"]),
            row["status"],
            *(_short(row[c]) for c in setting_cols),
            _percent(row["best_val_miou"]),
            _number(row["best_threshold"], ".2f"),
            _percent(row["test_miou"]),
            _number(row["wall_s"], ".1f"),
            str(row["note"]).replace("|", "\\|").replace("\n", " "),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _shared_overrides(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[str]:
    """Overrides every started job has in common (the swept keys excluded)."""
    jobs = [r["overrides"].split() for r in rows if r["dir"]]
    if not jobs or not keys:
        return []
    common = set(jobs[0]).intersection(*jobs[1:])
    return [o for o in jobs[0] if o in common and split_override(o)[0] not in keys]


# ---------------------------------------------------------------------------------- plot
def _is_lr(key: str) -> bool:
    last = key.split(".")[-1].lower()
    return last in {"lr", "learning_rate"} or last.endswith("_lr") or "lr" in last.split("_")


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def plot_axes(keys: Sequence[str], rows: Sequence[dict[str, Any]]) -> tuple[str | None, str | None]:
    """(x key, line key): the learning-rate-like swept key (else the first one) on x, and
    of the other swept keys the one with the fewest distinct values as lines."""
    if not keys:
        return None, None
    x_key = next((k for k in keys if _is_lr(k)), keys[0])
    others = [k for k in keys if k != x_key]
    if not others:
        return x_key, None
    return x_key, min(others, key=lambda k: len({r[k] for r in rows}))


def plot_sweep(rows: Sequence[dict[str, Any]], keys: Sequence[str], path: Path) -> Path:
    """Save the best val mIoU of every job against the swept settings as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    scored = [r for r in rows if r["best_val_miou"] is not None]
    x_key, line_key = plot_axes(keys, rows)
    if not scored:
        ax.text(0.5, 0.5, "no validation values yet", ha="center", va="center")
    elif x_key is None:
        _plot_jobs(ax, scored)
    else:
        _plot_lines(ax, scored, x_key, line_key)
    failed = sum(r["status"] == FAILED for r in rows)
    ax.set_title(f"best val mIoU of {len(rows)} jobs ({failed} failed)")
    ax.set_ylabel("best val mIoU (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def _plot_jobs(ax: Any, rows: Sequence[dict[str, Any]]) -> None:
    """No swept key: one bar per job."""
    ax.bar([str(r["job"]) for r in rows], [100 * r["best_val_miou"] for r in rows])
    ax.set_xlabel("job")


def _plot_lines(ax: Any, rows: Sequence[dict[str, Any]], x_key: str, line_key: str | None) -> None:
    """One line per value of ``line_key``, x = the value of ``x_key`` (numeric or not)."""
    xs = [_as_float(r[x_key]) for r in rows]
    numeric = all(x is not None for x in xs)
    categories = list(dict.fromkeys(str(r[x_key]) for r in rows))
    groups: dict[str, list[tuple[float, float]]] = {}
    for row, x in zip(rows, xs, strict=True):
        position = x if numeric else float(categories.index(str(row[x_key])))
        label = f"{line_key}={_short(row[line_key])}" if line_key else ""
        groups.setdefault(label, []).append((position, 100 * row["best_val_miou"]))
    for label, points in sorted(groups.items(), key=lambda g: _sort_key(g[0])):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label or None)
    positive = numeric and all(x > 0 for x in xs if x is not None)
    if positive and (_is_lr(x_key) or max(xs) / min(xs) >= 100):  # type: ignore[type-var]
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(range(len(categories)), categories)
    ax.set_xlabel(x_key)
    if line_key:
        ax.legend(fontsize="small")


def _sort_key(label: str) -> tuple[float, str]:
    """Legend order: numerically by the value after ``=`` where it is a number."""
    value = _as_float(label.partition("=")[2])
    return (value if value is not None else math.inf, label)


# ------------------------------------------------------------------------ Hydra callback
def _is_multirun(config: DictConfig) -> bool:
    mode = OmegaConf.select(config, "hydra.mode")
    return str(getattr(mode, "name", mode)).endswith("MULTIRUN")


def _sweep_dir_of_job(config: DictConfig) -> Path:
    """The sweep directory: the job's output directory less ``hydra.sweep.subdir``."""
    job_dir = Path(str(config.hydra.runtime.output_dir))
    depth = len(Path(str(config.hydra.sweep.subdir)).parts)
    return job_dir.parents[depth - 1] if depth else job_dir


class SweepReportCallback(Callback):
    """Write the sweep report at the end of a multirun (and after each of its jobs).

    Also records each job's start, end, wall time, status and error in
    ``<job>/job.json``. Never raises: a report that cannot be written is logged.

    Args:
        every_job: refresh the report after every job (progress of a long sweep, and a
            report even when a failed job stops the sweep).
        out_dir: where to write the report; the sweep directory by default.
    """

    def __init__(self, every_job: bool = True, out_dir: str | None = None) -> None:
        self.every_job = every_job
        self.out_dir = Path(out_dir) if out_dir else None
        self._sweep_dir: Path | None = None  # set while this process runs a multirun
        self._job: tuple[Path, dict[str, Any]] | None = None  # the job in progress
        self._exit_hook = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._guard(self._start_multirun, config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = self._sweep_dir or Path(str(config.hydra.sweep.dir))
        self._sweep_dir = None
        self._guard(self._report, sweep_dir, True)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _is_multirun(config):
            self._guard(self._start_job, config)

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        self._guard(self._end_job, job_return)
        if self.every_job:
            self._guard(self._report, _sweep_dir_of_job(config), False)

    # -- the work, each step guarded by _guard
    def _start_multirun(self, config: DictConfig) -> None:
        self._sweep_dir = Path(str(config.hydra.sweep.dir))
        self._register_exit_hook()

    def _start_job(self, config: DictConfig) -> None:
        job_dir = Path(str(config.hydra.runtime.output_dir))
        record = {
            "job": int(config.hydra.job.num),
            "status": "running",
            "overrides": [str(o) for o in config.hydra.overrides.task],
            "start": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        write_json(job_dir / JOB_FILE, record)
        self._job = (job_dir, record)
        self._register_exit_hook()

    def _end_job(self, job_return: Any, error: str | None = None) -> None:
        if self._job is None:
            return
        job_dir, record = self._job
        self._job = None
        if error is None:
            status = getattr(getattr(job_return, "status", None), "name", "COMPLETED")
            if status == "FAILED":
                value = getattr(job_return, "_return_value", None)
                error = f"{type(value).__name__}: {value}" if value is not None else "failed"
        end = time.time()
        record.update(
            status=FAILED if error else OK,
            error=error,
            end=end,
            wall_s=round(end - record["start"], 1),
        )
        write_json(job_dir / JOB_FILE, record)

    def _abandon_job(self) -> None:
        """Record the job in progress as failed, with the last error its log names."""
        assert self._job is not None
        error = last_logged_error(self._job[0]) or "see the job's log"
        self._end_job(None, f"the process exited during this job: {error}")

    def _report(self, sweep_dir: Path, finished: bool) -> None:
        rows = write_sweep_report(sweep_dir, self.out_dir, finished=finished)
        where = self.out_dir or sweep_dir
        failed = sum(r["status"] == FAILED for r in rows)
        log.info("sweep report (%d jobs, %d failed): %s", len(rows), failed, where)
        if finished:
            print(f"sweep report: {where / (REPORT_NAME + '.md')}", file=sys.stderr)

    def _register_exit_hook(self) -> None:
        if not self._exit_hook:
            atexit.register(self._at_exit)
            self._exit_hook = True

    def _at_exit(self) -> None:
        """The process ends inside a job or before ``on_multirun_end``: record the job
        as failed and write the final report."""
        if self._job is not None:
            self._guard(self._abandon_job)
        if self._sweep_dir is not None:
            self._guard(self._report, self._sweep_dir, True)
            self._sweep_dir = None

    @staticmethod
    def _guard(step: Any, *args: Any) -> None:
        """Run one step; log instead of raising, so the sweep itself never fails here."""
        try:
            step(*args)
        except Exception:
            log.exception("sweep report: %s failed", getattr(step, "__name__", step))


# ---------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m fashionseg.sweep_report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("sweep_dir", type=Path, help="a Hydra multirun directory")
    parser.add_argument("--out", type=Path, default=None, help="report directory")
    parser.add_argument(
        "--in-progress",
        action="store_true",
        help="the sweep is still running: jobs not started or not validated yet are "
        "reported as running-or-incomplete, not failed",
    )
    args = parser.parse_args(argv)
    try:
        rows = write_sweep_report(args.sweep_dir, args.out, finished=not args.in_progress)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: {args.sweep_dir}: no jobs found (no multirun.yaml, no job directories)")
        return 2
    out = args.out or args.sweep_dir
    print((out / f"{REPORT_NAME}.md").read_text(), end="")
    print(f"wrote {out / REPORT_NAME}.csv, .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
