"""The LightningModule: Mask R-CNN training, threshold-sweeping validation, scoring.

Everything the module needs to rebuild itself is kept in plain Python types in its
hyper-parameters, and the chosen score threshold(s) live in buffers, so a checkpoint
loads with ``torch.load(..., weights_only=True)`` and carries its threshold along.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import Container, OmegaConf
from torch import Tensor

from fashionseg.data.targets import IGNORE_INDEX
from fashionseg.fusion import METHODS, fuse, fuse_sweep
from fashionseg.metrics import ThresholdSweep, metrics_dict
from fashionseg.model.builder import build_maskrcnn
from fashionseg.model.schedule import build_scheduler
from fashionseg.model.visualize import comparison_grid, threshold_curve
from fashionseg.tasks import get_task
from fashionseg.thresholds import InstanceCache, ThresholdChoice, choose

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
DEFAULT_OPTIMIZER: dict[str, Any] = {
    "_target_": "torch.optim.SGD",
    "lr": 1e-4,
    "momentum": 0.9,
    "weight_decay": 0.0,
}
TARGET_KEYS = ("boxes", "labels", "masks")


def _plain(value: Any) -> Any:
    """Hydra/OmegaConf containers -> plain dicts and lists (checkpoints stay weights-only)."""
    if isinstance(value, Container):
        return OmegaConf.to_container(value, resolve=True)
    return value


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


def _rounded(values: Tensor) -> list[float]:
    """Float32 thresholds as the decimals they were chosen from (0.05, not 0.0500000007)."""
    return [round(v, 6) for v in values.tolist()]


class NonFiniteLossError(RuntimeError):
    """Raised when a training loss becomes NaN or infinite."""


class SegmentationModule(L.LightningModule):
    """Fine-tunes a torchvision Mask R-CNN and scores its fused label maps by IoU.

    Args:
        task: ``person`` or ``clothing``.
        net: keyword arguments of :func:`fashionseg.model.builder.build_maskrcnn`
            (``num_classes`` comes from the task).
        optimizer: an optimizer config with ``_target_`` (SGD with the seed report's
            lr 1e-4 and momentum 0.9 by default), built for the trainable parameters.
        scheduler: see :func:`fashionseg.model.schedule.build_scheduler`.
        fusion: ``method`` (seed | score_order | argmax), ``mask_threshold`` and
            ``per_class_thresholds`` (search per-class thresholds on validation and use
            them where they beat the global one there: :mod:`fashionseg.thresholds`).
        thresholds: score thresholds swept at every validation epoch.
        threshold: a fixed score threshold overriding the one chosen on validation.
        log_images: validation photos shown in TensorBoard with ground truth and
            prediction (at the best threshold), every ``log_images_every_n_epochs``.
    """

    def __init__(
        self,
        task: str = "person",
        net: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        fusion: Mapping[str, Any] | None = None,
        thresholds: Sequence[float] | None = None,
        threshold: float | None = None,
        log_images: int = 4,
        log_images_every_n_epochs: int = 1,
    ) -> None:
        super().__init__()
        net, optimizer, scheduler, fusion, thresholds = (
            _plain(x) for x in (net, optimizer, scheduler, fusion, thresholds)
        )
        fusion = {
            "method": "seed",
            "mask_threshold": 0.5,
            "per_class_thresholds": False,
            **(fusion or {}),
        }
        fusion.pop("thresholds", None)  # the swept list is its own argument
        if fusion["method"] not in METHODS:
            raise ValueError(
                f"unknown fusion.method {fusion['method']!r}: choose one of {', '.join(METHODS)}"
            )
        thresholds = sorted(float(t) for t in (thresholds or DEFAULT_THRESHOLDS))
        self.save_hyperparameters(
            {
                "task": task,
                "net": dict(net or {}),
                "optimizer": dict(optimizer or DEFAULT_OPTIMIZER),
                "scheduler": dict(scheduler or {}),
                "fusion": fusion,
                "thresholds": thresholds,
                "threshold": threshold,
                "log_images": int(log_images),
                "log_images_every_n_epochs": int(log_images_every_n_epochs),
            }
        )
        self.task = get_task(task)
        self.net = self.build_net(self.hparams.net)
        num_classes = self.task.num_classes
        self.register_buffer("best_threshold", torch.tensor(0.5))
        self.register_buffer("class_thresholds", torch.full((num_classes,), 0.5))
        # what validation chose and scored (kept in checkpoints: the best checkpoint's
        # own validation figures, not the last epoch's, go with its test figures)
        self.register_buffer("use_class_thresholds", torch.tensor(True))
        self.register_buffer("val_miou", torch.tensor(float("nan")))
        self.register_buffer("val_miou_global", torch.tensor(float("nan")))
        self.register_buffer("val_miou_per_class", torch.tensor(float("nan")))
        self.register_buffer("sweep_thresholds", torch.tensor(thresholds), persistent=False)
        # pixels of data.ignore_index (IGNORE_INDEX in the targets) count in no metric
        self.val_sweep = ThresholdSweep(num_classes, thresholds, ignore_index=IGNORE_INDEX)
        self.test_scores = ThresholdSweep(num_classes, [0.5], ignore_index=IGNORE_INDEX)
        self.test_results: dict[str, Any] | None = None
        self._cache = InstanceCache(fusion["method"], fusion["mask_threshold"], min(thresholds))
        self._shown: list[tuple[Tensor, Tensor, Tensor]] = []  # (image, target, maps [T,H,W])

    # whether label maps depend on a score threshold (swept on validation, stored, shown)
    uses_threshold = True

    def build_net(self, settings: Mapping[str, Any]) -> torch.nn.Module:
        """The network for this task's classes from the ``net`` settings."""
        return build_maskrcnn(num_classes=self.task.num_classes, **settings)

    # ----------------------------------------------------------------- inference
    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Raw Mask R-CNN detections for a list of images (eval mode)."""
        return self.net(images)

    def fuse_outputs(self, output: Mapping[str, Tensor]) -> Tensor:
        """One image's detections -> H x W label map at the module's threshold(s)."""
        fusion = self.hparams.fusion
        return fuse(
            output["labels"],
            output["scores"],
            output["masks"],
            method=fusion["method"],
            threshold=self.score_threshold,
            mask_threshold=fusion["mask_threshold"],
            class_thresholds=self.active_class_thresholds,
        )

    @property
    def per_class_search(self) -> bool:
        """Whether validation searches per-class thresholds (asked for, not overridden)."""
        return (
            self.uses_threshold
            and bool(self.hparams.fusion["per_class_thresholds"])
            and self.hparams.threshold is None
        )

    @property
    def active_class_thresholds(self) -> Tensor | None:
        """The per-class thresholds in use: asked for and chosen on validation, else None."""
        if self.per_class_search and bool(self.use_class_thresholds):
            return self.class_thresholds
        return None

    @torch.no_grad()
    def predict_maps(self, images: list[Tensor]) -> list[Tensor]:
        """Label maps (H x W, each photo's own size) for a list of [0, 1] float images."""
        return [self.fuse_outputs(output) for output in self.net(images)]

    @property
    def score_threshold(self) -> float | None:
        """The global score threshold in use: the override, else the validated one."""
        if self.hparams.threshold is not None:
            return float(self.hparams.threshold)
        return round(float(self.best_threshold), 6)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: tuple[list[Tensor], list[dict]], batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.net(images, [{k: t[k] for k in TARGET_KEYS} for t in targets])
        total = self._checked_total(losses, batch_idx)
        batch_size = len(images)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, batch_size=batch_size)
        self.log("train/loss", total, prog_bar=True, batch_size=batch_size)
        return total

    def _checked_total(self, losses: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        """The summed loss; stop at once, naming the step and terms, if it is NaN or inf.

        One check of the sum (a single device sync per step); the terms are read only
        when it fails.
        """
        total = sum(losses.values())
        if torch.isfinite(total):
            return total
        bad = [f"{k}={v.item()}" for k, v in losses.items() if not torch.isfinite(v)]
        bad = bad or [f"sum={total.item()}"]  # finite terms whose sum overflows
        raise NonFiniteLossError(
            f"non-finite training loss at step {self.global_step} "
            f"(epoch {self.current_epoch}, batch {batch_idx}): {', '.join(bad)}"
        )

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = instantiate(self.hparams.optimizer, params=params)
        scheduler = build_scheduler(
            optimizer, self.hparams.scheduler, self.trainer.estimated_stepping_batches
        )
        if scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ---------------------------------------------------------------- validation
    def validation_step(self, batch: tuple[list[Tensor], list[dict]], batch_idx: int) -> None:
        images, targets = batch
        fusion = self.hparams.fusion
        for image, output, target in zip(images, self.net(images), targets, strict=True):
            maps = fuse_sweep(
                output["labels"],
                output["scores"],
                output["masks"],
                self.sweep_thresholds,
                method=fusion["method"],
                mask_threshold=fusion["mask_threshold"],
            )
            self.val_sweep.update(maps, target["semantic"])
            if self.per_class_search:
                self._cache.add(
                    output["labels"], output["scores"], output["masks"], target["semantic"]
                )
            if len(self._shown) < self._images_to_show():
                self._shown.append((image.detach(), target["semantic"], maps))

    def on_validation_epoch_end(self) -> None:
        result = self.val_sweep.compute()
        self.val_sweep.reset()
        choice = self.choose_thresholds(result["confmat"])
        self._cache.clear()
        thresholds = self.hparams.thresholds
        best = thresholds.index(choice.threshold)
        miou = result["miou"].reshape(-1)
        for t, value in zip(thresholds, miou.tolist(), strict=True):
            self.log(f"val_sweep/miou@{t:.2f}", value)
        # val/miou (the checkpoints' monitor) scores the setting in use
        self.log("val/miou", choice.val_miou, prog_bar=True)
        if self.uses_threshold:
            self.log("val/best_threshold", choice.threshold)
            self.log("val/miou_global", choice.val_miou_global)
        if self.per_class_search:
            self.log("val/miou_per_class", float(choice.val_miou_per_class))
            self.log("val/per_class_used", float(choice.use_class_thresholds))
        self.log("val/pixel_accuracy", result["pixel_accuracy"].reshape(-1)[best].item())
        for name, value in zip(self.task.class_names, result["iou"][best].tolist(), strict=True):
            self.log(f"val/iou/{name}", value)
        if not self.trainer.sanity_checking:
            self.store_choice(choice)
        self.last_val_result = {**result, "choice": choice}
        self._log_pictures(miou.tolist(), best)

    def choose_thresholds(self, confmat: Tensor) -> ThresholdChoice:
        """Choose the global (and, when asked, per-class) thresholds on this validation."""
        thresholds = self.hparams.thresholds
        if not self.per_class_search:
            return choose(confmat, thresholds, self.task.num_classes)
        grid = self.sweep_thresholds

        def confmats(cls: int, class_thresholds: Tensor) -> Tensor:
            metric = ThresholdSweep(
                self.task.num_classes, thresholds, ignore_index=self.val_sweep.ignore_index
            ).to(self.device)
            for image in self._cache.images:
                maps = self._cache.class_sweep(image, class_thresholds, cls, grid.cpu())
                metric.update(maps.to(self.device), image.target.to(self.device).long())
            return metric.compute()["confmat"].cpu()

        return choose(confmat, thresholds, self.task.num_classes, True, confmats)

    def store_choice(self, choice: ThresholdChoice) -> None:
        """Keep validation's choice and figures in the buffers (so in checkpoints)."""
        self.best_threshold.fill_(choice.threshold)
        self.class_thresholds.copy_(torch.tensor(choice.class_thresholds))
        self.use_class_thresholds.fill_(choice.use_class_thresholds)
        self.val_miou.fill_(choice.val_miou)
        self.val_miou_global.fill_(choice.val_miou_global)
        per_class = choice.val_miou_per_class
        self.val_miou_per_class.fill_(float("nan") if per_class is None else per_class)

    def threshold_choice(self) -> dict[str, Any] | None:
        """The stored choice as JSON-ready values (None for threshold-free models)."""
        if not self.uses_threshold:
            return None

        def number(buffer: Tensor) -> float | None:
            value = float(buffer)
            return None if value != value else value

        return {
            "threshold": round(float(self.best_threshold), 6),
            "class_thresholds": _rounded(self.class_thresholds) if self.per_class_search else None,
            "per_class_used": self.active_class_thresholds is not None,
            "val_miou_global": number(self.val_miou_global),
            "val_miou_per_class": number(self.val_miou_per_class),
            "override": self.hparams.threshold,
        }

    def _tensorboard(self) -> Any:
        """The TensorBoard SummaryWriter of the first TensorBoard logger, if any."""
        for logger in self.loggers if self._trainer is not None else []:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    def _images_to_show(self) -> int:
        every = max(self.hparams.log_images_every_n_epochs, 1)
        if self._trainer is None or self.trainer.sanity_checking or self.current_epoch % every:
            return 0
        return self.hparams.log_images if self._tensorboard() is not None else 0

    def _log_pictures(self, miou: list[float], best: int) -> None:
        """Threshold curve and prediction grid for TensorBoard (rank zero only)."""
        shown, self._shown = self._shown, []
        writer = self._tensorboard()
        if writer is None or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        thresholds = self.hparams.thresholds
        if self.uses_threshold:
            fig = threshold_curve(thresholds, miou, thresholds[best])
            writer.add_figure("val/threshold_curve", fig, self.global_step)
        if shown:
            grid = comparison_grid(
                [s[0] for s in shown],
                [s[1] for s in shown],
                [s[2][best] for s in shown],
                self.task.colors,
            )
            writer.add_image("val/predictions", grid, self.global_step)

    # ---------------------------------------------------------------------- test
    def test_step(self, batch: tuple[list[Tensor], list[dict]], batch_idx: int) -> None:
        images, targets = batch
        for label_map, target in zip(self.predict_maps(images), targets, strict=True):
            self.test_scores.update(label_map[None], target["semantic"])

    def on_test_epoch_end(self) -> None:
        result = self.test_scores.compute()
        self.test_scores.reset()
        confmat = result["confmat"][0]
        class_thresholds = self.active_class_thresholds
        self.test_results = metrics_dict(
            confmat,
            self.task.class_names,
            threshold=self.score_threshold,
            class_thresholds=None if class_thresholds is None else _rounded(class_thresholds),
            threshold_choice=self.threshold_choice(),
        )
        test_miou = self.test_results["miou"]
        self.log("test/miou", float("nan") if test_miou is None else test_miou)
        self.log("test/pixel_accuracy", float(result["pixel_accuracy"].reshape(-1)[0]))
        for name, value in zip(self.task.class_names, result["iou"][0].tolist(), strict=True):
            self.log(f"test/iou/{name}", value)
        self._log_hparams_metrics()

    def _log_hparams_metrics(self) -> None:
        """Fill TensorBoard's hparams tab: this run's settings with its final metrics."""
        logger = next((lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None or not self.trainer.is_global_zero or self.test_results is None:
            return
        metrics = {"hp/test_miou": self.test_results["miou"] or 0.0}
        if self.score_threshold is not None:
            metrics["hp/best_threshold"] = self.score_threshold
        if not torch.isnan(self.val_miou):  # the tested checkpoint's own validation figure
            metrics["hp/val_miou"] = float(self.val_miou)
        logger.log_hyperparams(_flat_hparams(self.hparams), metrics)

    # ------------------------------------------------------------------- predict
    def predict_step(self, batch: Any, batch_idx: int) -> list[Tensor]:
        images = (
            batch[0]
            if isinstance(batch, tuple | list) and batch and isinstance(batch[0], list)
            else batch
        )
        return self.predict_maps(list(images))
