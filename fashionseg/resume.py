"""Which checkpoint ``resume=`` continues from: the newest run of the task that trained
at least one step, a given run directory or a given file (``train.py`` calls
:func:`resume_checkpoint`; torch loads lazily, so a bad ``resume=`` is said at once)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fashionseg.errors import UsageError

log = logging.getLogger(__name__)
# checkpoints a run can continue from: the end of its last epoch, or an interruption
RESUMABLE = ("last.ckpt", "interrupted.ckpt")


def progress(path: Path) -> tuple[int, int] | None:
    """(epoch, global step) saved in a checkpoint; None when it cannot be read."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(ckpt["epoch"]), int(ckpt["global_step"])
    except Exception as err:  # a corrupt or foreign file is not a place to resume from
        log.warning("%s: not a resumable checkpoint (%s)", path, " ".join(str(err).split())[:200])
        return None


def run_checkpoint(run_dir: Path) -> Path | None:
    """The most advanced (epoch, step) resumable checkpoint of a run directory that
    trained at least one step, if any."""
    found = []
    for path in (run_dir / "checkpoints" / name for name in RESUMABLE):
        saved = progress(path) if path.is_file() else None
        if saved is not None and saved[1] > 0:
            found.append((saved, path))
    return max(found, key=lambda item: item[0])[1] if found else None


def resume_checkpoint(resume: Any, runs_dir: Path, current: Path | None = None) -> Path | None:
    """The checkpoint ``resume`` asks for: ``true`` -> the newest run in ``runs_dir`` that
    trained at least one step (its most advanced checkpoint).

    ``resume`` may also be a run directory or a checkpoint file; ``false``/``null``
    means start afresh. ``current`` (this run's own directory) is never chosen. Runs that
    stopped before their first step (a bad setting, say) are passed over.
    """
    if resume is None or resume is False:
        return None
    if resume is True:
        runs = [d for d in runs_dir.glob("*") if d.is_dir() and d != current]
        candidates = [c for c in map(run_checkpoint, runs) if c is not None]
        if not candidates:
            raise UsageError(
                f"resume=true: no run under {runs_dir} has a checkpoints/last.ckpt or "
                "interrupted.ckpt that trained at least one step"
            )
        return max(candidates, key=lambda p: p.stat().st_mtime)
    path = Path(str(resume)).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        found = run_checkpoint(path)
        if found is None:
            raise UsageError(
                f"resume={path}: no checkpoints/last.ckpt or interrupted.ckpt that trained "
                "at least one step in this run directory"
            )
        return found
    raise UsageError(f"resume={path}: no such run directory or checkpoint")
