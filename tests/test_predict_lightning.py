"""predict through Lightning (issue 15): the same files as the one-photo loop, each photo
written once by one process, resumable after a kill, nothing kept beyond the batches in
flight; the command line's settings for it.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import weakref
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from helpers import run
from omegaconf import OmegaConf
from PIL import Image

from fashionseg.cli import UsageError
from fashionseg.model.module import SegmentationModule
from fashionseg.predict import (
    PredictionWriter,
    loader_settings,
    predict_lightning,
    predict_loop,
    trainer_settings,
)
from fashionseg.predict_output import MANIFEST, PredictFolder, outputs_for

# A tiny untrained Mask R-CNN that keeps every detection, its weights drawn anew (He
# normal, seed 1) so that its label maps hold several classes and change with the photo:
# torchvision's initialisation gives nearly the same map for every input, which would make
# "identical" say little. Its mask head is one conv of 16 channels (torchvision's four of
# 256 on 20 detections a photo were 90 % of these tests' CPU).
PAINTING_NET = {
    "arch": "maskrcnn_mobilenet_v3_large_fpn",
    "weights": "none",
    "min_size": 64,
    "max_size": 96,
    "box_score_thresh": 0.0,
    "box_detections_per_img": 20,
    "mask_head_channels": [64],
}


def painting_module() -> SegmentationModule:
    torch.manual_seed(1)
    module = SegmentationModule(task="clothing", net=PAINTING_NET, threshold=0.0).eval()
    with torch.no_grad():
        for param in module.net.parameters():
            if param.ndim > 1:
                param.normal_(0, (2.0 / param[0].numel()) ** 0.5)
    return module


@pytest.fixture(scope="module")
def module() -> SegmentationModule:
    return painting_module()


@pytest.fixture(scope="module")
def painting_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    module = painting_module()
    path = tmp_path_factory.mktemp("ckpt") / "painting.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def random_photos(folder: Path, count: int, sizes: list[tuple[int, int]]) -> list[Path]:
    """``count`` noise photos ``00.jpg``.. cycling through ``sizes`` (width, height)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for i in range(count):
        w, h = sizes[i % len(sizes)]
        path = folder / f"{i:02d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_writer_path_writes_the_same_bytes_as_the_one_photo_loop(
    module: SegmentationModule, tmp_path: Path
) -> None:
    """Mixed sizes in one batch, an unreadable photo among them: same label maps,
    overlays and record, byte for byte."""
    photos = random_photos(tmp_path / "photos", 7, [(40, 30), (36, 48), (40, 30)])
    (tmp_path / "photos" / "07.jpg").write_bytes(b"")  # unreadable: skipped by both
    files = sorted((tmp_path / "photos").iterdir())
    loop = predict_loop(module, files, tmp_path / "loop", progress=False)
    new = predict_lightning(
        module, files, tmp_path / "new", batch_size=3, num_workers=1, progress=False
    )
    assert (new.written, new.skipped_invalid) == (loop.written, loop.skipped_invalid)
    assert new.skipped_invalid == [str(tmp_path / "photos" / "07.jpg")]
    expected = file_bytes(tmp_path / "loop")
    assert file_bytes(tmp_path / "new") == expected
    assert len(expected) == 1 + 2 * len(photos)
    classes = set()
    for photo in photos:
        with Image.open(tmp_path / "new" / f"{photo.stem}.png") as label:
            assert label.size == Image.open(photo).size
            classes |= set(np.unique(np.asarray(label)).tolist())
    assert len(classes) >= 3, classes  # the maps say something: several classes painted
    maps = [np.asarray(Image.open(tmp_path / "new" / f"{p.stem}.png")) for p in photos]
    assert not np.array_equal(maps[0], maps[2])  # and differ between photos of one size


def test_rerun_skips_finished_photos_and_overwrite_redoes_them(
    module: SegmentationModule, tmp_path: Path
) -> None:
    photos = random_photos(tmp_path / "photos", 4, [(32, 24)])
    out = tmp_path / "out"
    first = predict_lightning(module, photos, out, batch_size=2, num_workers=0, progress=False)
    assert len(first.written) == 4
    (out / "02_overlay.jpg").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = predict_lightning(module, photos, out, batch_size=2, num_workers=0, progress=False)
    assert again.written == [str(photos[2])]
    assert again.skipped_existing == [str(p) for i, p in enumerate(photos) if i != 2]
    for name, stamp in stamps.items():
        if not name.startswith("02") and name != MANIFEST:
            assert (out / name).stat().st_mtime_ns == stamp, name
    lines = (out / MANIFEST).read_text().splitlines()
    assert len(lines) == 1 + 8
    redo = predict_lightning(
        module, photos, out, overwrite=True, batch_size=2, num_workers=0, progress=False
    )
    assert len(redo.written) == 4
    assert sorted((out / MANIFEST).read_text().splitlines()) == sorted(lines)


def test_a_full_disk_stops_with_the_one_line_error(
    module: SegmentationModule, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import fashionseg.predict_output

    photos = random_photos(tmp_path / "photos", 3, [(32, 24)])
    out = tmp_path / "out"
    real = fashionseg.predict_output.save_label_png

    def full_at_01(path: Path, *args: Any) -> Path:
        if path.name == "01.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args)

    monkeypatch.setattr(fashionseg.predict_output, "save_label_png", full_at_01)
    with pytest.raises(UsageError) as err:
        predict_lightning(module, photos, out, batch_size=1, num_workers=0, progress=False)
    assert str(err.value) == (
        f"{out}: cannot write the outputs of {photos[1]} (No space left on device); "
        "the photos done so far are kept, run again to go on"
    )
    monkeypatch.setattr(fashionseg.predict_output, "save_label_png", real)
    rerun = predict_lightning(module, photos, out, batch_size=1, num_workers=0, progress=False)
    assert rerun.skipped_existing == [str(photos[0])]
    assert rerun.written == [str(p) for p in photos[1:]]


class MemorySpy(L.Callback):
    """After each batch: weak references to its images and label maps; checks that those
    of batches written a while ago are gone and that the writer's queue is bounded."""

    def __init__(self, writer: PredictionWriter, lag: int) -> None:
        self.writer = writer
        self.lag = lag
        self.refs: list[list[weakref.ref]] = []
        self.most_pending = 0

    def on_predict_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self.most_pending = max(self.most_pending, self.writer.pending)
        self.refs.append([weakref.ref(t) for t in [*outputs, *batch["images"]]])
        old = self.refs[: max(0, batch_idx - self.lag)]
        if any(ref() is not None for refs in old for ref in refs):
            gc.collect()  # garbage in a cycle is not held (a full collection: ~0.3 s here)
        for refs in old:
            assert all(ref() is None for ref in refs), f"batch {batch_idx}: an old photo is held"


def test_no_photo_is_held_beyond_the_batches_in_flight(
    module: SegmentationModule, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fashionseg.predict_engine

    photos = random_photos(tmp_path / "photos", 16, [(32, 24)])
    spies: list[MemorySpy] = []
    real_writer = fashionseg.predict_engine.PredictionWriter

    class SpiedWriter(real_writer):  # type: ignore[misc, valid-type]
        def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
            super().setup(trainer, pl_module, stage)
            spy = MemorySpy(self, lag=3)  # this batch, the one before, one being written
            trainer.callbacks.append(spy)
            spies.append(spy)

    monkeypatch.setattr(fashionseg.predict_engine, "PredictionWriter", SpiedWriter)
    summary = predict_lightning(
        module, photos, tmp_path / "out", batch_size=2, num_workers=0, progress=False,
        max_pending=2,
    )  # fmt: skip
    assert len(summary.written) == 16
    (spy,) = spies
    assert len(spy.refs) == 8
    assert 1 <= spy.most_pending <= 2
    gc.collect()
    assert all(ref() is None for refs in spy.refs for ref in refs)


# a predict run killed with SIGKILL while the writer has photos in flight
class KillAfterTwoBatches(L.Callback):
    """Flushes the writer after batch 1, then SIGKILLs its own process once batch 2 is
    handed to the writer: a process killed from outside, midway, with work in flight."""

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *rest):
        writer = next(c for c in trainer.callbacks if isinstance(c, PredictionWriter))
        if batch_idx == 1:
            writer.flush()  # batches 0 and 1 are on disk
        if batch_idx == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # batch 2 handed to the writer


def killed_midway(module: SegmentationModule, photos: list[Path], out: Path) -> int:
    """Run predict in a child forked from this process (torch, Lightning and the model are
    already here: a fresh interpreter spent ~7 s importing them) and return how it ended:
    the child's signal number, or -1 with its traceback on stderr when it raised.
    Not multiprocessing's Process: its join waits on a pipe that the child's DataLoader
    worker inherits, so it returns only when that orphan notices (~5 s later)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            predict_lightning(module, photos, out, batch_size=2, num_workers=1,
                              progress=False, callbacks=[KillAfterTwoBatches()])  # fmt: skip
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    deadline = time.monotonic() + 300
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError("the forked predict neither finished nor was killed in 300 s")
        time.sleep(0.05)
    status = done[1]
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1


def test_killed_midway_then_rerun_finishes_without_redoing_photos(
    module: SegmentationModule, tmp_path: Path
) -> None:
    photos = random_photos(tmp_path / "photos", 10, [(32, 24), (24, 32)])
    out = tmp_path / "out"
    assert killed_midway(module, photos, out) == signal.SIGKILL
    recorded = PredictFolder.recorded(out)
    finished = [o.photo for o in outputs_for(photos) if recorded.done(o)]
    assert finished[:4] == photos[:4]  # flushed before the kill
    assert set(finished) <= set(photos[:6])  # nothing of batches never reached
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if not p.name.startswith(".")}

    rerun = predict_lightning(module, photos, out, batch_size=2, num_workers=1, progress=False)
    assert rerun.skipped_existing == [str(p) for p in finished]
    assert rerun.written == [str(p) for p in photos if p not in finished]
    for photo in photos:
        for name in (f"{photo.stem}.png", f"{photo.stem}_overlay.jpg"):
            if photo in finished:
                assert (out / name).stat().st_mtime_ns == stamps[name], name
            with Image.open(out / name) as img:
                img.load()  # a truncated file fails here
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [MANIFEST]
    records = [json.loads(x) for x in (out / MANIFEST).read_text().splitlines()]
    assert len(records) == 1 + 2 * len(photos)


class RankSpy(L.Callback):
    """Each process notes the photos of its batches in ``folder/rank<r>.txt``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_predict_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        photos = trainer.predict_dataloaders.dataset.photos
        with open(self.folder / f"rank{trainer.global_rank}.txt", "a") as notes:
            notes.writelines(f"{Path(photos[i]).name}\n" for i in batch["index"])


@pytest.mark.slow
def test_ddp_cpu_writes_each_photo_exactly_once(
    module: SegmentationModule, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = random_photos(tmp_path / "photos", 10, [(32, 24), (24, 32), (40, 30)])
    # Lightning gives each CPU process cpu_count / processes threads unless OMP_NUM_THREADS
    # says otherwise; other thread counts sum in another order and can flip a pixel at a
    # near tie, so the processes get this one's count to compare bytes with the loop here
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
    (tmp_path / "spy").mkdir()
    out = tmp_path / "out"
    hardware = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf/hardware/ddp_cpu.yaml"))
    assert isinstance(hardware, dict) and hardware["devices"] == 2
    summary = predict_lightning(
        module, photos, out, batch_size=2, num_workers=0, progress=False, trainer=hardware,
        callbacks=[RankSpy(tmp_path / "spy")],
    )  # fmt: skip
    assert summary.written == [str(p) for p in photos]
    seen = [(tmp_path / "spy" / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 5  # dealt out, no photo padded in twice
    assert set(seen[0]).isdisjoint(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(p.name for p in photos)
    # one record, one line per file, the per-process records folded in and gone
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [MANIFEST]
    records = [json.loads(x) for x in (out / MANIFEST).read_text().splitlines()]
    assert len(records) == 1 + 20
    names = sorted(f"{p.stem}{s}" for p in photos for s in (".png", "_overlay.jpg"))
    assert sorted(r["file"] for r in records[1:]) == names
    loop = predict_loop(module, photos, tmp_path / "loop", progress=False)
    assert loop.written == summary.written
    assert file_bytes(out) == file_bytes(tmp_path / "loop")


@pytest.mark.slow
def test_command_line_with_hardware_ddp_cpu(painting_ckpt: Path, tmp_path: Path) -> None:
    photos = random_photos(tmp_path / "photos", 10, [(32, 24), (24, 32)])
    (tmp_path / "photos" / "notes.txt").write_text("not a photo")
    out = tmp_path / "out"
    args = [f"ckpt={painting_ckpt}", f"input={tmp_path / 'photos'}", f"output={out}"]
    proc = run("fashionseg.predict", *args, "hardware=ddp_cpu", "predict.num_workers=0",
               cwd=tmp_path)  # fmt: skip
    assert proc.stdout.count("predicted") == 1  # process 0 reports, once
    assert "10 predicted, 0 already done, 1 skipped (not readable images)" in proc.stdout
    notes = tmp_path / "photos" / "notes.txt"
    assert (proc.stdout + proc.stderr).count(f"skipped {notes}") == 1  # warned once
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST] + [f"{p.stem}{s}" for p in photos for s in (".png", "_overlay.jpg")]
    )
    again = run("fashionseg.predict", *args, "hardware=ddp_cpu", cwd=tmp_path)
    assert "0 predicted, 10 already done" in again.stdout


# -- the command line's settings ------------------------------------------------------


def settings(**values: Any) -> Any:
    cfg = OmegaConf.load(REPO_ROOT / "conf" / "predict.yaml")
    cfg.pop("defaults")
    return OmegaConf.merge(cfg, values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"batch_size": 0}, "predict.batch_size=0: must be a whole number >= 1"),
        ({"batch_size": 1.5}, "predict.batch_size=1.5: must be a whole number >= 1"),
        ({"num_workers": -1}, "predict.num_workers=-1: must be a whole number >= 0"),
        ({"num_workers": True}, "predict.num_workers=True: must be a whole number >= 0"),
    ],
)
def test_loader_settings_are_checked(values: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as err:
        loader_settings(settings(predict=values))
    assert str(err.value) == message


def test_loader_settings_defaults() -> None:
    assert loader_settings(settings()) == (4, 2)


def test_trainer_settings_from_device_or_hardware() -> None:
    assert trainer_settings(settings()) == {"accelerator": "cpu", "devices": 1}
    ddp_cpu = OmegaConf.load(REPO_ROOT / "conf/hardware/ddp_cpu.yaml")
    chosen = trainer_settings(settings(trainer=ddp_cpu))
    assert chosen == {
        "accelerator": "cpu",
        "devices": 2,
        "strategy": "ddp_spawn",
        "precision": "32-true",
    }
    with pytest.raises(UsageError) as err:
        trainer_settings(settings(trainer=ddp_cpu, device="cuda"))
    assert str(err.value) == (
        "device=cuda: give hardware=... or device=..., not both (hardware decides the devices)"
    )


def test_hardware_composes_into_predicts_config(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fashionseg.predict", "ckpt=a", "input=b", "output=c",
         "hardware=ddp_cpu", "--cfg", "job"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    cfg = OmegaConf.create(proc.stdout)
    assert cfg.trainer.strategy == "ddp_spawn" and cfg.predict.batch_size == 4


def test_records_of_other_processes_left_by_a_kill_count_on_the_rerun(
    module: SegmentationModule, tmp_path: Path
) -> None:
    """A multi-process run killed before process 0 folded the others' records in: the
    rerun counts their photos as done and folds their records into its own."""
    photos = random_photos(tmp_path / "photos", 3, [(32, 24)])
    out = tmp_path / "out"
    predict_lightning(module, photos[:1], out, num_workers=0, progress=False)
    # what process 1 left: photo 1 finished, photo 2's map claimed but never written
    (out / "01.png").write_bytes((out / "00.png").read_bytes())
    (out / "01_overlay.jpg").write_bytes((out / "00_overlay.jpg").read_bytes())
    lines = [("01.png", photos[1]), ("01_overlay.jpg", photos[1]), ("02.png", photos[2])]
    (out / ".fashionseg-predict.rank1.jsonl").write_text(
        "".join(json.dumps({"file": f, "photo": str(p.resolve())}) + "\n" for f, p in lines)
        + '{"file": "02_ove'  # cut off by the kill
    )
    summary = predict_lightning(module, photos, out, num_workers=0, progress=False)
    assert summary.skipped_existing == [str(photos[0]), str(photos[1])]
    assert summary.written == [str(photos[2])]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [MANIFEST]
    records = [json.loads(x) for x in (out / MANIFEST).read_text().splitlines()]
    assert sorted(r["file"] for r in records[1:]) == sorted(
        f"0{i}{s}" for i in range(3) for s in (".png", "_overlay.jpg")
    )


def test_a_spawned_process_user_error_is_one_line_here() -> None:
    from torch.multiprocessing import ProcessRaisedException

    from fashionseg.predict import _user_error_of

    trace = (
        "\n\n-- Process 1 terminated with the following error:\nTraceback (most recent call "
        'last):\n  File "x.py", line 1, in f\nfashionseg.cli.UsageError: /out: cannot write '
        "the outputs of /p/a.jpg (No space left on device); the photos done so far are kept, "
        "run again to go on\n"
    )
    error = _user_error_of(ProcessRaisedException(trace, 1, 123))
    assert isinstance(error, UsageError)
    assert str(error) == (
        "/out: cannot write the outputs of /p/a.jpg (No space left on device); the photos "
        "done so far are kept, run again to go on"
    )
    other = ProcessRaisedException("Traceback ...\nZeroDivisionError: division by zero\n", 0, 1)
    assert _user_error_of(other) is other
