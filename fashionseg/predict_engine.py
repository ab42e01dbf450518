"""What runs the model for :mod:`fashionseg.predict`: the one-photo loop, the Lightning
path (dataset, module, writer, progress bar) and the writing of each photo's outputs.

- :func:`predict_loop` (alias :func:`predict_files`): one photo after another in this
  process, the reference the bench and the tests compare with.
- :func:`predict_lightning`: ``Trainer.predict`` over a DataLoader of
  :class:`PhotoDataset`, :class:`PhotoPredictor` on batches of equal-size photos, and
  :class:`PredictionWriter` saving each batch's outputs on a background thread.

This module imports torch and Lightning (seconds). The command line imports it only once
its checks have passed, so that a mistake is reported at once; ``fashionseg.predict``
still gives every name here (loaded on first use). The rules of the output folder and
when label maps are byte-identical are in :mod:`fashionseg.predict`'s docstring.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.utilities import rank_zero_only
from torch.multiprocessing import ProcessRaisedException
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fashionseg.cli import UsageError
from fashionseg.data.io import DataError, read_image
from fashionseg.model.base import SegmentationBase
from fashionseg.predict_output import (
    PhotoOutputs,
    PredictFolder,
    PredictSummary,
    outputs_for,
    save_outputs,
)
from fashionseg.tasks import Task

# predict's warnings (a photo skipped) keep the command line's logger name
log = logging.getLogger("fashionseg.predict")


def model_source(module: SegmentationBase, ckpt: str | Path | None = None) -> dict[str, Any]:
    """What made the outputs, as recorded in the output folder: the checkpoint path, task,
    threshold and the model's content (:func:`model_fingerprint`, computed once here)."""
    threshold = module.score_threshold
    return {
        "ckpt": None if ckpt is None else str(Path(ckpt).resolve()),
        "task": module.task.name,
        "threshold": None if threshold is None else float(threshold),
        "model": model_fingerprint(module),
    }


def model_fingerprint(module: SegmentationBase) -> str:
    """sha256 (hex) of the module's settings and of every tensor of its state (name, dtype,
    shape, bytes): a model retrained into the same checkpoint path gets another one."""
    import hashlib
    import json

    from omegaconf import OmegaConf

    digest = hashlib.sha256()
    hparams = OmegaConf.to_container(OmegaConf.create(dict(module.hparams)), resolve=True)
    hparams.pop("family", None)  # implied by the weights; the fingerprints made before it stay
    digest.update(json.dumps(hparams, sort_keys=True, default=str).encode())
    for name, tensor in module.state_dict().items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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
    """:func:`fashionseg.predict_output.save_outputs` for a uint8 3 x H x W image."""
    rgb = image.permute(1, 2, 0).numpy()
    save_outputs(folder, outputs, rgb, label_map.numpy(), task)


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
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, *_: Any
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
