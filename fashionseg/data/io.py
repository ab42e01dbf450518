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
naming the file and the offending value. Nothing here writes to the dataset. Reading a
photo lives in :mod:`fashionseg.data.photo`, scanning a folder in
:mod:`fashionseg.data.folders` (both re-exported here).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fashionseg.data.folders import (  # noqa: F401  (re-exported: one home, data.folders)
    CLUTTER_NAMES,
    MASK_SUFFIX,
    SIDECAR_SUFFIXES,
    Folder,
    list_photos,
    no_photos,
    scan_masks,
    scan_photos,
    unpaired,
)
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


def map_source_ids(
    values: np.ndarray, listed: set[int], path: Path, task: Task
) -> tuple[np.ndarray, set[int]]:
    """The task's ``source_ids`` applied: mask values -> class ids (ignored values, not in
    ``listed``, stay as they are). A value without a mapping is a DataError naming the
    values (``unmapped_source: ignore``: such pixels become -1, ignored)."""
    mapping = task.source_map()
    unmapped = sorted(listed - set(mapping))
    if unmapped and task.unmapped_source != "ignore":
        raise DataError(
            f"{shown(path)}: mask value(s) {unmapped[:10]} have no class in task "
            f"{task.name!r}'s source_ids (mapped: {sorted(mapping)[:20]}); map them, or set "
            "unmapped_source: ignore"
        )
    lo = min(int(values.min()), 0) if values.size else 0
    hi = max([int(values.max()) if values.size else 0, *mapping])
    lut = np.arange(lo, hi + 1, dtype=np.int64)  # unlisted values (ignored ones) kept
    for value in listed:
        lut[value - lo] = mapping.get(value, -1)
    mapped = lut[values.astype(np.int64) - lo]
    return mapped, {mapping[v] for v in listed if v in mapping}


def ids_from_values(values: np.ndarray, path: Path, task: Task, rules: MaskRules) -> np.ndarray:
    """Checked uint8 class ids (ignored pixels: :data:`IGNORE_INDEX`) from raw mask values."""
    listed = distinct_values(values)
    if (
        rules.binary_255 is None
        and 255 in listed
        and listed <= {0, 255}
        and 255 not in task.source_map()
    ):
        raise DataError(_binary_hint(path, task, rules))
    if rules.binary_255:
        values = np.where(values == 255, 1, values)
        listed = {1 if v == 255 else v for v in listed}
    ignored_values = {-1} if rules.ignore_index is None else {-1, rules.ignore_index}
    if task.source_ids:
        values, listed = map_source_ids(values, listed - ignored_values, path, task)
        listed |= {v for v in ignored_values if (values == v).any()}
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
