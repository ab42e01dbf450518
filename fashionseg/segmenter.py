"""A small Python API for embedding a trained model: photos in, label maps out.

    from fashionseg import Segmenter

    seg = Segmenter.from_checkpoint("runs/x/checkpoints/last.ckpt", device="cuda")
    label_map = seg("photo.jpg")                # torch.uint8, H x W, class ids
    maps = seg([pil_image, numpy_rgb, tensor])  # one per input, each at its own size

A path is read as :func:`fashionseg.data.io.read_image` reads it (EXIF orientation
applied, every PIL mode as 8-bit RGB), so ``seg(path)`` gives the label map that
``python -m fashionseg.predict`` writes for that photo. A PIL image gets the same
treatment (its EXIF orientation tag applied); arrays and tensors are taken as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fashionseg.data.photo import photo_rgb
from fashionseg.model.base import SegmentationBase
from fashionseg.tasks import Task

Photo: TypeAlias = str | Path | Image.Image | np.ndarray | Tensor


def label_maps(module: SegmentationBase, images: Sequence[Tensor]) -> list[Tensor]:
    """The module's label maps (H x W, on its device) for 3 x H x W images already on
    its device: uint8 (divided by 255, as predict does) or float in [0, 1].

    Images of equal size run together, each size on its own: no image is padded to
    another's size, so every photo gets the label map it gets alone.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault((int(image.shape[-2]), int(image.shape[-1])), []).append(i)
    maps: list[Tensor | None] = [None] * len(images)
    for indices in groups.values():
        batch = [_as_float(images[i]) for i in indices]
        for i, label_map in zip(indices, module.predict_maps(batch), strict=True):
            maps[i] = label_map
    return [m for m in maps if m is not None]


def _as_float(image: Tensor) -> Tensor:
    if image.dtype == torch.uint8:
        return image.to(torch.float32) / 255
    return image.to(torch.float32)


def as_image_tensor(photo: Photo) -> Tensor:
    """One input as a 3 x H x W tensor (uint8, or float in [0, 1]) on the CPU.

    A path (str or Path), a PIL image or a NumPy array (H x W x 3 uint8 RGB) is read by
    :func:`fashionseg.data.photo.photo_rgb`, as ``predict`` reads a path (EXIF
    orientation applied once); a tensor must be 3 x H x W, uint8 or floating point in
    [0, 1].
    Anything else is a TypeError or ValueError saying what was expected.
    """
    if isinstance(photo, str | Path | Image.Image | np.ndarray):
        rgb = photo_rgb(photo)  # the one reading of every entry point (data.photo)
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    if isinstance(photo, Tensor):
        if photo.ndim != 3 or photo.shape[0] != 3:
            raise ValueError(
                f"a tensor photo must be 3 x H x W, got shape {tuple(photo.shape)} "
                "(an H x W x 3 one: pass photo.permute(2, 0, 1))"
            )
        if photo.dtype == torch.uint8:
            return photo
        if not photo.is_floating_point():
            raise ValueError(f"a tensor photo must be uint8 or float in [0, 1], got {photo.dtype}")
        low, high = float(photo.min()), float(photo.max())
        if low < 0 or high > 1:
            raise ValueError(
                f"a float tensor photo must hold values in [0, 1], got {low:g}..{high:g}"
            )
        return photo
    raise TypeError(
        f"cannot segment a {type(photo).__name__}: give a path, a PIL image, an H x W x 3 "
        "uint8 NumPy array or a 3 x H x W tensor (or a list of them)"
    )


class Segmenter:
    """A trained model ready to label photos; see the module docstring.

    Calling it returns, for each photo, a ``torch.uint8`` tensor H x W on the CPU
    holding class ids (``segmenter.task.class_names`` names them), at the photo's
    displayed size. Photos are run ``batch_size`` at a time, in groups of equal size.
    """

    def __init__(
        self, module: SegmentationBase, device: str | torch.device = "cpu", batch_size: int = 4
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        self.device = torch.device(device)
        self.module = module.eval().to(self.device)
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        task: str | Mapping[str, Any] | Task | None = None,
        threshold: float | None = None,
        batch_size: int = 4,
    ) -> Segmenter:
        """Load a checkpoint safely (:func:`fashionseg.model.checkpoint.load_module`:
        weights only; ``task`` must match it when given; ``threshold`` overrides the
        validated score threshold of a Mask R-CNN model) onto ``device`` ("cpu", "cuda",
        "cuda:1", "mps", ...).

        A ``.onnx`` file (from :mod:`fashionseg.export`) runs with onnxruntime on the CPU
        (:class:`ExportedSegmenter`); its threshold is fixed in its graph."""
        if str(path).endswith(".onnx"):
            return ExportedSegmenter(path, device=device, task=task, threshold=threshold)
        from fashionseg.model.checkpoint import load_module

        return cls(load_module(path, task=task, threshold=threshold), device, batch_size)

    @property
    def task(self) -> Task:
        """The task: ``task.class_names[i]`` is class id ``i``; ``task.colors`` its colour."""
        return self.module.task

    @property
    def threshold(self) -> float | None:
        """The score threshold label maps are made at (None: argmax models)."""
        return self.module.score_threshold

    def __call__(self, photos: Photo | Sequence[Photo]) -> Tensor | list[Tensor]:
        """A label map for a photo, or a list of them (in order) for a list or tuple."""
        if isinstance(photos, list | tuple):
            return self.segment(photos)
        return self.segment([photos])[0]

    @torch.inference_mode()
    def segment(self, photos: Sequence[Photo]) -> list[Tensor]:
        """Label maps (``torch.uint8``, H x W, CPU) for a sequence of photos, in order."""
        maps: list[Tensor] = []
        for start in range(0, len(photos), self.batch_size):
            chunk = [as_image_tensor(p) for p in photos[start : start + self.batch_size]]
            on_device = [image.to(self.device) for image in chunk]
            maps += [m.to("cpu", torch.uint8) for m in label_maps(self.module, on_device)]
        return maps

    def __repr__(self) -> str:
        shown: Any = self.threshold
        return (
            f"Segmenter(task={self.task.name}, threshold={shown}, device={self.device}, "
            f"batch_size={self.batch_size})"
        )


class ExportedSegmenter(Segmenter):
    """:class:`Segmenter` for an exported model (:class:`fashionseg.runtime.OnnxModel`):
    the same calls and label maps (``torch.uint8``, H x W); onnxruntime on the CPU.

    ``threshold`` cannot be changed (it is in the graph); ``task`` must match.
    For a process without torch, use :class:`fashionseg.runtime.OnnxModel` itself.
    """

    def __init__(
        self,
        path: str | Path,
        device: str | torch.device = "cpu",
        task: str | None = None,
        threshold: float | None = None,
    ) -> None:
        from fashionseg.runtime import OnnxModel

        if torch.device(device).type != "cpu":
            raise ValueError(f"device={device}: an exported model runs on the CPU")
        self.model = OnnxModel(path)
        if task is not None and task != self.model.labels.name:
            raise ValueError(
                f"{path}: the model is for task {self.model.labels.name!r}, not {task!r}"
            )
        if threshold is not None:
            raise ValueError(f"{path}: an exported model's threshold is fixed in its graph")
        self.device = torch.device("cpu")
        self.batch_size = 1

    @property
    def task(self) -> Any:
        """The label set: ``task.class_names[i]`` is class id ``i``; ``task.colors`` its colour."""
        return self.model.labels

    @property
    def threshold(self) -> float | None:
        return self.model.threshold

    def segment(self, photos: Sequence[Photo]) -> list[Tensor]:
        """Label maps (``torch.uint8``, H x W) for a sequence of photos, in order."""
        maps = []
        for photo in photos:
            image = as_image_tensor(photo)
            if image.dtype != torch.uint8:
                image = (image * 255).round().to(torch.uint8)
            rgb = image.permute(1, 2, 0).contiguous().numpy()
            maps.append(torch.from_numpy(self.model.label_map(rgb)))
        return maps
