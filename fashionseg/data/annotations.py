"""What the annotation importers (``convert coco``, ``convert labelme``) share.

Categories map onto a task's classes by name, or through a ``--map`` YAML file
(``category: class``; several categories may map onto one class). An unmapped category
is an error listing them all, or background with ``unmapped="background"``.

Paint order (overlapping regions): crowd regions (COCO ``iscrowd``) first, as ignored
pixels (:data:`IGNORE_INDEX`); then the instances from the largest area to the
smallest, each painted over those before it, so a small item (a belt, a shoe) lying on a
large one (a dress) stays visible. Ties keep the file's order.

The dataset is written in the project's layout: ``images/<stem><ext>`` (the photo
copied, or symlinked with ``link``), ``<mask_dir>/<stem>.png`` (a palette PNG of class
ids) and, with ``person``, ``person/<stem>.png`` (every class but background: 1).
Nothing already under the output folder is overwritten: a file that exists is an error.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from fashionseg.files import save_label_png
from fashionseg.tasks import IGNORE_INDEX, Task, get_task

UNMAPPED = ("error", "background")


class ConversionError(ValueError):
    """Bad input to a converter: the one-line message names the file and the problem."""


@dataclass
class Region:
    """One annotated region: a boolean H x W mask, its class id, whether it is a crowd."""

    mask: np.ndarray
    class_id: int
    crowd: bool = False


def read_map_file(path: str | Path) -> dict[str, str]:
    """A ``--map`` file: ``{category name: class name}`` (YAML mapping)."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: map file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConversionError(
            f"{path}: not readable YAML ({' '.join(str(err).split())[:150]})"
        ) from None
    if not isinstance(data, Mapping) or not all(isinstance(v, str) for v in data.values()):
        raise ConversionError(f"{path}: a map file maps category names to class names")
    return {str(k): v for k, v in data.items()}


def class_lookup(
    categories: Iterable[str],
    task: Task,
    mapping: Mapping[str, str] | None = None,
    unmapped: str = "error",
    where: str = "annotations",
) -> dict[str, int]:
    """``{category: class id}`` for every category: by ``mapping``, else by name; an
    unmapped one is a ConversionError listing all of them (or 0 with ``background``)."""
    mapping = dict(mapping or {})
    ids = {name: i for i, name in enumerate(task.class_names)}
    bad_targets = sorted({v for v in mapping.values() if v not in ids})
    if bad_targets:
        raise ConversionError(
            f"{where}: --map names class(es) {bad_targets} that task {task.name!r} does not "
            f"have ({', '.join(task.class_names)})"
        )
    lookup: dict[str, int] = {}
    missing = []
    for category in dict.fromkeys(categories):
        target = mapping.get(category, category)
        if target in ids:
            lookup[category] = ids[target]
        elif unmapped == "background":
            lookup[category] = 0
        else:
            missing.append(category)
    if missing:
        raise ConversionError(
            f"{where}: categor{'y' if len(missing) == 1 else 'ies'} {missing} not among task "
            f"{task.name!r}'s classes ({', '.join(task.class_names)}): map them with --map "
            "FILE.yaml, or --unmapped background"
        )
    return lookup


def paint(height: int, width: int, regions: Sequence[Region]) -> np.ndarray:
    """The uint8 label map of ``regions`` in the module's paint order (see above)."""
    label_map = np.zeros((height, width), dtype=np.uint8)
    for region in regions:
        if region.crowd:
            label_map[region.mask] = IGNORE_INDEX
    instances = [r for r in regions if not r.crowd]
    areas = [int(r.mask.sum()) for r in instances]
    for index in sorted(range(len(instances)), key=lambda i: -areas[i]):
        label_map[instances[index].mask] = instances[index].class_id
    return label_map


def person_map(label_map: np.ndarray) -> np.ndarray:
    """The ``person`` union: 1 where any class but background, ignored pixels kept."""
    person = (label_map > 0).astype(np.uint8)
    person[label_map == IGNORE_INDEX] = IGNORE_INDEX
    return person


class DatasetWriter:
    """Writes samples into ``out`` in the project's layout, never over an existing file."""

    def __init__(self, out: str | Path, task: Task, person: bool = False, link: bool = False):
        self.out, self.task, self.person, self.link = Path(out), task, person, link
        if self.out.exists() and not self.out.is_dir():
            raise ConversionError(f"{self.out}: --out exists and is not a folder")
        self.stems: set[str] = set()

    def targets(self, stem: str, photo: Path | str) -> list[Path]:
        """The files one sample writes (photo, mask, person mask)."""
        files = [
            self.out / "images" / f"{stem}{Path(photo).suffix.lower() or '.png'}",
            self.out / self.task.mask_dir / f"{stem}.png",
        ]
        if self.person and self.task.mask_dir != "person":
            files.append(self.out / "person" / f"{stem}.png")
        return files

    def claim(self, stem: str, photo: Path | str, where: str) -> None:
        """Check before writing anything: a new stem whose files do not exist yet."""
        if stem in self.stems:
            raise ConversionError(f"{where}: a second photo named {stem!r} (stems must differ)")
        self.stems.add(stem)
        for target in self.targets(stem, photo):
            if target.exists() or target.is_symlink():
                raise ConversionError(
                    f"{target}: already exists; convert into a new --out (nothing is overwritten)"
                )

    def write(self, stem: str, photo: Path, label_map: np.ndarray) -> None:
        """The photo (copied or linked), its label map and, with ``person``, the union."""
        image, mask, *rest = self.targets(stem, photo)
        image.parent.mkdir(parents=True, exist_ok=True)
        if self.link:
            image.symlink_to(photo.resolve())
        else:
            shutil.copyfile(photo, image)
        save_label_png(mask, label_map, self.task)
        if rest:
            save_label_png(rest[0], person_map(label_map), get_task("person"))
