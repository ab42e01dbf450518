"""Small file helpers: atomic writes and palette label-map PNGs.

Every file written here gets the mode an ordinary ``open(path, "w")`` would give it,
``0o666 & ~umask`` (typically 0644), not ``tempfile.mkstemp``'s private 0600: label maps,
overlays, metrics, reports and split files are meant to be read by colleagues.
"""

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

_fallback_umask: int | None = None


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows.

    ``os.umask`` can only be read by setting it, and the umask is process-wide: setting
    and restoring it races with any other thread creating a file in between. On Linux
    (4.7+) the ``Umask:`` line of ``/proc/self/status`` gives it with no side effect and
    is read on every call, so a later ``os.umask`` change is honoured. Elsewhere it is
    read once, by setting and restoring, on first use (normally at start-up, before
    worker threads exist) and that value is kept.
    """
    global _fallback_umask
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    if _fallback_umask is None:
        _fallback_umask = os.umask(0o022)
        os.umask(_fallback_umask)
    return _fallback_umask


def new_file_mode() -> int:
    """The permission bits a newly created file gets: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def is_temp_of(entry: str, name: str) -> bool:
    """Whether ``entry`` (a file name) is a temporary file :func:`atomic_path` made for ``name``."""
    return entry.startswith(f".{name}.") and entry.endswith(".tmp" + Path(name).suffix)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    A process killed while writing leaves at most a hidden ``.tmp`` file (see
    :func:`is_temp_of`), never a half-written ``path``. The file gets the user's usual
    mode (:func:`new_file_mode`) instead of ``mkstemp``'s 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, new_file_mode())
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


def label_map_to_image(
    label_map: np.ndarray, task: Task, ignore_index: int | None = None
) -> Image.Image:
    """A palette ("P") image whose pixel values are the class ids of ``label_map``
    (and ``ignore_index``, when given, for ignored pixels: at most 255)."""
    arr = np.asarray(label_map)
    if arr.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {arr.shape}")
    ids = arr if ignore_index is None else arr[arr != ignore_index]
    if ids.size and (ids.min() < 0 or ids.max() >= task.num_classes):
        raise ValueError(
            f"label map holds class id {int(ids.max())}, the {task.name} task has "
            f"{task.num_classes} classes"
        )
    img = Image.fromarray(arr.astype(np.uint8), mode="P")
    img.putpalette(task.palette())
    return img


def save_label_png(
    path: str | os.PathLike[str],
    label_map: np.ndarray,
    task: Task,
    ignore_index: int | None = None,
) -> Path:
    """Atomically save ``label_map`` as a palette PNG in the dataset's mask format
    (``ignore_index``: the value of ignored pixels it may also hold)."""
    img = label_map_to_image(label_map, task, ignore_index)
    return atomic_write(path, lambda p: img.save(p, format="PNG"))
