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
