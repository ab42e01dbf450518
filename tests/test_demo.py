"""The demo page's computations (fashionseg.demo), its command line and the colour legend."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import one_line_error
from PIL import Image

from fashionseg.cli import UsageError
from fashionseg.data.photo import DataError
from fashionseg.demo import (
    DemoModel,
    RawOutput,
    class_shares,
    colour_labels,
    example_photos,
    legend_html,
    network_input,
    overlay_photo,
    read_upload,
)
from fashionseg.fusion import fuse
from fashionseg.model.visualize import comparison_grid, legend_handles, legend_strip
from fashionseg.serve import parse_args
from fashionseg.tasks import Task, get_task


def test_class_shares_sum_to_one_per_class() -> None:
    label_map = np.array([[0, 0, 1, 3], [3, 3, 3, 0]], dtype=np.uint8)
    assert class_shares(label_map, 4) == [3 / 8, 1 / 8, 0.0, 4 / 8]
    assert class_shares(np.zeros((0, 0), np.uint8), 2) == [0.0, 0.0]


def test_legend_lists_every_class_with_its_colour_and_share() -> None:
    task = Task("custom", "custom", ("background", "hat", "a<b"))
    text = legend_html(task, [0.5, 0.25, 0.25])
    assert "#000000" in text and "#800000" in text and "#008000" in text
    assert ">hat<" in text and "a&lt;b" in text and "25.0 %" in text
    assert legend_html(task).count("legend-row") == 3


def test_label_colours_and_overlay_keep_the_photo_size() -> None:
    task = get_task("clothing")
    label_map = np.zeros((5, 7), np.uint8)
    label_map[1, 2] = 3
    coloured = colour_labels(label_map, task)
    assert coloured.shape == (5, 7, 3) and tuple(coloured[1, 2]) == task.colors[3]
    rgb = np.full((5, 7, 3), 200, np.uint8)
    painted = overlay_photo(rgb, label_map, task)
    assert painted.shape == (5, 7, 3) and (painted[0, 0] == 200).all()
    assert not (painted[1, 2] == 200).all()


def test_network_input_scales_only_large_photos() -> None:
    assert network_input(np.zeros((40, 30, 3), np.uint8), limit=64).shape == (3, 40, 30)
    assert network_input(np.zeros((400, 300, 3), np.uint8), limit=100).shape == (3, 100, 75)


def test_read_upload_is_one_line_for_what_is_no_photo(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DataError, match="notes.txt: not an image format") as err:
        read_upload(text)
    assert "\n" not in str(err.value)
    grey16 = tmp_path / "grey16.png"
    Image.fromarray(np.full((3, 4), 65535, np.uint16)).save(grey16)
    assert read_upload(grey16).shape == (3, 4, 3) and read_upload(grey16).max() == 255


@pytest.fixture(scope="module")
def model(untrained_ckpt: Path) -> DemoModel:
    from fashionseg.model.checkpoint import load_module

    return DemoModel(load_module(untrained_ckpt))


def _raw(height: int = 6, width: int = 8) -> RawOutput:
    """Three overlapping detections of known scores (what the network would have cached)."""
    masks = torch.zeros(3, 1, height, width)
    masks[0, 0, :, :4] = 0.9
    masks[1, 0, :3, :] = 0.8
    masks[2, 0, 3:, 5:] = 0.7  # column 4 below row 2: no instance
    detections = {
        "labels": torch.tensor([1, 3, 5]),
        "scores": torch.tensor([0.9, 0.6, 0.3]),
        "masks": masks.half(),
    }
    rgb = np.zeros((height, width, 3), np.uint8)
    return RawOutput(rgb, (height, width), detections=detections)


def test_the_slider_and_fusion_relabel_without_the_network(
    model: DemoModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _raw()

    def no_network(*args: object) -> None:
        raise AssertionError("the network ran again")

    with monkeypatch.context() as patch:
        patch.setattr(model.module.net, "forward", no_network)
        for method in ("seed", "score_order", "argmax"):
            for threshold in (0.2, 0.5, 0.95):
                got = model.label_map(raw, method, threshold)
                want = fuse(
                    raw.detections["labels"],
                    raw.detections["scores"],
                    raw.detections["masks"].float(),
                    method=method,
                    threshold=threshold,
                )
                assert np.array_equal(got, want.numpy().astype(np.uint8)), (method, threshold)
        assert set(np.unique(model.label_map(raw, "seed", 0.2))) == {0, 1, 3, 5}
        assert set(np.unique(model.label_map(raw, "seed", 0.95))) == {0}
        with pytest.raises(ValueError, match="panoptic"):
            model.label_map(raw, "panoptic", 0.5)  # no semantic head: not offered
    assert model.methods == ("seed", "score_order", "argmax")
    assert model.threshold == 0.5 and model.uses_threshold(None)


def test_a_large_photo_is_run_small_and_labelled_at_its_size(model: DemoModel) -> None:
    model.net_limit = 64
    try:
        raw = model.run(np.zeros((300, 200, 3), np.uint8))
    finally:
        model.net_limit = 1024
    assert raw.net_size == (64, 43)
    assert model.label_map(raw).shape == (300, 200)


def test_example_photos_are_the_runs_test_photos(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    for stem in ("a", "b", "c"):
        Image.new("RGB", (4, 4)).save(root / "images" / f"{stem}.png")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text("data:\n  root: data\n")
    (run / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    cwd: {tmp_path}\n")
    (run / "split.json").write_text(json.dumps({"train": ["a"], "val": [], "test": ["c", "b"]}))
    ckpt = run / "checkpoints" / "last.ckpt"
    assert example_photos(ckpt) == [root / "images" / "c.png", root / "images" / "b.png"]
    assert example_photos(tmp_path / "elsewhere.ckpt") == []


def test_arguments_are_checked() -> None:
    assert parse_args(["ckpt=x.ckpt"])["host"] == "127.0.0.1"
    assert parse_args(["ckpt=x.ckpt", "port=8000", "host=0.0.0.0"])["port"] == 8000
    for bad, said in (
        ([], "ckpt=: give the checkpoint"),
        (["ckpt=x.ckpt", "port=http"], "port=http: must be a whole number"),
        (["ckpt=x.ckpt", "colour=red"], "colour=red: expected key=value"),
    ):
        with pytest.raises(UsageError, match=re.escape(said)):
            parse_args(bad)


def test_help_prints_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    from fashionseg.serve import run

    run(["ckpt=RUN/checkpoints/last.ckpt", "--help"])  # as the docs' command check runs it
    out = capsys.readouterr().out
    assert "python -m fashionseg.serve ckpt=" in out and "host=0.0.0.0" in out


def test_a_missing_checkpoint_is_one_line_exit_2(tmp_path: Path) -> None:
    line = one_line_error("fashionseg.serve", f"ckpt={tmp_path / 'none.ckpt'}", cwd=tmp_path)
    assert line == f"error: {tmp_path / 'none.ckpt'}: checkpoint not found"
    assert sys.executable  # the CLI ran on this interpreter


def test_the_colour_legend_strip_and_grid() -> None:
    task = get_task("clothing")
    strip = legend_strip(task.class_names, task.colors, 400)
    assert strip.dtype == torch.uint8 and strip.shape[0] == 3 and strip.shape[2] == 400
    # every class colour is drawn (its swatch)
    pixels = {tuple(p) for p in strip.permute(1, 2, 0).reshape(-1, 3).tolist()}
    assert set(task.colors) <= pixels
    narrow = legend_strip(task.class_names, task.colors, 120)
    assert narrow.shape[1] > strip.shape[1]  # more lines when narrower
    image = torch.rand(3, 10, 12)
    labels = torch.zeros(10, 12, dtype=torch.long)
    plain = comparison_grid([image], [labels], [labels], task.colors)
    with_legend = comparison_grid([image], [labels], [labels], task.colors, task.class_names)
    assert with_legend.shape[2] == plain.shape[2] and with_legend.shape[1] > plain.shape[1]
    assert torch.equal(with_legend[:, : plain.shape[1]], plain)
    handles = legend_handles(task.class_names, task.colors)
    assert [h.get_label() for h in handles] == list(task.class_names[1:])
