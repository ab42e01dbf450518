"""The two labelling tasks: class names, mask folder and palette."""

from __future__ import annotations

from dataclasses import dataclass

# PASCAL VOC colour map, the colours the dataset's palette PNGs use.
VOC_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (128, 0, 0),
    (0, 128, 0),
    (128, 128, 0),
    (0, 0, 128),
    (128, 0, 128),
    (0, 128, 128),
    (128, 128, 128),
)


@dataclass(frozen=True)
class Task:
    """One segmentation task: which mask folder it reads and which classes it has."""

    name: str
    mask_dir: str
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """Number of classes, background included."""
        return len(self.class_names)

    @property
    def colors(self) -> tuple[tuple[int, int, int], ...]:
        """RGB colour of each class id (VOC colours)."""
        return VOC_COLORS[: self.num_classes]

    def palette(self) -> list[int]:
        """Flat 768-entry palette for PIL ``Image.putpalette``."""
        flat = [c for rgb in VOC_COLORS for c in rgb]
        return flat + [0] * (768 - len(flat))


TASKS: dict[str, Task] = {
    "person": Task("person", "person", ("background", "person")),
    "clothing": Task(
        "clothing",
        "clothes",
        ("background", "skin", "hair", "tshirt", "shoes", "pants", "dress"),
    ),
}


def get_task(name: str) -> Task:
    """Return the task called ``name`` or raise a one-line ``ValueError``."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(
            f"unknown task {name!r}: choose one of {', '.join(sorted(TASKS))}"
        ) from None
