"""Dataset statistics and a full check of every file.

    python -m fashionseg.data.inspect ROOT [--task person|clothing|both]
        [--ignore-index 255|none] [--binary-255 true|false]

Prints the image count, the image sizes (as displayed), the photos' PIL modes, the photos
that carry an EXIF orientation tag (read rotated, as displayed), and per mask kind the
share of pixels (%) and the number of images holding each class and ignored pixels, then
every problem found (each names its file). Exits 1 when there are problems. Progress goes
to stderr. Reads only; writes nothing.
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

from fashionseg.data.folders import no_photos, scan_masks, scan_photos, unpaired
from fashionseg.data.io import DataError, MaskRules, check_mask, photo_info, shown
from fashionseg.data.targets import IGNORE_INDEX
from fashionseg.tasks import Task, TaskError, get_task, resolve_task


@dataclass
class TaskStats:
    """Class statistics of one task's masks (problem-free masks only)."""

    task: Task
    masks: int = 0
    ignored: int = 0  # pixels of the ignore label
    ignored_images: int = 0
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    images: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        if self.pixels.size == 0:
            self.pixels = np.zeros(self.task.num_classes, dtype=np.int64)
            self.images = np.zeros(self.task.num_classes, dtype=np.int64)

    def add(self, mask: np.ndarray) -> None:
        """Count one mask's pixels per class (and ignored) and the classes it holds."""
        counts = np.bincount(mask.ravel(), minlength=IGNORE_INDEX + 1)
        classes = counts[: self.task.num_classes]
        self.pixels += classes
        self.images += classes > 0
        self.ignored += int(counts[IGNORE_INDEX])
        self.ignored_images += int(counts[IGNORE_INDEX] > 0)
        self.masks += 1

    def pixel_share(self) -> dict[str, float]:
        """Percentage of all mask pixels (ignored ones included) per class name."""
        total = max(int(self.pixels.sum()) + self.ignored, 1)
        return {
            name: 100.0 * int(n) / total
            for name, n in zip(self.task.class_names, self.pixels, strict=True)
        }

    def ignored_share(self) -> float:
        """Percentage of all mask pixels that carry the ignore label."""
        return 100.0 * self.ignored / max(int(self.pixels.sum()) + self.ignored, 1)

    def image_counts(self) -> dict[str, int]:
        """Number of masks holding each class, per class name."""
        return {name: int(n) for name, n in zip(self.task.class_names, self.images, strict=True)}


@dataclass
class Report:
    """What :func:`inspect_dataset` found."""

    root: Path
    images: int = 0
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)
    oriented: list[tuple[Path, int]] = field(default_factory=list)  # EXIF orientation != 1
    tasks: dict[str, TaskStats] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def format(self) -> str:
        """The human-readable report."""
        lines = [f"dataset: {self.root}", f"images: {self.images}", "image sizes (W x H):"]
        lines += [f"  {w}x{h}: {n}" for (w, h), n in sorted(self.sizes.items())]
        if set(self.modes) - {"RGB"}:
            lines.append("photo modes (converted to 8-bit RGB): ")
            lines[-1] += ", ".join(f"{m}: {n}" for m, n in sorted(self.modes.items()))
        if self.oriented:
            lines.append(f"EXIF orientation (read rotated, as displayed): {len(self.oriented)}")
            lines += [f"  {shown(p)}: orientation {o}" for p, o in self.oriented]
        for stats in self.tasks.values():
            task = stats.task
            lines.append(f"{task.name} masks ({task.mask_dir}/): {stats.masks} checked")
            lines.append(f"  {'class':<12} {'pixels %':>9} {'images':>7}")
            share, counts = stats.pixel_share(), stats.image_counts()
            lines += [
                f"  {name:<12} {share[name]:>9.1f} {counts[name]:>7}" for name in task.class_names
            ]
            lines.append(
                f"  {'ignored':<12} {stats.ignored_share():>9.1f} {stats.ignored_images:>7}"
            )
        lines.append(f"problems: {len(self.problems)}")
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def inspect_dataset(
    root: str | Path,
    tasks: Sequence[str | Task] = ("person", "clothing"),
    progress: bool = False,
    rules: MaskRules | None = None,
) -> Report:
    """Decode every photo and mask of ``root``; collect statistics and every problem.

    ``rules`` (``data.ignore_index``/``data.binary_255``) say how masks are read.
    """
    root = Path(root)
    rules = rules or MaskRules()
    task_objs = [t if isinstance(t, Task) else get_task(t) for t in tasks]
    report = Report(root=root, tasks={t.name: TaskStats(t) for t in task_objs})
    if not root.is_dir():
        report.problems.append(f"{shown(root)}: dataset directory not found")
        return report
    images_dir = root / "images"
    try:
        for task in task_objs:
            rules.check(task)
        photos = scan_photos(images_dir)
    except DataError as err:
        report.problems.append(str(err))
        return report
    report.problems += photos.problems
    if not photos.files and not photos.problems:
        report.problems.append(no_photos(images_dir))
    masks: dict[str, dict[str, Path]] = {}
    for task in task_objs:
        try:
            found = scan_masks(root / task.mask_dir)
        except DataError as err:
            report.problems.append(str(err))
            masks[task.name] = {}
            continue
        masks[task.name] = found.files
        report.problems += found.problems
        report.problems += unpaired(photos, found, images_dir, root / task.mask_dir)
    report.images = len(photos.files)
    for stem, photo in tqdm(
        photos.files.items(), desc="checking", unit="image", disable=not progress, file=sys.stderr
    ):
        info = None
        try:
            info = photo_info(photo)
            report.sizes[info.size] += 1
            report.modes[info.mode] += 1
            if info.orientation != 1:
                report.oriented.append((photo, info.orientation))
        except DataError as err:
            report.problems.append(str(err))
        for task in task_objs:
            path = masks[task.name].get(stem)
            if path is None:
                continue  # reported by unpaired() or by the folder scan
            try:
                report.tasks[task.name].add(check_mask(path, task, info, rules))
            except DataError as err:
                report.problems.append(str(err))
    return report


def _ignore_index(text: str) -> int | None:
    return None if text.lower() in ("none", "null") else int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (1 when there are problems)."""
    parser = argparse.ArgumentParser(
        prog="python -m fashionseg.data.inspect", description=__doc__.splitlines()[0]
    )
    parser.add_argument("root", type=Path, help="dataset root (images/, person/, clothes/)")
    parser.add_argument(
        "--task",
        default="both",
        help="the label set to check: a task name (conf/task/NAME.yaml, or in --config-dir), "
        "a task YAML file, or both (person and clothing; the default)",
    )
    parser.add_argument(
        "--config-dir", type=Path, help="a config folder whose task/NAME.yaml defines --task"
    )
    parser.add_argument(
        "--ignore-index",
        type=_ignore_index,
        default=IGNORE_INDEX,
        help="mask value of ignored pixels, or none (data.ignore_index; default 255)",
    )
    parser.add_argument(
        "--binary-255",
        choices=("true", "false"),
        help="true: 255 is the person in 0/255 masks; false: 255 is ignored (data.binary_255)",
    )
    args = parser.parse_args(argv)
    names = ["person", "clothing"] if args.task == "both" else [args.task]
    try:
        tasks = [resolve_task(name, args.config_dir) for name in names]
    except TaskError as err:
        parser.error(str(err))
    binary = None if args.binary_255 is None else args.binary_255 == "true"
    rules = MaskRules(args.ignore_index, binary)
    report = inspect_dataset(args.root, tasks, progress=True, rules=rules)
    print(report.format())
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
