"""Reading and checking dataset files.

Layout: ``ROOT/images/<stem>.jpg|.jpeg|.png``, ``ROOT/person/<stem>.png``,
``ROOT/clothes/<stem>.png``. Masks are single-channel index PNGs (mode ``L`` or ``P``,
pixel value = class id) or RGB PNGs in the VOC colours of :mod:`fashionseg.tasks`.
Photos in greyscale, palette or RGBA are accepted and converted to RGB (RGBA: the alpha
channel is dropped, not composited). Every problem is a :class:`DataError` whose message is
one line naming the file and the offending value. Nothing here writes to the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fashionseg.tasks import Task, get_task

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class DataError(ValueError):
    """A problem with a dataset file or setting; the message names the file."""


@dataclass(frozen=True)
class Sample:
    """One photo and its mask for a task."""

    stem: str
    image: Path
    mask: Path


def _as_task(task: Task | str) -> Task:
    return task if isinstance(task, Task) else get_task(task)


def _open(path: Path) -> Image.Image:
    """Open and fully decode an image (so truncation shows), read-only.

    Decoder failures (corrupt or truncated JPEG/PNG, not an image) become a DataError.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return img
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        reason = " ".join(str(err).split())
        raise DataError(f"{path}: unreadable, corrupt or truncated image ({reason})") from None


def read_image(path: str | Path) -> torch.Tensor:
    """A photo as a uint8 tensor 3 x H x W (RGB).

    Greyscale and palette photos are converted to RGB; RGBA photos are accepted by dropping
    the alpha channel (no compositing). A corrupt or truncated file raises DataError.
    """
    path = Path(path)
    img = _open(path)
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, P, CMYK, RGBA (alpha dropped)
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def decode_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image after fully decoding it (DataError when it is truncated)."""
    return _open(Path(path)).size


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image from its header, without decoding it."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, SyntaxError, ValueError) as err:
        reason = " ".join(str(err).split())
        raise DataError(f"{path}: unreadable image ({reason})") from None


def read_mask(path: str | Path, task: Task | str) -> np.ndarray:
    """A mask as a uint8 H x W array of class ids, checked against the task's classes.

    Mode ``L``/``P`` masks hold class ids; RGB(A) masks are mapped back from the task's VOC
    colours. DataError for an unknown colour, an id >= the class count, a 16-bit mask or
    an unreadable file.
    """
    path = Path(path)
    task = _as_task(task)
    img = _open(path)
    if img.mode in ("L", "P"):
        ids = np.array(img, dtype=np.uint8)
    elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
        raise DataError(
            f"{path}: 16-bit mask (mode {img.mode}); save masks as 8-bit index PNGs (mode L or P)"
        )
    elif img.mode in ("RGB", "RGBA"):
        ids = _colours_to_ids(path, np.array(img.convert("RGB"), dtype=np.uint8), task)
    else:
        raise DataError(f"{path}: unsupported mask mode {img.mode}; expected L, P or RGB")
    if ids.size and int(ids.max()) >= task.num_classes:
        bad = sorted(int(v) for v in np.unique(ids) if v >= task.num_classes)
        raise DataError(
            f"{path}: class id {bad[0]} out of range for task {task.name!r} "
            f"(ids 0..{task.num_classes - 1}; found {bad})"
        )
    return ids


def _colours_to_ids(path: Path, rgb: np.ndarray, task: Task) -> np.ndarray:
    """Map VOC colours back to class ids; an unknown colour is an error."""
    packed = (
        (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    )
    keys = np.array([(r << 16) | (g << 8) | b for r, g, b in task.colors], dtype=np.int32)
    order = np.argsort(keys)
    pos = np.clip(np.searchsorted(keys[order], packed), 0, len(keys) - 1)
    known = keys[order][pos] == packed
    if not known.all():
        y, x = np.argwhere(~known)[0]
        colour = tuple(int(c) for c in rgb[y, x])
        raise DataError(
            f"{path}: unknown mask colour {colour} at pixel (x={x}, y={y}); task "
            f"{task.name!r} uses {list(task.colors)}"
        )
    return order[pos].astype(np.uint8)


def find_samples(root: str | Path, task: Task | str) -> list[Sample]:
    """Pair every photo in ``ROOT/images`` with its mask, sorted by stem.

    Raises DataError for a missing or empty dataset, a photo without its mask or a mask
    without its photo (the first few of each are listed).
    """
    samples, problems = pair_samples(root, task)
    raise_problems(problems, f"{root} (task {_as_task(task).name})")
    return samples


def list_photos(images_dir: str | Path) -> dict[str, Path]:
    """Photos (``.jpg``, ``.jpeg``, ``.png``; hidden files skipped) of a folder by stem, sorted.

    DataError when the folder is missing or two photos share a stem.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: dataset directory not found")
    images: dict[str, Path] = {}
    for p in sorted(images_dir.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file():
            if p.stem in images:
                raise DataError(
                    f"{p}: two photos share the stem {p.stem!r} ({images[p.stem].name})"
                )
            images[p.stem] = p
    return images


def check_mask(path: str | Path, task: Task | str, size: tuple[int, int] | None) -> np.ndarray:
    """Read a mask and check it against its photo's ``size`` (W, H); DataError on a problem."""
    mask = read_mask(path, task)
    if size is not None and (mask.shape[1], mask.shape[0]) != tuple(size):
        raise DataError(
            f"{path}: mask size {mask.shape[1]}x{mask.shape[0]} does not match the photo's "
            f"size {size[0]}x{size[1]} (W x H)"
        )
    return mask


def pair_samples(root: str | Path, task: Task | str) -> tuple[list[Sample], list[str]]:
    """The complete photo/mask pairs and one message per unpaired file.

    Raises DataError only when the dataset or one of its folders is missing or empty.
    """
    root, task = Path(root), _as_task(task)
    images_dir, masks_dir = root / "images", root / task.mask_dir
    for folder in (root, images_dir, masks_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: dataset directory not found")
    images = list_photos(images_dir)
    masks = {p.stem: p for p in sorted(masks_dir.glob("*.png")) if not p.name.startswith(".")}
    if not images:
        raise DataError(f"{images_dir}: no photos (.jpg, .jpeg, .png) found")
    problems = [
        f"{images[s]}: photo has no mask {masks_dir / (s + '.png')}"
        for s in sorted(images.keys() - masks.keys())
    ]
    problems += [
        f"{masks[s]}: mask has no photo in {images_dir}"
        for s in sorted(masks.keys() - images.keys())
    ]
    paired = sorted(images.keys() & masks.keys())
    return [Sample(s, images[s], masks[s]) for s in paired], problems


def check_sample(sample: Sample, task: Task | str) -> list[str]:
    """Every problem with one sample (decodes both files), each a one-line message."""
    problems = []
    size = None
    try:
        size = decode_size(sample.image)
    except DataError as err:
        problems.append(str(err))
    try:
        check_mask(sample.mask, task, size)
    except DataError as err:
        problems.append(str(err))
    return problems


def check_dataset(root: str | Path, task: Task | str) -> list[str]:
    """Every problem in a dataset for a task (empty list: all files are usable)."""
    try:
        samples, problems = pair_samples(root, task)
    except DataError as err:
        return [str(err)]
    return problems + [msg for s in samples for msg in check_sample(s, task)]


def summarize(problems: list[str], where: str = "the dataset", shown: int = 10) -> str:
    """One message: the problem count on the first line, then the first ``shown`` problems."""
    count = len(problems)
    lines = [f"{count} problem{'s' if count != 1 else ''} in {where}:"]
    lines += [f"  {p}" for p in problems[:shown]]
    if count > shown:
        lines.append(
            f"  ... and {count - shown} more (list them: python -m fashionseg.data.inspect)"
        )
    return "\n".join(lines)


def raise_problems(problems: list[str], where: str = "the dataset", shown: int = 10) -> None:
    """Raise one DataError listing ``problems`` (no-op when empty)."""
    if problems:
        raise DataError(summarize(problems, where, shown))
