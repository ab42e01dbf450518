"""predict writes only where it wrote before, only over its own files, readable by others.

Issue 13, points 4 and 5: the output folder's rules (``fashionseg/predict_output.py``),
resuming from its record, photos with the same stem, input problems, the files' mode under
the user's umask, and outputs at an EXIF-rotated photo's displayed size.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import call_main, one_line_error_in_process, run_in_process, tree_digest
from PIL import Image

from fashionseg.cli import UsageError
from fashionseg.model.module import SegmentationModule
from fashionseg.predict import PredictSummary, check_request, predict_files
from fashionseg.predict_output import MANIFEST

PREDICT = "fashionseg.predict"
SUFFIXES = ".jpg, .jpeg, .png, .bmp, .webp, .tif, .tiff"


def photos(folder: Path, *names: str, size: tuple[int, int] = (8, 6)) -> Path:
    """Small photos called ``names`` in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", size, (40 * i, 90, 150)).save(folder / name)
    return folder


@pytest.fixture(scope="module")
def module(untrained_ckpt: Path) -> SegmentationModule:
    from fashionseg.model.checkpoint import load_module

    return load_module(untrained_ckpt)


def predict(
    module: SegmentationModule, files: Iterable[Path], out: Path, **kwargs: Any
) -> PredictSummary:
    """predict_files on ``files`` (sorted), without a progress bar."""
    return predict_files(module, sorted(files), out, progress=False, **kwargs)


# -- refused before any work: output vs input, foreign files, name clashes (CLI) --------


def test_output_equal_to_input_is_refused_and_nothing_changes(
    tmp_path: Path, untrained_ckpt: Path
) -> None:
    folder = photos(tmp_path / "photos", "x.png", "y.jpg")
    (folder / "notes.txt").write_text("not a photo: no warning about it before the error")
    before = tree_digest(folder)
    args = [f"ckpt={untrained_ckpt}", f"input={folder}", f"output={folder}"]
    proc = call_main(PREDICT, *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {folder}: the output folder is the input; choose another folder"
    ]
    assert tree_digest(folder) == before


def refused(input_path: Path, output: Path | str) -> str:
    """The message of the UsageError that predict's model-free checks raise."""
    with pytest.raises(UsageError) as err:
        check_request(input_path, output)
    return str(err.value)


def test_output_through_a_symlink_to_the_input_is_refused(tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", "x.png")
    (tmp_path / "link").symlink_to(folder, target_is_directory=True)
    message = refused(folder, tmp_path / "link")
    assert message == f"{tmp_path / 'link'}: the output folder is the input; choose another folder"


def test_output_inside_the_input_is_refused(tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", "x.png")
    out = folder / "pred"
    assert refused(folder, out) == (
        f"{out}: the output folder is inside the input folder {folder}; choose a folder outside it"
    )


@pytest.mark.parametrize("single_file", [False, True])
def test_output_containing_the_input_is_refused(tmp_path: Path, single_file: bool) -> None:
    folder = photos(tmp_path / "work" / "photos", "x.png")
    inp = folder / "x.png" if single_file else folder
    out = tmp_path / "work"
    assert refused(inp, out) == (
        f"{out}: the output folder contains the input {inp}; choose a new or empty folder"
    )


def test_a_datasets_mask_folder_is_refused_even_with_overwrite(
    tmp_path: Path, untrained_ckpt: Path, make_tiny_dataset: Callable[..., Path]
) -> None:
    data = make_tiny_dataset(tmp_path / "data")  # masks 000.png .. 005.png
    folder = photos(tmp_path / "photos", "000.jpg", "001.jpg")
    before = tree_digest(data)
    out = data / "person"
    last = one_line_error_in_process(
        PREDICT,
        f"ckpt={untrained_ckpt}",
        f"input={folder}",
        f"output={out}",
        "overwrite=true",
        cwd=tmp_path,
    )
    assert last == (
        f"error: {out}: the output folder holds files predict did not write "
        "(000.png, 001.png, 002.png and 3 more); choose a new or empty folder"
    )
    assert tree_digest(data) == before


def test_a_folder_of_photos_is_refused(module: SegmentationModule, tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", "x.jpg")
    out = photos(tmp_path / "album", "x.png", "y.jpg")  # the user's photos: x.png is x.jpg's name
    before = tree_digest(out)
    with pytest.raises(UsageError) as err:
        predict(module, folder.iterdir(), out)
    assert str(err.value) == (
        f"{out}: the output folder holds files predict did not write (x.png, y.jpg); "
        "choose a new or empty folder"
    )
    assert tree_digest(out) == before


def test_two_photos_with_the_same_stem_are_an_error_naming_both(tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", "a.jpg", "a.png", "b.jpg")
    out = tmp_path / "out"
    assert refused(folder, out) == (
        f"{folder / 'a.jpg'}, {folder / 'a.png'}: two photos with the same name 'a' "
        "would write the same outputs (a.png, a_overlay.jpg); rename one, or predict them "
        "into separate output folders"
    )


def test_stems_that_differ_only_in_case_clash_too(
    module: SegmentationModule, tmp_path: Path
) -> None:
    folder = photos(tmp_path / "photos", "Look.jpg", "look.png")
    with pytest.raises(UsageError, match="two photos with the same name 'look'"):
        predict(module, folder.iterdir(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["missing", "empty", "no photos", "file not a photo"])
def test_input_with_nothing_to_predict_is_refused(tmp_path: Path, case: str) -> None:
    folder = tmp_path / "in"
    inp = folder / "notes.txt" if case == "file not a photo" else folder
    if case != "missing":
        folder.mkdir()
    if case in ("no photos", "file not a photo"):
        (folder / "notes.txt").write_text("x")
        (folder / "sub").mkdir()
    assert (
        refused(inp, tmp_path / "out")
        == {
            "missing": f"{inp}: no such file or folder",
            "empty": f"{inp}: the input folder is empty",
            "no photos": f"{inp}: no photos in the input folder (1 other file; subfolders, "
            f"not searched: sub); predict reads {SUFFIXES} directly inside it",
            "file not a photo": f"{inp}: not a photo (suffix '.txt'; predict reads {SUFFIXES})",
        }[case]
    )


def test_output_that_is_a_file_is_refused(module: SegmentationModule, tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", "x.jpg")
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    with pytest.raises(UsageError) as err:
        predict(module, folder.iterdir(), out)
    assert str(err.value) == f"{out}: the output is not a folder"
    assert out.read_bytes() == b"keep me"


# -- resuming, overwriting, the record ------------------------------------------------


def test_single_file_input_still_works(tmp_path: Path, untrained_ckpt: Path) -> None:
    photo = photos(tmp_path / "photos", "x.jpg", size=(10, 7)) / "x.jpg"
    out = tmp_path / "out"
    args = [f"ckpt={untrained_ckpt}", f"input={photo}", f"output={out}"]
    proc = run_in_process(PREDICT, *args, cwd=tmp_path)
    assert "1 predicted, 0 already done" in proc.stdout
    assert Image.open(out / "x.png").size == (10, 7)
    header = json.loads((out / MANIFEST).read_text().splitlines()[0])
    model = header.pop("model")  # the weights' and settings' sha256 (issue 27, item 6)
    assert len(model) == 64 and int(model, 16) >= 0
    assert header == {
        "fashionseg_predict": 1,
        "ckpt": str(untrained_ckpt.resolve()),
        "task": "clothing",
        "threshold": 0.5,
    }


def test_rerun_redoes_only_unfinished_photos_and_overwrite_only_its_own_files(
    module: SegmentationModule,
    tmp_path: Path,
) -> None:
    folder = photos(tmp_path / "photos", "a.jpg", "b.jpg", "c.png")
    out = tmp_path / "out"
    assert len(predict(module, folder.iterdir(), out).written) == 3
    (out / "b_overlay.jpg").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    summary = predict(module, folder.iterdir(), out)
    assert summary.written == [str(folder / "b.jpg")]
    assert len(summary.skipped_existing) == 2
    for name in ("a.png", "a_overlay.jpg", "c.png", "c_overlay.jpg"):
        assert (out / name).stat().st_mtime_ns == stamps[name], name
    lines = (out / MANIFEST).read_text().splitlines()
    assert len(lines) == 1 + 6  # the header and one line per output file, no repeats

    assert len(predict(module, folder.iterdir(), out, overwrite=True).written) == 3
    assert sorted((out / MANIFEST).read_text().splitlines()) == sorted(lines)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match=r"holds files predict did not write \(notes.txt\)"):
        predict(module, folder.iterdir(), out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_outputs_of_another_model_are_replaced_only_with_overwrite(
    module: SegmentationModule,
    tmp_path: Path,
) -> None:
    folder = photos(tmp_path / "photos", "a.jpg")
    out = tmp_path / "out"
    first = {"ckpt": "/runs/1/last.ckpt", "task": "clothing", "threshold": 0.5}
    second = {"ckpt": "/runs/2/last.ckpt", "task": "clothing", "threshold": 0.5}
    predict(module, folder.iterdir(), out, source=first)
    before = tree_digest(out)
    with pytest.raises(UsageError) as err:
        predict(module, folder.iterdir(), out, source=second)
    assert str(err.value) == (
        f"{out}: holds predictions of another model (checkpoint /runs/1/last.ckpt, task "
        "clothing, threshold 0.5; this run: checkpoint /runs/2/last.ckpt, task clothing, "
        "threshold 0.5); pass overwrite=true to replace them, or choose another output folder"
    )
    assert tree_digest(out) == before
    assert predict(module, folder.iterdir(), out, source=second, overwrite=True).written


def test_an_output_made_from_another_photo_of_that_name_is_not_already_done(
    module: SegmentationModule,
    tmp_path: Path,
) -> None:
    first = photos(tmp_path / "day1", "x.jpg")
    second = photos(tmp_path / "day2", "x.jpg", "y.jpg")
    out = tmp_path / "out"
    predict(module, first.iterdir(), out)
    before = tree_digest(out)
    with pytest.raises(UsageError) as err:
        predict(module, second.iterdir(), out)
    assert str(err.value) == (
        f"{out / 'x.png'}: was written for the photo {(first / 'x.jpg').resolve()}, not "
        f"{second / 'x.jpg'}; pass overwrite=true to replace it, or choose another output folder"
    )
    assert tree_digest(out) == before
    assert len(predict(module, second.iterdir(), out, overwrite=True).written) == 2


def test_a_cut_off_record_line_and_leftover_temporary_files_are_cleaned_up(
    module: SegmentationModule,
    tmp_path: Path,
) -> None:
    folder = photos(tmp_path / "photos", "a.jpg", "b.jpg")
    out = tmp_path / "out"
    predict(module, [folder / "a.jpg"], out)
    # what a kill leaves: b's map claimed and written, its overlay claimed, half-written
    # as a temporary file, then a record line cut off mid-write
    with (out / MANIFEST).open("a") as log:
        log.write(json.dumps({"file": "b.png", "photo": str(folder / "b.jpg")}) + "\n")
        log.write(json.dumps({"file": "b_overlay.jpg", "photo": str(folder / "b.jpg")}) + "\n")
        log.write('{"file": "c.pn')
    Image.new("P", (8, 6)).save(out / "b.png")
    (out / ".b_overlay.jpg.k2j4.tmp.jpg").write_bytes(b"\xff\xd8half")
    summary = predict(module, folder.iterdir(), out)
    assert summary.written == [str(folder / "b.jpg")]
    assert sorted(p.name for p in out.iterdir()) == [
        MANIFEST,
        "a.png",
        "a_overlay.jpg",
        "b.png",
        "b_overlay.jpg",
    ]
    records = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    assert [r.get("file") for r in records[1:]] == [
        "a.png",
        "a_overlay.jpg",
        "b.png",
        "b_overlay.jpg",
    ]


def test_a_file_name_that_is_not_utf8_is_recorded_and_resumed(
    module: SegmentationModule, tmp_path: Path
) -> None:
    name = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes on disk: a lone surrogate in Python
    folder = photos(tmp_path / "photos", name)
    out = tmp_path / "out"
    assert len(predict(module, folder.iterdir(), out).written) == 1
    assert os.fsencode(out / Path(name).stem).endswith(b"caf\xe9")
    assert (out / f"{Path(name).stem}.png").is_file()
    assert len(predict(module, folder.iterdir(), out).skipped_existing) == 1


def test_a_full_disk_is_a_one_line_error_and_the_rerun_goes_on(
    module: SegmentationModule, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fashionseg.predict_output

    folder = photos(tmp_path / "photos", "a.jpg", "b.jpg")
    out = tmp_path / "out"
    real = fashionseg.predict_output.save_label_png

    def full_at_b(path: Path, *args: Any) -> Path:
        if path.name == "b.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args)

    monkeypatch.setattr(fashionseg.predict_output, "save_label_png", full_at_b)
    with pytest.raises(UsageError) as err:
        predict(module, folder.iterdir(), out)
    assert str(err.value) == (
        f"{out}: cannot write the outputs of {folder / 'b.jpg'} (No space left on device); "
        "the photos done so far are kept, run again to go on"
    )
    monkeypatch.setattr(fashionseg.predict_output, "save_label_png", real)
    summary = predict(module, folder.iterdir(), out)
    assert (summary.written, summary.skipped_existing) == (
        [str(folder / "b.jpg")],
        [str(folder / "a.jpg")],
    )


def test_an_unreadable_record_is_refused(module: SegmentationModule, tmp_path: Path) -> None:
    folder = photos(tmp_path / "photos", "a.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text("this is not json\n")
    before = tree_digest(out)
    with pytest.raises(UsageError) as err:
        predict(module, folder.iterdir(), out)
    assert str(err.value) == (
        f"{out / MANIFEST}: not a record predict can read, so it cannot tell which files "
        "here it wrote; choose a new or empty output folder"
    )
    assert tree_digest(out) == before


def test_a_record_naming_files_outside_the_folder_does_not_make_them_ours(
    module: SegmentationModule,
    tmp_path: Path,
) -> None:
    folder = photos(tmp_path / "photos", "a.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"user data")
    header = {"fashionseg_predict": 1, "ckpt": None, "task": "clothing", "threshold": 0.5}
    lines = [header, {"file": "../a.png", "photo": "x"}, {"file": ".hidden", "photo": "x"}]
    (out / MANIFEST).write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(UsageError, match=r"did not write \(a.png\)"):
        predict(module, folder.iterdir(), out)
    assert (out / "a.png").read_bytes() == b"user data"


def test_training_still_writes_its_example_predictions(
    module: SegmentationModule,
    tmp_path: Path,
    make_tiny_dataset: Callable[..., Path],
) -> None:
    from fashionseg.train_outputs import predict_examples

    data = make_tiny_dataset(tmp_path / "data")
    datamodule = SimpleNamespace(root=data, split_stems={"test": ["003", "001", "004"]})
    out = tmp_path / "run" / "predictions"
    predict_examples(module, datamodule, out, 2)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "001.png",
        "001_overlay.jpg",
        "003.png",
        "003_overlay.jpg",
    ]


# -- the files' mode follows the umask; outputs at the displayed size ----------------


def write_everything(module: SegmentationModule, photo: Path, out: Path) -> None:
    """predict's outputs and a run's files (reports, metrics, label map, confusion matrix)."""
    import numpy as np
    import torch

    from fashionseg.files import save_label_png, write_json, write_text
    from fashionseg.reporting.run_results import save_confusion_png
    from fashionseg.tasks import get_task

    predict(module, [photo], out / "pred")
    run = out / "run"
    write_text(run / "results.md", "x")
    write_json(run / "metrics.json", {"miou": 0.5})
    save_label_png(run / "map.png", np.zeros((4, 4), np.uint8), get_task("person"))
    save_confusion_png(torch.eye(2), ["background", "person"], run / "confusion_matrix.png")


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_honour_the_umask(
    module: SegmentationModule,
    tmp_path: Path,
    umask: int,
    mode: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fashionseg.files

    photo = photos(tmp_path / "photos", "a.jpg") / "a.jpg"
    # where no /proc says the umask, it is read once: as a process starting with this one
    monkeypatch.setattr(fashionseg.files, "_fallback_umask", None)
    old = os.umask(umask)  # set here, in this process, and put back whatever happens
    try:
        write_everything(module, photo, tmp_path)
    finally:
        os.umask(old)
    written = [*(tmp_path / "pred").iterdir(), *(tmp_path / "run").iterdir()]
    names = {MANIFEST, "a.png", "a_overlay.jpg", "metrics.json", "results.md", "map.png"}
    assert {p.name for p in written} == names | {"confusion_matrix.png"}
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == mode, f"{path.name}: {oct(mode)}"


def test_the_umask_is_read_without_changing_it() -> None:
    from fashionseg.files import current_umask, new_file_mode

    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        assert new_file_mode() == 0o640
        assert current_umask() == 0o027
    finally:
        os.umask(old)


def test_exif_rotated_photo_gives_outputs_at_its_displayed_size(
    module: SegmentationModule,
    tmp_path: Path,
) -> None:
    """Stored 6x4 with Orientation=6 (rotate 90 degrees clockwise to show): shown 4x6.

    Passes once ``fashionseg.data.io.read_image`` applies the EXIF orientation (issue 13,
    point 1, another part of the work).
    """
    folder = tmp_path / "photos"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (6, 4), (200, 30, 30)).save(folder / "phone.jpg", exif=exif.tobytes())
    out = tmp_path / "out"
    predict(module, folder.iterdir(), out)
    assert Image.open(out / "phone.png").size == (4, 6)
    assert Image.open(out / "phone_overlay.jpg").size == (4, 6)


def test_a_model_retrained_into_the_same_path_is_another_model(
    module: SegmentationModule, tmp_path: Path
) -> None:
    # issue 27, item 6: same checkpoint path, task and threshold, other weights
    import torch

    from fashionseg.predict_engine import model_source

    folder = photos(tmp_path / "photos", "a.jpg")
    out = tmp_path / "out"
    ckpt = tmp_path / "last.ckpt"
    first = model_source(module, ckpt)
    assert first == model_source(module, ckpt)  # the same model: the same record
    predict(module, folder.iterdir(), out, source=first)
    retrained = SegmentationModule(**dict(module.hparams))
    retrained.load_state_dict(module.state_dict())
    with torch.no_grad():
        next(retrained.net.parameters()).add_(0.01)
    second = model_source(retrained, ckpt)
    assert {k: v for k, v in second.items() if k != "model"} == {
        k: v for k, v in first.items() if k != "model"
    }
    before = tree_digest(out)
    with pytest.raises(UsageError, match="holds predictions of another model"):
        predict(retrained, folder.iterdir(), out, source=second)
    assert tree_digest(out) == before
    assert predict(retrained, folder.iterdir(), out, source=second, overwrite=True).written


def test_a_later_run_with_a_name_differing_in_case_does_not_replace_it(
    module: SegmentationModule, tmp_path: Path
) -> None:
    # issue 27, item 6: on macOS or Windows img.png would overwrite IMG.png
    first = photos(tmp_path / "day1", "IMG.jpg")
    second = photos(tmp_path / "day2", "img.jpg")
    out = tmp_path / "out"
    predict(module, first.iterdir(), out)
    before = tree_digest(out)
    with pytest.raises(UsageError) as err:
        predict(module, second.iterdir(), out)
    assert str(err.value).startswith(
        f"{out / 'IMG.png'}: was written for the photo {(first / 'IMG.jpg').resolve()}, not "
        f"{second / 'img.jpg'}"
    )
    assert tree_digest(out) == before


def test_the_model_fingerprint_leaves_out_the_saved_family(module: SegmentationModule) -> None:
    # the family (saved in hparams since checkpoints name their class) follows from the
    # weights: an output folder made before it was saved still belongs to the same model
    from fashionseg.predict_engine import model_fingerprint

    with_family = model_fingerprint(module)
    family = module.hparams.pop("family")
    try:
        assert model_fingerprint(module) == with_family
    finally:
        module.hparams["family"] = family
