"""COCO instance annotations (JSON) -> a dataset of label maps in the project's layout.

    python -m fashionseg.data.convert coco --json FILE --images DIR --out ROOT --task NAME
        [--map FILE.yaml] [--unmapped background] [--skip-empty] [--person] [--link]

Segmentations are decoded with pycocotools (polygons, compressed and uncompressed RLE);
``iscrowd`` regions become ignored pixels; overlaps are painted as
:mod:`fashionseg.data.annotations` states (larger areas first, small items on top). A
photo without annotations becomes all background, or is skipped (``skip_empty``). Every
problem (missing photo, size disagreeing with the JSON, polygon out of bounds, unknown
category, broken JSON) is a one-line :class:`ConversionError` naming the file. The
file's structure, categories, photos, sizes and polygons are checked before anything is
written; an RLE string that pycocotools cannot decode stops the run at its photo (the
files written so far are new ones: nothing that was under ``--out`` is overwritten).
"""

from __future__ import annotations

import json
from collections import defaultdict
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
from fashionseg.data.io import DataError
from fashionseg.data.photo import image_size
from fashionseg.tasks import Task


def mask_api() -> Any:
    """pycocotools' mask module (the ``convert`` extra)."""
    try:
        from pycocotools import mask
    except ImportError:
        raise ConversionError(
            "pycocotools is not installed: pip install 'fashionseg[convert]'"
        ) from None
    return mask


def read_json(path: str | Path) -> Any:
    """A JSON file, or a one-line ConversionError (missing, not JSON)."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConversionError(f"{path}: not valid JSON ({err})") from None


def _field(item: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(item, Mapping) or key not in item or not isinstance(item[key], kind):
        raise ConversionError(f"{where}: missing or malformed {key!r}")
    return item[key]


def check_polygons(segmentation: list, height: int, width: int, where: str) -> list[list[float]]:
    """COCO polygons, checked: x,y pairs, 3 points or more, inside the image."""
    polygons = [p for p in segmentation if isinstance(p, list)]
    if len(polygons) != len(segmentation) or not polygons:
        raise ConversionError(f"{where}: segmentation is not a list of polygons")
    for polygon in polygons:
        if (
            len(polygon) < 6
            or len(polygon) % 2
            or not all(isinstance(v, int | float) for v in polygon)
        ):
            raise ConversionError(f"{where}: a polygon needs x,y pairs (3 points or more)")
        xs, ys = np.array(polygon[0::2]), np.array(polygon[1::2])
        if xs.min() < 0 or ys.min() < 0 or xs.max() > width or ys.max() > height:
            raise ConversionError(
                f"{where}: polygon out of bounds (x {xs.min():g}..{xs.max():g}, "
                f"y {ys.min():g}..{ys.max():g}; image {width}x{height})"
            )
    return polygons


def decode(segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """A boolean H x W mask from a COCO segmentation (polygons or RLE), checked."""
    mask = mask_api()
    if isinstance(segmentation, list):
        polygons = check_polygons(segmentation, height, width, where)
        rle = mask.merge(mask.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, Mapping) and "counts" in segmentation:
        size = segmentation.get("size")
        if list(size or []) != [height, width]:
            raise ConversionError(
                f"{where}: RLE size {size} disagrees with the image's [height, width] "
                f"[{height}, {width}]"
            )
        counts = segmentation["counts"]
        if isinstance(counts, list):  # uncompressed RLE
            if sum(counts) != height * width:
                raise ConversionError(
                    f"{where}: RLE counts cover {sum(counts)} pixels, not {height * width}"
                )
            rle = mask.frPyObjects(dict(segmentation), height, width)
        elif isinstance(counts, str | bytes):  # compressed RLE
            rle = {
                "size": [height, width],
                "counts": counts.encode() if isinstance(counts, str) else counts,
            }
        else:
            raise ConversionError(f"{where}: RLE counts must be a list or a string")
    else:
        raise ConversionError(f"{where}: segmentation is neither polygons nor RLE")
    try:
        return mask.decode(rle).astype(bool)
    except Exception as err:  # pycocotools' own checks (e.g. a corrupt compressed string)
        raise ConversionError(f"{where}: undecodable RLE ({err})") from None


def plan(
    data: Any,
    json_path: Path,
    images: Path,
    lookup_task: Task,
    mapping: Mapping[str, str] | None,
    unmapped: str,
) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]], dict[int, int]]:
    """Check the whole file (structure, categories, photos, sizes); the images, the
    annotations of each image id and ``{category id: class id}``."""
    where = str(json_path)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, Mapping) or not isinstance(data.get(key), list):
            raise ConversionError(f"{where}: no {key!r} list (is it a COCO instances file?)")
    names = {}
    for category in data["categories"]:
        cid = _field(category, "id", int, f"{where}: category")
        names[cid] = _field(category, "name", str, f"{where}: category {cid}")
    by_name = class_lookup(names.values(), lookup_task, mapping, unmapped, where)
    class_of = {cid: by_name[name] for cid, name in names.items()}
    image_ids = set()
    for image in data["images"]:
        iid = _field(image, "id", int, f"{where}: image")
        for key in ("width", "height"):
            _field(image, key, int, f"{where}: image {iid}")
        _field(image, "file_name", str, f"{where}: image {iid}")
        image_ids.add(iid)
    per_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for index, ann in enumerate(data["annotations"]):
        label = f"{where}: annotation {ann.get('id', index) if isinstance(ann, Mapping) else index}"
        iid = _field(ann, "image_id", int, label)
        cid = _field(ann, "category_id", int, label)
        if iid not in image_ids:
            raise ConversionError(f"{label}: image_id {iid} is not among the images")
        if cid not in class_of:
            raise ConversionError(f"{label}: category_id {cid} is not among the categories")
        _field(ann, "segmentation", (list, dict), label)
        per_image[iid].append(ann)
    sizes = {image["id"]: (image["height"], image["width"]) for image in data["images"]}
    for iid, anns in per_image.items():
        for ann in anns:
            if isinstance(ann["segmentation"], list):
                check_polygons(
                    ann["segmentation"], *sizes[iid], f"{where}: annotation {ann.get('id', '?')}"
                )
    for image in data["images"]:
        photo = images / image["file_name"]
        if not photo.is_file():
            raise ConversionError(
                f"{photo}: photo not found (file_name of image {image['id']} in {where})"
            )
        try:
            size = image_size(photo)
        except DataError as err:
            raise ConversionError(str(err)) from None
        if size != (image["width"], image["height"]):
            raise ConversionError(
                f"{photo}: photo is {size[0]}x{size[1]}, {where} says "
                f"{image['width']}x{image['height']}"
            )
    return data["images"], per_image, class_of


def convert_coco(
    json_path: str | Path,
    images: str | Path,
    out: str | Path,
    task: Task,
    mapping: Mapping[str, str] | None = None,
    unmapped: str = "error",
    skip_empty: bool = False,
    person: bool = False,
    link: bool = False,
) -> dict[str, int]:
    """Convert a COCO file; returns counts (``converted``, ``skipped`` empty photos)."""
    json_path, images = Path(json_path), Path(images)
    mask_api()
    data = read_json(json_path)
    photos, per_image, class_of = plan(data, json_path, images, task, mapping, unmapped)
    writer = DatasetWriter(out, task, person, link)
    todo = [p for p in photos if per_image.get(p["id"]) or not skip_empty]
    for image in todo:
        writer.claim(
            Path(image["file_name"]).stem, image["file_name"], f"{json_path}: image {image['id']}"
        )
    for image in todo:
        h, w = image["height"], image["width"]
        regions = []
        for ann in per_image.get(image["id"], []):
            where = f"{json_path}: annotation {ann.get('id', '?')}"
            mask = decode(ann["segmentation"], h, w, where)
            regions.append(Region(mask, class_of[ann["category_id"]], bool(ann.get("iscrowd", 0))))
        writer.write(
            Path(image["file_name"]).stem, images / image["file_name"], paint(h, w, regions)
        )
    return {"converted": len(todo), "skipped": len(photos) - len(todo)}
