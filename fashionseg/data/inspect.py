"""Dataset statistics and a full check of every file.

    python -m fashionseg.data.inspect ROOT [--task person|clothing|both]

Prints the image count, the image sizes, and per mask kind the share of pixels (%) and the
number of images holding each class, then every problem found (each names its file).
Exits 1 when there are problems. Progress goes to stderr. Reads only; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fashionseg.data.io import DataError, check_mask, decode_size, list_photos
from fashionseg.tasks import TASKS, Task, get_task


@dataclass
class TaskStats:
    """Class statistics of one task's masks (problem-free masks only)."""

    task: Task
    masks: int = 0
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    images: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        if self.pixels.size == 0:
            self.pixels = np.zeros(self.task.num_classes, dtype=np.int64)
            self.images = np.zeros(self.task.num_classes, dtype=np.int64)

    def add(self, mask: np.ndarray) -> None:
        """Count one mask's pixels per class and the classes it holds."""
        counts = np.bincount(mask.ravel(), minlength=self.task.num_classes)
        self.pixels += counts
        self.images += counts > 0
        self.masks += 1

    def pixel_share(self) -> dict[str, float]:
        """Percentage of all mask pixels per class name."""
        total = max(int(self.pixels.sum()), 1)
        return {
            name: 100.0 * int(n) / total
            for name, n in zip(self.task.class_names, self.pixels, strict=True)
        }

    def image_counts(self) -> dict[str, int]:
        """Number of masks holding each class, per class name."""
        return {name: int(n) for name, n in zip(self.task.class_names, self.images, strict=True)}


@dataclass
class Report:
    """What :func:`inspect_dataset` found."""

    root: Path
    images: int = 0
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    tasks: dict[str, TaskStats] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def format(self) -> str:
        """The human-readable report."""
        lines = [f"dataset: {self.root}", f"images: {self.images}", "image sizes (W x H):"]
        lines += [f"  {w}x{h}: {n}" for (w, h), n in sorted(self.sizes.items())]
        for stats in self.tasks.values():
            task = stats.task
            lines.append(f"{task.name} masks ({task.mask_dir}/): {stats.masks} checked")
            lines.append(f"  {'class':<12} {'pixels %':>9} {'images':>7}")
            share, counts = stats.pixel_share(), stats.image_counts()
            lines += [
                f"  {name:<12} {share[name]:>9.1f} {counts[name]:>7}" for name in task.class_names
            ]
        lines.append(f"problems: {len(self.problems)}")
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def inspect_dataset(
    root: str | Path, tasks: Sequence[str | Task] = ("person", "clothing"), progress: bool = False
) -> Report:
    """Decode every photo and mask of ``root``; collect statistics and every problem."""
    root = Path(root)
    task_objs = [t if isinstance(t, Task) else get_task(t) for t in tasks]
    report = Report(root=root, tasks={t.name: TaskStats(t) for t in task_objs})
    if not root.is_dir():
        report.problems.append(f"{root}: dataset directory not found")
        return report
    try:
        photos = list_photos(root / "images")
    except DataError as err:
        report.problems.append(str(err))
        return report
    if not photos:
        report.problems.append(f"{root / 'images'}: no photos (.jpg, .jpeg, .png) found")
    masks: dict[str, dict[str, Path]] = {}
    for task in task_objs:
        mask_dir = root / task.mask_dir
        if not mask_dir.is_dir():
            report.problems.append(f"{mask_dir}: dataset directory not found")
            masks[task.name] = {}
            continue
        found = {p.stem: p for p in sorted(mask_dir.glob("*.png")) if not p.name.startswith(".")}
        masks[task.name] = found
        report.problems += [
            f"{found[s]}: mask has no photo in {root / 'images'}"
            for s in sorted(found.keys() - photos.keys())
        ]
    report.images = len(photos)
    for stem, photo in tqdm(
        photos.items(), desc="checking", unit="image", disable=not progress, file=sys.stderr
    ):
        size = None
        try:
            size = decode_size(photo)
            report.sizes[size] += 1
        except DataError as err:
            report.problems.append(str(err))
        for task in task_objs:
            path = masks[task.name].get(stem)
            if path is None:
                if (root / task.mask_dir).is_dir():
                    report.problems.append(
                        f"{photo}: photo has no mask {root / task.mask_dir / (stem + '.png')}"
                    )
                continue
            try:
                report.tasks[task.name].add(check_mask(path, task, size))
            except DataError as err:
                report.problems.append(str(err))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (1 when there are problems)."""
    parser = argparse.ArgumentParser(
        prog="python -m fashionseg.data.inspect", description=__doc__.splitlines()[0]
    )
    parser.add_argument("root", type=Path, help="dataset root (images/, person/, clothes/)")
    parser.add_argument(
        "--task", choices=[*TASKS, "both"], default="both", help="mask kind(s) to check"
    )
    args = parser.parse_args(argv)
    tasks = list(TASKS) if args.task == "both" else [args.task]
    report = inspect_dataset(args.root, tasks, progress=True)
    print(report.format())
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
