"""``tta_scales=`` in evaluate (a set, or chosen on validation) and predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from conftest import REPO_ROOT
from helpers import one_line_error_in_process, run_in_process
from PIL import Image

from fashionseg.data.io import read_image
from fashionseg.evaluate import SCALE_CANDIDATES, scale_candidates
from fashionseg.model.checkpoint import load_module


def test_scale_candidates() -> None:
    assert scale_candidates(None) is None
    assert scale_candidates([0.75, 1.0]) == [(0.75, 1.0)]
    assert scale_candidates(1.0) == [(1.0,)]
    assert scale_candidates([[1.0], [0.5, 1]]) == [(1.0,), (0.5, 1.0)]
    assert len(scale_candidates("choose")) == len(SCALE_CANDIDATES)


def test_evaluate_chooses_the_scales_on_validation(teacher: Path, tmp_path: Path) -> None:
    data = teacher.parents[2] / "data"
    out = tmp_path / "eval"
    proc = run_in_process(
        "fashionseg.evaluate",
        f"ckpt={teacher}",
        f"data.root={data}",
        "tta_scales=[[1.0],[0.75,1.0,1.25]]",
        f"hydra.run.dir={out}",
        cwd=REPO_ROOT,
    )
    assert "tta_scales -> mIoU on the validation split (2 photos)" in proc.stdout
    sweep = json.loads((out / "tta_scales.json").read_text())
    assert set(sweep["miou"]) == {"1", "0.75,1,1.25"}
    best = max(sweep["miou"], key=sweep["miou"].get)
    chosen = [float(s) for s in best.split(",")]
    assert sweep["chosen"] == chosen
    assert json.loads((out / "metrics.json").read_text())["tta"]["scales"] == chosen


def test_predict_uses_the_scales_and_records_them(teacher: Path, tmp_path: Path) -> None:
    photos = teacher.parents[2] / "data" / "images"
    out = tmp_path / "pred"
    args = [f"ckpt={teacher}", f"input={photos}", f"output={out}", "predict.num_workers=0"]
    run_in_process("fashionseg.predict", *args, "tta_scales=[0.75,1.0,1.25]", cwd=REPO_ROOT)
    module = load_module(teacher)
    module.tta_scales = (0.75, 1.0, 1.25)
    image = read_image(photos / "003.png").float() / 255
    with torch.no_grad():
        expected = module.predict_maps([image])[0].numpy()
    np.testing.assert_array_equal(np.array(Image.open(out / "003.png")), expected)
    record = (out / ".fashionseg-predict.jsonl").read_text().splitlines()[0]
    assert json.loads(record)["tta"] == {"hflip": False, "scales": [0.75, 1.0, 1.25]}
    line = one_line_error_in_process("fashionseg.predict", *args, "tta_scales=[1.0]", cwd=REPO_ROOT)
    assert "holds predictions of another model" in line
