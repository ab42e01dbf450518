"""How good are pseudo labels? Score a pseudo-labelled root against ground truth.

    python -m fashionseg.pseudo_quality PSEUDO_ROOT TRUTH_ROOT [--out quality.json]

``PSEUDO_ROOT`` is what ``python -m fashionseg.pseudo_label`` wrote (its record names the
label set), here for photos that also have ground truth in ``TRUTH_ROOT`` (same layout,
same stems), e.g. a teacher's validation photos. Ignored pixels of the pseudo labels
(below their class's threshold) are left out; what is scored is the pixels kept:

- ``kept``: the share of all ground-truth pixels (not ignored there) the pseudo labels
  keep, overall and per true class (how much of a class the student will see);
- the confusion matrix of the kept pixels against the truth, and from it the pixel
  accuracy, per-class IoU and mIoU (:func:`fashionseg.metrics.metrics_dict`, the
  project's one mIoU) of the kept pixels.

A photo without its ground truth, or a stem the pseudo root does not have, is counted and
skipped. A problem with a file is one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fashionseg.data.io import DataError, MaskRules, read_mask
from fashionseg.errors import UsageError
from fashionseg.files import write_json
from fashionseg.metrics import metrics_dict
from fashionseg.tasks import IGNORE_INDEX, Task, get_task

RECORD = "pseudo_label.json"


def confusion(pseudo: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """``[C, C]`` counts (rows: truth, columns: pseudo label) of the pixels both keep."""
    if pseudo.shape != truth.shape:
        raise ValueError(f"pseudo label {pseudo.shape} and truth {truth.shape} differ in size")
    keep = (pseudo != IGNORE_INDEX) & (truth != IGNORE_INDEX)
    index = truth[keep].astype(np.int64) * num_classes + pseudo[keep].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def truth_counts(truth: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels per true class (ignored pixels not counted)."""
    values = truth[truth != IGNORE_INDEX].astype(np.int64)
    return np.bincount(values, minlength=num_classes)


def score(pseudo_root: Path, truth_root: Path, task: Task) -> dict[str, Any]:
    """The kept shares and the kept pixels' metrics (see the module's docstring)."""
    n = task.num_classes
    cm = np.zeros((n, n), dtype=np.int64)
    totals = np.zeros(n, dtype=np.int64)
    pseudo_rules = MaskRules(IGNORE_INDEX, binary_255=False)
    scored, missing = 0, []
    for path in sorted((pseudo_root / task.mask_dir).glob("*.png")):
        truth_path = truth_root / task.mask_dir / path.name
        if not truth_path.is_file():
            missing.append(path.stem)
            continue
        pseudo = read_mask(path, task, pseudo_rules)
        truth = read_mask(truth_path, task)
        cm += confusion(pseudo, truth, n)
        totals += truth_counts(truth, n)
        scored += 1
    if not scored:
        raise DataError(
            f"{pseudo_root / task.mask_dir}: no pseudo label with ground truth in "
            f"{truth_root / task.mask_dir}"
        )
    kept_per_class = cm.sum(axis=1)
    metrics = metrics_dict(torch.from_numpy(cm), task.class_names)
    return {
        "photos": scored,
        "without_truth": missing,
        "kept": float(kept_per_class.sum() / max(int(totals.sum()), 1)),
        "kept_per_class": {
            name: (None if totals[i] == 0 else float(kept_per_class[i] / totals[i]))
            for i, name in enumerate(task.class_names)
        },
        "kept_pixels": {k: metrics[k] for k in ("iou", "miou", "pixel_accuracy")},
        "confusion_matrix": cm.tolist(),
    }


def format_quality(result: dict[str, Any], names: list[str]) -> str:
    """A short Markdown table: per class kept share and IoU of the kept pixels."""
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = [
        f"{result['photos']} photos; kept {pct(result['kept'])} % of the pixels; kept pixels: "
        f"accuracy {pct(result['kept_pixels']['pixel_accuracy'])} %, "
        f"mIoU {pct(result['kept_pixels']['miou'])} %",
        "",
        "| class | kept (%) | IoU of kept pixels (%) |",
        "|---|---:|---:|",
    ]
    for name in names:
        lines.append(
            f"| {name} | {pct(result['kept_per_class'][name])} | "
            f"{pct(result['kept_pixels']['iou'][name])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pseudo", type=Path, help="a root written by fashionseg.pseudo_label")
    parser.add_argument("truth", type=Path, help="the ground truth's root (same layout)")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    try:
        record_path = args.pseudo / RECORD
        if not record_path.is_file():
            raise UsageError(f"{record_path}: not found (not a pseudo_label output)")
        try:
            task = get_task(json.loads(record_path.read_text())["task"])
        except (ValueError, KeyError, TypeError) as err:
            raise UsageError(f"{record_path}: not a pseudo_label record ({err})") from None
        result = score(args.pseudo, args.truth, task)
    except (UsageError, DataError, ValueError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(format_quality(result, task.class_names))
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
