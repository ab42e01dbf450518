"""Reading photos and masks; one test per kind of bad input."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fashionseg.data.datamodule import FashionDataModule
from fashionseg.data.io import (
    DataError,
    Sample,
    check_dataset,
    check_sample,
    distinct_values,
    find_samples,
    read_image,
    read_mask,
)
from fashionseg.tasks import get_task


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root`` with its size, mtime and content hash."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    } | {str(p.relative_to(root)) + "/": (0, 0, "") for p in root.rglob("*") if p.is_dir()}


def test_read_image_modes(tmp_path: Path) -> None:
    rgb = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    rgba = np.concatenate([rgb, np.full((6, 8, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    grey = rgb[..., 0]
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=95)

    expected = torch.from_numpy(rgb).permute(2, 0, 1)
    for name in ("rgb.png", "rgba.png"):  # RGBA: alpha dropped
        image = read_image(tmp_path / name)
        assert image.dtype == torch.uint8 and torch.equal(image, expected)
    image = read_image(tmp_path / "grey.png")
    assert image.shape == (3, 6, 8)
    assert all(torch.equal(image[c], torch.from_numpy(grey)) for c in range(3))
    assert read_image(tmp_path / "photo.jpg").shape == (3, 6, 8)


def test_read_mask_index_palette_and_colour(tmp_path: Path) -> None:
    task = get_task("clothing")
    ids = np.array([[0, 1, 2, 3], [4, 5, 6, 0]], dtype=np.uint8)
    Image.fromarray(ids).save(tmp_path / "l.png")
    palette = Image.fromarray(ids).convert("P")
    palette.putpalette(task.palette())
    palette.save(tmp_path / "p.png")
    colours = np.array(task.colors, dtype=np.uint8)[ids]
    Image.fromarray(colours).save(tmp_path / "rgb.png")
    for name in ("l.png", "p.png", "rgb.png"):
        mask = read_mask(tmp_path / name, "clothing")
        assert mask.dtype == np.uint8 and np.array_equal(mask, ids), name
    assert np.array_equal(read_mask(tmp_path / "rgb.png", task), ids)


def test_find_samples_sorted_and_accepts_task_object(tiny_dataset: Path) -> None:
    samples = find_samples(tiny_dataset, get_task("person"))
    assert [s.stem for s in samples] == [f"{i:03d}" for i in range(6)]
    assert samples[0] == Sample(
        "000", tiny_dataset / "images" / "000.png", tiny_dataset / "person" / "000.png"
    )
    assert find_samples(tiny_dataset, "clothing")[0].mask == tiny_dataset / "clothes" / "000.png"
    assert check_dataset(tiny_dataset, "person") == []
    assert check_dataset(tiny_dataset, "clothing") == []


# --- bad inputs -------------------------------------------------------------------------
# Each case damages the tiny dataset and returns (task, offending file, offending value).


def _unknown_colour(root: Path) -> tuple[str, Path, str]:
    colours = np.zeros((6, 8, 3), np.uint8)
    colours[2, 3] = (1, 2, 3)
    path = root / "clothes" / "001.png"
    Image.fromarray(colours).save(path)
    return "clothing", path, "(1, 2, 3)"


def _id_too_large(root: Path) -> tuple[str, Path, str]:
    ids = np.zeros((6, 8), np.uint8)
    ids[0, 0] = 9
    path = root / "person" / "002.png"
    Image.fromarray(ids).save(path)
    return "person", path, "9"


def _size_mismatch(root: Path) -> tuple[str, Path, str]:
    path = root / "clothes" / "003.png"
    Image.fromarray(np.zeros((6, 10), np.uint8)).save(path)
    return "clothing", path, "10x6"


def _corrupt_jpeg(root: Path) -> tuple[str, Path, str]:
    (root / "images" / "004.png").unlink()
    path = root / "images" / "004.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG at all")
    return "person", path, ""


def _truncated_jpeg(root: Path) -> tuple[str, Path, str]:
    (root / "images" / "004.png").unlink()
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    path = root / "images" / "004.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 2 // 3])
    return "person", path, "truncated"


def _truncated_png_mask(root: Path) -> tuple[str, Path, str]:
    path = root / "clothes" / "005.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 30])
    return "clothing", path, ""


def _truncated_png_photo(root: Path) -> tuple[str, Path, str]:
    path = root / "images" / "000.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "person", path, ""


def _photo_without_mask(root: Path) -> tuple[str, Path, str]:
    (root / "person" / "003.png").unlink()
    return "person", root / "images" / "003.png", "person/003.png"


def _mask_without_photo(root: Path) -> tuple[str, Path, str]:
    path = root / "clothes" / "999.png"
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(path)
    return "clothing", path, ""


def _sixteen_bit_mask(root: Path) -> tuple[str, Path, str]:
    # 16-bit masks holding class ids are read; a value no task has is named
    path = root / "person" / "001.png"
    Image.fromarray(np.full((6, 8), 300, np.uint16)).save(path)
    return "person", path, "class id 300"


BAD_INPUTS: dict[str, Callable[[Path], tuple[str, Path, str]]] = {
    "unknown_colour": _unknown_colour,
    "id_too_large": _id_too_large,
    "size_mismatch": _size_mismatch,
    "corrupt_jpeg": _corrupt_jpeg,
    "truncated_jpeg": _truncated_jpeg,
    "truncated_png_mask": _truncated_png_mask,
    "truncated_png_photo": _truncated_png_photo,
    "photo_without_mask": _photo_without_mask,
    "mask_without_photo": _mask_without_photo,
    "sixteen_bit_mask": _sixteen_bit_mask,
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_is_reported(tiny_dataset: Path, kind: str) -> None:
    task, path, value = BAD_INPUTS[kind](tiny_dataset)
    before = snapshot(tiny_dataset)

    problems = check_dataset(tiny_dataset, task)
    assert len(problems) == 1, problems
    message = problems[0]
    assert "\n" not in message
    assert message.startswith(str(path)), message
    assert value in message

    with pytest.raises(DataError) as info:
        FashionDataModule(root=str(tiny_dataset), task=task).setup("fit")
    assert str(info.value).startswith("1 problem in ")
    assert str(path) in str(info.value) and value in str(info.value)
    assert snapshot(tiny_dataset) == before


def test_bad_mask_read_directly_names_file_and_value(tiny_dataset: Path) -> None:
    task, path, value = _id_too_large(tiny_dataset)
    with pytest.raises(DataError, match="9") as info:
        read_mask(path, task)
    assert str(path) in str(info.value)
    sample = Sample("002", tiny_dataset / "images" / "002.png", path)
    assert check_sample(sample, task) == [str(info.value)]


def test_truncated_photo_read_directly(tiny_dataset: Path) -> None:
    _, path, _ = _truncated_png_photo(tiny_dataset)
    before = snapshot(tiny_dataset)
    with pytest.raises(DataError) as info:
        read_image(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    assert snapshot(tiny_dataset) == before


def test_many_problems_counted_in_one_error(tiny_dataset: Path) -> None:
    _id_too_large(tiny_dataset)
    _size_mismatch(tiny_dataset)
    for stem in ("000", "001", "004", "005"):
        (tiny_dataset / "clothes" / f"{stem}.png").unlink()
    (tiny_dataset / "person" / "002.png").unlink()
    with pytest.raises(DataError) as info:
        FashionDataModule(root=str(tiny_dataset), task="clothing").setup()
    lines = str(info.value).splitlines()
    assert lines[0].startswith("5 problems in ")
    assert len(lines) == 6 and "003.png" in str(info.value)


def test_empty_dataset_directory(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DataError, match="images"):
        find_samples(root, "person")
    (root / "images").mkdir()
    (root / "person").mkdir()
    with pytest.raises(DataError, match="no photos") as info:
        find_samples(root, "person")
    assert str(root / "images") in str(info.value)
    problems = check_dataset(root, "person")
    assert len(problems) == 1 and str(root / "images") in problems[0]
    assert snapshot(root) == {"images/": (0, 0, ""), "person/": (0, 0, "")}


def test_missing_dataset_directory(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DataError, match="not found") as info:
        find_samples(root, "person")
    assert str(root) in str(info.value)
    with pytest.raises(DataError, match="nowhere"):
        FashionDataModule(root=str(root)).setup()
    assert not root.exists()


def test_unknown_task_name(tiny_dataset: Path) -> None:
    with pytest.raises(ValueError, match="'shirts'"):
        find_samples(tiny_dataset, "shirts")
    with pytest.raises(ValueError, match="'shirts'"):
        FashionDataModule(root=str(tiny_dataset), task="shirts")


@pytest.mark.parametrize(
    "values",
    [
        np.array([[0, 3, 3], [6, 0, 1]], dtype=np.uint8),
        np.array([[-1, 2], [255, 2]], dtype=np.int64),  # ignored colours read as -1
        np.array([[0, 65535], [300, 0]], dtype=np.uint16),  # 16-bit index masks
        np.array([[0, 1 << 20], [-5, 7]], dtype=np.int64),  # a wide range: the sort path
        np.zeros((0, 4), dtype=np.uint8),
        np.array([[255, 254], [0, 255]], dtype=np.uint8)[:, ::-1],  # a strided 8-bit view
        np.asarray(Image.new("P", (3, 2), 7)),  # PIL's read-only pixels
    ],
)
def test_distinct_values_match_numpy_unique(values: np.ndarray) -> None:
    assert distinct_values(values) == {int(v) for v in np.unique(values)}
