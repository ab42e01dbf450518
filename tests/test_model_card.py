"""MODEL_CARD.md: made from the run (metrics.json, split.json, config), label sets named right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import TINY, run

from fashionseg.reporting.model_card import CARD_NAME, data_terms, model_card, write_model_card
from fashionseg.reporting.run_results import format_percent
from fashionseg.tasks import Task, get_task


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def _index_metrics(meta: dict) -> dict[str, float]:
    metrics = meta["model-index"][0]["results"][0]["metrics"]
    return {m["name"]: m["value"] for m in metrics}


@pytest.mark.slow
def test_a_tiny_runs_card_has_its_metrics_json_numbers(tmp_path: Path) -> None:
    from fashionseg.data.synthetic import generate

    data = generate(tmp_path / "data", num_images=10, seed=3, height=64, width=48)
    (data / "LICENSE").write_text("Synthetic photos, CC0.\nDo what you like.\n")
    run_dir = tmp_path / "run"
    args = ["task=clothing", f"data.root={data}", f"hydra.run.dir={run_dir}", *TINY]
    run("fashionseg.train", *args, "trainer.max_epochs=1", cwd=tmp_path)

    text = (run_dir / CARD_NAME).read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    split = json.loads((run_dir / "split.json").read_text())
    meta = _front_matter(text)
    assert meta["library_name"] == "pytorch" and "fashionseg" in meta["tags"]
    assert meta["datasets"] == [data.name]
    found = _index_metrics(meta)
    assert found["test mIoU"] == metrics["miou"]
    assert found["test pixel accuracy"] == metrics["pixel_accuracy"]
    for name, value in metrics["iou"].items():
        assert found[f"test IoU {name}"] == value
        assert f"| {name} | {format_percent(value)} |" in text
    assert f"mIoU: **{format_percent(metrics['miou'])} %**" in text
    assert f"pixel accuracy: {format_percent(metrics['pixel_accuracy'])} %" in text
    assert f"score threshold in use: {metrics['threshold']}" in text
    for key, value in (metrics.get("ap") or {}).items():
        if value is not None:
            assert found[f"test {key}"] == value
    counts = ", ".join(f"{s} {len(split[s])}" for s in ("train", "val", "test"))
    assert f"photos per split: {counts}" in text
    info = json.loads((run_dir / "train_info.json").read_text())
    assert f"train time (wall, fit + test): {info['seconds'] / 60:.1f} min" in text
    assert f"hardware: {info['hardware']}" in text
    assert "~~~~text\nSynthetic photos, CC0.\nDo what you like.\n~~~~" in text  # the terms
    for name, colour in zip(
        get_task("clothing").class_names, get_task("clothing").colors, strict=True
    ):
        assert f"| {name} | `#{colour[0]:02x}{colour[1]:02x}{colour[2]:02x}`" in text

    # the exporter's call: the same card beside another file
    beside = write_model_card(tmp_path / "export" / CARD_NAME, run_dir, get_task("clothing"))
    assert _index_metrics(_front_matter(beside.read_text())) == found


def test_a_custom_label_set_is_named_with_its_colours(tmp_path: Path) -> None:
    task = Task("footwear", "footwear", ("background", "left shoe", "right shoe", "sock"))
    metrics = {
        "iou": {"background": 0.9, "left shoe": 0.31, "right shoe": 0.72, "sock": None},
        "miou": 0.643,
        "pixel_accuracy": 0.95,
        "threshold": None,
        "class_thresholds": None,
    }
    config = {
        "data": {"root": str(tmp_path)},
        "model": {"net": {"arch": "lraspp", "weights": "none"}},
    }
    text = model_card(task, config, metrics)
    for i, (name, colour) in enumerate(zip(task.class_names, task.colors, strict=True)):
        assert (
            f"| {i} | {name} | `#{colour[0]:02x}{colour[1]:02x}{colour[2]:02x}` {colour} |" in text
        )
    assert "tshirt" not in text and "clothing" not in text
    assert "footwear" in _front_matter(text)["tags"]
    assert "left shoe (31.0 %)" in text  # a low-IoU class named in the limits
    assert "absent from the test split (no IoU): sock" in text
    assert "random init" in text
    assert "argmax" in text


def test_an_untested_run_says_so_and_quotes_the_readme(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# my photos\n\nTaken by me; do not share.\n" + "x\n" * 20)
    assert data_terms(tmp_path) == [
        ("README.md", ["# my photos", "Taken by me; do not share.", *["x"] * 4])
    ]
    text = model_card(get_task("person"), {"data": {"root": str(tmp_path)}}, None)
    assert "Not tested" in text and "model-index" not in text
    assert "\nTaken by me; do not share.\n" in text


def test_a_folder_that_is_no_run_still_gets_a_card(tmp_path: Path) -> None:
    card = write_model_card(tmp_path / "out" / CARD_NAME, tmp_path / "nothing", get_task("person"))
    text = card.read_text()
    assert "| 1 | person | `#800000` (128, 0, 0) |" in text and "Not tested" in text


def test_the_card_names_extra_roots_init_from_and_ema() -> None:
    config = {
        "data": {"root": "/nowhere/labelled"},
        "model": {"net": {"arch": "x", "weights": "none"}, "init_from": "teacher.ckpt"},
        "callbacks": {"ema": {"decay": 0.999}},
    }
    split = {
        "train": ["a", "b"],
        "val": ["c"],
        "test": ["d"],
        "extra": [{"root": "pseudo", "weight": 0.5, "resolved": "/x/pseudo", "stems": ["a", "e"]}],
    }
    text = model_card(get_task("person"), config, split=split)
    assert "photos per split: train 2, val 1, test 1" in text
    assert "extra training root: `pseudo` (weight 0.5): 2 photos, never validated" in text
    assert "then those of `teacher.ckpt` (init_from)" in text
    assert "weight averaging: EMA, decay 0.999" in text
    plain = model_card(get_task("person"), {"data": {"root": "/nowhere"}}, split=split)
    assert "init_from" not in plain and "weight averaging" not in plain
