"""The sweep report's files, made from its rows: CSV, Markdown and a PNG plot.

The CSV has one row per job (fractions, not percentages; one column per swept key), the
Markdown page a summary, the settings every job shares and one table row per job, and
the plot the best validation mIoU of every job against the learning rate (log axis),
one line per value of the other swept key.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fashionseg.files import atomic_path
from fashionseg.reporting.run_results import format_percent
from fashionseg.reporting.sweep_jobs import FAILED, INCOMPLETE, OK, split_override

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


# -------------------------------------------------------------------------------- tables
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
            f"Best val mIoU: {format_percent(best['best_val_miou'], missing='')} % (job {best['job']}"
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
            format_percent(row["best_val_miou"], missing=""),
            _number(row["best_threshold"], ".2f"),
            format_percent(row["test_miou"], missing=""),
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
