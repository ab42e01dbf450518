"""The results tables of the docs and the README's summary, generated from the records.

    python -m fashionseg.report --tables           # rewrite the generated blocks
    python -m fashionseg.report --tables --check   # exit 1 if a block differs

A generated block sits between ``<!-- generated: NAME (python -m fashionseg.report
--tables) -->`` and ``<!-- end generated: NAME -->`` in a Markdown file; only the text
between the two markers is rewritten. :data:`BLOCKS` says which block goes where:
``results`` (every row of every task, with its command, conditions and history) in
``docs/results.md`` and ``summary`` (one small table per task) in ``README.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fashionseg.reporting.records import CARRIED_OVER

BLOCKS = {"results": Path("docs/results.md"), "summary": Path("README.md")}
INSTANCE_FAMILIES = ("Mask R-CNN", "Panoptic FPN")
# the summary's columns per task: (header, metric) where metric is "miou",
# "pixel_accuracy" or a class name (its IoU)
SUMMARY_COLUMNS = {
    "person": (("person IoU", "person"), ("mIoU", "miou"), ("pixel acc.", "pixel_accuracy")),
    "clothing": (("mIoU", "miou"), ("pixel acc.", "pixel_accuracy")),
}
# any other label set gets one line: its best row (:func:`_summary_line`)
# a label set with more classes than this gets a per-class table with one row per class
# (one column per results row) instead of one column per class
WIDE_TABLE_CLASSES = 12


def percent(value: float | None, missing: str = "n/a") -> str:
    """A fraction as a percentage with one decimal (``missing`` for None)."""
    return missing if value is None else f"{100.0 * value:.1f}"


def minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f} min"


def thresholds_text(metrics: Mapping[str, Any]) -> str:
    """``0.35``, ``per class 0.10/0.05/...`` (background has none) or ``argmax``."""
    if metrics.get("class_thresholds"):
        values = list(metrics["class_thresholds"].values())[1:]
        return "per class " + "/".join(f"{v:.2f}" for v in values)
    if metrics.get("threshold") is None:
        return "argmax"
    return f"{metrics['threshold']:.2f}"


def ap_text(metrics: Mapping[str, Any], kind: str, missing: str = "-") -> str:
    """``kind`` (mask | box) AP with AP50/AP75 in %, e.g. ``12.3 (30.1/9.8)``."""
    ap = metrics.get("ap") or {}
    values = [ap.get(f"{kind}_ap{suffix}") for suffix in ("", "50", "75")]
    if values[0] is None:
        return missing
    return f"{percent(values[0])} ({percent(values[1], '-')}/{percent(values[2], '-')})"


def _ordered(records: Sequence[Mapping[str, Any]], rows: Sequence[str]) -> list[Any]:
    rank = {row: i for i, row in enumerate(rows)}
    return sorted(records, key=lambda r: (rank.get(r["row"], len(rank)), r["row"]))


def _source_mark(record: Mapping[str, Any]) -> str:
    return "carried over" if record.get("source") == CARRIED_OVER else "run"


def task_table(
    records: Sequence[Mapping[str, Any]], task: str, class_names: Sequence[str]
) -> list[str]:
    """The Markdown lines of one task's table (records of that task, in order); a label set
    of more than :data:`WIDE_TABLE_CLASSES` classes gets :func:`long_task_table`."""
    if len(class_names) > WIDE_TABLE_CLASSES:
        return long_task_table(records, class_names)
    lines = [
        "| row | "
        + " | ".join(class_names)
        + " | mIoU | pixel acc. | threshold | mask AP (50/75) | box AP (50/75) "
        "| train time | CPU time | date | figures |",
        "|---|" + "---:|" * (len(class_names) + 7) + "---|---|---|",
    ]
    for r in records:
        m = r["metrics"]
        instances = r.get("family") in INSTANCE_FAMILIES
        missing_ap = "not measured" if instances else "-"
        ious = " | ".join(percent(m.get("iou", {}).get(n)) for n in class_names)
        lines.append(
            f"| {r['row']} | {ious} | **{percent(m.get('miou'))}** | "
            f"{percent(m.get('pixel_accuracy'))} | {thresholds_text(m)} | "
            f"{ap_text(m, 'mask', missing_ap)} | {ap_text(m, 'box', missing_ap)} | "
            f"{minutes(r.get('wall_s'))} | {minutes(r.get('cpu_s'))} | {r['date']} | "
            f"{_source_mark(r)} |"
        )
    return lines


def long_task_table(records: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> list[str]:
    """A many-class task's tables: the rows' summary figures, then per-class IoU with one
    line per class and one column per row (``n/a``: the class has no pixel in the test
    split's ground truth and is never predicted, so it is not in the mean)."""
    lines = [
        "| row | classes in the mean | mIoU | pixel acc. | train time | CPU time | date "
        "| figures |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in records:
        m = r["metrics"]
        counted = sum(m.get("iou", {}).get(n) is not None for n in class_names)
        lines.append(
            f"| {r['row']} | {counted} of {len(class_names)} | **{percent(m.get('miou'))}** | "
            f"{percent(m.get('pixel_accuracy'))} | {minutes(r.get('wall_s'))} | "
            f"{minutes(r.get('cpu_s'))} | {r['date']} | {_source_mark(r)} |"
        )
    lines += [
        "",
        "| id | class | " + " | ".join(r["row"] for r in records) + " |",
        "|---:|---|" + "---:|" * len(records),
    ]
    for i, name in enumerate(class_names):
        cells = [percent(r["metrics"].get("iou", {}).get(name)) for r in records]
        lines.append(f"| {i} | {name} | " + " | ".join(cells) + " |")
    return lines


def results_block(
    records: Sequence[Mapping[str, Any]],
    tasks: Mapping[str, Sequence[str]],
    rows: Mapping[str, str],
) -> str:
    """``docs/results.md``'s generated block: a table per task (``tasks``: task -> class
    names), then each row's description, commands, conditions and history."""
    ordered = _ordered(records, list(rows))
    lines: list[str] = []
    for task, names in tasks.items():
        mine = [r for r in ordered if r["task"] == task]
        lines += [f"### {task}", "", *task_table(mine, task, names), ""]
    lines += [
        "IoU in % on the test split; mask and box AP: COCO AP over IoU 0.50:0.95 "
        "(AP50/AP75) in % of the Mask R-CNN's instances against the label maps' own "
        "instances (`-`: a model without instances); train time: wall time of training, "
        "validation and test; CPU time: user + system; a threshold of 1.00 paints no "
        "instance (panoptic fusion: the semantic head alone). *figures*: `run` = recorded "
        "by `python -m fashionseg.report` from the run's outputs, `carried over` = the run's "
        "outputs are gone and the figures are the old hand-kept table's.",
        "",
        "### Each row: command, conditions, history",
        "",
    ]
    for row in dict.fromkeys(r["row"] for r in ordered):
        lines += [f"#### {row}", "", rows.get(row, row) + ".", ""]
        for r in (r for r in ordered if r["row"] == row):
            lines.append(
                f"- **{r['task']}** ({r['family']}; {r['date']}; {_source_mark(r)}): "
                f"`{r['command']}`; {r.get('conditions', 'n/a')}; wall "
                f"{minutes(r.get('wall_s'))}, CPU {minutes(r.get('cpu_s'))}"
            )
            if r.get("stages"):
                lines.append(f"    - stages (CPU time): {stage_text(r['stages'])}")
            lines += [f"    - {note}" for note in r.get("history", [])]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def stage_text(stages: Sequence[Mapping[str, Any]]) -> str:
    """``teacher 31.0 + pseudo labels 4.2 + student 25.3 = 60.5 min`` of CPU time, each
    stage's command in brackets (``n/a`` where a stage's CPU time is unknown)."""
    cpu = [s.get("cpu_s") for s in stages]
    parts = " + ".join(
        f"{s['stage']} {'n/a' if c is None else f'{c / 60:.1f}'} (`{s.get('command', '')}`)"
        for s, c in zip(stages, cpu, strict=True)
    )
    total = "n/a" if any(c is None for c in cpu) else f"{sum(cpu) / 60:.1f}"
    return f"{parts} = {total} min"


def _best(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    scored = [r for r in records if r["metrics"].get("miou") is not None]
    return max(scored, key=lambda r: r["metrics"]["miou"], default=None)


def _value(record: Mapping[str, Any], key: str) -> float | None:
    metrics = record["metrics"]
    if key in ("miou", "pixel_accuracy"):
        return metrics.get(key)
    return metrics.get("iou", {}).get(key)


def _cell(record: Mapping[str, Any], key: str) -> str:
    return percent(_value(record, key))


def summary_block(
    records: Sequence[Mapping[str, Any]],
    seed_report: Mapping[str, Any],
    baseline: str = "ccp_report",
) -> str:
    """The README's summary: per task, the seed report's own figures, its recipe here
    (``baseline``), our best Mask R-CNN row and our best row, with the latest date."""
    if not records:
        return "No results recorded yet.\n"
    latest = max(r["date"] for r in records)
    lines = [f"Test split, IoU in %; as recorded on {latest}.", ""]
    for task, columns in SUMMARY_COLUMNS.items():
        mine = [r for r in records if r["task"] == task]
        if mine:
            lines += [*_summary_table(task, columns, mine, seed_report, baseline), ""]
    for task in sorted({r["task"] for r in records} - set(SUMMARY_COLUMNS)):
        best = _best([r for r in records if r["task"] == task])
        if best is not None:
            lines += [_summary_line(task, best), ""]
    note = seed_report.get("note")
    if note:
        lines.append(note)
    return "\n".join(lines).rstrip() + "\n"


def _summary_table(
    task: str,
    columns: Sequence[tuple[str, str]],
    mine: Sequence[Mapping[str, Any]],
    seed_report: Mapping[str, Any],
    baseline: str,
) -> list[str]:
    """One task's summary table: the seed report's figures, its recipe here, our best
    Mask R-CNN row and our best row."""
    header = [h for h, _ in columns]
    lines = [
        f"**{task}**",
        "",
        "| | row | " + " | ".join(header) + " |",
        "|---|---|" + "---:|" * len(header),
    ]
    stated = seed_report.get(task, {})
    if stated:
        cells = [str(stated.get(h, "not stated")) for h in header]
        lines.append("| the seed report's own figures | - | " + " | ".join(cells) + " |")
    picks = [
        ("the seed report's recipe, here", next((r for r in mine if r["row"] == baseline), None)),
        (
            "our best Mask R-CNN (or Panoptic FPN) row",
            _best([r for r in mine if r["family"] in INSTANCE_FAMILIES]),
        ),
        ("our best row", _best(mine)),
    ]
    for label, r in picks:
        if r is not None:
            cells = [_cell(r, key) for _, key in columns]
            lines.append(f"| {label} | `{r['row']}` | " + " | ".join(cells) + " |")
    return lines


def _summary_line(task: str, best: Mapping[str, Any]) -> str:
    """Another label set's summary: its best row in one line, with a link to every class."""
    iou = best["metrics"].get("iou", {})
    counted = sum(v is not None for v in iou.values())
    return (
        f"**{task}** ({len(iou)} classes): `{best['row']}` "
        f"{percent(best['metrics'].get('miou'))} % mIoU over the {counted} classes of the "
        f"test split, pixel accuracy {percent(best['metrics'].get('pixel_accuracy'))} %, "
        f"trained in {minutes(best.get('wall_s'))} ({minutes(best.get('cpu_s'))} CPU) with "
        f"`{best['command']}`; every class: [docs/results.md](docs/results.md#{task})."
    )


def begin_marker(name: str) -> str:
    return f"<!-- generated: {name} (python -m fashionseg.report --tables) -->"


def end_marker(name: str) -> str:
    return f"<!-- end generated: {name} -->"


def replace_block(text: str, name: str, content: str) -> str:
    """``text`` with block ``name``'s content replaced (ValueError without its markers)."""
    begin, end = begin_marker(name), end_marker(name)
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"no generated block {name!r} (markers {begin!r} ... {end!r})")
    head = text[: start + len(begin)]
    return f"{head}\n{content.rstrip()}\n{text[stop:]}"


def generated_files(
    root: Path, blocks: Mapping[str, str], where: Mapping[str, Path] = BLOCKS
) -> dict[Path, tuple[str, str]]:
    """For each file holding a block: (its text now, its text with the blocks generated)."""
    out: dict[Path, tuple[str, str]] = {}
    for name, content in blocks.items():
        path = root / where[name]
        old, new = out.get(path, (path.read_text(), path.read_text()))
        out[path] = (old, replace_block(new, name, content))
    return out
