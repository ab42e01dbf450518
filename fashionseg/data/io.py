"""Reading and checking dataset files.

Layout: ``ROOT/images/<stem>.<photo suffix>`` (:data:`IMAGE_SUFFIXES`, any case),
``ROOT/person/<stem>.png``, ``ROOT/clothes/<stem>.png`` (``.png`` in any case).

Photos are read as displayed: an EXIF orientation tag is applied (as
:func:`PIL.ImageOps.exif_transpose` does), and every mode PIL reads is turned into 8-bit
RGB by :func:`to_rgb8` (16-bit and 32-bit integer grey scaled from 0..65535, float grey from
0..1 or 0..255, palette, 1-bit, CMYK, LA/RGBA with the alpha dropped, not composited).

Masks hold class ids: index masks (mode ``L``, ``1``, 16-bit ``I;16``/``I``, ``LA`` with
its alpha dropped) by value; palette masks (``P``) by index, or by colour when their
palette carries the task's VOC colours at other indices (see :func:`palette_ids`); RGB(A)
masks by the task's VOC colours. The value ``ignore_index`` (255 by default; VOC's
"void" colour (224, 224, 192) in colour masks) marks pixels that no loss and no metric
counts; they come out as :data:`IGNORE_INDEX`. An EXIF orientation tag on a mask is applied
too (a mask is read as displayed, like its photo).

Every problem is a :class:`DataError` whose message is one line, ``<file>: <problem>``,
naming the file and the offending value. Nothing here writes to the dataset.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fashionseg.data.photo import (  # noqa: F401  (re-exported: one home, data.photo)
    _SWAPS_SIDES,
    EXIF_ORIENTATION,
    IMAGE_SUFFIXES,
    LOSSY_SUFFIXES,
    DataError,
    PhotoInfo,
    _check_file,
    _decode,
    _orientation,
    _reason,
    decode_size,
    displayed,
    image_size,
    photo_info,
    photo_rgb,
    read_photo,
    shown,
    to_rgb8,
)
from fashionseg.data.targets import IGNORE_INDEX
from fashionseg.tasks import Task, get_task

MASK_SUFFIX = ".png"
# Side-car and system files a photo or mask folder may hold; skipped without a word.
SIDECAR_SUFFIXES = (".txt", ".json", ".csv", ".xml", ".md", ".yaml", ".yml", ".xmp", ".aae")
CLUTTER_NAMES = ("thumbs.db", "desktop.ini")
# VOC's "void" (boundary / don't care) colour: ignored pixels in colour masks.
VOID_COLOUR = (224, 224, 192)


@dataclass(frozen=True)
class Sample:
    """One photo and its mask for a task."""

    stem: str
    image: Path
    mask: Path


@dataclass(frozen=True)
class MaskRules:
    """How mask values beyond the class ids are read (``data.ignore_index``/``binary_255``).

    ``ignore_index``: the mask value of pixels excluded from every loss and metric (None:
    no ignore label). ``binary_255``: ``True`` reads 255 as class 1 (0/255 binary person
    masks), ``False`` never asks, ``None`` (default) refuses a mask holding only 0 and 255
    with the one-line fix, since it is ambiguous.
    """

    ignore_index: int | None = IGNORE_INDEX
    binary_255: bool | None = None

    def check(self, task: Task | str) -> MaskRules:
        """The rules themselves, after checking them against ``task`` (DataError if bad)."""
        task = _as_task(task)
        ignore = self.ignore_index
        if ignore is not None:
            if isinstance(ignore, bool) or not isinstance(ignore, int) or not 0 <= ignore <= 65535:
                raise DataError(
                    f"data.ignore_index={ignore!r}: must be an integer 0..65535 or null"
                )
            if ignore < task.num_classes:
                raise DataError(
                    f"data.ignore_index={ignore}: a class id of task {task.name!r} "
                    f"(0..{task.num_classes - 1}); choose a value >= {task.num_classes} "
                    "(default 255) or null"
                )
        if self.binary_255 is not None and not isinstance(self.binary_255, bool):
            raise DataError(f"data.binary_255={self.binary_255!r}: must be true, false or null")
        if self.binary_255 and task.num_classes != 2:
            raise DataError(
                f"data.binary_255=true reads 255 as class 1: it is for 0/255 binary masks of "
                f"task 'person', not {task.name!r}"
            )
        return self


def _as_task(task: Task | str) -> Task:
    return task if isinstance(task, Task) else get_task(task)


def read_image(path: str | Path, *, planes: bool = True) -> torch.Tensor:
    """A photo as a uint8 tensor 3 x H x W (RGB), in its displayed (EXIF) orientation.

    Every mode goes through :func:`to_rgb8`; any problem is a DataError naming the file.
    ``planes=False`` returns the 3 x H x W view of the decoded H x W x 3 bytes (channels-
    last strides, no copy), the layout torch's uint8 resize is fastest on.
    """
    rgb, _ = read_photo(path)
    view = torch.from_numpy(rgb).permute(2, 0, 1)
    return planar(view) if planes else view


def planar(image: torch.Tensor) -> torch.Tensor:
    """``image`` with contiguous memory (itself when it has it already). On the CPU numpy
    does the copy: it reorders a channels-last uint8 photo into planes 2-3x faster than
    torch's strided copy (600x400: ~0.2-0.3 vs ~0.6-0.8 ms)."""
    if image.is_contiguous():
        return image
    if image.device.type != "cpu":
        return image.contiguous()
    return torch.from_numpy(np.ascontiguousarray(image.numpy()))


# ------------------------------------------------------------------------------ masks
def _colour_keys(colours: Iterable[tuple[int, int, int]]) -> np.ndarray:
    return np.array([(r << 16) | (g << 8) | b for r, g, b in colours], dtype=np.int64)


def palette_ids(
    indices: np.ndarray, palette: list[int], path: Path, task: Task, ignore_index: int | None
) -> np.ndarray:
    """Class ids of a palette mask (``-1`` = ignored) from its indices and flat RGB palette.

    The used indices other than ``ignore_index`` decide: when some carries a task colour
    of another class (what :meth:`PIL.Image.Image.quantize` makes of an RGB mask), the
    mask is read by colour, and then every used index must carry a task colour (or VOC's
    void colour, ignored); otherwise the indices are the class ids (our own palette, the
    VOC palette, a grey or arbitrary palette). Mixed cases are a DataError.
    """
    used = [i for i in sorted(distinct_values(indices)) if i != ignore_index]
    colour_of = {
        i: tuple(palette[3 * i : 3 * i + 3]) if 3 * i + 3 <= len(palette) else None for i in used
    }
    class_of = {c: k for k, c in enumerate(task.colors)}
    known = {i: class_of.get(colour_of[i]) for i in used}
    moved = [i for i in used if known[i] is not None and known[i] != i]
    if not moved:
        return indices
    if ignore_index is not None:
        known.update({i: -1 for i in used if colour_of[i] == VOID_COLOUR})
    unknown = [i for i in used if known[i] is None]
    if unknown:
        i, j = moved[0], unknown[0]
        raise DataError(
            f"{shown(path)}: ambiguous palette mask: index {i} has the colour "
            f"{colour_of[i]} of class {known[i]} {task.class_names[known[i]]!r}, but index {j} "
            f"has {colour_of[j]}, no colour of task {task.name!r}; save it with index = "
            "class id, or with every used index in the task's colours"
        )
    lut = np.arange(max(256, int(indices.max()) + 1), dtype=np.int64)
    for i in used:
        lut[i] = known[i]
    if ignore_index is not None and ignore_index < len(lut):
        lut[ignore_index] = -1
    return lut[indices]


def _colours_to_ids(path: Path, rgb: np.ndarray, task: Task, void: bool) -> np.ndarray:
    """Map VOC colours back to class ids (``-1``: the void colour when ``void``).

    An RGB mask whose three channels are equal everywhere is a grey index mask. An unknown
    colour is an error naming the first pixel that has it.
    """
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0].astype(np.int64)
    packed = (
        (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    )
    colours = list(task.colors) + ([VOID_COLOUR] if void else [])
    values = np.array(list(range(task.num_classes)) + ([-1] if void else []), dtype=np.int64)
    keys = _colour_keys(colours)
    order = np.argsort(keys)
    pos = np.clip(np.searchsorted(keys[order], packed), 0, len(keys) - 1)
    known = keys[order][pos] == packed
    if not known.all():
        y, x = np.argwhere(~known)[0]
        colour = tuple(int(c) for c in rgb[y, x])
        raise DataError(
            f"{shown(path)}: unknown mask colour {colour} at pixel (x={x}, y={y}); task "
            f"{task.name!r} uses {list(task.colors)}"
            + (f" and {VOID_COLOUR} for ignored pixels" if void else "")
        )
    return values[order][pos]


def _integers(values: np.ndarray) -> np.ndarray:
    """Integer mask values as they are (uint8 stays uint8: cheaper to count and check);
    ``1``-mode booleans as uint8."""
    return values.astype(np.uint8) if values.dtype == np.bool_ else values


def _mask_values(img: Image.Image, path: Path, task: Task, rules: MaskRules) -> np.ndarray:
    """The mask's values as an integer H x W array (uint8 for 8-bit masks, int64 where a
    colour or palette lookup made them): class ids, other values, ``-1`` for ignored
    colours."""
    mode = img.mode
    if img.format in ("JPEG", "MPO"):
        raise DataError(
            f"{shown(path)}: a JPEG file (lossy compression corrupts class ids); save masks as PNG"
        )
    if mode in ("L", "1") or mode == "I" or mode.startswith("I;"):
        return _integers(np.asarray(img))
    if mode == "LA":
        return np.asarray(img)[..., 0]
    if mode in ("P", "PA"):
        indices = np.asarray(img)
        indices = indices[..., 0] if indices.ndim == 3 else indices
        return palette_ids(indices, img.getpalette("RGB") or [], path, task, rules.ignore_index)
    if mode in ("RGB", "RGBA", "RGBX"):
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
        return _colours_to_ids(path, rgb, task, void=rules.ignore_index is not None)
    raise DataError(
        f"{shown(path)}: unsupported mask mode {mode}; expected an index mask (L, P, 1, "
        "I;16) or a colour mask (RGB)"
    )


def _binary_hint(path: Path, task: Task, rules: MaskRules) -> str:
    if task.num_classes == 2:
        fix = "set data.binary_255=true to read 255 as person (1)"
        if rules.ignore_index == 255:
            fix += ", or data.binary_255=false to keep 255 as ignored (data.ignore_index)"
        else:
            fix += ", or save the person as 1"
    else:
        fix = f"{task.name} masks hold class ids 0..{task.num_classes - 1}"
        if rules.ignore_index == 255:
            fix += "; set data.binary_255=false if 255 marks ignored pixels"
    return f"{shown(path)}: mask holds only 0 and 255: a binary 0/255 mask? {fix}"


def distinct_values(values: np.ndarray) -> set[int]:
    """The distinct values of an integer array: one histogram pass when their range is
    small (masks: a few ids in 0..65535), ``np.unique`` (a sort) otherwise."""
    if values.size == 0:
        return set()
    if values.dtype == np.uint8:  # 8-bit masks: torch counts uint8 without widening it
        with warnings.catch_warnings():  # a read-only view of PIL's pixels, only read here
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            flat = torch.from_numpy(np.ascontiguousarray(values)).view(-1)
        return {int(v) for v in np.flatnonzero(torch.bincount(flat).numpy())}
    lo, hi = int(values.min()), int(values.max())
    if hi - lo > 1 << 17:
        return {int(v) for v in np.unique(values)}
    counts = np.bincount((values - lo).ravel(), minlength=hi - lo + 1)
    return {int(v) + lo for v in np.flatnonzero(counts)}


def ids_from_values(values: np.ndarray, path: Path, task: Task, rules: MaskRules) -> np.ndarray:
    """Checked uint8 class ids (ignored pixels: :data:`IGNORE_INDEX`) from raw mask values."""
    listed = distinct_values(values)
    if rules.binary_255 is None and 255 in listed and listed <= {0, 255}:
        raise DataError(_binary_hint(path, task, rules))
    if rules.binary_255:
        values = np.where(values == 255, 1, values)
        listed = {1 if v == 255 else v for v in listed}
    ignored_values = {-1} if rules.ignore_index is None else {-1, rules.ignore_index}
    kept = listed - ignored_values
    if values.size and not kept:
        raise DataError(
            f"{shown(path)}: every pixel is ignored (data.ignore_index={rules.ignore_index}): "
            "nothing to train or score on"
        )
    bad = sorted(kept - set(range(task.num_classes)))
    if bad:
        extra = f", {rules.ignore_index} = ignored" if rules.ignore_index is not None else ""
        raise DataError(
            f"{shown(path)}: class id {bad[0]} out of range for task {task.name!r} "
            f"(ids 0..{task.num_classes - 1}{extra}; found {bad[:10]})"
        )
    ids = values.astype(np.uint8)
    if listed & ignored_values:
        ids[np.isin(values, list(ignored_values))] = IGNORE_INDEX
    return ids


def read_mask(path: str | Path, task: Task | str, rules: MaskRules | None = None) -> np.ndarray:
    """A mask as a uint8 H x W array of class ids, checked against the task's classes.

    Ignored pixels (``rules.ignore_index``, default 255) come out as :data:`IGNORE_INDEX`.
    DataError for an unknown colour, an ambiguous palette, an id the task does not have,
    a 0/255 mask (unless ``rules.binary_255`` says how to read it), a JPEG or an
    unreadable file.
    """
    path = Path(path)
    task = _as_task(task)
    rules = (rules or MaskRules()).check(task)
    img, _ = _decode(path)
    return ids_from_values(_mask_values(img, path, task, rules), path, task, rules)


def size_problem(mask: Path, mask_size: tuple[int, int], photo: PhotoInfo) -> str | None:
    """The message when a mask's (W, H) differs from its photo's displayed size, else None.

    It names the photo's EXIF orientation when that is what makes them differ.
    """
    if tuple(mask_size) == tuple(photo.size):
        return None
    (mw, mh), (w, h) = mask_size, photo.size
    message = f"{shown(mask)}: mask size {mw}x{mh} does not match the photo's size {w}x{h} (W x H)"
    if photo.orientation in _SWAPS_SIDES:
        sw, sh = photo.stored_size
        message += (
            f" as displayed: its EXIF orientation {photo.orientation} turns the stored {sw}x{sh}"
        )
        if tuple(mask_size) == photo.stored_size:
            message += "; label the photo as displayed (rotate the mask to match)"
    return message


def check_mask(
    path: str | Path,
    task: Task | str,
    photo: PhotoInfo | tuple[int, int] | None,
    rules: MaskRules | None = None,
) -> np.ndarray:
    """Read a mask and check it against its photo (:class:`PhotoInfo` or its (W, H))."""
    path = Path(path)
    mask = read_mask(path, task, rules)
    if photo is not None:
        info = photo if isinstance(photo, PhotoInfo) else PhotoInfo(tuple(photo))
        problem = size_problem(path, (mask.shape[1], mask.shape[0]), info)
        if problem:
            raise DataError(problem)
    return mask


# ----------------------------------------------------------------------------- folders
def _skipped(path: Path) -> bool:
    """Hidden, system and side-car files: not photos or masks, never reported."""
    name = path.name
    return (
        name.startswith(".")
        or name.lower() in CLUTTER_NAMES
        or path.suffix.lower() in SIDECAR_SUFFIXES
    )


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not _skipped(p))
    except PermissionError:
        raise DataError(f"{shown(folder)}: permission denied (cannot list the folder)") from None


def _unusable(path: Path) -> str | None:
    """Why a directory entry cannot be used at all (broken link, folder), else None."""
    if path.is_symlink() and not path.exists():
        return f"{shown(path)}: broken symbolic link (to {shown(os.readlink(path))})"
    if path.is_dir():
        return f"{shown(path)}: a directory, not an image file"
    if not path.is_file():
        return f"{shown(path)}: not a regular file"
    return None


@dataclass
class Folder:
    """The usable files of a photo or mask folder by stem, and what is wrong with the rest.

    ``claimed`` holds the stems of reported files, so pairing does not report them twice.
    """

    files: dict[str, Path]
    problems: list[str]
    claimed: set[str]

    def add(self, path: Path, problem: str | None, kind: str) -> None:
        """Keep ``path`` under its stem, or record its problem (also a second file of a
        stem: two ``kind`` share it)."""
        if problem is None and path.stem in self.files:
            first = shown(self.files[path.stem].name)
            problem = f"{shown(path)}: two {kind} share the stem {path.stem!r} ({first})"
        if problem:
            self.problems.append(problem)
            self.claimed.add(path.stem)
        else:
            self.files[path.stem] = path


def scan_photos(images_dir: str | Path) -> Folder:
    """The photos of a folder (:data:`IMAGE_SUFFIXES`, any case) by stem, and problems.

    Problems: a broken link, a directory or another file with a photo's name, a file of an
    unsupported format, two photos with one stem. Hidden, system and side-car files
    (``.txt``, ``.json``, ``.xmp`` ...) are skipped.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(f"{shown(images_dir)}: dataset directory not found")
    folder = Folder({}, [], set())
    for p in _entries(images_dir):
        supported = p.suffix.lower() in IMAGE_SUFFIXES
        if p.is_dir() and not supported:
            continue  # a sub-folder
        problem = _unusable(p)
        if problem is None and not supported:
            problem = (
                f"{shown(p)}: unsupported photo format {p.suffix or '(no suffix)'!r} "
                f"(photos must be {' '.join(IMAGE_SUFFIXES)})"
            )
        folder.add(p, problem, "photos")
    return folder


def scan_masks(mask_dir: str | Path) -> Folder:
    """The masks of a folder (``.png``, any case) by stem, and problems.

    Problems: a mask saved as JPEG, another image format, a broken link, a directory
    named like a mask, two masks with one stem (``a.png`` and ``a.PNG``).
    """
    mask_dir = Path(mask_dir)
    if not mask_dir.is_dir():
        raise DataError(f"{shown(mask_dir)}: dataset directory not found")
    folder = Folder({}, [], set())
    for p in _entries(mask_dir):
        suffix = p.suffix.lower()
        if p.is_dir() and suffix != MASK_SUFFIX:
            continue
        problem = _unusable(p)
        if problem is None and suffix in LOSSY_SUFFIXES:
            problem = (
                f"{shown(p)}: mask saved as JPEG ({p.suffix!r}): lossy compression corrupts "
                "class ids; save masks as .png"
            )
        elif problem is None and suffix != MASK_SUFFIX:
            problem = (
                f"{shown(p)}: not a PNG mask (suffix {p.suffix or '(none)'!r}); save masks as .png"
            )
        folder.add(p, problem, "masks")
    return folder


def list_photos(images_dir: str | Path) -> dict[str, Path]:
    """Photos of a folder by stem, sorted; DataError on the first problem of the folder."""
    folder = scan_photos(images_dir)
    if folder.problems:
        raise DataError(folder.problems[0])
    return folder.files


def unpaired(photos: Folder, masks: Folder, images_dir: Path, mask_dir: Path) -> list[str]:
    """One message per photo without a mask and per mask without a photo.

    Stems already reported by either folder (e.g. a mask saved as JPEG) are not repeated.
    """
    claimed = photos.claimed | masks.claimed
    problems = [
        f"{shown(photos.files[s])}: photo has no mask {shown(mask_dir / (s + MASK_SUFFIX))}"
        for s in sorted(photos.files.keys() - masks.files.keys() - claimed)
    ]
    problems += [
        f"{shown(masks.files[s])}: mask has no photo in {shown(images_dir)}"
        for s in sorted(masks.files.keys() - photos.files.keys() - claimed)
    ]
    return problems


def no_photos(images_dir: Path) -> str:
    return f"{shown(images_dir)}: no photos ({' '.join(IMAGE_SUFFIXES)}) found"


def find_samples(root: str | Path, task: Task | str) -> list[Sample]:
    """Pair every photo in ``ROOT/images`` with its mask, sorted by stem.

    Raises DataError for a missing or empty dataset, an unusable file in its folders, a
    photo without its mask or a mask without its photo (the first few are listed).
    """
    samples, problems = pair_samples(root, task)
    raise_problems(problems, f"{shown(root)} (task {_as_task(task).name})")
    return samples


def pair_samples(root: str | Path, task: Task | str) -> tuple[list[Sample], list[str]]:
    """The complete photo/mask pairs and one message per unusable or unpaired file.

    Raises DataError only when the dataset or one of its folders is missing or empty.
    """
    root, task = Path(root), _as_task(task)
    images_dir, masks_dir = root / "images", root / task.mask_dir
    for folder in (root, images_dir, masks_dir):
        if not folder.is_dir():
            raise DataError(f"{shown(folder)}: dataset directory not found")
    photos, masks = scan_photos(images_dir), scan_masks(masks_dir)
    if not photos.files and not photos.problems:
        raise DataError(no_photos(images_dir))
    problems = photos.problems + masks.problems + unpaired(photos, masks, images_dir, masks_dir)
    paired = sorted(photos.files.keys() & masks.files.keys())
    return [Sample(s, photos.files[s], masks.files[s]) for s in paired], problems


def check_sample(sample: Sample, task: Task | str, rules: MaskRules | None = None) -> list[str]:
    """Every problem with one sample (decodes both files), each a one-line message."""
    problems = []
    info = None
    try:
        info = photo_info(sample.image)
    except DataError as err:
        problems.append(str(err))
    try:
        check_mask(sample.mask, task, info, rules)
    except DataError as err:
        problems.append(str(err))
    return problems


def check_dataset(root: str | Path, task: Task | str, rules: MaskRules | None = None) -> list[str]:
    """Every problem in a dataset for a task (empty list: all files are usable)."""
    try:
        samples, problems = pair_samples(root, task)
    except DataError as err:
        return [str(err)]
    return problems + [msg for s in samples for msg in check_sample(s, task, rules)]


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
