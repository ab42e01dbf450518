"""Synthetic people: layout, determinism, label consistency, refusal to overwrite."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashionseg.data.synthetic import generate, main


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def twelve(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(
        tmp_path_factory.mktemp("syn") / "d", num_images=12, seed=7, height=96, width=64
    )


def test_layout_and_sizes(twelve: Path) -> None:
    stems = [f"{i:04d}" for i in range(12)]
    for folder, suffix in (("images", ".jpg"), ("person", ".png"), ("clothes", ".png")):
        assert sorted(p.name for p in (twelve / folder).iterdir()) == [s + suffix for s in stems]
    photo = Image.open(twelve / "images" / "0000.jpg")
    assert photo.mode == "RGB" and photo.size == (64, 96)
    mask = Image.open(twelve / "clothes" / "0000.png")
    assert mask.mode == "P" and mask.size == (64, 96)
    assert (twelve / "README.md").is_file()


def test_person_is_the_union_of_clothes_classes_and_every_class_appears(twelve: Path) -> None:
    seen: set[int] = set()
    for i in range(12):
        clothes = np.asarray(Image.open(twelve / "clothes" / f"{i:04d}.png"))
        person = np.asarray(Image.open(twelve / "person" / f"{i:04d}.png"))
        assert clothes.max() <= 6 and person.max() == 1
        assert np.array_equal(person, (clothes > 0).astype(np.uint8))
        present = set(np.unique(clothes).tolist())
        assert {0, 1, 2, 4} <= present  # background, skin, hair, shoes in every image
        assert (3 in present) or (6 in present)  # a tshirt or a dress
        seen |= present
    assert seen == set(range(7))


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", num_images=3, seed=1, height=48, width=32)
    b = generate(tmp_path / "b", num_images=3, seed=1, height=48, width=32)
    c = generate(tmp_path / "c", num_images=3, seed=2, height=48, width=32)
    digest_a = _digest(a)
    assert digest_a == _digest(b)  # README included: it does not name the directory
    assert "seed 1" in (a / "README.md").read_text()
    assert _digest(c)["images/0000.jpg"] != digest_a["images/0000.jpg"]
    # image i depends on (seed, i) only, not on how many images are made
    d = generate(tmp_path / "d", num_images=1, seed=1, height=48, width=32)
    assert _digest(d)["clothes/0000.png"] == digest_a["clothes/0000.png"]


def test_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = generate(tmp_path / "d", num_images=1, seed=0, height=48, width=32)
    before = _digest(out)
    with pytest.raises(FileExistsError, match=f"{out}: already holds images/"):
        generate(out, num_images=1, seed=5, height=48, width=32)
    assert main(["--out", str(out), "--num-images", "1", "--seed", "5"]) == 2
    assert "already holds images" in capsys.readouterr().err
    assert _digest(out) == before
    generate(out, num_images=1, seed=5, height=48, width=32, overwrite=True)
    assert _digest(out) != before


def test_overwrite_removes_samples_of_a_larger_earlier_run(tmp_path: Path) -> None:
    out = generate(tmp_path / "d", num_images=3, seed=0, height=32, width=24)
    assert (
        main(
            [
                "--out",
                str(out),
                "--num-images",
                "2",
                "--overwrite",
                "--height",
                "32",
                "--width",
                "24",
            ]
        )
        == 0
    )
    for folder in ("images", "person", "clothes"):
        assert sorted(p.stem for p in (out / folder).iterdir()) == ["0000", "0001"]
