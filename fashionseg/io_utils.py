"""Small file helpers: atomic writes and palette label-map PNGs."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fashionseg.tasks import Task


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    A process killed while writing leaves at most a hidden ``.tmp`` file, never a
    half-written ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Atomically write ``data`` as indented JSON."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def label_map_to_image(label_map: np.ndarray, task: Task) -> Image.Image:
    """A palette ("P") image whose pixel values are the class ids of ``label_map``."""
    arr = np.asarray(label_map)
    if arr.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= task.num_classes):
        raise ValueError(
            f"label map holds class id {int(arr.max())}, the {task.name} task has "
            f"{task.num_classes} classes"
        )
    img = Image.fromarray(arr.astype(np.uint8), mode="P")
    img.putpalette(task.palette())
    return img


def save_label_png(path: str | os.PathLike[str], label_map: np.ndarray, task: Task) -> Path:
    """Atomically save ``label_map`` as a palette PNG in the dataset's mask format."""
    img = label_map_to_image(label_map, task)
    return atomic_write(path, lambda p: img.save(p, format="PNG"))
