"""The results records: one small JSON file per finished results row, the one source of the
figures that the docs' results tables and the README's summary show.

``results/records/<task>-<row>.json`` (committed) holds, for one row on one task:

- ``row``, ``task``, ``family`` (:data:`FAMILIES`), ``date`` (UTC, when the row finished) and ``command`` (the exact
  training command);
- ``metrics``: the test split's ``iou`` per class, ``miou``, ``pixel_accuracy`` (fractions),
  the ``threshold`` or ``class_thresholds`` used, and ``ap`` (mask and box AP, absent for
  rows without instances);
- ``config``: the experiment, the row's extra overrides and, for a recorded run, the key
  settings of the composed config (architecture, input size, epochs, batch, optimizer);
- ``conditions`` (hardware and threads), ``wall_s`` and ``cpu_s`` (training, validation and
  test; ``None`` where not measured);
- ``source``: ``run`` (written by ``python -m fashionseg.report`` from the run's own
  outputs) or ``carried over from the old table`` (the run's outputs are gone; its figures
  are the table's, rounded as it showed them);
- ``history``: notes in time order (reruns, re-scoring, what shared the machine).

``results/records/seed_report.json`` holds the seed report's own figures, as it stated them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fashionseg.files import write_json

RECORDS_DIR = Path("results") / "records"
SEED_REPORT = "seed_report.json"
RUN = "run"
CARRIED_OVER = "carried over from the old table"
# the composed config's settings a record keeps (dotted keys; missing ones are skipped)
KEY_SETTINGS = (
    "model.net.arch",
    "model.net.min_size",
    "model.net.max_size",
    "model.net.semantic_head",
    "model.net.weights",
    "data.instances",
    "data.batch_size",
    "data.crop",
    "trainer.max_epochs",
    "optimizer._target_",
    "optimizer.lr",
    "fusion.method",
    "fusion.per_class_thresholds",
    "seed",
)
FAMILIES = ("Mask R-CNN", "Panoptic FPN", "semantic")
METRIC_KEYS = ("iou", "miou", "pixel_accuracy", "threshold", "class_thresholds", "ap")


class RecordError(ValueError):
    """A records file that cannot be read (the message names it)."""


def record_path(records_dir: Path, task: str, row: str) -> Path:
    return records_dir / f"{task}-{row}.json"


def _dotted(config: Mapping[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def key_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`KEY_SETTINGS` of a composed config that it sets."""
    found = {key: _dotted(config, key) for key in KEY_SETTINGS}
    return {k: v for k, v in found.items() if v is not None}


def family_of(config: Mapping[str, Any]) -> str:
    """The model family of a composed config (one of :data:`FAMILIES`)."""
    if "semantic" in str(_dotted(config, "model._target_") or "").lower():
        return "semantic"
    return "Panoptic FPN" if _dotted(config, "model.net.semantic_head") else "Mask R-CNN"


def make_record(
    *,
    row: str,
    task: str,
    family: str,
    command: Sequence[str],
    metrics: Mapping[str, Any],
    conditions: str,
    wall_s: float | None,
    cpu_s: float | None,
    date: str,
    overrides: Sequence[str] = (),
    settings: Mapping[str, Any] | None = None,
    source: str = RUN,
    history: Sequence[str] = (),
) -> dict[str, Any]:
    """One record (see the module's docstring); ``metrics`` as a run's ``metrics.json``."""
    config: dict[str, Any] = {"experiment": row, "overrides": list(overrides)}
    if settings:
        config["settings"] = dict(settings)
    if family not in FAMILIES:
        raise ValueError(f"family {family!r}: not one of {', '.join(FAMILIES)}")
    return {
        "row": row,
        "task": task,
        "family": family,
        "date": date,
        "source": source,
        "command": " ".join(command),
        "config": config,
        "metrics": {k: metrics.get(k) for k in METRIC_KEYS if metrics.get(k) is not None},
        "conditions": conditions,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "history": list(history),
    }


def record_run(
    records_dir: Path,
    run_dir: Path,
    *,
    row: str,
    task: str,
    command: Sequence[str],
    overrides: Sequence[str] = (),
    now: dt.datetime | None = None,
) -> Path:
    """Record a finished row from its run directory (``metrics.json``,
    ``report_timing.json``, ``.hydra/config.yaml``) and return the record's path.

    A record already there for the row (e.g. carried over) is replaced; its date, source
    and mIoU are kept as the first line of the new record's history.
    """
    metrics = json.loads((run_dir / "metrics.json").read_text())
    timing_path = run_dir / "report_timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
    settings: dict[str, Any] = {}
    family = "Mask R-CNN"
    config_path = run_dir / ".hydra" / "config.yaml"
    if config_path.is_file():
        from omegaconf import OmegaConf

        composed = OmegaConf.to_container(OmegaConf.load(config_path), resolve=False)
        if isinstance(composed, dict):
            settings, family = key_settings(composed), family_of(composed)
    path = record_path(records_dir, task, row)
    date = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%d")
    history: list[str] = []
    if path.is_file():
        old = read_record(path)
        history = list(old.get("history", []))
        miou = old.get("metrics", {}).get("miou")
        shown = "n/a" if miou is None else f"{100 * miou:.1f} %"
        history.append(
            f"{date}: replaced the record of {old.get('date')} ({old.get('source')}, mIoU {shown})"
        )
    record = make_record(
        row=row,
        task=task,
        family=family,
        command=command,
        metrics=metrics,
        conditions=timing.get("hardware", "n/a"),
        wall_s=timing.get("seconds"),
        cpu_s=timing.get("cpu_seconds"),
        date=date,
        overrides=overrides,
        settings=settings,
        history=history,
    )
    write_json(path, record)
    return path


def read_record(path: Path) -> dict[str, Any]:
    """One record; RecordError naming the file when it is not one."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise RecordError(f"{path}: not a readable results record ({err})") from None
    missing = [k for k in ("row", "task", "family", "date", "metrics") if k not in record]
    if missing:
        raise RecordError(f"{path}: not a results record (no {', '.join(missing)})")
    return record


def load_records(records_dir: Path = RECORDS_DIR) -> list[dict[str, Any]]:
    """Every row record of a records folder (not the seed report's), sorted by file name."""
    return [read_record(p) for p in sorted(records_dir.glob("*.json")) if p.name != SEED_REPORT]


def load_seed_report(records_dir: Path = RECORDS_DIR) -> dict[str, Any]:
    """The seed report's own figures (``{}`` when the folder has none)."""
    path = records_dir / SEED_REPORT
    return json.loads(path.read_text()) if path.is_file() else {}
