"""LabelMe annotations (one JSON per photo) -> a dataset of label maps in our layout.

    python -m fashionseg.data.convert labelme --src DIR --out ROOT --task NAME
        [--map FILE.yaml] [--unmapped background] [--skip-empty] [--person] [--link]

Every ``*.json`` under ``--src`` (sorted) is one photo: ``imagePath`` (relative to the
JSON file), ``imageHeight``/``imageWidth`` and ``shapes``. Shapes: ``polygon``,
``rectangle`` (two corners) and ``circle`` (centre, a point on the circle) have an area
and are painted; ``line``, ``linestrip``, ``point`` and ``points`` have none and are a
one-line error, as is a ``mask`` shape. Polygons and rectangles are rasterised by
pycocotools as COCO polygons are; circles cover the pixels whose centre lies inside.
Labels map onto the task's classes as COCO categories do; overlaps are painted as
:mod:`fashionseg.data.annotations` states.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fashionseg.data.annotations import (
    ConversionError,
    DatasetWriter,
    Region,
    class_lookup,
    paint,
)
from fashionseg.data.coco import check_polygons, decode, read_json
from fashionseg.data.io import DataError
from fashionseg.data.photo import image_size
from fashionseg.tasks import Task

AREA_SHAPES = ("polygon", "rectangle", "circle")


def _points(shape: Mapping[str, Any], where: str) -> np.ndarray:
    points = shape.get("points")
    try:
        array = np.asarray(points, dtype=float)
    except (TypeError, ValueError):
        array = np.zeros((0, 0))
    if array.ndim != 2 or array.shape[1:] != (2,) or not len(array):
        raise ConversionError(f"{where}: points must be a list of [x, y] pairs")
    return array


def check_shape(shape: Mapping[str, Any], height: int, width: int, where: str) -> np.ndarray:
    """A shape's points, checked (a kind with an area, enough points, inside the image);
    a rectangle's as its four corners."""
    kind = shape.get("shape_type") or "polygon"
    if kind not in AREA_SHAPES:
        raise ConversionError(
            f"{where} ({shape.get('label')!r}): shape_type {kind!r} has no area to paint "
            f"(supported: {', '.join(AREA_SHAPES)})"
        )
    points = _points(shape, where)
    if kind in ("circle", "rectangle") and len(points) != 2:
        raise ConversionError(f"{where}: a {kind} has two points")
    if kind == "circle":
        (cx, cy), rim = points
        radius = float(np.hypot(*(rim - points[0])))
        if cx - radius < 0 or cy - radius < 0 or cx + radius > width or cy + radius > height:
            raise ConversionError(f"{where}: circle out of bounds (image {width}x{height})")
        return points
    if kind == "rectangle":
        (x0, y0), (x1, y1) = points
        points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    check_polygons([points.ravel().tolist()], height, width, where)
    return points


def shape_mask(shape: Mapping[str, Any], height: int, width: int, where: str) -> np.ndarray:
    """The boolean H x W mask of one LabelMe shape with an area."""
    points = check_shape(shape, height, width, where)
    if (shape.get("shape_type") or "polygon") == "circle":
        (cx, cy), rim = points
        radius = float(np.hypot(*(rim - points[0])))
        ys, xs = np.mgrid[:height, :width]
        return (xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2 <= radius**2
    return decode([points.ravel().tolist()], height, width, where)


def _photo(path: Path, data: Any) -> tuple[Path, int, int]:
    """The photo a LabelMe file names and its size, checked against the photo's own."""
    if not isinstance(data, Mapping) or not isinstance(data.get("shapes"), list):
        raise ConversionError(f"{path}: no 'shapes' list (is it a LabelMe file?)")
    name, height, width = (data.get(k) for k in ("imagePath", "imageHeight", "imageWidth"))
    if not isinstance(name, str) or not name:
        raise ConversionError(f"{path}: no imagePath")
    if not all(isinstance(v, int) and v > 0 for v in (height, width)):
        raise ConversionError(f"{path}: imageHeight/imageWidth missing or not positive")
    photo = (path.parent / name.replace("\\", "/")).resolve()
    if not photo.is_file():
        raise ConversionError(f"{path}: photo {photo} not found (imagePath {name!r})")
    try:
        size = image_size(photo)
    except DataError as err:
        raise ConversionError(str(err)) from None
    if size != (width, height):
        raise ConversionError(
            f"{path}: photo {photo.name} is {size[0]}x{size[1]}, the JSON says {width}x{height}"
        )
    return photo, height, width


def convert_labelme(
    src: str | Path,
    out: str | Path,
    task: Task,
    mapping: Mapping[str, str] | None = None,
    unmapped: str = "error",
    skip_empty: bool = False,
    person: bool = False,
    link: bool = False,
) -> dict[str, int]:
    """Convert a folder of LabelMe files; returns counts (``converted``, ``skipped``)."""
    src = Path(src)
    if not src.is_dir():
        raise ConversionError(f"{src}: LabelMe folder not found")
    files = sorted(src.rglob("*.json"))
    if not files:
        raise ConversionError(f"{src}: no LabelMe *.json files")
    samples = []
    for path in files:  # check every file before writing anything
        data = read_json(path)
        photo, height, width = _photo(path, data)
        shapes = data["shapes"]
        labels = [s.get("label") if isinstance(s, Mapping) else None for s in shapes]
        if not all(isinstance(label, str) for label in labels):
            raise ConversionError(f"{path}: every shape needs a 'label'")
        for i, shape in enumerate(shapes):
            check_shape(shape, height, width, f"{path}: shape {i}")
        samples.append((path, photo, height, width, shapes))
    all_labels = [s["label"] for sample in samples for s in sample[4]]
    lookup = class_lookup(all_labels, task, mapping, unmapped, str(src))
    writer = DatasetWriter(out, task, person, link)
    todo = [s for s in samples if s[4] or not skip_empty]
    for path, photo, *_ in todo:
        writer.claim(path.stem, photo, str(path))
    for path, photo, height, width, shapes in todo:
        regions = [
            Region(shape_mask(s, height, width, f"{path}: shape {i}"), lookup[s["label"]])
            for i, s in enumerate(shapes)
        ]
        writer.write(path.stem, photo, paint(height, width, regions))
    return {"converted": len(todo), "skipped": len(samples) - len(todo)}
