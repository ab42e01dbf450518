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

The jobs and their statuses are read by :mod:`fashionseg.reporting.sweep_jobs`, the three files
made by :mod:`fashionseg.reporting.sweep_render`; :class:`fashionseg.reporting.sweep_hydra_callback.SweepReportCallback`
(registered in ``conf/hydra/default.yaml``) writes the report during every multirun.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fashionseg.files import write_text
from fashionseg.reporting.sweep_jobs import sweep_rows
from fashionseg.reporting.sweep_render import format_csv, format_markdown, plot_sweep

REPORT_NAME = "sweep_report"


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
