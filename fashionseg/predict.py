"""Write label maps and overlays for photos with a trained checkpoint.

    python -m fashionseg.predict ckpt=PATH input=DIR_OR_FILE output=DIR [overwrite=true]
        [predict.batch_size=4] [predict.num_workers=2] [device=cuda | hardware=ddp ...]

For each photo ``<stem>.<ext>`` it writes ``<stem>.png`` (a palette PNG in the
dataset's mask format, at the photo's displayed size) and ``<stem>_overlay.jpg``.

Two ways to run, with byte-identical label maps for the same arithmetic (16-bit mixed
precision, or another CPU thread count, can move a pixel at a near tie):

- :func:`predict_lightning` (the command line's): ``Trainer.predict`` over a DataLoader
  whose workers decode the photos (each keeps its size), the model on batches of
  ``predict.batch_size`` photos (run as groups of equal size, so that no photo is padded
  and a batch gives each photo the label map it gets alone), and :class:`PredictionWriter`
  saving each batch's outputs on a background thread while the next batch runs.
  ``hardware=ddp``/``ddp_cpu`` share the photos out between processes (each photo is done
  by exactly one). Nothing per photo is kept beyond the few batches in flight.
- :func:`predict_loop` (alias :func:`predict_files`): one photo after another in this
  process, the reference the bench and the tests compare with.

The output folder must be new, empty, or one predict wrote before; predict writes only
over files it wrote itself, which it records in ``.fashionseg-predict.jsonl`` in that
folder (:mod:`fashionseg.predict_output`). A folder holding anything else, an output
folder that is, is inside or contains the input, and two photos with the same stem are
one-line errors before anything is written. Photos whose outputs are recorded are
skipped, so a run that was stopped can simply be started again; ``overwrite=true``
rewrites them. Files in the input folder that are not images are skipped with a warning.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch.multiprocessing import ProcessRaisedException
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fashionseg.cli import UsageError, run_cli, user_errors
from fashionseg.data.io import IMAGE_SUFFIXES, DataError, read_image
from fashionseg.files import atomic_write, save_label_png
from fashionseg.model.base import SegmentationBase
from fashionseg.model.visualize import overlay
from fashionseg.predict_output import PhotoOutputs, PredictFolder, check_apart, outputs_for
from fashionseg.settings import check_settings
from fashionseg.tasks import Task

log = logging.getLogger(__name__)


@dataclass
class PredictSummary:
    """What a predict run did."""

    written: list[str] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    skipped_invalid: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{len(self.written)} predicted, {len(self.skipped_existing)} already done, "
            f"{len(self.skipped_invalid)} skipped (not readable images)"
        )


def list_inputs(path: str | Path) -> list[Path]:
    """The files to predict: ``path`` itself, or every file directly inside it (sorted).

    Hidden files and subfolders are left out. UsageError when ``path`` does not exist or
    cannot be read.
    """
    path = Path(path)
    try:
        if path.is_file():
            return [path]
        if path.is_dir():
            return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as err:
        raise UsageError(f"{path}: cannot read the input ({err.strerror})") from None
    raise UsageError(f"{path}: no such file or folder")


def photos_to_predict(path: str | Path) -> tuple[list[Path], list[Path]]:
    """The photos of ``path`` and its other files (which predict skips with a warning).

    UsageError when there is nothing to predict: a file that is not a photo, an empty
    folder, a folder without photos.
    """
    files = list_inputs(path)
    photos = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    others = [f for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
    if not photos:
        if Path(path).is_file():
            raise UsageError(
                f"{path}: not a photo (suffix {Path(path).suffix!r}; predict reads "
                f"{', '.join(IMAGE_SUFFIXES)})"
            )
        raise UsageError(f"{path}: {_no_photos(Path(path), len(files))}")
    return photos, others


def _no_photos(folder: Path, other_files: int) -> str:
    """Why a folder without photos has none: empty, other files, subfolders (not searched)."""
    subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name[:1] != ".")
    if not other_files and not subfolders:
        return "the input folder is empty"
    found = [f"{other_files} other file{'s' if other_files != 1 else ''}"] if other_files else []
    if subfolders:
        shown = ", ".join(subfolders[:3]) + (", ..." if len(subfolders) > 3 else "")
        found.append(f"subfolders, not searched: {shown}")
    return (
        f"no photos in the input folder ({'; '.join(found)}); predict reads "
        f"{', '.join(IMAGE_SUFFIXES)} directly inside it"
    )


def check_request(input_path: str | Path, output: str | Path) -> tuple[list[Path], list[Path]]:
    """The checks that need no model: :func:`photos_to_predict`, then the output folder is
    apart from the input and no two photos' outputs have the same name (UsageError).
    """
    photos, others = photos_to_predict(input_path)
    check_apart(input_path, output)
    outputs_for(photos)
    return photos, others


def model_source(module: SegmentationBase, ckpt: str | Path | None = None) -> dict[str, Any]:
    """What made the outputs, as recorded in the output folder."""
    threshold = module.score_threshold
    return {
        "ckpt": None if ckpt is None else str(Path(ckpt).resolve()),
        "task": module.task.name,
        "threshold": None if threshold is None else float(threshold),
    }


@torch.no_grad()
def predict_loop(
    module: SegmentationBase,
    files: Sequence[str | Path],
    out_dir: str | Path,
    overwrite: bool = False,
    progress: bool = True,
    source: dict[str, Any] | None = None,
) -> PredictSummary:
    """Predict every file, one after another in this process, on the module's device;
    write ``<stem>.png`` and ``<stem>_overlay.jpg`` into ``out_dir``.

    ``out_dir`` follows :mod:`fashionseg.predict_output`'s rules (UsageError otherwise,
    before anything is written); ``source`` is what the outputs are recorded as coming
    from (default: :func:`model_source` without a checkpoint path).
    """
    photos = outputs_for(files)
    source = source if source is not None else model_source(module)
    module.eval()
    device = next(module.parameters()).device
    summary = PredictSummary()
    with PredictFolder.open(out_dir, source, photos, overwrite=overwrite) as folder:
        for outputs in tqdm(photos, desc="predict", unit="img", disable=not progress):
            path = outputs.photo
            if not overwrite and folder.done(outputs):
                summary.skipped_existing.append(str(path))
                continue
            try:
                image = read_image(path)
            except DataError as err:
                log.warning("skipped %s", err)
                summary.skipped_invalid.append(str(path))
                continue
            label_map = module.predict_maps([image.to(device, torch.float32) / 255])[0].cpu()
            _save_photo(folder, outputs, image, label_map, module.task)
            summary.written.append(str(path))
    return summary


predict_files = predict_loop  # the name training's example predictions and older code use


def _save_photo(
    folder: PredictFolder,
    outputs: PhotoOutputs,
    image: torch.Tensor,
    label_map: torch.Tensor,
    task: Task,
) -> None:
    """:func:`_write_outputs`; a write that fails (a full disk, a folder made read-only
    meanwhile...) is a one-line UsageError."""
    try:
        _write_outputs(folder, outputs, image, label_map, task)
    except OSError as err:
        raise UsageError(
            f"{folder.path}: cannot write the outputs of {outputs.photo} "
            f"({err.strerror or err}); the photos done so far are kept, run again to go on"
        ) from None


def _write_outputs(
    folder: PredictFolder,
    outputs: PhotoOutputs,
    image: torch.Tensor,
    label_map: torch.Tensor,
    task: Task,
) -> None:
    """The label map and the overlay of one photo, each recorded before it is written."""
    save_label_png(folder.claim(outputs.label, outputs.photo), label_map.numpy(), task)
    shown = overlay(image, label_map, task.colors)
    pil = Image.fromarray(shown.permute(1, 2, 0).numpy())
    atomic_write(
        folder.claim(outputs.overlay, outputs.photo),
        lambda p: pil.save(p, format="JPEG", quality=90),
    )


# --------------------------------------------------------------- the Lightning path
PhotoItem = tuple[int, torch.Tensor | None, str | None]  # index, uint8 image or None, error


class PhotoDataset(Dataset[PhotoItem]):
    """Photos decoded on demand (in the DataLoader's workers) by :func:`read_image`.

    Item ``i`` is ``(i, image, None)`` with the uint8 3 x H x W image as displayed, or
    ``(i, None, message)`` for a photo that cannot be read (the writer warns and skips
    it, as :func:`predict_loop` does).
    """

    def __init__(self, photos: Sequence[str | Path]) -> None:
        self.photos = photos

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, index: int) -> PhotoItem:
        try:
            return index, read_image(self.photos[index]), None
        except DataError as err:
            return index, None, str(err)


def collate_photos(items: Sequence[PhotoItem]) -> dict[str, Any]:
    """A batch: ``index`` (every photo's), ``images`` and ``image_index`` (the readable
    ones, each at its own size), ``errors`` (``(index, message)`` of the others)."""
    return {
        "index": [index for index, _, _ in items],
        "images": [image for _, image, _ in items if image is not None],
        "image_index": [index for index, image, _ in items if image is not None],
        "errors": [(index, error) for index, _, error in items if error is not None],
    }


class PhotoPredictor(L.LightningModule):
    """A segmentation module on :func:`collate_photos` batches for ``Trainer.predict``.

    Only the images go to the device (as uint8: a quarter of the bytes of float); the
    batch keeps its CPU images for the overlays. ``predict_step`` returns the label maps
    on the CPU, one per readable photo, made by :func:`fashionseg.segmenter.label_maps`
    (groups of equal size: no photo is padded for another).
    """

    def __init__(self, model: SegmentationBase) -> None:
        super().__init__()
        self.model = model

    def transfer_batch_to_device(
        self, batch: dict[str, Any], device: torch.device, dataloader_idx: int
    ) -> dict[str, Any]:
        moved = [image.to(device, non_blocking=True) for image in batch["images"]]
        return {**batch, "device_images": moved}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[torch.Tensor]:
        from fashionseg.segmenter import label_maps

        return [m.cpu() for m in label_maps(self.model, batch["device_images"])]


class PredictionWriter(BasePredictionWriter):
    """Saves each batch's label maps and overlays into the output folder as it finishes.

    The files are written by one background thread, in order, while the next batch is
    decoded and run; at most ``max_pending`` photos wait for it (then the model waits),
    so memory stays bounded. A failed write stops the run with its one-line error at the
    next batch. Process 0 takes the output folder (:meth:`PredictFolder.open`); the
    others record their files in their own record (:meth:`PredictFolder.attach`), which
    process 0 folds into the record once all have finished.
    """

    def __init__(
        self,
        out_dir: str | Path,
        source: dict[str, Any],
        photos: Sequence[PhotoOutputs],
        task: Task,
        overwrite: bool = False,
        max_pending: int = 16,
    ) -> None:
        super().__init__("batch")
        self.out_dir = Path(out_dir)
        self.source = source
        self.photos = photos
        self.task = task
        self.overwrite = overwrite
        self.max_pending = max(1, max_pending)
        self.folder: PredictFolder | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()

    @property
    def pending(self) -> int:
        """Photos handed to the writing thread and not yet written."""
        return len(self._pending)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.global_rank == 0:
            self.folder = PredictFolder.open(
                self.out_dir, self.source, self.photos, overwrite=self.overwrite
            )
        trainer.strategy.barrier("fashionseg-predict-open")
        if trainer.global_rank != 0:
            self.folder = PredictFolder.attach(self.out_dir, trainer.global_rank)

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        for _, error in batch["errors"]:
            log.warning("skipped %s", error)
        for index, image, label_map in zip(
            batch["image_index"], batch["images"], prediction, strict=True
        ):
            self._submit(self.photos[index], image, label_map)

    def _submit(self, outputs: PhotoOutputs, image: torch.Tensor, label_map: torch.Tensor) -> None:
        assert self.folder is not None, "the writer was not set up"
        if self._pool is None:  # started after the loader's workers were forked
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="fashionseg-predict-writer")
        while self._pending and (len(self._pending) >= self.max_pending or self._pending[0].done()):
            self._pending.popleft().result()  # a failed write raises here
        self._pending.append(
            self._pool.submit(_save_photo, self.folder, outputs, image, label_map, self.task)
        )

    def flush(self) -> None:
        """Wait for every pending write; the first failure is raised."""
        while self._pending:
            self._pending.popleft().result()

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_predict_epoch_end(trainer, pl_module)
        self.flush()

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.flush()
        self._close()
        trainer.strategy.barrier("fashionseg-predict-written")
        if trainer.global_rank == 0 and trainer.world_size > 1:
            PredictFolder.merge_rank_logs(self.out_dir)
        trainer.strategy.barrier("fashionseg-predict-merged")

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._close()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._close()

    def _close(self) -> None:
        """Let the write in progress finish, drop the queued ones, close the record."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()
        if self.folder is not None:
            self.folder.close()
            self.folder = None


class PhotoProgressBar(TQDMProgressBar):
    """Lightning's progress bar counting photos rather than batches (photos/s), on stderr."""

    def init_predict_tqdm(self) -> Tqdm:
        return Tqdm(
            desc="predict",
            unit="photo",
            position=2 * self.process_position,
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stderr,
            smoothing=0,
            bar_format=self.BAR_FORMAT,
        )

    def on_predict_batch_start(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self.has_dataloader_changed(dataloader_idx):
            return
        loaders = trainer.predict_dataloaders
        loader = loaders[dataloader_idx] if isinstance(loaders, list | tuple) else loaders
        count = len(loader.dataset)  # this process's share, as the unrepeated sampler deals
        bar = self.predict_progress_bar
        bar.reset(total=len(range(trainer.global_rank, count, trainer.world_size)))
        if trainer.world_size > 1:  # the others' bars are off: this one shows its share
            bar.set_description(f"predict (process 0's share, {trainer.world_size} processes)")

    def on_predict_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.predict_progress_bar.update(len(batch["index"]))


def predict_lightning(
    module: SegmentationBase,
    files: Sequence[str | Path],
    out_dir: str | Path,
    overwrite: bool = False,
    batch_size: int = 4,
    num_workers: int = 2,
    progress: bool = True,
    source: dict[str, Any] | None = None,
    trainer: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    max_pending: int | None = None,
) -> PredictSummary:
    """:func:`predict_loop`'s outputs, record and rules through ``Trainer.predict``.

    ``num_workers`` DataLoader processes decode the photos (0: this process), the model
    runs on batches of ``batch_size`` photos, :class:`PredictionWriter` writes on a
    thread (``max_pending`` photos queued at most; default ``4 * batch_size``).
    ``trainer`` holds ``lightning.Trainer`` arguments (default: one CPU process), e.g.
    ``{"accelerator": "gpu", "devices": 1}`` or ``{"accelerator": "cpu", "devices": 2,
    "strategy": "ddp_spawn"}``; with several processes each photo is done by one of
    them. ``callbacks`` are added to the Trainer's. Returns the same summary as
    :func:`predict_loop` (in every process of a multi-process run); a photo recorded as
    done before an ``overwrite=true`` run that is unreadable now counts as predicted.
    """
    path = Path(out_dir)
    photos = outputs_for(files)
    source = source if source is not None else model_source(module)
    recorded = PredictFolder.check(path, source, photos, overwrite=overwrite)
    known = PredictFolder(path, {n: p for n, p in recorded.items() if (path / n).is_file()})
    summary = PredictSummary()
    todo = []
    for outputs in photos:
        if not overwrite and known.done(outputs):
            summary.skipped_existing.append(str(outputs.photo))
        else:
            todo.append(outputs)
    if not todo:  # nothing to run: take the folder as predict_loop does (process 0)
        if getattr(rank_zero_only, "rank", 0) == 0:
            PredictFolder.open(path, source, photos, overwrite=overwrite).close()
        return summary

    settings = {"accelerator": "cpu", "devices": 1, **(trainer or {})}
    writer = PredictionWriter(
        path, source, todo, module.task, overwrite, max_pending or 4 * batch_size
    )
    bar = [PhotoProgressBar()] if progress else []
    runner = L.Trainer(
        **settings,
        callbacks=[writer, *bar, *callbacks],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
    )
    loader = DataLoader(
        PhotoDataset([o.photo for o in todo]),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_photos,
        pin_memory=str(settings.get("accelerator")) in ("gpu", "cuda"),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        # Lightning 2.6 on torch >= 2.10 (its own business, said once per process)
        warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
        try:
            runner.predict(PhotoPredictor(module), dataloaders=loader, return_predictions=False)
        except ProcessRaisedException as err:  # a spawned process's own one-line error
            raise _user_error_of(err) from None
    done = PredictFolder.recorded(path)
    for outputs in todo:
        shown = str(outputs.photo)
        (summary.written if done.done(outputs) else summary.skipped_invalid).append(shown)
    return summary


_USER_ERROR = re.compile(
    r"^fashionseg\.[\w.]+\.(?:UsageError|DataError|CheckpointError): (.+)$", re.M
)


def _user_error_of(err: ProcessRaisedException) -> BaseException:
    """A spawned process's UsageError (its traceback's last line) as one here."""
    found = _USER_ERROR.findall(str(err))
    return UsageError(found[-1]) if found else err


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
@user_errors
def hydra_main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    from fashionseg.model.checkpoint import load_module

    check_settings(cfg, "predict")

    ckpt, input_path, output, overwrite = read_settings(cfg)
    batch_size, num_workers = loader_settings(cfg)
    runner = trainer_settings(cfg)
    files, unsupported = check_request(input_path, output)
    module = load_module(
        ckpt, task=(cfg.get("task") or {}).get("name"), threshold=cfg.get("threshold")
    )
    # Lightning's start-up lines (devices found...) are not predict's business
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    summary = predict_lightning(
        module,
        files,
        output,
        overwrite=overwrite,
        batch_size=batch_size,
        num_workers=num_workers,
        source=model_source(module, ckpt),
        trainer=runner,
    )
    if getattr(rank_zero_only, "rank", 0) != 0:
        return  # the other processes of a multi-process run: process 0 reports
    for f in unsupported:  # warned after the checks: a refused run prints one line
        log.warning("skipped %s: not an image file (suffix %r)", f, f.suffix)
    summary.skipped_invalid.extend(str(f) for f in unsupported)
    threshold = module.score_threshold
    shown = "argmax" if threshold is None else f"threshold {threshold:.2f}"
    print(f"{summary}; {shown}; outputs in {output}")


def loader_settings(cfg: DictConfig) -> tuple[int, int]:
    """``predict.batch_size`` (>= 1) and ``predict.num_workers`` (>= 0), checked."""
    settings = cfg.get("predict") or {}
    values = []
    for key, default, least in (("batch_size", 4, 1), ("num_workers", 2, 0)):
        value = settings.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UsageError(f"predict.{key}={value}: must be a whole number >= {least}")
        values.append(value)
    return values[0], values[1]


def trainer_settings(cfg: DictConfig) -> dict[str, Any]:
    """The Trainer's arguments: those of ``hardware=...`` when one is chosen (``trainer``
    in the composed config), else one device from ``device=`` (UsageError when unusable)."""
    device = cfg.get("device", "cpu")
    chosen = cfg.get("trainer")
    if chosen is not None:
        if str(device) != "cpu":
            raise UsageError(
                f"device={device}: give hardware=... or device=..., not both (hardware "
                "decides the devices)"
            )
        settings = OmegaConf.to_container(chosen, resolve=True)
        assert isinstance(settings, dict)
        return {str(k): v for k, v in settings.items() if k != "_target_"}
    found = device_setting(device)
    if found.type == "cpu":
        return {"accelerator": "cpu", "devices": 1}
    if found.type == "cuda":
        index = found.index if found.index is not None else torch.cuda.current_device()
        return {"accelerator": "gpu", "devices": [index]}
    if found.type == "mps":
        return {"accelerator": "mps", "devices": 1}
    raise UsageError(f"device={device}: predict runs on cpu, cuda or mps; try device=cpu")


def read_settings(cfg: DictConfig) -> tuple[str, str, str, bool]:
    """``ckpt``, ``input``, ``output`` and ``overwrite``, checked (UsageError)."""
    paths = [path_setting(cfg, key) for key in ("ckpt", "input", "output")]
    overwrite = cfg.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise UsageError(f"overwrite={overwrite!r}: must be true or false")
    return paths[0], paths[1], paths[2], overwrite


def device_setting(value: Any) -> torch.device:
    """``device=...`` as a torch device this machine has; UsageError otherwise."""
    try:
        device = torch.device(str(value))
        torch.empty(0, device=device)  # no CUDA/MPS build, no GPU, no such index
    except (RuntimeError, AssertionError) as err:
        reason = (str(err).strip().split(". ")[0] or type(err).__name__).rstrip(".")
        reason = reason if len(reason) <= 160 else reason[:159] + "…"
        raise UsageError(f"device={value}: not usable here ({reason}); try device=cpu") from None
    return device


def path_setting(cfg: DictConfig, key: str) -> str:
    """``cfg[key]`` as a path; UsageError when it is not given, null or empty."""
    if OmegaConf.is_missing(cfg, key):
        raise UsageError(f"{key}: not given (add {key}=PATH to the command)")
    value = cfg.get(key)
    if value is None or not str(value).strip():
        shown = "null" if value is None else repr(value)
        raise UsageError(f"{key}={shown}: not a path (add {key}=PATH to the command)")
    return str(value)


def main() -> None:
    """Command-line entry point: the command line is checked, then Hydra runs."""
    run_cli(hydra_main, "predict", "predict")


if __name__ == "__main__":
    main()
