"""``python -m fashionseg.data.inspect``: statistics and the full check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashionseg.data.inspect import Report, inspect_dataset, main


def write_known(root: Path) -> Path:
    """Two photos (8x6 and 4x2) with known masks."""
    for sub in ("images", "person", "clothes"):
        (root / sub).mkdir(parents=True)
    a = np.zeros((6, 8), np.uint8)
    a[:3, :4] = 3  # 12 px tshirt
    a[5, :] = 4  # 8 px shoes
    b = np.full((2, 4), 2, np.uint8)  # 8 px hair
    for stem, labels in (("a", a), ("b", b)):
        h, w = labels.shape
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / "images" / f"{stem}.jpg")
        Image.fromarray(labels).save(root / "clothes" / f"{stem}.png")
        Image.fromarray((labels > 0).astype(np.uint8)).save(root / "person" / f"{stem}.png")
    return root


def test_statistics(tmp_path: Path) -> None:
    report = inspect_dataset(write_known(tmp_path / "d"))
    assert report.problems == [] and report.images == 2
    assert report.sizes == {(8, 6): 1, (4, 2): 1}
    clothing = report.tasks["clothing"]
    assert clothing.masks == 2
    assert clothing.pixels.tolist() == [28, 0, 8, 12, 8, 0, 0]
    assert clothing.image_counts() == {
        "background": 1,
        "skin": 0,
        "hair": 1,
        "tshirt": 1,
        "shoes": 1,
        "pants": 0,
        "dress": 0,
    }
    assert clothing.pixel_share()["background"] == pytest.approx(50.0)
    person = report.tasks["person"]
    assert person.pixels.tolist() == [28, 28] and person.image_counts()["person"] == 2


def test_cli_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_known(tmp_path / "d")
    assert main([str(root), "--task", "clothing"]) == 0
    out, err = capsys.readouterr()
    assert "images: 2" in out and "8x6: 1" in out and "problems: 0" in out
    assert "tshirt" in out and "person masks" not in out
    assert "checking" in err  # tqdm progress on stderr


def test_cli_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_known(tmp_path / "d")
    bad = np.zeros((6, 8), np.uint8)
    bad[0, 0] = 7
    Image.fromarray(bad).save(root / "clothes" / "a.png")
    (root / "person" / "b.png").unlink()
    Image.fromarray(np.zeros((2, 4), np.uint8)).save(root / "person" / "c.png")
    before = sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*"))
    assert main([str(root)]) == 1
    out = capsys.readouterr().out
    assert "problems: 3" in out
    assert f"{root / 'clothes' / 'a.png'}: class id 7" in out
    assert f"{root / 'images' / 'b.jpg'}: photo has no mask" in out
    assert f"{root / 'person' / 'c.png'}: mask has no photo" in out
    assert sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*")) == before


def test_missing_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "absent")]) == 1
    assert "absent: dataset directory not found" in capsys.readouterr().out


@pytest.fixture(scope="module")
def ccp_report(ccp600: Path) -> Report:
    return inspect_dataset(ccp600)


@pytest.mark.shared
def test_ccp600_statistics(ccp_report: Report) -> None:
    assert ccp_report.problems == []
    assert ccp_report.images == 600 and ccp_report.sizes == {(400, 600): 600}
    clothing = ccp_report.tasks["clothing"]
    expected = {
        "background": 78.9,
        "skin": 2.9,
        "hair": 1.2,
        "tshirt": 8.0,
        "shoes": 1.1,
        "pants": 5.0,
        "dress": 2.9,
    }
    share = clothing.pixel_share()
    for name, value in expected.items():
        assert share[name] == pytest.approx(value, abs=0.1), name
    assert list(clothing.image_counts().values()) == [600, 599, 576, 527, 582, 456, 173]
    assert ccp_report.tasks["person"].masks == 600
