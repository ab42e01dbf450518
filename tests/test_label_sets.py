"""Label sets as config (conf/task/*.yaml): checked files, checkpoints that carry them,
old checkpoints that still load and predict as before, rare classes, mask value mapping."""

from __future__ import annotations

import lzma
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fashionseg.data.io import DataError, read_mask
from fashionseg.metrics import iou_from_confmat, mean_iou, metrics_dict
from fashionseg.model.checkpoint import CheckpointError, load_module
from fashionseg.model.semantic import SemanticModule
from fashionseg.reporting.run_results import save_confusion_png, write_results
from fashionseg.segmenter import Segmenter
from fashionseg.tasks import (
    VOC_COLORS,
    Task,
    TaskError,
    builtin_task_names,
    get_task,
    load_task_file,
    resolve_task,
)

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"
TINY_SEMANTIC = {
    "arch": "lraspp_mobilenet_v3_large",
    "weights": "none",
    "min_size": 32,
    "max_size": 32,
}
THREE = {"name": "jackets", "mask_dir": "jk", "classes": ["background", "jacket", "scarf"]}


def test_builtin_tasks_are_yaml_files_with_the_old_classes_and_colours() -> None:
    assert {"person", "clothing", "ccp59"} <= set(builtin_task_names())
    person, clothing = get_task("person"), get_task("clothing")
    assert person.class_names == ("background", "person") and person.mask_dir == "person"
    assert clothing.mask_dir == "clothes" and clothing.num_classes == 7
    assert clothing.class_names[3] == "tshirt"
    # the VOC colours the palette PNGs always had
    assert clothing.colors[:3] == ((0, 0, 0), (128, 0, 0), (0, 128, 0))
    assert clothing.colors[6] == (0, 128, 128) and len(clothing.palette()) == 768
    assert VOC_COLORS[255] == (224, 224, 192)  # the map extended to 256 ids: VOC's void
    ccp59 = get_task("ccp59")
    assert (
        ccp59.num_classes == 59 and ccp59.mask_dir == "ccp59" and ccp59.colors[58] == VOC_COLORS[58]
    )


def test_no_python_module_names_the_builtin_classes() -> None:
    package = Path(__file__).resolve().parents[1] / "fashionseg"
    words = re.compile(r"""["'](tshirt|pants|dress|shoes)["']""")
    offenders = [
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if words.search(p.read_text()) and p.name != "ccp.py"  # ccp.py: CCP's own tag names
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"name": "x", "classes": ["background"]}, "1 classes; a task has 2 to 255"),
        ({"name": "x", "classes": [f"c{i}" for i in range(256)]}, "256 classes"),
        ({"name": "x", "classes": ["a", "b", "a"]}, "listed twice: a"),
        (
            {"name": "x", "classes": ["a", "b"], "colors": [[0, 0, 0]]},
            "one [r, g, b] per class (2)",
        ),
        ({"name": "x", "classes": ["a", "b"], "colors": [[0, 0, 0], [0, 0, 300]]}, "colors[1]"),
        ({"name": "x", "classes": ["a", "b"], "source_ids": {7: 2}}, "source_ids[7] = 2"),
        ({"name": "x", "classes": ["a", "b"], "colour": []}, "unknown task key(s) colour"),
        ({"classes": ["a", "b"]}, "name is missing"),
    ],
)
def test_a_bad_task_file_is_one_line_naming_it(tmp_path: Path, config: dict, says: str) -> None:
    import yaml

    path = tmp_path / "task" / "x.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(TaskError) as err:
        resolve_task("x", tmp_path)
    message = str(err.value)
    assert says in message and message.startswith(str(path)) and "\n" not in message


def test_unknown_task_names_the_choices() -> None:
    with pytest.raises(TaskError, match="unknown task 'nope': choose one of .*clothing"):
        get_task("nope")


def test_a_checkpoint_carries_its_label_set(tmp_path: Path) -> None:
    task = {**THREE, "colors": [[0, 0, 0], [10, 200, 30], [250, 5, 5]]}
    module = SemanticModule(task=task, net=TINY_SEMANTIC)
    assert module.task.class_names == ("background", "jacket", "scarf")
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    loaded = Segmenter.from_checkpoint(path)
    assert loaded.task == module.task and loaded.task.colors[2] == (250, 5, 5)
    assert loaded.task.palette()[6:9] == [250, 5, 5]
    label_map = loaded(np.zeros((20, 16, 3), np.uint8))
    assert label_map.shape == (20, 16) and int(label_map.max()) < 3
    with pytest.raises(CheckpointError, match="checkpoint is for task 'jackets' \\(3 classes\\)"):
        load_module(path, task="clothing")
    other = {**THREE, "classes": ["background", "jacket", "hat"]}
    with pytest.raises(CheckpointError, match="not 'jackets' \\(3 classes\\)"):
        load_module(path, task=other)
    assert load_module(path, task=THREE).task.name == "jackets"


@pytest.mark.parametrize("name", ["sem_clothing", "sem_person", "mrcnn_clothing"])
def test_a_checkpoint_from_before_label_sets_predicts_the_same_maps(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / f"{name}.ckpt"
    path.write_bytes(lzma.decompress((LEGACY / f"{name}.ckpt.xz").read_bytes()))
    hparams = torch.load(path, weights_only=True)["hyper_parameters"]
    assert isinstance(hparams["task"], str)  # the old format: a task name
    seg = Segmenter.from_checkpoint(path)
    assert seg.task == get_task(hparams["task"])
    expected = np.load(LEGACY / "expected.npz")
    runs = {name: seg}
    if name.startswith("mrcnn"):  # at a low threshold it paints instances on these photos
        runs[f"{name}@0.05"] = Segmenter.from_checkpoint(path, threshold=0.05)
    for key, segmenter in runs.items():
        for i in range(3):
            photo = np.asarray(Image.open(LEGACY / "photos" / f"photo{i}.png").convert("RGB"))
            assert (segmenter(photo).numpy() == expected[f"{key}/photo{i}"]).all()


def test_rare_classes_absent_or_never_predicted_break_nothing(tmp_path: Path) -> None:
    task = get_task({"name": "five", "classes": ["bg", "a", "b", "c", "d"]})
    cm = torch.zeros(5, 5, dtype=torch.int64)
    cm[0, 0], cm[1, 1], cm[1, 0] = 50, 10, 5  # a: present and predicted
    cm[2, 0] = 4  # b: present in the ground truth, never predicted -> IoU 0
    cm[0, 3] = 2  # c: absent from the ground truth, predicted -> IoU 0
    # d: neither present nor predicted -> IoU NaN, left out of every mean
    results = metrics_dict(cm, task.class_names)
    assert results["iou"]["d"] is None and results["iou"]["b"] == 0.0 and results["iou"]["c"] == 0.0
    iou = torch.tensor([float("nan") if v is None else v for v in results["iou"].values()])
    assert float(mean_iou(iou)) == pytest.approx((50 / 61 + 10 / 15) / 4)
    present = cm.sum(1) > 0  # the mean over the classes with ground truth, for contrast
    assert float(iou_from_confmat(cm)[present].mean()) == pytest.approx((50 / 61 + 10 / 15 + 0) / 3)
    table = write_results(results, task, tmp_path, title="test")
    assert "| d | n/a |" in table and (tmp_path / "confusion_matrix.png").is_file()
    big = get_task({"name": "many", "classes": [f"c{i}" for i in range(59)]})
    save_confusion_png(torch.eye(59, dtype=torch.int64), big.class_names, tmp_path / "59.png")
    assert Image.open(tmp_path / "59.png").size[0] < 2500


def _mask(tmp_path: Path, values: list[list[int]]) -> Path:
    path = tmp_path / "m.png"
    Image.fromarray(np.array(values, np.uint8), mode="L").save(path)
    return path


def test_source_ids_map_mask_values_and_name_unmapped_ones(tmp_path: Path) -> None:
    task = Task.from_config({**THREE, "source_ids": {0: 0, 10: 1, 11: 1, 20: 2}})
    path = _mask(tmp_path, [[0, 10, 11], [20, 255, 0]])
    assert read_mask(path, task).tolist() == [[0, 1, 1], [2, 255, 0]]
    bad = _mask(tmp_path, [[0, 10, 12], [13, 0, 0]])
    with pytest.raises(DataError, match=r"m.png: mask value\(s\) \[12, 13\] have no class"):
        read_mask(bad, task)
    lenient = Task.from_config({**task.to_config(), "unmapped_source": "ignore"})
    assert read_mask(bad, lenient).tolist() == [[0, 1, 255], [255, 0, 0]]


def test_a_task_file_round_trips_through_to_config(tmp_path: Path) -> None:
    task = Task.from_config({**THREE, "source_ids": {3: 1}, "unmapped_source": "ignore"})
    import yaml

    (tmp_path / "t.yaml").write_text(yaml.safe_dump(task.to_config()))
    assert load_task_file(tmp_path / "t.yaml") == task
