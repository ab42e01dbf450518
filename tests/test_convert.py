"""COCO and LabelMe import (python -m fashionseg.data.convert): round trips, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import tree_digest
from PIL import Image, ImageDraw

from fashionseg.data.annotations import Region, paint
from fashionseg.data.convert import main
from fashionseg.data.io import read_mask
from fashionseg.data.synthetic import draw_labels, render
from fashionseg.data.targets import IGNORE_INDEX
from fashionseg.tasks import get_task

mask_api = pytest.importorskip("pycocotools.mask")
CLOTHING = get_task("clothing")


def people(root: Path, count: int = 3, height: int = 90, width: int = 60) -> list[np.ndarray]:
    """Synthetic people: photos under root/photos, their clothing label maps returned."""
    rng = np.random.default_rng(5)
    (root / "photos").mkdir(parents=True)
    maps = []
    for i in range(count):
        labels = draw_labels(rng, height, width)
        render(rng, labels).save(root / "photos" / f"p{i}.png")
        maps.append(labels)
    return maps


def runs(mask: np.ndarray) -> list[list[float]]:
    """A mask as polygons: one pixel-edge rectangle per horizontal run of pixels."""
    polygons = []
    for y, row in enumerate(mask):
        edges = np.diff(np.r_[0, row.astype(int), 0])
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            polygons.append([float(v) for v in (a, y, b, y, b, y + 1, a, y + 1)])
    return polygons


def uncompressed(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts (column-major runs, starting with zeros)."""
    flat = mask.T.ravel().astype(int)
    changes = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))
    return np.diff(np.r_[0, changes]).tolist()


def coco_file(root: Path, maps: list[np.ndarray], kind: str, names=CLOTHING.class_names) -> Path:
    """A COCO file of the label maps: one annotation per class present per photo."""
    images, annotations = [], []
    for i, labels in enumerate(maps):
        h, w = labels.shape
        images.append({"id": i + 1, "file_name": f"p{i}.png", "height": h, "width": w})
        for c in np.unique(labels):
            if c == 0:
                continue
            mask = labels == c
            if kind == "rle":
                rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
                seg = {"size": [h, w], "counts": rle["counts"].decode()}
            elif kind == "uncompressed":
                seg = {"size": [h, w], "counts": uncompressed(mask)}
            else:
                seg = runs(mask)
            ann = {"image_id": i + 1, "category_id": int(c), "segmentation": seg, "iscrowd": 0}
            annotations.append({"id": len(annotations) + 1, **ann})
    categories = [{"id": i, "name": n} for i, n in enumerate(names) if i]
    path = root / f"{kind}.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return path


def converted(root: Path, stems: int) -> list[np.ndarray]:
    return [read_mask(root / "clothes" / f"p{i}.png", CLOTHING) for i in range(stems)]


@pytest.mark.parametrize("kind", ["rle", "uncompressed"])
def test_label_maps_to_coco_rle_and_back_are_identical(tmp_path: Path, kind: str) -> None:
    maps = people(tmp_path)
    json_path = coco_file(tmp_path, maps, kind)
    out = tmp_path / "out"
    args = ["coco", "--json", str(json_path), "--images", str(tmp_path / "photos")]
    assert main([*args, "--out", str(out), "--task", "clothing", "--person"]) == 0
    for labels, back in zip(maps, converted(out, len(maps)), strict=True):
        assert (back == labels).all()
    person = read_mask(out / "person" / "p0.png", get_task("person"))
    assert (person == (maps[0] > 0)).all()
    assert (out / "images" / "p0.png").read_bytes() == (tmp_path / "photos" / "p0.png").read_bytes()


def test_coco_polygons_give_99_percent_of_pixels(tmp_path: Path) -> None:
    maps = people(tmp_path)
    json_path = coco_file(tmp_path, maps, "polygon")
    args = ["coco", "--json", str(json_path), "--images", str(tmp_path / "photos")]
    assert main([*args, "--out", str(tmp_path / "out"), "--task", "clothing"]) == 0
    for labels, back in zip(maps, converted(tmp_path / "out", len(maps)), strict=True):
        assert (back == labels).mean() >= 0.99


def test_a_slanted_polygon_matches_pillows_drawing_on_99_percent(tmp_path: Path) -> None:
    polygon = [10.0, 6.0, 110.0, 40.0, 60.0, 170.0, 16.0, 120.0]
    drawn = Image.new("L", (120, 180), 0)
    ImageDraw.Draw(drawn).polygon(polygon, fill=3)
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (120, 180)).save(tmp_path / "photos" / "p0.png")
    # Pillow's coordinates are pixel centres, COCO's pixel corners: shifted by 0.5
    segmentation = [[v + 0.5 for v in polygon]]
    data = {
        "images": [{"id": 1, "file_name": "p0.png", "height": 180, "width": 120}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "segmentation": segmentation}],
        "categories": [{"id": 3, "name": "tshirt"}],
    }
    (tmp_path / "c.json").write_text(json.dumps(data))
    args = ["coco", "--json", str(tmp_path / "c.json"), "--images", str(tmp_path / "photos")]
    assert main([*args, "--out", str(tmp_path / "out"), "--task", "clothing"]) == 0
    assert (converted(tmp_path / "out", 1)[0] == np.asarray(drawn)).mean() >= 0.99


def test_paint_order_crowd_ignored_small_items_on_top() -> None:
    big, small, crowd = (np.zeros((4, 4), bool) for _ in range(3))
    big[:, :] = True
    small[1, 1] = True
    crowd[3, :] = True
    # the small item comes first in the file, the large one after it: still on top
    label_map = paint(4, 4, [Region(small, 2), Region(big, 6), Region(crowd, 1, crowd=True)])
    assert label_map[1, 1] == 2 and label_map[0, 0] == 6
    assert (label_map[3] == 6).all()  # an instance over a crowd region wins
    only_crowd = paint(4, 4, [Region(crowd, 1, crowd=True)])
    assert (only_crowd[3] == IGNORE_INDEX).all() and (only_crowd[:3] == 0).all()


def labelme_files(root: Path, maps: list[np.ndarray]) -> Path:
    src = root / "lm"
    src.mkdir()
    for i, labels in enumerate(maps):
        h, w = labels.shape
        shapes = [
            {
                "label": CLOTHING.class_names[c],
                "points": np.reshape(p, (4, 2)).tolist(),
                "shape_type": "polygon",
            }
            for c in np.unique(labels)
            if c
            for p in runs(labels == c)
        ]
        data = {
            "imagePath": f"../photos/p{i}.png",
            "imageHeight": h,
            "imageWidth": w,
            "shapes": shapes,
        }
        (src / f"p{i}.json").write_text(json.dumps(data))
    return src


def test_labelme_polygons_give_99_percent_of_pixels(tmp_path: Path) -> None:
    maps = people(tmp_path)
    src = labelme_files(tmp_path, maps)
    out = tmp_path / "out"
    assert main(["labelme", "--src", str(src), "--out", str(out), "--task", "clothing"]) == 0
    for labels, back in zip(maps, converted(out, len(maps)), strict=True):
        assert (back == labels).mean() >= 0.99


def test_labelme_rectangles_and_circles(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (20, 10)).save(tmp_path / "photos" / "a.png")
    shapes = [
        {"label": "dress", "points": [[0, 0], [10, 10]], "shape_type": "rectangle"},
        {"label": "hat", "points": [[15, 5], [17, 5]], "shape_type": "circle"},
    ]
    data = {"imagePath": "photos/a.png", "imageHeight": 10, "imageWidth": 20, "shapes": shapes}
    (tmp_path / "a.json").write_text(json.dumps(data))
    (tmp_path / "map.yaml").write_text("hat: hair\n")
    args = ["labelme", "--src", str(tmp_path), "--out", str(tmp_path / "out"), "--task", "clothing"]
    assert main([*args, "--map", str(tmp_path / "map.yaml")]) == 0
    label_map = read_mask(tmp_path / "out" / "clothes" / "a.png", CLOTHING)
    assert (label_map[:, :10] == 6).all() and label_map[5, 15] == 2 and label_map[5, 12] == 0
    assert (label_map == 2).sum() == 12  # pixel centres within radius 2 of (15, 5)


def test_mapping_merges_categories_and_unmapped_ones_are_listed(tmp_path: Path, capsys) -> None:
    maps = people(tmp_path, count=1)
    names = ["bg", "skin", "hair", "tee", "boots", "jeans", "gown"]
    json_path = coco_file(tmp_path, maps, "rle", names=names)
    args = [
        "coco",
        "--json",
        str(json_path),
        "--images",
        str(tmp_path / "photos"),
        "--task",
        "clothing",
    ]
    assert main([*args, "--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(json_path) in err
    assert all(name in err for name in ("tee", "boots", "jeans", "gown"))
    (tmp_path / "m.yaml").write_text("tee: tshirt\nboots: shoes\njeans: pants\ngown: pants\n")
    assert main([*args, "--out", str(tmp_path / "o2"), "--map", str(tmp_path / "m.yaml")]) == 0
    expected = np.where(maps[0] == 6, 5, maps[0])  # gown merged into pants
    assert (read_mask(tmp_path / "o2" / "clothes" / "p0.png", CLOTHING) == expected).all()
    assert main([*args, "--out", str(tmp_path / "o3"), "--unmapped", "background"]) == 0
    expected = np.where(maps[0] > 2, 0, maps[0])  # only skin and hair keep their class
    assert (read_mask(tmp_path / "o3" / "clothes" / "p0.png", CLOTHING) == expected).all()


def test_photos_without_annotations_are_background_or_skipped(tmp_path: Path) -> None:
    maps = people(tmp_path, count=2)
    json_path = coco_file(tmp_path, maps[:1], "rle")
    data = json.loads(json_path.read_text())
    data["images"].append({"id": 2, "file_name": "p1.png", "height": 90, "width": 60})
    json_path.write_text(json.dumps(data))
    args = [
        "coco",
        "--json",
        str(json_path),
        "--images",
        str(tmp_path / "photos"),
        "--task",
        "clothing",
    ]
    assert main([*args, "--out", str(tmp_path / "all")]) == 0
    assert (read_mask(tmp_path / "all" / "clothes" / "p1.png", CLOTHING) == 0).all()
    assert main([*args, "--out", str(tmp_path / "some"), "--skip-empty"]) == 0
    assert not (tmp_path / "some" / "clothes" / "p1.png").exists()


def _bad(tmp_path: Path, problem: str) -> list[str]:
    maps = people(tmp_path, count=1)
    json_path = coco_file(tmp_path, maps, "polygon")
    data = json.loads(json_path.read_text())
    if problem == "missing photo":
        (tmp_path / "photos" / "p0.png").unlink()
    elif problem == "out of bounds":
        data["annotations"][0]["segmentation"][0][0] = 61.0
    elif problem == "unknown category":
        data["categories"][0]["name"] = "cape"
    elif problem == "size":
        data["images"][0]["width"] = 61
    elif problem == "broken json":
        json_path.write_text(json.dumps(data)[:-3])
        return ["coco", "--json", str(json_path), "--images", str(tmp_path / "photos")]
    json_path.write_text(json.dumps(data))
    return ["coco", "--json", str(json_path), "--images", str(tmp_path / "photos")]


@pytest.mark.parametrize(
    ("problem", "says"),
    [
        ("missing photo", "p0.png: photo not found"),
        ("out of bounds", "polygon out of bounds"),
        ("unknown category", "'cape'"),
        ("size", "photo is 60x90, "),
        ("broken json", "polygon.json: not valid JSON"),
    ],
)
def test_bad_coco_input_is_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys, problem: str, says: str
) -> None:
    args = _bad(tmp_path, problem)
    assert main([*args, "--out", str(tmp_path / "out"), "--task", "clothing"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and says in err, err
    assert str(tmp_path) in err  # names the file
    assert not (tmp_path / "out").exists()


def test_bad_labelme_input_is_one_line(tmp_path: Path, capsys) -> None:
    maps = people(tmp_path, count=1)
    src = labelme_files(tmp_path, maps)
    data = json.loads((src / "p0.json").read_text())
    data["shapes"].append({"label": "skin", "points": [[1, 1], [5, 5]], "shape_type": "linestrip"})
    (src / "p0.json").write_text(json.dumps(data))
    args = ["labelme", "--src", str(src), "--out", str(tmp_path / "out"), "--task", "clothing"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "p0.json" in err and "'linestrip' has no area" in err and "\n" not in err
    data["shapes"].pop()
    data["imageWidth"] = 99
    (src / "p0.json").write_text(json.dumps(data))
    assert main(args) == 2
    assert "the JSON says 99x90" in capsys.readouterr().err


def test_nothing_under_out_is_overwritten(tmp_path: Path, capsys) -> None:
    maps = people(tmp_path, count=2)
    json_path = coco_file(tmp_path, maps, "rle")
    mine = tmp_path / "out" / "clothes" / "p1.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own file")
    before = tree_digest(tmp_path / "out")
    args = ["coco", "--json", str(json_path), "--images", str(tmp_path / "photos")]
    assert main([*args, "--out", str(tmp_path / "out"), "--task", "clothing"]) == 2
    assert f"{mine}: already exists" in capsys.readouterr().err
    assert tree_digest(tmp_path / "out") == before


def test_the_command_line_and_the_old_ccp_entry_point(tmp_path: Path, repo_root: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fashionseg.data.convert",
            "coco",
            "--json",
            str(tmp_path / "x.json"),
            "--images",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--task",
            "nosuchtask",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        proc.stderr.strip().splitlines()[-1]
    ]
    assert "unknown task 'nosuchtask'" in proc.stderr
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fashionseg.data.convert",
            "ccp",
            "--src",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "o"),
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "CCP checkout not found" in proc.stderr
