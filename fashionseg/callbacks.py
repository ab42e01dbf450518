"""Lightning callbacks of the training run (configured in ``conf/callbacks/``)."""

from __future__ import annotations

import errno
import os
import random
import shutil
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint, WeightAveraging
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from fashionseg.model.visualize import comparison_grid, threshold_curve


class RNGState(L.Callback):
    """Keep the Python, NumPy and torch random states in every checkpoint.

    Lightning restores weights, optimizer, scheduler and loop counters on resume but
    not the random generators, so a resumed run would shuffle and augment its next
    epochs differently from an uninterrupted one. The states are stored as tensors and
    plain Python values, so checkpoints stay loadable with ``weights_only=True``.
    """

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        version, internal, gauss = random.getstate()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "kind": str(kind),
                "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached),
            },
            "python": {"version": version, "internal": list(internal), "gauss": gauss},
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        npy = state_dict["numpy"]
        np.random.set_state(
            (
                npy["kind"],
                npy["keys"].numpy().astype(np.uint32),
                npy["pos"],
                npy["has_gauss"],
                npy["cached_gaussian"],
            )
        )
        py = state_dict["python"]
        random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class EMA(WeightAveraging):
    """An exponential moving average of the weights: Lightning's ``WeightAveraging`` with
    torch's ``get_ema_multi_avg_fn(decay)``, updated after every optimizer step.

    BatchNorm's running statistics are averaged with the weights (``use_buffers=True``),
    not recomputed. Validation runs on the averaged weights (so the score thresholds are
    chosen and the best checkpoint picked for them), every checkpoint's ``state_dict`` is
    the average (the raw weights and the average's count ride along for resuming), and
    the model holds the average after training and a checkpoint tested after ``fit`` keeps
    its averaged weights, so test scores the average too. The module's own
    buffers (validation's threshold choice, ``val_miou``) are no weights: they are copied
    into the average, never averaged. The average lives on the training device.
    """

    def __init__(self, decay: float = 0.999) -> None:
        from torch.optim.swa_utils import get_ema_multi_avg_fn

        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 < decay < 1:
            raise ValueError(f"callbacks.ema.decay={decay}: must be a number in (0, 1)")
        super().__init__(use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn(float(decay)))
        self.decay = float(decay)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._device is None:  # the module is still on the CPU here: average on its device
            self._device = trainer.strategy.root_device
        super().setup(trainer, pl_module, stage)

    def _copy_own_buffers(self, pl_module: L.LightningModule) -> None:
        """The module's own buffers (validation's choice, not weights) into the average."""
        if self._average_model is None:
            return
        average = self._average_model.module
        for name, buffer in pl_module.named_buffers(recurse=False):
            getattr(average, name).copy_(buffer)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._copy_own_buffers(pl_module)

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Resuming (fit): the average and the raw weights come back. Testing or validating
        a checkpoint: nothing, the model keeps its ``state_dict``, the average. (Lightning
        calls this in every stage: the parent would load the raw weights for the test.)"""
        if trainer.state.fn == "fit":
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After the module chose its threshold(s) for the averaged weights and before the
        checkpoint callbacks save them (Lightning runs those last)."""
        self._copy_own_buffers(pl_module)


def ema(decay: float | None = None) -> EMA | None:
    """``callbacks.ema``: an :class:`EMA` callback, or None (off) when ``decay`` is null."""
    return None if decay is None else EMA(decay)


class InterruptCheckpoint(Checkpoint):
    """Save ``dirpath/filename.ckpt`` on Ctrl-C or a crash, but never a diverged model.

    A non-finite loss, or weights that already hold NaN/inf, would make a checkpoint
    that ``resume=true`` picks up and cannot train from; then the last good
    ``last.ckpt`` is what a user should continue from, so nothing is written. A run that
    ends normally removes the file, so a stale one never outlives the run that finished.

    Not Lightning's ``OnExceptionCheckpoint`` (which does the same saving): while one of
    those is registered, Lightning turns ``fit(ckpt_path=None)`` into ``"last"``, warns
    twice in every fresh run and silently resumes from any checkpoint already in a reused
    run directory, overriding ``resume=false``. Here resuming is ``resume=``'s job.
    """

    def __init__(self, dirpath: str, filename: str = "interrupted") -> None:
        super().__init__()
        if not filename:
            raise ValueError("InterruptCheckpoint needs a file name")
        self.ckpt_path = os.path.join(dirpath, f"{filename}.ckpt")

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        from fashionseg.model.base import NonFiniteLossError

        if isinstance(exception, OSError) and exception.errno == errno.ENOSPC:
            rank_zero_warn("no space left on device: no interrupted.ckpt; last.ckpt is intact")
            return
        if trainer.global_step == 0:
            # nothing trained yet (e.g. a setting that fails at the first step): a
            # checkpoint would only make resume=true start this run over from scratch
            rank_zero_info("stopped before the first training step: no interrupted.ckpt")
            return
        if isinstance(exception, NonFiniteLossError) or not all(
            torch.isfinite(p).all() for p in pl_module.parameters()
        ):
            rank_zero_warn("training diverged: no interrupted.ckpt; last.ckpt is the last good one")
            return
        trainer.save_checkpoint(self.ckpt_path)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        trainer.strategy.remove_checkpoint(self.ckpt_path)


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` whose best checkpoints survive a resume.

    A resumed run writes into a new run directory. Lightning then drops the best score
    and the top-k list of the checkpoint it resumes from (they name files in the old
    directory), so the first validation after resuming would become the "best" and be
    what ``train`` tests. Here those files are carried into the new directory (a hard
    link, or a copy across file systems) together with their scores, so the continued
    run keeps, tests and reports the same best checkpoint an uninterrupted run would.
    Checkpoints that no longer exist are dropped from the list with a warning.
    """

    @property
    def state_key(self) -> str:
        # the same key as ModelCheckpoint's: checkpoints of either class resume alike
        key = super().state_key
        return ModelCheckpoint.__qualname__ + key[len(type(self).__qualname__) :]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old_dir = state_dict.get("dirpath")
        if old_dir and self.dirpath and os.path.realpath(old_dir) != os.path.realpath(self.dirpath):
            state_dict = self._carry_over(state_dict)
        super().load_state_dict(state_dict)

    def _carry_over(self, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` with its top-k files linked into this callback's directory.

        Rank 0 alone touches files; the other ranks of a multi-process run wait for it
        and take its answer (every rank restores the callback)."""
        import torch.distributed as dist

        group = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        moved = self._carry_files(state) if not group or dist.get_rank() == 0 else {}
        if group:
            shared = [moved]
            dist.broadcast_object_list(shared, src=0)  # a collective: also the barrier
            moved = shared[0]
        best_k = {moved[p]: v for p, v in state["best_k_models"].items() if p in moved}
        carried = {**state, "dirpath": self.dirpath, "best_k_models": best_k, "last_model_path": ""}
        if not best_k:
            carried.update(best_model_path="", best_model_score=None, kth_best_model_path="")
            return carried
        pick = max if self.mode == "max" else min
        best = pick(best_k, key=lambda p: float(best_k[p]))
        worst = (min if self.mode == "max" else max)(best_k, key=lambda p: float(best_k[p]))
        carried.update(
            best_model_path=best,
            best_model_score=best_k[best],
            kth_best_model_path=worst,
            kth_value=best_k[worst],
        )
        return carried

    def _carry_files(self, state: dict[str, Any]) -> dict[str, str]:
        """Link (or copy, across file systems) each top-k file into this directory;
        ``{old path: new path}`` of those carried."""
        os.makedirs(self.dirpath, exist_ok=True)
        moved: dict[str, str] = {}
        for path in state.get("best_k_models") or {}:
            if not os.path.isfile(path):
                rank_zero_warn(
                    f"{path}: best checkpoint of the resumed run is gone; not carried over"
                )
                continue
            target = _carried_name(path, self.dirpath)
            if not os.path.exists(target):
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copy2(path, target)
            moved[path] = target
        return moved


def _carried_name(source: str, dirpath: str) -> str:
    """Where ``source`` goes in ``dirpath``: its own name, unless a different file already
    has it (a reused run directory): then ``<stem>-carried<n>.ckpt``, so that a file that
    was not carried over is never adopted as the best checkpoint."""
    stem, suffix = os.path.splitext(os.path.basename(source))
    for n in range(1000):
        target = os.path.join(dirpath, f"{stem}{f'-carried{n}' if n else ''}{suffix}")
        if not os.path.exists(target) or os.path.samefile(source, target):
            return target
    raise FileExistsError(f"{dirpath}: no free name to carry {source} over")


def _flat_hparams(hparams: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested hyper-parameters as flat ``a/b`` keys of scalars (TensorBoard's hparams)."""
    flat: dict[str, Any] = {}
    for key, value in hparams.items():
        name = f"{prefix}{key}".replace("_target_", "target")
        if isinstance(value, Mapping):
            flat.update(_flat_hparams(value, f"{name}/"))
        elif isinstance(value, (int, float, str, bool)) or value is None:
            flat[name] = "none" if value is None else value
        else:
            flat[name] = str(value)
    return flat


def _tensorboard(trainer: L.Trainer) -> TensorBoardLogger | None:
    """The trainer's first TensorBoard logger, if any."""
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


class TensorBoardPictures(L.Callback):
    """Validation pictures and the hparams tab in TensorBoard (rank zero; draws no random
    numbers, so training is the same with or without it).

    Every ``every_n_epochs`` validation (not the sanity check): ``val/threshold_curve``
    (validation mIoU against the swept score threshold, for models that sweep one) and
    ``val/predictions``, a grid of the first ``images`` validation photos with ground
    truth and prediction (at the setting validation chose) above the class colour
    legend. After testing, the hparams tab: the module's hyper-parameters with ``hp/test_miou``, ``hp/best_threshold`` and
    the tested checkpoint's own validation mIoU (its ``val_miou`` buffer), ``hp/val_miou``.

    It reads what :class:`fashionseg.model.base.SegmentationBase` exposes: the label maps
    ``validation_step`` returns, ``last_val_result`` and ``test_results``.
    """

    def __init__(self, images: int = 4, every_n_epochs: int = 1) -> None:
        super().__init__()
        self.images = int(images)
        self.every_n_epochs = max(int(every_n_epochs), 1)
        self._shown: list[tuple[Tensor, Tensor, Tensor]] = []  # (image, target, maps [T,H,W])

    def _showing(self, trainer: L.Trainer) -> bool:
        return (
            not trainer.sanity_checking
            and trainer.current_epoch % self.every_n_epochs == 0
            and _tensorboard(trainer) is not None
        )

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._shown = []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not outputs or len(self._shown) >= self.images or not self._showing(trainer):
            return
        images, targets = batch
        for image, target, maps in zip(images, targets, outputs, strict=True):
            if len(self._shown) < self.images:
                self._shown.append((image.detach(), target["semantic"], maps))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After the module's ``on_validation_epoch_end`` has chosen and scored."""
        shown, self._shown = self._shown, []
        logger = _tensorboard(trainer)
        result = getattr(pl_module, "last_val_result", None)
        if logger is None or trainer.sanity_checking or not trainer.is_global_zero or not result:
            return
        writer, step, best = logger.experiment, trainer.global_step, result["index"]
        # a threshold curve only for modules that sweep score thresholds (the semantic
        # models label by argmax: their one validation column is no threshold)
        if getattr(pl_module, "uses_threshold", False):
            thresholds = [round(float(t), 6) for t in result["thresholds"]]
            miou = result["miou"].reshape(-1).tolist()
            writer.add_figure(
                "val/threshold_curve", threshold_curve(thresholds, miou, thresholds[best]), step
            )
        if shown:
            grid = comparison_grid(
                [s[0] for s in shown],
                [s[1] for s in shown],
                [s[2][best] for s in shown],
                pl_module.task.colors,
                pl_module.task.class_names,
            )
            writer.add_image("val/predictions", grid, step)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Fill TensorBoard's hparams tab: the run's settings with its final metrics."""
        logger = _tensorboard(trainer)
        results = getattr(pl_module, "test_results", None)
        if logger is None or not trainer.is_global_zero or results is None:
            return
        metrics = {"hp/test_miou": results["miou"] or 0.0}
        if results["threshold"] is not None:
            metrics["hp/best_threshold"] = results["threshold"]
        val_miou = getattr(pl_module, "val_miou", None)
        if val_miou is not None and not torch.isnan(val_miou):
            metrics["hp/val_miou"] = float(val_miou)
        logger.log_hyperparams(_flat_hparams(pl_module.hparams), metrics)
