"""``from fashionseg import Segmenter`` (issue 15): every kind of input gives the label map
predict writes for that photo, at its displayed size; importing the package stays light.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_predict_lightning import painting_module

from fashionseg import Segmenter
from fashionseg.model.checkpoint import CheckpointError
from fashionseg.predict import predict_loop


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    module = painting_module()
    path = tmp_path_factory.mktemp("ckpt") / "painting.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


@pytest.fixture(scope="module")
def segmenter(ckpt: Path) -> Segmenter:
    return Segmenter.from_checkpoint(ckpt, device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three noise photos, two sizes, and one stored 40x30 with EXIF Orientation=6."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    paths = []
    for i, (w, h) in enumerate([(40, 30), (36, 48), (40, 30)]):
        path = folder / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show: displayed 30 x 40
    rotated = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    rotated.save(folder / "phone.png", exif=exif.tobytes())
    return [*paths, folder / "phone.png"]


@pytest.fixture(scope="module")
def written(photos: list[Path], ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> list:
    """The label maps predict writes for ``photos``, as arrays."""
    from fashionseg.model.checkpoint import load_module

    out = tmp_path_factory.mktemp("pred")
    predict_loop(load_module(ckpt), photos, out, progress=False)
    return [np.asarray(Image.open(out / f"{p.stem}.png")) for p in photos]


def check(result: torch.Tensor, expected: np.ndarray) -> None:
    assert isinstance(result, torch.Tensor)
    assert result.dtype == torch.uint8 and result.device.type == "cpu"
    assert result.shape == expected.shape
    assert np.array_equal(result.numpy(), expected)


def test_a_path_gives_what_predict_writes(
    segmenter: Segmenter, photos: list[Path], written: list
) -> None:
    # maps of several classes that differ between photos of one size: a real comparison
    assert all(len(np.unique(m)) >= 2 for m in written)
    assert not np.array_equal(written[0], written[2])
    check(segmenter(photos[0]), written[0])
    check(segmenter(str(photos[1])), written[1])


def test_a_pil_image(segmenter: Segmenter, photos: list[Path], written: list) -> None:
    with Image.open(photos[1]) as img:
        check(segmenter(img), written[1])
    check(segmenter(Image.open(photos[0]).convert("L").convert("RGB")), segmenter(
        np.repeat(np.asarray(Image.open(photos[0]).convert("L"))[..., None], 3, axis=2)
    ).numpy())  # fmt: skip


def test_a_numpy_array(segmenter: Segmenter, photos: list[Path], written: list) -> None:
    rgb = np.asarray(Image.open(photos[0]).convert("RGB"))
    check(segmenter(rgb), written[0])


def test_tensors_uint8_and_float(segmenter: Segmenter, photos: list[Path], written: list) -> None:
    rgb = np.asarray(Image.open(photos[2]).convert("RGB"))
    as_uint8 = torch.from_numpy(rgb.copy()).permute(2, 0, 1)
    check(segmenter(as_uint8), written[2])
    check(segmenter(as_uint8.float() / 255), written[2])


def test_a_list_of_mixed_inputs_keeps_order_and_sizes(
    segmenter: Segmenter, photos: list[Path], written: list
) -> None:
    rgb0 = np.asarray(Image.open(photos[0]).convert("RGB"))
    inputs = [
        photos[3],
        Image.open(photos[1]),
        rgb0,
        torch.from_numpy(rgb0.copy()).permute(2, 0, 1),
    ]
    result = segmenter(inputs)
    assert isinstance(result, list) and len(result) == 4
    for got, expected in zip(result, [written[3], written[1], written[0], written[0]], strict=True):
        check(got, expected)
    assert segmenter([]) == []
    assert isinstance(segmenter((photos[0],)), list)


def test_an_exif_rotated_photo_comes_out_at_its_displayed_size(
    segmenter: Segmenter, photos: list[Path], written: list
) -> None:
    phone = photos[3]
    assert Image.open(phone).size == (40, 30)  # stored landscape
    from_path = segmenter(phone)
    assert from_path.shape == (40, 30)  # shown portrait: H 40, W 30
    check(from_path, written[3])
    with Image.open(phone) as img:  # the PIL image is turned by its tag too
        check(segmenter(img), written[3])


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (42, TypeError, "cannot segment a int: give a path, a PIL image"),
        (np.zeros((4, 5), np.uint8), ValueError, r"H x W x 3 uint8 \(RGB\), got shape \(4, 5\)"),
        (np.zeros((4, 5, 3), np.float32), ValueError, "got shape .* float32"),
        (torch.zeros(4, 5, 3, dtype=torch.uint8), ValueError, r"photo.permute\(2, 0, 1\)"),
        (torch.full((3, 4, 5), 2.0), ValueError, r"values in \[0, 1\], got 2..2"),
        (torch.zeros(3, 4, 5, dtype=torch.int32), ValueError, "uint8 or float"),
    ],
)
def test_inputs_it_cannot_take_say_what_it_expects(
    segmenter: Segmenter, bad: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        segmenter(bad)  # type: ignore[arg-type]


def test_a_checkpoint_of_another_task_is_refused(ckpt: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint is for task 'clothing'"):
        Segmenter.from_checkpoint(ckpt, task="person")


def test_what_it_tells_about_itself(segmenter: Segmenter) -> None:
    assert segmenter.task.name == "clothing"
    assert segmenter.threshold == 0.0
    assert repr(segmenter) == ("Segmenter(task=clothing, threshold=0.0, device=cpu, batch_size=2)")


def test_importing_the_package_does_not_import_torch() -> None:
    code = (
        "import sys, fashionseg\n"
        "assert 'torch' not in sys.modules and 'lightning' not in sys.modules\n"
        "assert 'Segmenter' in dir(fashionseg)\n"
        "try:\n"
        "    fashionseg.Nothing\n"
        "except AttributeError as err:\n"
        "    print(err)\n"
    )  # a fresh interpreter, which stops before loading the Segmenter (torch: seconds)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "module 'fashionseg' has no attribute 'Nothing'"
    import fashionseg
    import fashionseg.segmenter

    assert fashionseg.Segmenter is fashionseg.segmenter.Segmenter  # by the package's __getattr__


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif"])
@pytest.mark.parametrize("orientation", [None, 6])
def test_every_format_reads_the_same_as_path_and_as_pil_image(
    segmenter: Segmenter, tmp_path: Path, suffix: str, orientation: int | None
) -> None:
    # issue 27, item 4: Pillow's TIFF loader applies Orientation=6 itself on load, so a
    # PIL image turned by the tag read before loading came out turned twice (W x H)
    from fashionseg.data.photo import photo_rgb

    stored = np.random.default_rng(7).integers(0, 256, (20, 30, 3), dtype=np.uint8)  # 30 wide
    path = tmp_path / f"photo{suffix}"
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    Image.fromarray(stored).save(path, **kwargs)
    shape = (30, 20) if orientation == 6 else (20, 30)  # rows x columns as displayed
    from_path = photo_rgb(path)
    with Image.open(path) as img:
        from_pil = photo_rgb(img)
    assert from_path.shape == from_pil.shape == (*shape, 3)
    assert np.array_equal(from_pil, from_path)
    if suffix != ".jpg":  # lossless: the pixels are the stored ones, turned once
        turned = np.rot90(stored, k=-1) if orientation == 6 else stored
        assert np.array_equal(from_path, turned)
    label_path = segmenter(path)
    with Image.open(path) as img:
        label_pil = segmenter(img)
    assert label_path.shape == label_pil.shape == shape
    assert torch.equal(label_path, label_pil)
