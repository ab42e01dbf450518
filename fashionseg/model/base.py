"""The small base of the LightningModules: batches in and out, metrics, logging, optimizers.

:class:`SegmentationBase` knows nothing of instances or score thresholds: a model makes
label maps (:meth:`~SegmentationBase.predict_maps` for test and predict,
:meth:`~SegmentationBase.validation_maps` for validation, one map per column of the
validation sweep), and the base scores them by IoU, logs ``val/*`` and ``test/*``, keeps
validation's mIoU of the setting in use in the ``val_miou`` buffer (so in checkpoints),
guards against NaN losses and builds the optimizer and scheduler. The siblings:
:class:`fashionseg.model.module.SegmentationModule` (Mask R-CNN: fusion and the score
threshold sweep) and :class:`fashionseg.model.semantic.SemanticModule` (argmax).
TensorBoard pictures and the hparams tab are drawn by
:class:`fashionseg.callbacks.TensorBoardPictures` from what the modules expose here
(``last_val_result``, the maps :meth:`validation_step` returns, ``test_results``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import Container, OmegaConf
from torch import Tensor

from fashionseg.data.targets import IGNORE_INDEX
from fashionseg.metrics import ThresholdSweep, metrics_dict, miou_from_confmat
from fashionseg.model.schedule import build_scheduler
from fashionseg.tasks import Task, get_task

# the trainer.callback_metrics keys of what spawned processes hand the main one
HANDOVER = "fashionseg/"

DEFAULT_OPTIMIZER: dict[str, Any] = {
    "_target_": "torch.optim.SGD",
    "lr": 1e-4,
    "momentum": 0.9,
    "weight_decay": 0.0,
}
Batch = tuple[list[Tensor], list[dict]]


def _plain(value: Any) -> Any:
    """Hydra/OmegaConf containers -> plain dicts and lists (checkpoints stay weights-only)."""
    if isinstance(value, Container):
        return OmegaConf.to_container(value, resolve=True)
    return value


class NonFiniteLossError(RuntimeError):
    """Raised when a training loss becomes NaN or infinite."""


class SegmentationBase(L.LightningModule):
    """What every segmentation module shares; subclasses build the network and label maps.

    Args:
        task: ``person`` or ``clothing``.
        net: the network's settings, given to :meth:`build_net`.
        optimizer: an optimizer config with ``_target_`` (SGD with the seed report's
            lr 1e-4 and momentum 0.9 by default), built for the trainable parameters.
        scheduler: see :func:`fashionseg.model.schedule.build_scheduler`.
        family: the model family a checkpoint's hyper-parameters name (saved from the
            class's :attr:`family`); given (hyper-parameters read back), it must be the
            class's own.
        init_from: a fashionseg checkpoint whose network weights ``train`` loads before
            the first step (:func:`fashionseg.model.checkpoint.init_from_checkpoint`);
            only recorded here, never loaded by the constructor.
        **settings: the subclass's own hyper-parameters, saved after these (plain values).
    """

    #: the model family saved in the hyper-parameters (``maskrcnn``, ``semantic``): what
    #: :func:`fashionseg.model.checkpoint.load_module` rebuilds a checkpoint as
    family: ClassVar[str] = ""

    def __init__(
        self,
        task: str | Mapping[str, Any] | Task = "person",
        net: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        family: str | None = None,
        init_from: str | None = None,
        **settings: Any,
    ) -> None:
        # settings are the named parameters of the subclass's own constructor (a subclass
        # without one has none); anything else is a typo, not a hyper-parameter to save
        unexpected = sorted(set(settings) - type(self).accepted_settings())
        if unexpected:
            raise TypeError(
                f"{type(self).__name__} got unexpected settings: {', '.join(unexpected)}"
            )
        if family is not None and family != type(self).family:
            raise ValueError(
                f"hyper-parameters of a {family!r} model given to {type(self).__name__} "
                f"(family {type(self).family!r})"
            )
        super().__init__()
        net, optimizer, scheduler = (_plain(x) for x in (net, optimizer, scheduler))
        # the whole label set is saved (a checkpoint carries its classes and colours);
        # a name alone (checkpoints from before label sets were config) names a built-in
        label_set = get_task(task)
        self.save_hyperparameters(
            {
                "family": type(self).family,
                "task": label_set.to_config(),
                "net": dict(net or {}),
                "optimizer": dict(optimizer or DEFAULT_OPTIMIZER),
                "scheduler": dict(scheduler or {}),
                "init_from": str(init_from) if init_from else None,
                **settings,
            }
        )
        self.task = label_set
        self.net = self.build_net(self.hparams.net)
        num_classes = self.task.num_classes
        # validation's mIoU of the setting in use (kept in checkpoints: the best
        # checkpoint's own validation figure, not the last epoch's, goes with its test)
        self.register_buffer("val_miou", torch.tensor(float("nan")))
        # pixels of data.ignore_index (IGNORE_INDEX in the targets) count in no metric
        self.val_sweep = ThresholdSweep(
            num_classes, self.validation_columns(), ignore_index=IGNORE_INDEX
        )
        self.test_scores = ThresholdSweep(num_classes, [0.5], ignore_index=IGNORE_INDEX)
        self.test_results: dict[str, Any] | None = None
        self.last_val_result: dict[str, Any] | None = None

    @classmethod
    def accepted_settings(cls) -> set[str]:
        """The keyword arguments the constructor takes: the base's and the subclass's own."""
        names: set[str] = set()
        for klass in cls.__mro__:
            if issubclass(klass, SegmentationBase) and "__init__" in vars(klass):
                names |= {
                    p.name
                    for p in inspect.signature(klass.__init__).parameters.values()
                    if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
                }
        return names

    # ------------------------------------------------------------ subclass interface
    def build_net(self, settings: Mapping[str, Any]) -> torch.nn.Module:
        """The network for this task's classes from the ``net`` settings."""
        raise NotImplementedError

    def predict_maps(self, images: list[Tensor]) -> list[Tensor]:
        """Label maps (H x W, each photo's own size) for a list of [0, 1] float images."""
        raise NotImplementedError

    def validation_columns(self) -> Sequence[float]:
        """The validation sweep's columns (one label map each): a single one here."""
        return [0.5]

    def validation_maps(self, images: list[Tensor], targets: list[dict]) -> list[Tensor]:
        """One ``[columns, H, W]`` stack of label maps per image for validation."""
        return [label_map[None] for label_map in self.predict_maps(images)]

    def validated_setting(self, result: dict[str, Any]) -> dict[str, Any]:
        """From the validation sweep's ``result``: ``index`` (the column in use) and
        ``val_miou`` (its mIoU), plus what a subclass adds."""
        return {"index": 0, "val_miou": float(miou_from_confmat(result["confmat"]).reshape(-1)[0])}

    def test_settings(self) -> dict[str, Any]:
        """What the test label maps were made with, for :func:`fashionseg.metrics.metrics_dict`."""
        return {}

    @property
    def score_threshold(self) -> float | None:
        """The score threshold label maps are made at; None: pixels are labelled by argmax."""
        return None

    # ------------------------------------------------------------------ training
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
    def on_validation_epoch_start(self) -> None:
        # fresh counts in this process's own memory: under ddp_spawn the module's tensors
        # reach every worker in shared memory, where the ranks' counts would add up twice
        self.val_sweep.reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> list[Tensor]:
        """Score the batch; returns its ``[columns, H, W]`` label maps (for callbacks)."""
        images, targets = batch
        maps = self.validation_maps(images, targets)
        for label_maps, target in zip(maps, targets, strict=True):
            self.val_sweep.update(label_maps, target["semantic"])
        return maps

    def on_validation_epoch_end(self) -> None:
        result = self.val_sweep.compute()
        self.val_sweep.reset()
        setting = self.validated_setting(result)
        index = setting["index"]
        # val/miou (the checkpoints' monitor) scores the setting in use
        self.log("val/miou", setting["val_miou"], prog_bar=True)
        self.log("val/pixel_accuracy", result["pixel_accuracy"].reshape(-1)[index].item())
        for name, value in zip(self.task.class_names, result["iou"][index].tolist(), strict=True):
            self.log(f"val/iou/{name}", value)
        if not self.trainer.sanity_checking:
            self.val_miou.fill_(setting["val_miou"])
        self.last_val_result = {**result, **setting}
        if self.trainer.state.fn == "validate":  # trainer.validate: evaluate's re-choice
            self.hand_over("validation", self._validation_handover(self.last_val_result))

    # ------------------------------------------------ results of spawned processes
    def hand_over(self, name: str, value: Any) -> None:
        """Give ``value`` (plain values and tensors) to the main process of a spawned run.

        Under ``ddp_spawn`` the stages run in worker processes and the main process's
        module never sees their results; Lightning sends rank 0's
        ``trainer.callback_metrics`` back (``torch.save``, loaded ``weights_only``), so
        the value travels there under a ``fashionseg/`` key. :meth:`take_over` reads it.
        """
        self.trainer.callback_metrics[HANDOVER + name] = value

    def _validation_handover(self, result: dict[str, Any]) -> dict[str, Any]:
        """What the main process needs of a ``trainer.validate``: the module's own buffers
        (validation's choice) and the sweep's figures."""
        keep = ("miou", "index", "val_miou", "thresholds")
        return {
            "buffers": {k: v.detach().cpu() for k, v in self.named_buffers(recurse=False)},
            "result": {k: v for k, v in result.items() if k in keep},
        }

    def take_over(self, trainer: L.Trainer) -> None:
        """In the main process after a stage that ran in spawned processes: the test
        results and validation's choice that rank 0 handed over (nothing when the stage
        ran here: the module has them already)."""
        got = trainer.callback_metrics
        if self.test_results is None and HANDOVER + "test_results" in got:
            self.test_results = got[HANDOVER + "test_results"]
        validation = got.get(HANDOVER + "validation")
        if self.last_val_result is None and validation is not None:
            self.load_state_dict(validation["buffers"], strict=False)
            self.last_val_result = dict(validation["result"])

    # ---------------------------------------------------------------------- test
    def on_test_epoch_start(self) -> None:
        self.test_scores.reset()  # this process's own counts (see on_validation_epoch_start)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        images, targets = batch
        for label_map, target in zip(self.predict_maps(images), targets, strict=True):
            self.test_scores.update(label_map[None], target["semantic"])

    def on_test_epoch_end(self) -> None:
        result = self.test_scores.compute()
        self.test_scores.reset()
        confmat = result["confmat"][0]
        self.test_results = metrics_dict(confmat, self.task.class_names, **self.test_settings())
        test_miou = self.test_results["miou"]
        self.log("test/miou", float("nan") if test_miou is None else test_miou)
        self.log("test/pixel_accuracy", float(result["pixel_accuracy"].reshape(-1)[0]))
        for name, value in zip(self.task.class_names, result["iou"][0].tolist(), strict=True):
            self.log(f"test/iou/{name}", value)

    def on_test_end(self) -> None:
        self.hand_over("test_results", self.test_results)  # complete (AP included) by now

    # ------------------------------------------------------------------- predict
    def predict_step(self, batch: Any, batch_idx: int) -> list[Tensor]:
        images = (
            batch[0]
            if isinstance(batch, tuple | list) and batch and isinstance(batch[0], list)
            else batch
        )
        return self.predict_maps(list(images))
