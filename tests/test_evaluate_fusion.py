"""``evaluate fusion_method=X`` never reports X with the threshold and validation figure
chosen for the checkpoint's own fusion (issue 27, item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import run, save_untrained_checkpoint
from omegaconf import OmegaConf

from fashionseg.evaluate import _other_fusion


def _cfg(method: str | None, threshold: float | None = None) -> object:
    return OmegaConf.create({"fusion_method": method, "threshold": threshold})


def test_another_fusion_without_a_threshold_is_chosen_again() -> None:
    ckpt = {"hyper_parameters": {"fusion": {"method": "score_order"}}}
    assert _other_fusion(_cfg("seed"), ckpt)
    assert not _other_fusion(_cfg("score_order"), ckpt)  # its own: the stored choice holds
    assert not _other_fusion(_cfg(None), ckpt)
    assert not _other_fusion(_cfg("seed", 0.4), ckpt)  # a fixed threshold: as given


@pytest.mark.slow
def test_evaluate_with_another_fusion_chooses_its_threshold_on_validation(tmp_path: Path) -> None:
    from fashionseg.data.synthetic import generate

    root = generate(tmp_path / "data", num_images=6, seed=1, height=48, width=32)
    path = save_untrained_checkpoint(tmp_path / "model.ckpt")
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["hyper_parameters"]["fusion"]["method"] == "seed"
    # what the checkpoint holds: a choice made for its own fusion (here: none yet)
    ckpt["state_dict"]["best_threshold"].fill_(0.95)
    ckpt["state_dict"]["val_miou"].fill_(0.123)
    ckpt["state_dict"]["val_miou_global"].fill_(0.123)
    torch.save(ckpt, path)
    out = tmp_path / "eval"
    proc = run(
        "fashionseg.evaluate",
        f"ckpt={path}",
        f"data.root={root}",
        "fusion_method=score_order",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
    )
    assert "choosing again on validation" in proc.stdout
    sweep = json.loads((out / "threshold_sweep.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert sweep["split"] == "val"
    choice = metrics["threshold_choice"]
    for key, value in sweep["choice"].items():
        if key != "class_thresholds":
            plain = value is None or isinstance(value, bool)
            assert choice[key] == (value if plain else pytest.approx(value, rel=1e-6)), key
    assert metrics["threshold"] == pytest.approx(sweep["choice"]["threshold"])
    assert choice["val_miou_global"] != pytest.approx(0.123)  # not the trained fusion's figure
