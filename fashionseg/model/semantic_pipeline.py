"""The semantic models' pre- and post-processing around their network, as one module.

:class:`SemanticPipeline` goes from photos to per-pixel class probabilities: resize (scale
``min(min_size / short side, max_size / long side)``, as Mask R-CNN does), normalise with
ImageNet statistics, pad to a batch whose sides are multiples of 32, run the network
(averaged with the mirror image's output with flip TTA), crop each photo's logits and
upsample them back to its own size; with ``tta_scales`` the same at each scale of the
model's resize, the class probabilities averaged (:func:`fashionseg.model.tta.scale_average`).
:class:`fashionseg.model.semantic.SemanticModule`
trains and evaluates through it, and :mod:`fashionseg.export` exports it (with
:class:`PhotoToLabels` turning a uint8 photo into a uint8 label map around it): the
exported graph is this code, not a second copy.

The arithmetic is written so that it also traces with symbolic sizes (``torch.export``):
the padded size is integer arithmetic, the resized size ``round(side * scale)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fashionseg.data.targets import IGNORE_INDEX
from fashionseg.model.tta import check_scales, mirror_average, scale_average

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
STRIDE = 32  # the padded batch's sides are multiples of this


def resized_size(
    height: int, width: int, min_size: int, max_size: int, factor: float = 1.0
) -> tuple[int, int]:
    """The size a ``height`` x ``width`` photo is resized to before the network (times
    ``factor``: a multi-scale TTA scale)."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    if factor != 1.0:  # the plain path keeps its arithmetic (and its traced graph)
        scale = scale * factor
    return max(1, round(height * scale)), max(1, round(width * scale))


def padded(side: int) -> int:
    """``side`` rounded up to a multiple of :data:`STRIDE` (integer arithmetic)."""
    return (side + STRIDE - 1) // STRIDE * STRIDE


class SemanticPipeline(nn.Module):
    """Photos (float in [0, 1], 3 x H x W each) -> class probabilities at each photo's size.

    ``net`` is a torchvision segmentation model (its output's ``"out"`` are the logits);
    ``mean`` and ``std`` are ``[3, 1, 1]`` tensors (the owning module's buffers, so that
    they follow its device). ``tta_hflip`` averages the logits of each photo and its
    mirror image, outside training; ``tta_scales`` (outside training) runs each photo at
    every scale of its resized size and averages the class probabilities, each brought
    back to the photo's size (``(1.0,)``: the photo once, at the model's own size).
    """

    def __init__(
        self,
        net: nn.Module,
        min_size: int,
        max_size: int,
        tta_hflip: bool = False,
        mean: Tensor | None = None,
        std: Tensor | None = None,
        tta_scales: tuple[float, ...] | list[float] = (1.0,),
    ) -> None:
        super().__init__()
        self.net = net
        self.min_size = int(min_size)
        self.max_size = int(max_size)
        self.tta_hflip = bool(tta_hflip)
        self.tta_scales = check_scales(tta_scales)
        self.register_buffer(
            "mean", torch.tensor(MEAN).view(3, 1, 1) if mean is None else mean, persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(STD).view(3, 1, 1) if std is None else std, persistent=False
        )

    def size_of(self, height: int, width: int, scale: float = 1.0) -> tuple[int, int]:
        """The resized size of one photo (:func:`resized_size` with this model's sides),
        at a multi-scale TTA ``scale``."""
        return resized_size(height, width, self.min_size, self.max_size, scale)

    def batch(
        self,
        images: Sequence[Tensor],
        labels: Sequence[Tensor] | None = None,
        scale: float = 1.0,
    ) -> tuple[Tensor, Tensor | None, list[tuple[int, int]]]:
        """Resized (times ``scale``), normalised, padded images [B,3,H,W] (+ labels
        [B,H,W], padding ignored) and each photo's resized size."""
        sizes = [self.size_of(*img.shape[-2:], scale) for img in images]
        height = padded(max(h for h, _ in sizes))
        width = padded(max(w for _, w in sizes))
        # each photo zero-padded on the right and bottom (F.pad, not a slice assignment:
        # the same values, and an exported graph's Pad, where a copy into a zero batch
        # became a ScatterElements that took 14 % of ONNX Runtime's time)
        x = torch.stack(
            [
                F.pad(
                    (
                        F.interpolate(img[None], (h, w), mode="bilinear", align_corners=False)[0]
                        - self.mean
                    )
                    / self.std,
                    (0, width - w, 0, height - h),
                )
                for img, (h, w) in zip(images, sizes, strict=True)
            ]
        )
        y = None if labels is None else torch.full_like(x[:, 0], IGNORE_INDEX, dtype=torch.long)
        if labels is not None and y is not None:
            for i, (h, w) in enumerate(sizes):
                label = labels[i][None, None].float()
                y[i, :h, :w] = F.interpolate(label, (h, w), mode="nearest")[0, 0].long()
        return x, y, sizes

    def logits(self, x: Tensor, sizes: Sequence[tuple[int, int]]) -> Tensor:
        """The network's logits for a padded batch (with the mirror image's, averaged,
        when flip TTA is on outside training)."""
        out = self.net(x)["out"]
        if self.tta_hflip and not self.training:
            out = mirror_average(out, lambda batch: self.net(batch)["out"], x, sizes)
        return out

    def forward(self, images: Sequence[Tensor]) -> list[Tensor]:
        """Class probabilities [C, H, W] at each photo's own size (averaged over
        ``tta_scales`` outside training)."""
        scales = (1.0,) if self.training else self.tta_scales
        return scale_average(lambda scale: self.probs_at(images, scale), scales)

    def labels(self, images: Sequence[Tensor]) -> list[Tensor]:
        """Each photo's label map [H, W] (int64): the class of highest probability. With
        one scale it is the argmax of the upsampled logits, which the softmax does not
        change (it is monotonic): the softmax over the full-size map is skipped, which
        was a quarter of the exported graph's time in ONNX Runtime."""
        if self.training or self.tta_scales == (1.0,):
            return [logits.argmax(0) for logits in self.logits_at(images)]
        return [probs.argmax(0) for probs in self(images)]

    def logits_at(self, images: Sequence[Tensor], scale: float = 1.0) -> list[Tensor]:
        """Logits [C, H, W] at each photo's own size from the network run at ``scale``
        times the model's resize (flip TTA included when on)."""
        x, _, sizes = self.batch(images, scale=scale)
        logits = self.logits(x, sizes)
        return [
            F.interpolate(
                logits[i : i + 1, :, :h, :w], img.shape[-2:], mode="bilinear", align_corners=False
            )[0]
            for i, (img, (h, w)) in enumerate(zip(images, sizes, strict=True))
        ]

    def probs_at(self, images: Sequence[Tensor], scale: float = 1.0) -> list[Tensor]:
        """Class probabilities [C, H, W] at each photo's own size from the network run at
        ``scale`` times the model's resize (flip TTA included when on)."""
        return [full.softmax(0) for full in self.logits_at(images, scale)]


class PhotoToLabels(nn.Module):
    """A uint8 RGB photo ``H x W x 3`` -> its uint8 label map ``H x W`` (the exported graph).

    The photo becomes a float image in [0, 1] as predict makes it (``/ 255``), goes through
    ``pipeline`` (:class:`SemanticPipeline`) and each pixel takes the class of highest
    probability (:meth:`SemanticPipeline.labels`, as :meth:`SemanticModule.predict_maps`).
    """

    def __init__(self, pipeline: SemanticPipeline) -> None:
        super().__init__()
        self.pipeline = pipeline

    def forward(self, photo: Tensor) -> Tensor:
        image = photo.permute(2, 0, 1).to(torch.float32) / 255
        return self.pipeline.labels([image])[0].to(torch.uint8)
