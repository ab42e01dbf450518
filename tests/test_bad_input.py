"""The table "bad input and what happens" of docs/data.md, row by row.

Every row of the table has an id (first column); :data:`CASES` holds one case per id that
builds the situation in a temporary folder and runs the code a user would run. For a row
whose last column is a message (it starts with a backtick), the case returns the message
the code gave and the values of the row's ``<placeholders>``, and the test checks it
against the table's text: the table is the expected output, so the two cannot drift. A
row that describes a behaviour has a case that asserts it. Rows backed by a test elsewhere
are in :data:`CITED`. Adding a row without a case, or a case without a row, fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, write_tiny_dataset
from helpers import one_line_error, save_untrained_checkpoint, tree_digest
from PIL import Image

from fashionseg.cli import UsageError
from fashionseg.data.io import DataError, MaskRules, check_dataset, read_image, read_mask
from fashionseg.model.checkpoint import CheckpointError, load_module
from fashionseg.model.module import SegmentationModule
from fashionseg.predict import (
    PredictSummary,
    check_request,
    device_setting,
    predict_files,
    read_settings,
)
from fashionseg.predict_output import MANIFEST
from fashionseg.tasks import get_task

TABLE_TITLE = "## Bad input and what happens"
Outcome = tuple[str, dict[str, Any]] | None  # (message, placeholder values) or a behaviour
CASES: dict[str, Callable[[Path, pytest.FixtureRequest], Outcome]] = {}

# rows backed by tests in other files: id -> tests/file.py::test_name
CITED = {
    "predict-killed": "tests/test_cli.py::test_predict_killed_midway_then_rerun_completes_every_output",
    "predict-disk-full": "tests/test_predict_safety.py::"
    "test_a_full_disk_is_a_one_line_error_and_the_rerun_goes_on",
}


def case(row_id: str) -> Callable:
    def register(fn: Callable[[Path, pytest.FixtureRequest], Outcome]) -> Callable:
        assert row_id not in CASES, row_id
        CASES[row_id] = fn
        return fn

    return register


def readme_rows() -> dict[str, str]:
    """``{row id: what happens}`` from docs/data.md's table."""
    lines = (REPO_ROOT / "docs" / "data.md").read_text().splitlines()
    start = lines.index(TABLE_TITLE)
    rows: dict[str, str] = {}
    table = False
    for line in lines[start + 1 :]:
        if not line.startswith("|"):
            if table:
                break
            continue
        table = True
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if cells[0].startswith("`"):
            assert len(cells) == 3, line
            rows[cells[0].strip("`")] = cells[2]
    return rows


def template_regex(cell: str, values: dict[str, Any]) -> str:
    """The README message (first backticked span of ``cell``) as a regex: ``<name>`` is
    ``values[name]``, ``…`` any text."""
    template = re.match(r"`([^`]+)`", cell)
    assert template, f"a message row must start with the message in backticks: {cell}"
    parts = re.split(r"(<[a-z_]+>|…)", template.group(1))
    out = []
    for part in parts:
        if part == "…":
            out.append(".+?")
        elif re.fullmatch(r"<[a-z_]+>", part):
            out.append(re.escape(str(values[part[1:-1]])))
        else:
            out.append(re.escape(part))
    return "".join(out)


def message_of(fn: Callable[[], Any], *errors: type[Exception]) -> str:
    """The message of the user error ``fn()`` raises."""
    with pytest.raises(errors or (DataError, UsageError, CheckpointError)) as err:
        fn()
    return str(err.value)


# -- shared set-ups -----------------------------------------------------------------


@pytest.fixture(scope="module")
def untrained(untrained_ckpt: Path) -> SegmentationModule:
    return load_module(untrained_ckpt)


def dataset(tmp_path: Path, num_images: int = 1) -> Path:
    """A tiny dataset (stems 000..; 8x6 PNG photos, person/ and clothes/ masks)."""
    return write_tiny_dataset(tmp_path / "data", num_images=num_images)


def problem(root: Path, task: str = "clothing", rules: MaskRules | None = None) -> str:
    """The one problem ``inspect``/train find in ``root``."""
    problems = check_dataset(root, task, rules)
    assert len(problems) == 1, problems
    return problems[0]


def photos(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (8, 6), (90, 60, 30)).save(folder / name)
    return folder


def predict(
    request: pytest.FixtureRequest, folder: Path, out: Path, **kwargs: Any
) -> PredictSummary:
    module = request.getfixturevalue("untrained")
    return predict_files(module, sorted(folder.iterdir()), out, progress=False, **kwargs)


# -- photos -----------------------------------------------------------------------


def _replace_photo(tmp_path: Path, name: str, data: bytes | None = None) -> tuple[Path, Path]:
    root = dataset(tmp_path)
    (root / "images" / "000.png").unlink()
    photo = root / "images" / name
    if data is not None:
        photo.write_bytes(data)
    return root, photo


@case("photo-empty")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root, photo = _replace_photo(tmp_path, "000.jpg", b"")
    return problem(root), {"photo": photo}


@case("photo-not-an-image")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root, photo = _replace_photo(tmp_path, "000.jpg", b"<html>not a photo</html>")
    return problem(root), {"photo": photo}


@case("photo-truncated")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root, photo = _replace_photo(tmp_path, "000.jpg")
    noise = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(noise).save(photo, quality=95)
    data = photo.read_bytes()
    photo.write_bytes(data[: len(data) // 2])
    return problem(root), {"photo": photo}


@case("photo-unsupported-format")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root, photo = _replace_photo(tmp_path, "000.gif")
    Image.new("P", (8, 6)).save(photo)
    return problem(root), {"photo": photo}


@case("photo-broken-link")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root, photo = _replace_photo(tmp_path, "000.png")
    photo.symlink_to(tmp_path / "gone.png")
    return problem(root), {"photo": photo, "target": tmp_path / "gone.png"}


@case("photo-float-nan")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root, photo = _replace_photo(tmp_path, "000.tif")
    values = np.full((6, 8), 0.5, dtype=np.float32)
    values[0, 0] = np.nan
    Image.fromarray(values, mode="F").save(photo)
    return problem(root), {"photo": photo}


@case("photo-exif-rotated")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root, photo = _replace_photo(tmp_path, "000.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 6 wide x 4 high, shown rotated: 4 x 6
    Image.new("RGB", (6, 4), (200, 30, 30)).save(photo, exif=exif.tobytes())
    assert tuple(read_image(photo).shape) == (3, 6, 4)
    Image.fromarray(np.zeros((6, 4), np.uint8)).save(root / "clothes" / "000.png")
    assert check_dataset(root, "clothing") == []  # a 4x6 mask fits
    return None


@case("photo-16-bit")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "scan.png")
    assert Image.open(tmp_path / "scan.png").mode.startswith("I")
    assert read_image(tmp_path / "scan.png")[:, 0].tolist() == [[0, 128, 255]] * 3
    return None


@case("photo-cmyk")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "print.jpg")
    red, green, blue = read_image(tmp_path / "print.jpg")[:, 0, 0].tolist()
    assert red > 200 and green < 60 and blue < 60
    return None


@case("photo-rgba")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    Image.new("RGBA", (4, 4), (10, 20, 30, 0)).save(tmp_path / "cutout.png")
    assert read_image(tmp_path / "cutout.png")[:, 0, 0].tolist() == [10, 20, 30]
    return None


# -- masks ------------------------------------------------------------------------


def _mask(tmp_path: Path, task: str = "clothing") -> tuple[Path, Path]:
    root = dataset(tmp_path)
    return root, root / get_task(task).mask_dir / "000.png"


@case("mask-id-out-of-range")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root, mask = _mask(tmp_path)
    ids = np.zeros((6, 8), np.uint8)
    ids[2, 3] = 9
    Image.fromarray(ids).save(mask)
    return problem(root), {"mask": mask}


@case("mask-unknown-colour")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root, mask = _mask(tmp_path)
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[1, 2] = (1, 2, 3)
    Image.fromarray(rgb).save(mask)
    return problem(root), {"mask": mask}


@case("mask-size-mismatch")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root, mask = _mask(tmp_path)
    Image.fromarray(np.zeros((6, 10), np.uint8)).save(mask)
    return problem(root), {"mask": mask}


@case("mask-jpeg")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root, mask = _mask(tmp_path)
    mask.unlink()
    jpeg = mask.with_suffix(".jpg")
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(jpeg)
    problems = check_dataset(root, "clothing")
    return next(p for p in problems if p.startswith(str(jpeg))), {"mask": jpeg}


@case("mask-binary-0-255")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root, mask = _mask(tmp_path, "person")
    values = np.zeros((6, 8), np.uint8)
    values[2:4, 2:5] = 255
    Image.fromarray(values).save(mask)
    return problem(root, "person"), {"mask": mask}


@case("mask-clothing-0-255")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root, mask = _mask(tmp_path)
    values = np.zeros((6, 8), np.uint8)
    values[1:3] = 255
    Image.fromarray(values).save(mask)
    return problem(root), {"mask": mask}


def _palette_mask(path: Path, ids: np.ndarray, order: list[int], colours: list) -> None:
    """A palette PNG whose index ``i`` carries ``colours[order[i]]``."""
    index_of = {cls: i for i, cls in enumerate(order)}
    img = Image.fromarray(np.vectorize(index_of.get)(ids).astype(np.uint8), mode="P")
    flat = [v for i in range(256) for v in (colours[order[i]] if i < len(order) else (0, 0, 0))]
    img.putpalette(flat)
    img.save(path)


@case("mask-palette-moved-colours")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    task = get_task("clothing")
    ids = np.array([[0, 1, 2, 3], [4, 5, 6, 0]], dtype=np.uint8)
    _palette_mask(tmp_path / "m.png", ids, [0, 6, 5, 4, 3, 2, 1], list(task.colors))
    assert not np.array_equal(np.array(Image.open(tmp_path / "m.png")), ids)
    assert np.array_equal(read_mask(tmp_path / "m.png", task), ids)
    return None


@case("mask-palette-ambiguous")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root, mask = _mask(tmp_path)
    ids = np.zeros((6, 8), np.uint8)
    ids[1, 1], ids[2, 2] = 1, 2
    colours = [*get_task("clothing").colors[:2], (7, 7, 7)]
    _palette_mask(mask, ids, [0, 2, 1], colours)  # index 1: hair's colour; index 2: (7,7,7)
    return problem(root), {"mask": mask}


# -- dataset folders ------------------------------------------------------------


@case("data-root-missing")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    return problem(tmp_path / "nope"), {"root": tmp_path / "nope"}


@case("data-no-images-folder")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root = dataset(tmp_path)
    for photo in (root / "images").iterdir():
        photo.unlink()
    (root / "images").rmdir()
    return problem(root), {"root": root}


@case("data-no-photos")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root = dataset(tmp_path)
    (root / "images" / "000.png").unlink()
    return problem(root), {"root": root}


@case("data-no-mask-folder")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root = dataset(tmp_path)
    for mask in (root / "clothes").iterdir():
        mask.unlink()
    (root / "clothes").rmdir()
    return problem(root), {"root": root}


@case("data-photo-without-mask")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root = dataset(tmp_path, num_images=2)
    (root / "clothes" / "001.png").unlink()
    return problem(root), {"root": root}


@case("data-mask-without-photo")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root = dataset(tmp_path, num_images=2)
    (root / "images" / "001.png").unlink()
    return problem(root), {"root": root}


@case("data-same-stem")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root = dataset(tmp_path)
    Image.new("RGB", (8, 6)).save(root / "images" / "000.jpg")
    return problem(root), {"root": root}


# -- settings -------------------------------------------------------------------


def _command_line(cli: str, *args: str) -> str:
    """The one-line error a CLI prints for these command-line arguments (before any run)."""
    from fashionseg.cli import check_command_line

    return message_of(lambda: check_command_line(list(args), cli, cli), UsageError)


SETTINGS = {  # row id -> the command line
    "setting-batch-size-0": ("train", "data.root=/d", "data.batch_size=0"),
    "setting-negative-lr": ("train", "data.root=/d", "optimizer.lr=-0.01"),
    "setting-max-epochs-0": ("train", "data.root=/d", "trainer.max_epochs=0"),
    "setting-split-ratios": ("train", "data.root=/d", "data.split=[0.5,0.5,0.5]"),
    "setting-threshold-out-of-range": ("evaluate", "ckpt=/c", "data.root=/d", "threshold=2"),
    "setting-thresholds-not-numbers": (
        "evaluate",
        "ckpt=/c",
        "data.root=/d",
        "thresholds=[0.3,abc]",
    ),
    "setting-unknown-key": ("train", "data.root=/d", "data.bacth_size=2"),
    "setting-unknown-option": ("train", "data.root=/d", "model=resnet"),
    "setting-unquoted-path": ("train", "data.root=/my photos (2024)"),
    "setting-evaluate-missing-ckpt": ("evaluate", "data.root=/d"),
}
for _row, (_cli, *_args) in SETTINGS.items():
    case(_row)(lambda tmp_path, request, cli=_cli, args=_args: (_command_line(cli, *args), {}))


@case("setting-ignore-index-is-a-class")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    return message_of(lambda: MaskRules(ignore_index=3).check("clothing")), {}


@case("setting-binary-255-clothing")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    return message_of(lambda: MaskRules(binary_255=True).check("clothing")), {}


@case("setting-evaluate-split")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    ckpt = request.getfixturevalue("untrained_ckpt")
    last = one_line_error(
        "fashionseg.evaluate",
        f"ckpt={ckpt}",
        f"data.root={dataset(tmp_path)}",
        "data.split=tset",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=tmp_path,
    )
    return last.removeprefix("error: "), {}


# -- checkpoints ------------------------------------------------------------------


@case("ckpt-missing")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    ckpt = tmp_path / "last.ckpt"
    return message_of(lambda: load_module(ckpt)), {"ckpt": ckpt}


@case("ckpt-not-a-checkpoint")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    ckpt = tmp_path / "notes.ckpt"
    ckpt.write_text("these are my notes")
    return message_of(lambda: load_module(ckpt)), {"ckpt": ckpt}


@case("ckpt-other-weights-file")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    ckpt = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2)}, ckpt)
    return message_of(lambda: load_module(ckpt)), {"ckpt": ckpt}


class _Payload:
    def __reduce__(self) -> tuple:
        return (print, ("this would run",))


@case("ckpt-pickled-object")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"task": _Payload()}}, ckpt)
    return message_of(lambda: load_module(ckpt)), {"ckpt": ckpt}


@case("ckpt-other-task")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    ckpt = request.getfixturevalue("untrained_ckpt")
    return message_of(lambda: load_module(ckpt, task="person")), {"ckpt": ckpt}


@case("ckpt-weights-do-not-fit")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    ckpt = save_untrained_checkpoint(tmp_path / "forged.ckpt")
    content = torch.load(ckpt, weights_only=True)
    content["hyper_parameters"]["task"] = "person"  # clothing weights, person claim
    torch.save(content, ckpt)
    return message_of(lambda: load_module(ckpt)), {"ckpt": ckpt}


# -- predict: input and output ------------------------------------------------------


def _predict_settings(**values: Any) -> Any:
    """predict's configuration as Hydra composes it (conf/predict.yaml), with ``values``."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO_ROOT / "conf" / "predict.yaml")
    cfg.pop("defaults")
    return OmegaConf.merge(cfg, values)


@case("predict-output-not-given")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    cfg = _predict_settings(ckpt="last.ckpt", input="photos")
    return message_of(lambda: read_settings(cfg)), {}


@case("predict-output-null")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    cfg = _predict_settings(ckpt="last.ckpt", input="photos", output=None)
    return message_of(lambda: read_settings(cfg)), {}


@case("predict-overwrite-not-a-bool")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    cfg = _predict_settings(ckpt="last.ckpt", input="photos", output="out", overwrite="no")
    return message_of(lambda: read_settings(cfg)), {}


@case("predict-device-unusable")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    return message_of(lambda: device_setting("gpu")), {}


@case("predict-input-missing")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    inp = tmp_path / "photoz"
    return message_of(lambda: check_request(inp, tmp_path / "out")), {"input": inp}


@case("predict-input-empty")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    inp = tmp_path / "photos"
    inp.mkdir()
    return message_of(lambda: check_request(inp, tmp_path / "out")), {"input": inp}


@case("predict-input-no-photos")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    inp = tmp_path / "docs"
    inp.mkdir()
    (inp / "a.txt").write_text("x")
    (inp / "b.pdf").write_bytes(b"%PDF")
    return message_of(lambda: check_request(inp, tmp_path / "out")), {"input": inp}


@case("predict-input-dataset-root")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root = dataset(tmp_path)
    return message_of(lambda: check_request(root, tmp_path / "out")), {"input": root}


@case("predict-input-file-not-a-photo")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    inp = tmp_path / "list.csv"
    inp.write_text("a,b\n")
    return message_of(lambda: check_request(inp, tmp_path / "out")), {"input": inp}


@case("predict-other-files-skipped")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    folder = photos(tmp_path / "photos", "a.jpg")
    (folder / "notes.txt").write_text("x")
    (folder / "b.jpg").write_bytes(b"")  # unreadable
    files, others = check_request(folder, tmp_path / "out")
    assert (files, others) == ([folder / "a.jpg", folder / "b.jpg"], [folder / "notes.txt"])
    module = request.getfixturevalue("untrained")
    summary = predict_files(module, files, tmp_path / "out", progress=False)
    assert summary.written == [str(folder / "a.jpg")]
    assert summary.skipped_invalid == [str(folder / "b.jpg")]
    return None


@case("predict-output-is-input")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    folder = photos(tmp_path / "photos", "a.png")
    return message_of(lambda: check_request(folder, folder)), {"output": folder}


@case("predict-output-inside-input")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    folder = photos(tmp_path / "photos", "a.png")
    out = folder / "pred"
    return message_of(lambda: check_request(folder, out)), {"output": out, "input": folder}


@case("predict-output-contains-input")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    folder = photos(tmp_path / "photos", "a.png")
    return message_of(lambda: check_request(folder, tmp_path)), {
        "output": tmp_path,
        "input": folder,
    }


@case("predict-output-holds-other-files")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    root = dataset(tmp_path, num_images=4)
    folder = photos(tmp_path / "photos", "000.jpg")
    out = root / "person"
    before = tree_digest(root)
    message = message_of(lambda: predict(request, folder, out, overwrite=True))
    assert tree_digest(root) == before
    return message, {"output": out}


@case("predict-output-is-a-file")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    folder = photos(tmp_path / "photos", "a.png")
    out = tmp_path / "out.zip"
    out.write_bytes(b"PK")
    return message_of(lambda: predict(request, folder, out)), {"output": out}


@case("predict-same-stem")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    folder = photos(tmp_path / "photos", "a.jpg", "a.png")
    return message_of(lambda: check_request(folder, tmp_path / "out")), {
        "first": folder / "a.jpg",
        "second": folder / "a.png",
    }


@case("predict-rerun")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    folder = photos(tmp_path / "photos", "a.jpg", "b.jpg")
    out = tmp_path / "out"
    predict(request, folder, out)
    (out / "b_overlay.jpg").unlink()
    summary = predict(request, folder, out)
    assert summary.written == [str(folder / "b.jpg")]
    assert summary.skipped_existing == [str(folder / "a.jpg")]
    return None


@case("predict-other-checkpoint")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    folder = photos(tmp_path / "photos", "a.jpg")
    out = tmp_path / "out"
    first = {"ckpt": "/runs/1/last.ckpt", "task": "clothing", "threshold": 0.5}
    predict(request, folder, out, source=first)
    second = {**first, "ckpt": "/runs/2/last.ckpt"}
    return message_of(lambda: predict(request, folder, out, source=second)), {"output": out}


@case("predict-other-photo-same-name")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    day1 = photos(tmp_path / "day1", "a.jpg")
    day2 = photos(tmp_path / "day2", "a.jpg")
    out = tmp_path / "out"
    predict(request, day1, out)
    return message_of(lambda: predict(request, day2, out)), {
        "output": out,
        "old": (day1 / "a.jpg").resolve(),
        "new": day2 / "a.jpg",
    }


@case("predict-record-unreadable")
def _(tmp_path: Path, request: pytest.FixtureRequest) -> Outcome:
    folder = photos(tmp_path / "photos", "a.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text(json.dumps({"some": "thing"}) + "\n")
    return message_of(lambda: predict(request, folder, out)), {"output": out}


# -- the tests ------------------------------------------------------------------


def test_every_row_has_a_case_and_every_case_a_row() -> None:
    rows = readme_rows()
    assert len(rows) >= 30
    assert set(rows) == set(CASES) | set(CITED)


@pytest.mark.parametrize("row_id", sorted(CASES))
def test_row(row_id: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    cell = readme_rows()[row_id]
    outcome = CASES[row_id](tmp_path, request)
    if outcome is None:
        assert not cell.startswith("`"), f"{row_id}: a behaviour row, but the docs show a message"
        return
    message, values = outcome
    pattern = template_regex(cell, values)
    assert re.fullmatch(pattern, message), f"{row_id}:\n  code:   {message}\n  README: {cell}"


@pytest.mark.parametrize("row_id", sorted(CITED))
def test_cited_rows_name_a_test_that_exists(row_id: str) -> None:
    file, name = CITED[row_id].split("::")
    assert re.search(rf"^def {name}\(", (REPO_ROOT / file).read_text(), re.M), CITED[row_id]
