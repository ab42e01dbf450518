"""Results rows that run in stages: a teacher row, pseudo labels on unlabelled photos, a
student trained on labelled + pseudo-labelled photos (issue 26's self-training).

    python -m fashionseg.report --rows ccp_self_train --tasks clothing

A pipeline row ``R`` reuses the teacher row's run directory ``OUT/<task>-<teacher>/``
(trained first when missing, exactly as ``--rows <teacher>`` would), pseudo-labels the
unlabelled photos into ``OUT/<task>-R-pseudo/`` with the teacher's best checkpoint
(``python -m fashionseg.pseudo_label``, which resumes by itself), then trains the student
row in ``OUT/<task>-R/`` with ``data.extra_roots`` and ``model.init_from`` pointing at
them. Every stage's command, wall time and CPU time is kept in the student's
``stages.json``; the row's record sums them and lists them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashionseg.files import write_json

CHECKPOINT_NAME = re.compile(r"epoch(\d+)-miou([0-9.]+)\.ckpt$")


@dataclass(frozen=True)
class Pipeline:
    """A staged row: ``teacher`` and ``student`` are experiment names (rows),
    ``unlabelled`` the root of the photos to pseudo-label (``images/`` and, optionally, a
    ``tags.csv`` beside it), ``pseudo_args`` extra ``pseudo_label`` arguments.
    ``init_row``: the row whose best checkpoint the student starts from (None: the
    teacher's; another row when the student is of another family, e.g. a Panoptic FPN
    student of a semantic teacher's pseudo labels). ``pseudo_of``: the pipeline row whose
    pseudo labels (same teacher, same arguments) this one reuses instead of making its own."""

    teacher: str
    student: str
    unlabelled: str
    pseudo_args: tuple[str, ...] = ()
    init_row: str | None = None
    pseudo_of: str | None = None


_SELF_TRAIN = Pipeline(
    teacher="ccp_semantic_plus",
    student="ccp_self_train",
    unlabelled="../shared/data/ccp-unlabelled1094",
    # flip + these scales: chosen on the clothing teacher's validation split
    # (evaluate data.split=val tta_scales=choose: 57.45 % flip only, 58.82 % with 1.25)
    pseudo_args=("tta_scales=[1.0,1.25]",),
)

PIPELINES = {
    "ccp_self_train": _SELF_TRAIN,
    # the Mask R-CNN family on the same pseudo labels: a Panoptic FPN student, started from
    # the supervised ccp_panoptic row's best checkpoint (a semantic checkpoint cannot start
    # a detector), on the semantic teacher's pseudo labels (the better teacher: person
    # validation mIoU 92.96 % against the Panoptic FPN's 86.28 %); teacher, photos and
    # pseudo-labelling arguments are ccp_self_train's by construction
    "ccp_panoptic_self_train": dataclasses.replace(
        _SELF_TRAIN,
        student="ccp_panoptic_self_train",
        init_row="ccp_panoptic",
        pseudo_of="ccp_self_train",
    ),
}


def best_checkpoint(run_dir: Path) -> Path:
    """The best checkpoint a run kept (``checkpoints/epochNNN-miouX.ckpt``, highest
    validation mIoU, the later epoch on a tie); FileNotFoundError naming the folder."""
    found = []
    for path in (run_dir / "checkpoints").glob("epoch*-miou*.ckpt"):
        match = CHECKPOINT_NAME.search(path.name)
        if match:
            found.append((float(match.group(2)), int(match.group(1)), path))
    if not found:
        raise FileNotFoundError(f"{run_dir / 'checkpoints'}: no best checkpoint (epoch*-miou*)")
    return max(found)[2]


def pseudo_command(pipeline: Pipeline, teacher_ckpt: Path, out: Path) -> list[str]:
    """The pseudo-labelling stage's command (``tags=`` when the unlabelled root has one)."""
    root = Path(pipeline.unlabelled)
    cmd = [
        "python",
        "-m",
        "fashionseg.pseudo_label",
        f"ckpt={teacher_ckpt}",
        f"input={root / 'images'}",
        f"out={out}",
    ]
    if (root / "tags.csv").is_file():
        cmd.append(f"tags={root / 'tags.csv'}")
    return cmd + list(pipeline.pseudo_args)


def student_overrides(pseudo_root: Path, teacher_ckpt: Path) -> list[str]:
    """The student row's overrides on top of its experiment."""
    return [f"data.extra_roots=[{pseudo_root}]", f"model.init_from={teacher_ckpt}"]


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(cmd: Sequence[str], timing_path: Path, label: str, **fields: Any) -> dict[str, Any]:
    """Run ``cmd`` (``python`` = this interpreter); add its wall and CPU time to those in
    ``timing_path`` (a resumed stage keeps the time already spent) and save them there with
    ``fields``. The CPU time is left out when an earlier part ran without it being
    recorded. SystemExit naming ``label`` when the command fails."""
    before = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
    print(f"[report] {' '.join(map(shlex.quote, cmd))}", flush=True)
    start, cpu_start = time.perf_counter(), children_cpu_seconds()
    proc = subprocess.run([sys.executable, *cmd[1:]], check=False)
    timing: dict[str, Any] = {
        "seconds": before.get("seconds", 0.0) + time.perf_counter() - start,
        **fields,
        "command": list(cmd),
    }
    if "seconds" not in before or "cpu_seconds" in before:  # CPU time of every part known
        timing["cpu_seconds"] = before.get("cpu_seconds", 0.0) + (
            children_cpu_seconds() - cpu_start
        )
    write_json(timing_path, timing)
    if proc.returncode != 0:
        raise SystemExit(f"[report] {label} failed (exit {proc.returncode}); see {timing_path}")
    return timing


def stage(name: str, timing_path: Path) -> dict[str, Any]:
    """One stage's entry of ``stages.json`` from its timing file."""
    timing = json.loads(timing_path.read_text())
    return {
        "stage": name,
        "command": " ".join(timing.get("command", [])),
        "wall_s": timing.get("seconds"),
        "cpu_s": timing.get("cpu_seconds"),
    }


def totals(stages: Sequence[dict[str, Any]]) -> tuple[float | None, float | None]:
    """(wall, CPU) seconds of all stages together (None when one is unknown)."""
    out = []
    for key in ("wall_s", "cpu_s"):
        values = [s.get(key) for s in stages]
        out.append(None if any(v is None for v in values) else float(sum(values)))
    return out[0], out[1]
