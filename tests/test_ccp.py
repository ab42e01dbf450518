"""CCP converter: a hand-made checkout, errors, and agreement with ccp-fashion600."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from fashionseg.data.ccp import ConversionError, convert, main

TAGS = ["null", "skin", "hair", "t-shirt", "sneakers", "jeans", "dress", "bag"]


def _checkout(root: Path, tags: list[str] = TAGS) -> Path:
    """Two annotated 6x4 photos and one without annotation."""
    (root / "photos").mkdir(parents=True)
    (root / "annotations" / "pixel-level").mkdir(parents=True)
    cells = np.empty((1, len(tags)), dtype=object)
    for i, name in enumerate(tags):
        cells[0, i] = np.array([name])
    scipy.io.savemat(root / "label_list.mat", {"label_list": cells})
    grid = np.array(
        [[0, 1, 2, 3], [4, 5, 6, 7], [0, 0, 7, 1], [3, 3, 5, 5], [6, 6, 0, 0], [2, 2, 4, 4]],
        dtype=np.uint8,
    )  # H 6 x W 4
    for stem in ("0001", "0002", "0003"):
        Image.new("RGB", (4, 6), (90, 60, 30)).save(root / "photos" / f"{stem}.jpg")
    for stem in ("0001", "0003"):
        scipy.io.savemat(
            root / "annotations" / "pixel-level" / f"{stem}.mat", {"groundtruth": grid}
        )
    return root


def test_converts_tags_by_name_and_skips_unannotated(tmp_path: Path) -> None:
    src = _checkout(tmp_path / "ccp")
    counts = convert(src, tmp_path / "out", size=(4, 6), progress=False)
    assert counts == {"converted": 2, "skipped": 1}
    clothes = np.asarray(Image.open(tmp_path / "out" / "clothes" / "0001.png"))
    person = np.asarray(Image.open(tmp_path / "out" / "person" / "0001.png"))
    # null 0, skin 1, hair 2, t-shirt 3, sneakers 4, jeans 5, dress 6, bag -> background
    assert clothes.tolist() == [
        [0, 1, 2, 3],
        [4, 5, 6, 0],
        [0, 0, 0, 1],
        [3, 3, 5, 5],
        [6, 6, 0, 0],
        [2, 2, 4, 4],
    ]
    assert person.tolist() == [
        [0, 1, 1, 1],
        [1, 1, 1, 1],
        [0, 0, 1, 1],
        [1, 1, 1, 1],
        [1, 1, 0, 0],
        [1, 1, 1, 1],
    ]  # every tag but null, bag included
    rows = list(csv.DictReader((tmp_path / "out" / "sources.csv").open()))
    assert rows == [{"image": "0001", "ccp_id": "0001"}, {"image": "0003", "ccp_id": "0003"}]
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == [
        "0001.jpg",
        "0003.jpg",
    ]


def test_sources_csv_names_and_selects_the_outputs(tmp_path: Path) -> None:
    src = _checkout(tmp_path / "ccp")
    listing = tmp_path / "sources.csv"
    listing.write_text("image,ccp_id\n0001,0003\n0002,0002\n0003,0099\n")
    counts = convert(src, tmp_path / "out", size=(2, 3), sources=listing, progress=False)
    # 0003 -> 0001; 0002 has no annotation; 0001 is not listed; 0099 has no photo
    assert counts == {"converted": 1, "skipped": 1, "unlisted": 1, "missing": 1}
    assert (tmp_path / "out" / "sources.csv").read_text() == "image,ccp_id\n0001,0003\n"
    assert Image.open(tmp_path / "out" / "images" / "0001.jpg").size == (2, 3)
    assert Image.open(tmp_path / "out" / "clothes" / "0001.png").size == (2, 3)


def test_errors_name_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConversionError, match=f"{tmp_path / 'nowhere'}: CCP checkout not found"):
        convert(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match=f"{tmp_path / 'empty' / 'photos'}: not found"):
        convert(tmp_path / "empty", tmp_path / "out")
    src = _checkout(tmp_path / "ccp")
    (src / "label_list.mat").unlink()
    with pytest.raises(ConversionError, match="label_list.mat: label list not found"):
        convert(src, tmp_path / "out")
    odd = _checkout(tmp_path / "odd", [*TAGS[:-1], "cravat"])
    with pytest.raises(ConversionError, match="tag 'cravat' has no class"):
        convert(odd, tmp_path / "out2")
    few = _checkout(tmp_path / "few", TAGS[:5])  # the annotations use tag numbers up to 7
    with pytest.raises(ConversionError, match="0001.mat: tag number 7 is not among the 5 tags"):
        convert(few, tmp_path / "out3", size=(4, 6), progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep me")
    assert main(["--src", str(odd), "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep me"


def _agreement(ours: Path, theirs: Path, pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Smallest per-image share of equal mask pixels, per mask folder."""
    worst = {"person": 1.0, "clothes": 1.0}
    for our_stem, their_stem in pairs:
        for kind in worst:
            a = np.asarray(Image.open(ours / kind / f"{our_stem}.png"))
            b = np.asarray(Image.open(theirs / kind / f"{their_stem}.png"))
            assert a.shape == b.shape == (600, 400)
            worst[kind] = min(worst[kind], float((a == b).mean()))
    return worst


def test_raw_sample_matches_ccp_fashion600(ccp_raw: Path, ccp600: Path, tmp_path: Path) -> None:
    counts = convert(ccp_raw, tmp_path / "out", progress=False)
    assert counts == {"converted": 16, "skipped": 0}
    stem_of = {r["ccp_id"]: r["image"] for r in csv.DictReader((ccp600 / "sources.csv").open())}
    rows = list(csv.DictReader((tmp_path / "out" / "sources.csv").open()))
    pairs = [(r["image"], stem_of[r["ccp_id"]]) for r in rows]
    assert sorted(theirs for _, theirs in pairs) == [f"{i:04d}" for i in range(1, 17)]
    worst = _agreement(tmp_path / "out", ccp600, pairs)
    assert worst["person"] >= 0.99 and worst["clothes"] >= 0.99, worst

    # with ccp-fashion600's sources.csv the outputs take its names 0001..0016
    counts = convert(ccp_raw, tmp_path / "named", sources=ccp600 / "sources.csv", progress=False)
    assert counts == {"converted": 16, "skipped": 0, "unlisted": 0, "missing": 584}
    names = sorted(p.stem for p in (tmp_path / "named" / "images").iterdir())
    assert names == [f"{i:04d}" for i in range(1, 17)]
    worst = _agreement(tmp_path / "named", ccp600, [(n, n) for n in names])
    assert worst["person"] >= 0.99 and worst["clothes"] >= 0.99, worst
