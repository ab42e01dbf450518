"""Distributed validation on the CPU: 2 gloo processes score exactly what 1 process does."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from fashionseg.data.datamodule import FashionDataModule
from fashionseg.model.module import SegmentationModule

pytestmark = pytest.mark.slow

NET = {
    "arch": "maskrcnn_mobilenet_v3_large_fpn",
    "weights": "none",
    "min_size": 48,
    "max_size": 64,
    "box_score_thresh": 0.0,  # keep every detection: random init still paints pixels
    "box_detections_per_img": 20,
}


def validate(devices: int, module: SegmentationModule, data: FashionDataModule, tmp: Path):
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp,
    )
    return trainer.validate(module, datamodule=data, verbose=False)[0]


def test_two_processes_score_the_same_as_one(tmp_path: Path) -> None:
    from fashionseg.data.synthetic import generate

    root = generate(tmp_path / "data", num_images=12, seed=2, height=64, width=48)
    # 3 validation photos on 2 ranks: a padding sampler would count one of them twice
    data = FashionDataModule(root=str(root), task="clothing", split=[0.5, 0.25, 0.25], batch_size=1)
    data.setup()
    assert len(data.split_stems["val"]) == 3
    torch.manual_seed(0)
    module = SegmentationModule(task="clothing", net=NET, thresholds=[0.0, 0.3, 0.6])
    single = validate(1, module, data, tmp_path / "one")
    double = validate(2, module, data, tmp_path / "two")
    assert single.keys() == double.keys()
    assert 0.0 < single["val/miou"] < 1.0
    assert len({round(v, 6) for k, v in single.items() if k.startswith("val/iou/")}) > 2
    for key, value in single.items():
        assert double[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def _metrics(folder: Path) -> dict:
    import json

    return json.loads((folder / "metrics.json").read_text())


@pytest.mark.timeout(900)
def test_train_on_two_processes_writes_metrics_and_returns_the_best_validation(
    tmp_path: Path,
) -> None:
    """Issue 27, item 2: ``train hardware=ddp_cpu`` (the stages in spawned processes)
    writes metrics.json and returns the best validation mIoU, as one process does."""
    import json

    from helpers import TINY, run

    from fashionseg.data.synthetic import generate

    root = generate(tmp_path / "data", num_images=10, seed=2, height=48, width=32)
    run_dir = tmp_path / "ddp_run"
    run(
        "fashionseg.train",
        "task=clothing",
        f"data.root={root}",
        *TINY,
        "data.split=[0.4,0.3,0.3]",
        "trainer.max_epochs=1",
        "hardware=ddp_cpu",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    manifest = json.loads((run_dir / "split.json").read_text())
    assert [len(manifest[k]) for k in ("train", "val", "test")] == [4, 3, 3]
    trained = _metrics(run_dir)  # written by the main process from rank 0's results
    assert trained["miou"] is not None and trained["best_val_miou"] is not None
    assert sum(map(sum, trained["confusion_matrix"])) == 3 * 48 * 32  # each photo once
    (best,) = [p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt"]
    assert f"miou{trained['best_val_miou']:.4f}" in best.name


@pytest.mark.timeout(900)
def test_evaluate_on_two_processes_scores_what_one_does(tmp_path: Path) -> None:
    """Issue 27, item 2: ``evaluate hardware=ddp_cpu`` (3 test and 3 validation photos on
    2 ranks, thresholds re-chosen on validation) scores exactly what one process scores."""
    import json

    from helpers import run, save_untrained_checkpoint

    from fashionseg.data.synthetic import generate

    root = generate(tmp_path / "data", num_images=10, seed=2, height=48, width=32)
    ckpt = save_untrained_checkpoint(tmp_path / "model.ckpt")
    data = FashionDataModule(root=str(root), task="clothing", split=[0.4, 0.3, 0.3])
    data.setup()
    manifest = data.write_manifest(tmp_path / "split.json")
    assert len(data.split_stems["val"]) == len(data.split_stems["test"]) == 3
    scored = {}
    for hardware in ("cpu", "ddp_cpu"):
        out = tmp_path / f"eval_{hardware}"
        run(
            "fashionseg.evaluate",
            f"ckpt={ckpt}",
            f"data.root={root}",
            "data.split=test",
            f"data.manifest={manifest}",
            "thresholds=[0.05,0.5,0.9]",
            f"hardware={hardware}",
            f"hydra.run.dir={out}",
            cwd=tmp_path,
        )
        scored[hardware] = (_metrics(out), json.loads((out / "threshold_sweep.json").read_text()))
    (one, one_sweep), (two, two_sweep) = scored["cpu"], scored["ddp_cpu"]
    assert sum(map(sum, one["confusion_matrix"])) == 3 * 48 * 32
    assert two["confusion_matrix"] == one["confusion_matrix"]  # to the pixel: none twice
    assert two_sweep == one_sweep  # the same validation photos, the same choice
    assert two["threshold_choice"] == one["threshold_choice"]
    assert two["ap"] == pytest.approx(one["ap"], abs=1e-9, nan_ok=True)
