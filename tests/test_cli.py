"""End to end on a tiny synthetic dataset: train -> checkpoint -> evaluate -> predict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import TINY, one_line_error, run
from PIL import Image

from fashionseg.model.checkpoint import CheckpointError, load_module

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Generate 10 tiny synthetic photos and train two epochs on them (clothing task)."""
    from fashionseg.data.synthetic import generate

    work = tmp_path_factory.mktemp("cli")
    data = generate(work / "data", num_images=10, seed=3, height=64, width=48)
    run_dir = work / "run"
    proc = run(
        "fashionseg.train",
        "task=clothing",
        f"data.root={data}",
        f"hydra.run.dir={run_dir}",
        *TINY,
        cwd=work,
    )
    return {"work": work, "data": data, "run": run_dir, "stdout": proc.stdout}


def test_train_leaves_a_complete_run_directory(tiny_run: dict[str, Path]) -> None:
    run_dir = tiny_run["run"]
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run_dir / "checkpoints").glob("epoch*.ckpt"))) == 1
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert Image.open(run_dir / "confusion_matrix.png").format == "PNG"
    split = json.loads((run_dir / "split.json").read_text())
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (5, 1, 4)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["iou"]) == {
        "background",
        "skin",
        "hair",
        "tshirt",
        "shoes",
        "pants",
        "dress",
    }
    assert 0.0 <= metrics["miou"] <= 1.0
    out = str(tiny_run["stdout"])
    assert "mean IoU" in out and str(run_dir) in out and "checkpoint:" in out


def test_checkpoint_loads_weights_only_with_its_threshold(tiny_run: dict[str, Path]) -> None:
    ckpt = tiny_run["run"] / "checkpoints" / "last.ckpt"
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    module = load_module(ckpt)
    assert module.task.name == "clothing"
    assert float(module.best_threshold) == float(raw["state_dict"]["best_threshold"])
    assert any(float(module.best_threshold) == pytest.approx(t) for t in (0.05, 0.5, 0.9))
    with pytest.raises(CheckpointError, match="task 'clothing'"):
        load_module(ckpt, task="person")


def test_evaluate_scores_every_image(tiny_run: dict[str, Path]) -> None:
    ckpt = tiny_run["run"] / "checkpoints" / "last.ckpt"
    out_dir = tiny_run["work"] / "eval"
    proc = run(
        "fashionseg.evaluate",
        f"ckpt={ckpt}",
        f"data.root={tiny_run['data']}",
        "data.split=all",
        f"hydra.run.dir={out_dir}",
        cwd=tiny_run["work"],
    )
    assert "mean IoU" in proc.stdout
    metrics = json.loads((out_dir / "metrics.json").read_text())
    confmat = torch.tensor(metrics["confusion_matrix"])
    assert int(confmat.sum()) == 10 * 64 * 48  # every pixel of every image, once


def test_predict_writes_maps_at_photo_size_and_skips_done_work(
    tiny_run: dict[str, Path],
) -> None:
    ckpt = tiny_run["run"] / "checkpoints" / "last.ckpt"
    photos = tiny_run["work"] / "photos"
    photos.mkdir()
    Image.new("RGB", (70, 90), (120, 80, 60)).save(photos / "big.jpg")
    Image.open(tiny_run["data"] / "images" / "0000.jpg").save(photos / "small.png")
    (photos / "notes.txt").write_text("not an image")
    out = tiny_run["work"] / "pred"
    args = [f"ckpt={ckpt}", f"input={photos}", f"output={out}"]
    proc = run("fashionseg.predict", *args, cwd=tiny_run["work"])
    assert "2 predicted" in proc.stdout and "1 skipped" in proc.stdout
    label = Image.open(out / "big.png")
    assert label.mode == "P" and label.size == (70, 90)
    assert Image.open(out / "small.png").size == (48, 64)
    assert Image.open(out / "big_overlay.jpg").size == (70, 90)
    before = (out / "big.png").stat().st_mtime_ns
    proc = run("fashionseg.predict", *args, cwd=tiny_run["work"])
    assert "0 predicted, 2 already done" in proc.stdout
    assert (out / "big.png").stat().st_mtime_ns == before
    proc = run("fashionseg.predict", *args, "overwrite=true", cwd=tiny_run["work"])
    assert "2 predicted" in proc.stdout


def test_predict_on_ccp_photos_keeps_each_photo_size(
    tiny_run: dict[str, Path], ccp_raw: Path
) -> None:
    ckpt = tiny_run["run"] / "checkpoints" / "last.ckpt"
    out = tiny_run["work"] / "pred_ccp"
    photos = ccp_raw / "photos"
    run(
        "fashionseg.predict",
        f"ckpt={ckpt}",
        f"input={photos}",
        f"output={out}",
        cwd=tiny_run["work"],
    )
    for photo in sorted(photos.glob("*.jpg")):
        label = Image.open(out / f"{photo.stem}.png")
        assert label.size == Image.open(photo).size, photo.name
        assert label.mode == "P"


def test_tensorboard_has_losses_threshold_sweep_pictures_and_hparams(
    tiny_run: dict[str, Path],
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tiny_run["run"] / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    scalars = set(tags["scalars"])
    for name in (
        "train/loss",
        "train/loss_mask",
        "train/loss_classifier",
        "val/miou",
        "val/best_threshold",
        "val_sweep/miou@0.05",
        "val_sweep/miou@0.90",
        "val/iou/dress",
        "test/miou",
        "lr-AdamW",
    ):
        assert name in scalars, name
    assert {"val/threshold_curve", "val/predictions"} <= set(tags["images"])
    plugins = events.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in plugins


def test_evaluate_sweeps_a_threshold_list(tiny_run: dict[str, Path]) -> None:
    ckpt = tiny_run["run"] / "checkpoints" / "last.ckpt"
    out_dir = tiny_run["work"] / "eval_sweep"
    proc = run(
        "fashionseg.evaluate",
        f"ckpt={ckpt}",
        f"data.root={tiny_run['data']}",
        "thresholds=[0.05,0.5]",
        f"hydra.run.dir={out_dir}",
        cwd=tiny_run["work"],
    )
    assert "score threshold -> mIoU on the validation split (1 photos)" in proc.stdout
    sweep = json.loads((out_dir / "threshold_sweep.json").read_text())
    assert set(sweep["miou"]) == {"0.05", "0.50"} and sweep["split"] == "val"
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["threshold"] == sweep["choice"]["threshold"]
    assert metrics["split"] == "test"
    assert int(torch.tensor(metrics["confusion_matrix"]).sum()) == 4 * 64 * 48  # test split


# Runs predict's CLI, but the third overlay is cut off mid-write by SIGKILL.
KILLED_PREDICT = """
import io, os, runpy, signal, sys
from PIL import Image

original = Image.Image.save
jpegs = []

def save(self, fp, format=None, **kwargs):
    if format == "JPEG":
        jpegs.append(fp)
        if len(jpegs) == 3:
            data = io.BytesIO()
            original(self, data, format=format, **kwargs)
            with open(fp, "wb") as half:
                half.write(data.getvalue()[: len(data.getvalue()) // 2])
                half.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    return original(self, fp, format=format, **kwargs)

Image.Image.save = save
sys.argv[0] = "predict"
runpy.run_module("fashionseg.predict", run_name="__main__")
"""


def test_predict_killed_midway_then_rerun_completes_every_output(
    tiny_run: dict[str, Path],
) -> None:
    ckpt = tiny_run["run"] / "checkpoints" / "last.ckpt"
    photos = tiny_run["data"] / "images"
    out = tiny_run["work"] / "pred-killed"
    args = [f"ckpt={ckpt}", f"input={photos}", f"output={out}"]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_PREDICT, *args],
        cwd=tiny_run["work"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    # photos 0 and 1 done, photo 2's map written but its overlay cut off (left as a temp)
    assert visible == ["0000.png", "0000_overlay.jpg", "0001.png", "0001_overlay.jpg", "0002.png"]
    assert any(p.name.startswith(".0002_overlay.jpg.") for p in out.iterdir())

    proc = run("fashionseg.predict", *args, cwd=tiny_run["work"])
    assert "8 predicted, 2 already done" in proc.stdout
    for photo in sorted(photos.iterdir()):
        for name in (f"{photo.stem}.png", f"{photo.stem}_overlay.jpg"):
            with Image.open(out / name) as img:
                img.load()  # a truncated file fails here
                assert img.size == (48, 64)


@pytest.mark.parametrize("cli", ["fashionseg.evaluate", "fashionseg.predict"])
def test_checkpoint_of_the_other_task_is_a_one_line_error(
    tiny_run: dict[str, Path], cli: str
) -> None:
    ckpt = tiny_run["run"] / "checkpoints" / "last.ckpt"
    work = tiny_run["work"]
    args = {
        "fashionseg.evaluate": [f"data.root={tiny_run['data']}", f"hydra.run.dir={work / 'e2'}"],
        "fashionseg.predict": [f"input={tiny_run['data'] / 'images'}", f"output={work / 'p2'}"],
    }[cli]
    last = one_line_error(cli, f"ckpt={ckpt}", "task=person", *args, cwd=work)
    assert last == (
        f"error: {ckpt}: checkpoint is for task 'clothing' (7 classes), not 'person' (2 classes)"
    )
    assert not (work / "p2").exists()


def test_weights_of_another_class_count_are_refused(
    tiny_run: dict[str, Path], tmp_path: Path
) -> None:
    ckpt = torch.load(tiny_run["run"] / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["hyper_parameters"]["task"] = "person"  # clothing weights, person claim
    forged = tmp_path / "forged.ckpt"
    torch.save(ckpt, forged)
    with pytest.raises(CheckpointError, match=r"weights do not fit a person model \(2 classes\)"):
        load_module(forged)


def test_tta_hflip_on_a_mask_rcnn_checkpoint_is_a_one_line_error(
    tiny_run: dict[str, Path],
) -> None:
    ckpt = tiny_run["run"] / "checkpoints" / "last.ckpt"
    work = tiny_run["work"]
    last = one_line_error(
        "fashionseg.evaluate",
        f"ckpt={ckpt}",
        f"data.root={tiny_run['data']}",
        "tta_hflip=true",
        f"hydra.run.dir={work / 'e_tta'}",
        cwd=work,
    )
    assert last.startswith(
        f"error: {ckpt}: tta_hflip applies to the semantic models and Panoptic FPN's "
        "semantic head only"
    )
