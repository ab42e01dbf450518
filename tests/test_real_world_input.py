"""Photos and masks as users bring them (issue 13, data input): EXIF orientation, every
photo mode, palette masks, the ignore label, suffixes and hostile files.

Each bad case asserts the one-line message names the file and the value, and that the
user's files are unchanged (a checksum of every file before and after).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from fashionseg.data.datamodule import FashionDataModule
from fashionseg.data.dataset import FashionDataset
from fashionseg.data.inspect import inspect_dataset, main
from fashionseg.data.io import (
    IMAGE_SUFFIXES,
    DataError,
    MaskRules,
    check_dataset,
    find_samples,
    photo_info,
    read_image,
    read_mask,
    to_rgb8,
)
from fashionseg.data.targets import IGNORE_INDEX, mask_to_target
from fashionseg.data.transforms import augment, build_train_transforms
from fashionseg.files import save_label_png
from fashionseg.tasks import get_task

CLOTHING = get_task("clothing")
PERSON = get_task("person")
ROTATE = 0x0112  # EXIF orientation tag


def checksums(root: Path) -> dict[str, str]:
    """sha256 of every file (and the names of links and folders) under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        key = os.fsdecode(p.relative_to(root))
        if p.is_symlink():
            out[key] = "link:" + os.readlink(p)
        elif p.is_file():
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[key] = "dir"
    return out


def dataset(root: Path, stems: tuple[str, ...] = ("a", "b"), w: int = 8, h: int = 6) -> Path:
    """A tiny valid dataset: RGB PNG photos, person (0/1) and clothing (0/3) masks."""
    for sub in ("images", "person", "clothes"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, stem in enumerate(stems):
        photo = np.full((h, w, 3), 40 * i, np.uint8)
        Image.fromarray(photo).save(root / "images" / f"{stem}.png")
        ids = np.zeros((h, w), np.uint8)
        ids[1:-1, 2:-2] = 1
        Image.fromarray(ids).save(root / "person" / f"{stem}.png")
        Image.fromarray(ids * 3).save(root / "clothes" / f"{stem}.png")
    return root


def one_problem(root: Path, task: str, path: Path, *values: str) -> str:
    """check_dataset finds exactly one problem, one line, naming ``path`` and ``values``;
    the DataModule refuses the dataset with it; no file changes."""
    before = checksums(root)
    problems = check_dataset(root, task)
    assert len(problems) == 1, problems
    message = problems[0]
    assert "\n" not in message and message.startswith(f"{path}: "), message
    for value in values:
        assert value in message, (value, message)
    with pytest.raises(DataError) as info:
        FashionDataModule(root=str(root), task=task).setup("fit")
    assert message in str(info.value)
    assert checksums(root) == before
    return message


def save_with_orientation(array: np.ndarray, path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[ROTATE] = orientation
    Image.fromarray(array).save(path, exif=exif)


# ------------------------------------------------------------------ 1. EXIF orientation
def marked_photo(w: int, h: int) -> np.ndarray:
    """A black photo with a red top-left corner (to see where it lands)."""
    photo = np.zeros((h, w, 3), np.uint8)
    photo[: max(h // 5, 1), : max(w // 5, 1)] = (255, 0, 0)
    return photo


def test_exif_rotated_photo_pairs_with_its_displayed_mask(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",), w=400, h=600)
    photo = root / "images" / "a.jpg"
    (root / "images" / "a.png").unlink()
    save_with_orientation(marked_photo(600, 400), photo, 6)  # stored 600x400, shown 400x600
    before = checksums(root)
    assert check_dataset(root, "person") == []
    image = read_image(photo)
    assert image.shape == (3, 600, 400)
    # orientation 6: turn 90 degrees clockwise, so the stored top-left lands top-right
    assert image[0, 0, -1] > 200 and image[0, 0, 0] < 50
    item_image, target = FashionDataset(root, "person")[0]
    assert item_image.shape == (3, 600, 400) and target["semantic"].shape == (600, 400)
    assert checksums(root) == before


def test_exif_square_photo_is_read_rotated(tmp_path: Path) -> None:
    path = tmp_path / "square.png"
    stored = marked_photo(5, 5)
    save_with_orientation(stored, path, 6)
    expected = np.rot90(stored, k=-1)  # clockwise
    assert torch.equal(read_image(path), torch.from_numpy(expected.copy()).permute(2, 0, 1))
    # the same as PIL's own exif_transpose
    with Image.open(path) as img:
        assert np.array_equal(np.asarray(ImageOps.exif_transpose(img)), expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pil(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / f"o{orientation}.png"
    stored = np.random.default_rng(orientation).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    save_with_orientation(stored, path, orientation)
    with Image.open(path) as img:
        expected = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    assert np.array_equal(read_image(path).permute(1, 2, 0).numpy(), expected)
    assert photo_info(path).orientation == orientation


def test_exif_size_mismatch_names_the_orientation(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",), w=600, h=400)  # masks labelled on stored pixels
    (root / "images" / "a.png").unlink()
    save_with_orientation(marked_photo(600, 400), root / "images" / "a.png", 6)
    message = one_problem(
        root, "person", root / "person" / "a.png", "600x400", "400x600", "EXIF orientation 6"
    )
    assert "label the photo as displayed" in message


def test_size_mismatch_without_exif_says_nothing_of_it(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    Image.fromarray(np.zeros((6, 9), np.uint8)).save(root / "person" / "a.png")
    message = one_problem(root, "person", root / "person" / "a.png", "9x6", "8x6")
    assert "EXIF" not in message


def test_inspect_lists_photos_with_an_orientation_tag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = dataset(tmp_path / "d", stems=("a", "b"), w=4, h=6)
    (root / "images" / "a.png").unlink()
    save_with_orientation(marked_photo(6, 4), root / "images" / "a.png", 8)
    save_with_orientation(marked_photo(4, 6), root / "images" / "b.png", 1)  # upright: not listed
    before = checksums(root)
    assert main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "EXIF orientation (read rotated, as displayed): 1" in out
    assert f"{root / 'images' / 'a.png'}: orientation 8" in out
    assert "b.png: orientation" not in out
    assert "4x6: 2" in out and checksums(root) == before


def test_mask_with_an_orientation_tag_is_read_as_displayed(tmp_path: Path) -> None:
    stored = np.zeros((2, 3), np.uint8)
    stored[0, 0] = 1
    path = tmp_path / "m.png"
    save_with_orientation(stored, path, 6)
    assert np.array_equal(read_mask(path, "person"), np.rot90(stored, k=-1))


# --------------------------------------------------------- 2. photo modes and bit depths
def grey_ramp() -> np.ndarray:
    return np.array([[0, 32896, 65535]], np.uint16)  # -> 0, 128, 255


def expect_grey(path: Path, grey: list[int]) -> None:
    image = read_image(path)
    assert image.dtype == torch.uint8 and image.shape == (3, 1, len(grey))
    assert image[:, 0].T.tolist() == [[g, g, g] for g in grey]


def test_16bit_grey_png_photo_is_scaled_not_white(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    Image.fromarray(grey_ramp()).save(path)
    assert Image.open(path).mode == "I;16"
    expect_grey(path, [0, 128, 255])


@pytest.mark.parametrize(
    ("mode", "dtype"), [("I;16", "<u2"), ("I;16B", ">u2"), ("I;16L", "<u2"), ("I", "<i4")]
)
def test_to_rgb8_scales_16bit_range(mode: str, dtype: str) -> None:
    img = Image.frombytes(mode, (3, 1), grey_ramp().astype(dtype).tobytes())
    assert img.mode == mode
    assert to_rgb8(img, "x.tif")[0].tolist() == [[0, 0, 0], [128, 128, 128], [255, 255, 255]]


@pytest.mark.parametrize(("mode", "dtype"), [("I;16B", ">u2"), ("I", "<i4")])
def test_16bit_and_32bit_grey_tiff_photo_is_scaled(tmp_path: Path, mode: str, dtype: str) -> None:
    path = tmp_path / f"scan_{mode.replace(';', '')}.tif"
    Image.frombytes(mode, (3, 1), grey_ramp().astype(dtype).tobytes()).save(path)
    assert Image.open(path).mode == mode
    expect_grey(path, [0, 128, 255])


def test_32bit_photo_beyond_16_bits_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.tif"
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(path)
    with pytest.raises(DataError) as info:
        read_image(path)
    assert str(info.value) == (
        f"{path}: integer photo (mode I) with values 0..70000, outside 0..65535 (16-bit); "
        "save it as an 8- or 16-bit image"
    )


@pytest.mark.parametrize(
    ("values", "grey"), [([0.0, 0.5, 1.0], [0, 128, 255]), ([0.0, 100.0, 255.0], [0, 100, 255])]
)
def test_float_photo_scaled_from_0_1_or_0_255(
    tmp_path: Path, values: list[float], grey: list[int]
) -> None:
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([values], np.float32)).save(path)
    assert Image.open(path).mode == "F"
    expect_grey(path, grey)


@pytest.mark.parametrize(("values", "shown"), [([0.0, 300.0], "0..300"), ([-1.0, 0.5], "-1..0.5")])
def test_float_photo_out_of_range_is_refused(
    tmp_path: Path, values: list[float], shown: str
) -> None:
    path = tmp_path / "hdr.tif"
    Image.fromarray(np.array([values], np.float32)).save(path)
    with pytest.raises(DataError, match=f"^{path}: float photo \\(mode F\\) with values {shown}"):
        read_image(path)


def test_float_photo_with_nan_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nan.tif"
    Image.fromarray(np.array([[0.0, np.nan]], np.float32)).save(path)
    with pytest.raises(DataError, match=f"^{path}: float photo \\(mode F\\) holds NaN"):
        read_image(path)


def test_cmyk_photo(tmp_path: Path) -> None:
    path = tmp_path / "print.tif"
    Image.new("CMYK", (3, 2), (0, 255, 255, 0)).save(path)  # pure red in CMYK
    assert read_image(path)[:, 0, 0].tolist() == [255, 0, 0]


def test_one_bit_photo(tmp_path: Path) -> None:
    path = tmp_path / "fax.png"
    Image.fromarray(np.array([[0, 1]], bool)).save(path)
    assert Image.open(path).mode == "1"
    expect_grey(path, [0, 255])


def test_palette_photo_with_transparency_keeps_its_colours(tmp_path: Path) -> None:
    path = tmp_path / "logo.png"
    img = Image.fromarray(np.array([[0, 1]], np.uint8), mode="L").convert("P")
    img.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    img.save(path, transparency=0)
    assert read_image(path)[:, 0].T.tolist() == [[10, 20, 30], [40, 50, 60]]


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_is_dropped_not_composited(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{mode}.png"
    channels = 2 if mode == "LA" else 4
    array = np.full((1, 2, channels), 100, np.uint8)
    array[..., -1] = 0  # fully transparent
    Image.fromarray(array, mode=mode).save(path)
    expect_grey(path, [100, 100])


def test_mode_that_cannot_become_rgb_is_named() -> None:
    with pytest.raises(DataError) as info:
        to_rgb8(Image.new("La", (2, 2)), "odd.tif")
    assert str(info.value) == "odd.tif: photo mode La cannot be converted to RGB"


def test_every_photo_reader_shares_read_image() -> None:
    import fashionseg.data.dataset as dataset_module
    import fashionseg.data.io as io_module
    import fashionseg.predict as predict_module

    assert predict_module.read_image is io_module.read_image
    assert dataset_module.read_image is io_module.read_image
    assert predict_module.IMAGE_SUFFIXES is io_module.IMAGE_SUFFIXES


# --------------------------------------------------------------------- 3. palette masks
def clothing_ids() -> np.ndarray:
    return np.array([[0, 1, 2, 3], [4, 5, 6, 0]], np.uint8)


def test_quantized_palette_mask_is_mapped_by_colour(tmp_path: Path) -> None:
    ids = clothing_ids()
    rgb = Image.fromarray(np.array(CLOTHING.colors, np.uint8)[ids])
    quantized = rgb.quantize(colors=7)
    indices = np.asarray(quantized)
    assert not np.array_equal(indices, ids)  # quantize puts the colours at other indices
    path = tmp_path / "q.png"
    quantized.save(path)
    assert np.array_equal(read_mask(path, CLOTHING), ids)


def test_palette_mask_with_swapped_person_colours(tmp_path: Path) -> None:
    ids = np.array([[0, 1, 1]], np.uint8)
    img = Image.fromarray(1 - ids, mode="L").convert("P")  # index 0 = person, 1 = background
    img.putpalette([128, 0, 0, 0, 0, 0] + [0] * 762)
    img.save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png", PERSON), ids)


def test_our_own_label_png_keeps_its_indices(tmp_path: Path) -> None:
    ids = clothing_ids()
    path = save_label_png(tmp_path / "pred.png", ids, CLOTHING)
    assert Image.open(path).mode == "P"
    assert np.array_equal(read_mask(path, CLOTHING), ids)


def test_grey_palette_index_mask_keeps_its_indices(tmp_path: Path) -> None:
    ids = clothing_ids()
    img = Image.fromarray(ids, mode="L").convert("P")  # palette entry i = (i, i, i)
    img.save(tmp_path / "g.png")
    assert np.array_equal(read_mask(tmp_path / "g.png", CLOTHING), ids)


def test_ambiguous_palette_mask_is_refused(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    path = root / "clothes" / "a.png"
    indices = np.zeros((6, 8), np.uint8)
    indices[0, :4] = 2
    indices[1, :4] = 5
    img = Image.fromarray(indices, mode="L").convert("P")
    palette = [0] * 768
    palette[6:9] = [128, 0, 0]  # index 2 has skin's colour (class 1)
    palette[15:18] = [10, 20, 30]  # index 5: no task colour
    img.putpalette(palette)
    img.save(path)
    one_problem(
        root,
        "clothing",
        path,
        "ambiguous palette mask",
        "index 2",
        "(128, 0, 0)",
        "'skin'",
        "index 5",
        "(10, 20, 30)",
    )


def test_voc_palette_mask_with_void_index_255(tmp_path: Path) -> None:
    ids = np.array([[0, 1, 255]], np.uint8)
    img = Image.fromarray(ids, mode="L").convert("P")
    palette = PERSON.palette()
    palette[765:768] = [224, 224, 192]  # VOC's void colour at index 255
    img.putpalette(palette)
    img.save(tmp_path / "voc.png")
    assert read_mask(tmp_path / "voc.png", PERSON).tolist() == [[0, 1, IGNORE_INDEX]]


def test_colour_mask_void_colour_is_ignored(tmp_path: Path) -> None:
    rgb = np.array([[[0, 0, 0], [128, 0, 0], [224, 224, 192]]], np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert read_mask(tmp_path / "c.png", PERSON).tolist() == [[0, 1, IGNORE_INDEX]]


# ------------------------------------------------------------------ 4. ignore label 255
def test_ignore_pixels_are_marked_and_in_no_instance(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a", "b", "c"))
    ids = np.asarray(Image.open(root / "clothes" / "a.png")).copy()
    ids[0, :] = 255  # a row of "don't care"
    Image.fromarray(ids).save(root / "clothes" / "a.png")
    assert check_dataset(root, "clothing") == []
    _, target = FashionDataset(root, "clothing", instances="components")[0]
    assert (target["semantic"][0] == IGNORE_INDEX).all()
    assert target["labels"].tolist() == [3]
    assert not target["masks"][:, 0].any()  # no instance holds an ignored pixel
    assert mask_to_target(ids, 7)["labels"].tolist() == [3]


def test_ignore_index_other_than_255(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    ids = np.zeros((6, 8), np.uint8)
    ids[0, 0], ids[1, 1] = 100, 1
    Image.fromarray(ids).save(root / "person" / "a.png")
    rules = MaskRules(ignore_index=100)
    mask = read_mask(root / "person" / "a.png", PERSON, rules)
    assert mask[0, 0] == IGNORE_INDEX and mask[1, 1] == 1
    with pytest.raises(DataError, match="class id 100 out of range"):
        read_mask(root / "person" / "a.png", PERSON)  # with the default 255


def test_augmentation_keeps_ignore_pixels() -> None:
    semantic = torch.zeros(20, 30, dtype=torch.int64)
    semantic[5:15, 10:20] = 1
    semantic[8:12, 13:17] = IGNORE_INDEX  # in the middle: no crop cuts it away
    image = torch.zeros(3, 20, 30, dtype=torch.uint8)
    transforms = build_train_transforms(
        hflip=1.0, scale_jitter=[1.5, 1.5], color_jitter=0.2, crop=[0.9, 0.9]
    )
    torch.manual_seed(0)
    for _ in range(5):
        _, out = augment(transforms, image, semantic)
        values = set(out.unique().tolist())
        assert values <= {0, 1, IGNORE_INDEX} and IGNORE_INDEX in values


def test_metrics_of_both_modules_skip_ignored_pixels() -> None:
    from fashionseg.model.semantic import IGNORE, SemanticModule

    assert IGNORE == IGNORE_INDEX
    module = SemanticModule(
        task="person", net={"arch": "lraspp_mobilenet_v3_large", "weights": "none"}
    )
    target = torch.tensor([[0, 1, IGNORE_INDEX]])
    pred = torch.tensor([[[0, 1, 1]]])
    for metric in (module.val_sweep, module.test_scores):
        assert metric.ignore_index == IGNORE_INDEX
        metric.update(pred, target)  # 255 is no class id, yet no error
        assert metric.compute()["confmat"][0].sum() == 2  # the ignored pixel is not counted


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_semantic_loss_ignores_ignored_pixels() -> None:
    import torch.nn.functional as F

    from fashionseg.model.semantic import SemanticModule

    torch.manual_seed(0)
    module = SemanticModule(
        task="person",
        net={
            "arch": "lraspp_mobilenet_v3_large",
            "weights": "none",
            "min_size": 32,
            "max_size": 32,
        },
    ).eval()
    image = torch.rand(3, 32, 32)
    label = torch.zeros(32, 32, dtype=torch.long)
    label[:, 16:] = 1
    label[:8] = IGNORE_INDEX
    loss = module.training_step(([image], [{"semantic": label}]), 0)
    x, y, _ = module._batch([image], [label])
    logits = module.net(x)["out"]
    keep = y[0] != IGNORE_INDEX
    expected = F.cross_entropy(logits[0].permute(1, 2, 0)[keep], y[0][keep])
    assert keep.sum() == 32 * 24 and torch.allclose(loss, expected, atol=1e-6)


def test_inspect_reports_the_ignored_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = dataset(tmp_path / "d", stems=("a", "b"))
    ids = np.asarray(Image.open(root / "person" / "a.png")).copy()
    ids[0, :] = 255  # 8 of 96 pixels
    Image.fromarray(ids).save(root / "person" / "a.png")
    report = inspect_dataset(root, ["person"])
    assert report.problems == [] and report.tasks["person"].ignored == 8
    assert report.tasks["person"].ignored_share() == pytest.approx(100 * 8 / 96)
    assert main([str(root), "--task", "person"]) == 0
    assert "  ignored            8.3       1" in capsys.readouterr().out


def binary_mask(root: Path) -> Path:
    path = root / "person" / "a.png"
    ids = np.zeros((6, 8), np.uint8)
    ids[1:-1, 2:-2] = 255
    Image.fromarray(ids).save(path)
    return path


def test_binary_0_255_mask_gets_the_fix(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    path = binary_mask(root)
    one_problem(
        root,
        "person",
        path,
        "holds only 0 and 255",
        "data.binary_255=true",
        "data.binary_255=false",
    )


def test_binary_255_true_reads_255_as_person(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a", "b", "c"))
    path = binary_mask(root)
    mask = read_mask(path, PERSON, MaskRules(binary_255=True))
    assert set(np.unique(mask).tolist()) == {0, 1} and (mask == 1).sum() == 16
    dm = FashionDataModule(root=str(root), task="person", binary_255=True, split=[0.34, 0.33, 0.33])
    dm.setup()
    assert dm.hparams.binary_255 is True and dm.hparams.ignore_index == 255
    item = next(i for i in range(3) if dm.dataset("all").samples[i].stem == "a")
    assert set(dm.dataset("all")[item][1]["semantic"].unique().tolist()) == {0, 1}


def test_binary_255_false_reads_255_as_ignored(tmp_path: Path) -> None:
    path = binary_mask(dataset(tmp_path / "d", stems=("a",)))
    mask = read_mask(path, PERSON, MaskRules(binary_255=False))
    assert set(np.unique(mask).tolist()) == {0, IGNORE_INDEX}


def test_clothing_binary_mask_hint(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    path = root / "clothes" / "a.png"
    Image.fromarray(np.array([[0, 255]], np.uint8).repeat(3, 0).repeat(4, 1)).save(path)
    one_problem(root, "clothing", path, "holds only 0 and 255", "class ids 0..6")


def test_all_ignored_mask_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.png"
    Image.fromarray(np.full((2, 2), 255, np.uint8)).save(path)
    with pytest.raises(DataError) as info:
        read_mask(path, PERSON, MaskRules(binary_255=False))
    assert str(info.value) == (
        f"{path}: every pixel is ignored (data.ignore_index=255): nothing to train or score on"
    )


def test_other_values_stay_errors(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    path = root / "clothes" / "a.png"
    ids = np.asarray(Image.open(path)).copy()
    ids[0, 0], ids[0, 1], ids[0, 2] = 200, 255, 9
    Image.fromarray(ids).save(path)
    one_problem(
        root, "clothing", path, "class id 9 out of range", "found [9, 200]", "255 = ignored"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"task": "clothing", "ignore_index": 3},
            "data.ignore_index=3: a class id of task 'clothing' (0..6); choose a value >= 7 "
            "(default 255) or null",
        ),
        ({"task": "person", "ignore_index": -1}, "data.ignore_index=-1: must be an integer"),
        ({"task": "clothing", "binary_255": True}, "data.binary_255=true reads 255 as class 1"),
        ({"task": "person", "binary_255": "yes"}, "data.binary_255='yes': must be true, false"),
    ],
)
def test_bad_ignore_settings_are_one_line_errors(
    tmp_path: Path, settings: dict, message: str
) -> None:
    with pytest.raises(DataError) as info:
        FashionDataModule(root=str(tmp_path), **settings)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_ignore_index_none_makes_255_a_bad_value(tmp_path: Path) -> None:
    path = tmp_path / "m.png"
    Image.fromarray(np.array([[0, 1, 255]], np.uint8)).save(path)
    with pytest.raises(DataError, match="class id 255 out of range"):
        read_mask(path, PERSON, MaskRules(ignore_index=None))


def test_checkpoint_datamodule_hparams_carry_the_mask_rules(tmp_path: Path) -> None:
    dm = FashionDataModule(root=str(tmp_path), task="person", ignore_index=100, binary_255=False)
    rebuilt = FashionDataModule(**dict(dm.hparams))  # what evaluate does with a checkpoint's
    assert rebuilt.hparams.ignore_index == 100 and rebuilt.hparams.binary_255 is False


def test_evaluate_config_can_override_the_mask_rules(repo_root: Path) -> None:
    from omegaconf import OmegaConf

    data = OmegaConf.load(repo_root / "conf" / "evaluate.yaml").data
    assert "ignore_index" in data and "binary_255" in data
    fashion = OmegaConf.load(repo_root / "conf" / "data" / "fashion.yaml")
    assert fashion.ignore_index == 255 and fashion.binary_255 is None


# ------------------------------------------------------- 5. suffixes and hostile files
@pytest.mark.parametrize("suffix", [s for s in IMAGE_SUFFIXES if s != ".png"] + [".JPG", ".Tif"])
def test_every_predict_suffix_is_a_photo(tmp_path: Path, suffix: str) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    (root / "images" / "a.png").unlink()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP", ".tif": "TIFF"}
    fmt[".tiff"] = "TIFF"
    Image.new("RGB", (8, 6), (9, 9, 9)).save(
        root / "images" / f"a{suffix}", format=fmt[suffix.lower()]
    )
    assert check_dataset(root, "person") == []
    assert find_samples(root, "person")[0].image.name == f"a{suffix}"


def test_uppercase_png_mask_is_found(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    (root / "person" / "a.png").rename(root / "person" / "a.PNG")
    assert check_dataset(root, "person") == []
    assert find_samples(root, "person")[0].mask.name == "a.PNG"


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".JPG"])
def test_mask_saved_as_jpeg_is_named(tmp_path: Path, suffix: str) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    (root / "person" / "a.png").unlink()
    path = root / "person" / f"a{suffix}"
    Image.new("L", (8, 6)).save(path, format="JPEG")
    message = one_problem(root, "person", path, "mask saved as JPEG", repr(suffix), ".png")
    assert "has no mask" not in message


def test_jpeg_data_in_a_png_mask_is_named(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    path = root / "person" / "a.png"
    Image.new("L", (8, 6)).save(path, format="JPEG")
    one_problem(root, "person", path, "a JPEG file")


@pytest.mark.parametrize("where", ["images", "person"])
def test_broken_symbolic_link_is_named(tmp_path: Path, where: str) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    path = root / where / "a.png"
    path.unlink()
    path.symlink_to(tmp_path / "gone.png")
    message = one_problem(root, "person", path, "broken symbolic link", "gone.png")
    assert "has no" not in message


@pytest.mark.parametrize("name", ["a.gif", "a.heic", "a.HEIC", "a.avif"])
def test_unsupported_photo_format_is_named(tmp_path: Path, name: str) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    (root / "images" / "a.png").unlink()
    path = root / "images" / name
    path.write_bytes(b"GIF89a not really")
    message = one_problem(root, "person", path, "unsupported photo format", repr(path.suffix))
    assert "has no photo" not in message


def test_photo_suffix_pil_cannot_identify_is_named(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    (root / "images" / "a.png").unlink()
    path = root / "images" / "a.jpg"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))  # an iPhone HEIC renamed
    one_problem(root, "person", path, "not an image format PIL can read", "'.jpg'")


@pytest.mark.parametrize("where", ["images", "person"])
def test_zero_byte_file(tmp_path: Path, where: str) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    path = root / where / "a.png"
    path.write_bytes(b"")
    one_problem(root, "person", path, "empty file (0 bytes)")


def test_directory_named_like_a_photo(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    (root / "images" / "a.png").unlink()
    (root / "images" / "a.png").mkdir()
    one_problem(root, "person", root / "images" / "a.png", "a directory, not an image file")


def test_duplicate_stems_across_suffixes(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    Image.new("RGB", (8, 6)).save(root / "images" / "a.jpg")
    one_problem(root, "person", root / "images" / "a.png", "two photos share the stem 'a'", "a.jpg")


def test_duplicate_mask_stems_across_case(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    Image.new("L", (8, 6)).save(root / "person" / "a.PNG")
    one_problem(root, "person", root / "person" / "a.png", "two masks share the stem 'a'", "a.PNG")


def test_truncated_png_photo(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",), w=64, h=48)
    path = root / "images" / "a.png"
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[:-200])
    one_problem(root, "person", path, "unreadable, corrupt or truncated image")


def test_decompression_bomb_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = dataset(tmp_path / "d", stems=("a",), w=40, h=30)
    before = checksums(root)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 1200 > 2 x 500: PIL refuses
    photo, mask = root / "images" / "a.png", root / "person" / "a.png"
    problems = check_dataset(root, "person")
    assert [p.split(": ")[0] for p in problems] == [str(photo), str(mask)]
    assert all("decompression bomb" in p and "1200 pixels" in p for p in problems)
    assert checksums(root) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_photo(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    path = root / "images" / "a.png"
    path.chmod(0)
    try:
        one_problem(root, "person", path, "permission denied")
    finally:
        path.chmod(0o644)


def test_mask_with_alpha_channel(tmp_path: Path) -> None:
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, 1, :3] = (128, 0, 0)
    rgba[..., 3] = 255
    rgba[0, 2, 3] = 0  # transparent black: background
    Image.fromarray(rgba).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png", PERSON).tolist() == [[0, 1, 0]]


def test_la_mask_uses_its_grey_values(tmp_path: Path) -> None:
    la = np.zeros((1, 3, 2), np.uint8)
    la[0, :, 0] = (0, 2, 6)
    Image.fromarray(la, mode="LA").save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png", CLOTHING).tolist() == [[0, 2, 6]]


def test_16bit_mask_of_class_ids_is_read(tmp_path: Path) -> None:
    Image.fromarray(clothing_ids().astype(np.uint16)).save(tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").mode == "I;16"
    assert np.array_equal(read_mask(tmp_path / "m.png", CLOTHING), clothing_ids())


def test_grey_rgb_mask_is_an_index_mask(tmp_path: Path) -> None:
    ids = clothing_ids()
    Image.fromarray(np.repeat(ids[..., None], 3, axis=2)).save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png", CLOTHING), ids)


def test_float_mask_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.tif"
    Image.fromarray(np.zeros((2, 2), np.float32)).save(path)
    with pytest.raises(DataError, match=f"^{path}: unsupported mask mode F"):
        read_mask(path, PERSON)


def test_one_pixel_photo(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a", "b", "c"), w=1, h=1)
    Image.fromarray(np.ones((1, 1), np.uint8)).save(root / "person" / "a.png")
    assert check_dataset(root, "person") == []
    image, target = FashionDataset(root, "person")[0]
    assert image.shape == (3, 1, 1) and target["boxes"].tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_odd_file_names(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("my photo (1)", "été"))
    assert check_dataset(root, "person") == []
    bad = os.fsdecode(b"caf\xe9")  # Latin-1 bytes, not UTF-8
    Image.new("RGB", (8, 6)).save(root / "images" / f"{bad}.png")
    problems = check_dataset(root, "person")
    assert len(problems) == 1 and "photo has no mask" in problems[0]
    assert problems[0].startswith(f"{root / 'images'}/caf\\xe9.png: ")
    problems[0].encode("utf-8")  # printable: no lone surrogates


def test_sidecar_and_system_files_are_skipped(tmp_path: Path) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    for name in ("a.xmp", "notes.txt", "Thumbs.db", ".DS_Store", "IMG_1.AAE"):
        (root / "images" / name).write_text("x")
    (root / "person" / "labels.json").write_text("{}")
    assert check_dataset(root, "person") == []


def test_truncated_photo_read_by_predict_path(tmp_path: Path) -> None:
    path = tmp_path / "p.jpg"
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), np.uint8)).save(
        buffer, format="JPEG"
    )
    path.write_bytes(buffer.getvalue()[:300])
    with pytest.raises(DataError, match=f"^{path}: unreadable, corrupt or truncated image"):
        read_image(path)


def test_inspect_names_converted_photo_modes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = dataset(tmp_path / "d", stems=("a", "b"), w=3, h=1)
    Image.fromarray(grey_ramp()).save(root / "images" / "a.png")  # 16-bit scan
    assert main([str(root), "--task", "person"]) == 0
    assert "photo modes (converted to 8-bit RGB): I;16: 1, RGB: 1" in capsys.readouterr().out


def test_inspect_reads_masks_with_the_data_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = dataset(tmp_path / "d", stems=("a",))
    binary_mask(root)
    assert main([str(root), "--task", "person"]) == 1
    assert "holds only 0 and 255" in capsys.readouterr().out
    assert main([str(root), "--task", "person", "--binary-255", "true"]) == 0
    assert "  person            33.3       1" in capsys.readouterr().out  # 16 of 48 pixels
    assert main([str(root), "--task", "person", "--binary-255", "false"]) == 0
    assert "  ignored           33.3       1" in capsys.readouterr().out
    assert main([str(root), "--task", "person", "--ignore-index", "none"]) == 1
    assert "set data.binary_255=true" in capsys.readouterr().out
