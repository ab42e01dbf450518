"""The "Train on your own classes" walk-through (docs/label-sets.md), end to end: a COCO
file -> a 3-class task YAML in the user's own folder -> convert -> inspect -> train
(``--config-dir``) -> evaluate -> predict -> Segmenter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, run
from PIL import Image

from fashionseg.data.synthetic import draw_labels, render

pytest.importorskip("pycocotools")
mask_api = pytest.importorskip("pycocotools.mask")

TASK_YAML = """\
name: outfit
mask_dir: outfit
classes: [background, top, bottom]
colors: [[0, 0, 0], [255, 140, 0], [30, 60, 200]]
"""
# the synthetic people's clothing ids -> COCO categories
CATEGORY_OF = {3: "top", 6: "top", 5: "bottom", 4: "shoes"}


def coco_dataset(root: Path, count: int = 10) -> Path:
    """Photos under root/photos and their COCO file (RLE; one annotation per category)."""
    rng = np.random.default_rng(2)
    (root / "photos").mkdir(parents=True)
    names = ["top", "bottom", "shoes"]
    images, annotations = [], []
    for i in range(count):
        labels = draw_labels(rng, 64, 48)
        render(rng, labels).save(root / "photos" / f"look{i}.png")
        images.append({"id": i, "file_name": f"look{i}.png", "height": 64, "width": 48})
        for cid, name in enumerate(names, start=1):
            mask = np.isin(labels, [k for k, v in CATEGORY_OF.items() if v == name])
            if not mask.any():
                continue
            rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
            seg = {"size": [64, 48], "counts": rle["counts"].decode()}
            annotations.append(
                {"id": len(annotations) + 1, "image_id": i, "category_id": cid, "segmentation": seg}
            )
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for i, n in enumerate(names, start=1)],
    }
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.slow
def test_train_on_your_own_classes(tmp_path: Path, repo_root: Path) -> None:
    coco = coco_dataset(tmp_path / "mine")
    conf = tmp_path / "myconf"  # outside the project
    (conf / "task").mkdir(parents=True)
    (conf / "task" / "outfit.yaml").write_text(TASK_YAML)
    (tmp_path / "map.yaml").write_text("shoes: background\n")
    data = tmp_path / "data"
    run(
        "fashionseg.data.convert", "coco", "--json", str(coco), "--images",
        str(tmp_path / "mine" / "photos"), "--out", str(data), "--task", "outfit",
        "--config-dir", str(conf), "--map", str(tmp_path / "map.yaml"), cwd=repo_root,
    )  # fmt: skip
    assert len(list((data / "outfit").glob("*.png"))) == 10
    inspected = run(
        "fashionseg.data.inspect", str(data), "--task", "outfit", "--config-dir", str(conf),
        cwd=repo_root,
    )  # fmt: skip
    assert "outfit" in inspected.stdout
    run_dir = tmp_path / "run"
    run(
        "fashionseg.train", "--config-dir", str(conf), "task=outfit", *TINY,
        f"data.root={data}", f"hydra.run.dir={run_dir}", "logger=csv", cwd=repo_root,
    )  # fmt: skip
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["class_names"] == ["background", "top", "bottom"]
    run(
        "fashionseg.evaluate", f"ckpt={ckpt}", f"data.root={data}", "data.split=test",
        f"hydra.run.dir={tmp_path / 'eval'}", cwd=repo_root,
    )  # fmt: skip
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["iou"].keys() == {
        "background",
        "top",
        "bottom",
    }
    out = tmp_path / "pred"
    run(
        "fashionseg.predict", f"ckpt={ckpt}", f"input={tmp_path / 'mine' / 'photos'}",
        f"output={out}", f"hydra.run.dir={tmp_path / 'predict'}", cwd=repo_root,
    )  # fmt: skip
    maps = sorted(out.rglob("look*.png"))
    label_pngs = [p for p in maps if Image.open(p).mode == "P"]
    assert len(label_pngs) == 10
    for path in label_pngs:
        image = Image.open(path)
        assert int(np.asarray(image).max()) <= 2
        assert image.getpalette()[3:9] == [255, 140, 0, 30, 60, 200]

    from fashionseg.segmenter import Segmenter

    seg = Segmenter.from_checkpoint(ckpt)
    assert seg.task.class_names == ("background", "top", "bottom")
    assert seg.task.colors[1] == (255, 140, 0) and seg.task.mask_dir == "outfit"
    photo = np.asarray(Image.open(tmp_path / "mine" / "photos" / "look0.png").convert("RGB"))
    assert int(seg(photo).max()) <= 2
