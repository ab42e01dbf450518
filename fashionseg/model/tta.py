"""Test-time augmentation: flip within padded batches, and multi-scale averaging.

A batch pads every photo at its right and bottom. Flipping the whole padded tensor would
put the mirror image's padding on its left, a layout the network never saw in training
(and a shift of the content against the borders it may have learned). Instead each
photo is mirrored within its own region ``[:h, :w]``, padding kept at the right, and the
network's output is mirrored back within the same region.

Multi-scale TTA (:func:`scale_average`) runs the model on the photo resized by each of
``tta_scales`` times the model's own resize, brings each scale's class probabilities back
to the photo's size and averages them (probabilities, not logits: see there); flip TTA,
where on, averages logits within each scale, as it always has.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor


def mirror_within(batch: Tensor, sizes: Sequence[tuple[int, int]]) -> Tensor:
    """A copy of ``batch`` ``[B, C, H, W]`` whose ``i``-th item is mirrored left-right
    within its top-left ``sizes[i]`` region (the rest, padding, is zero)."""
    height, width = batch.shape[-2:]
    # F.pad, not a copy into a zero batch: the same values, and an exported graph's Pad
    # instead of a slow ScatterElements
    return torch.stack(
        [
            torch.nn.functional.pad(batch[i, :, :h, :w].flip(-1), (0, width - w, 0, height - h))
            for i, (h, w) in enumerate(sizes)
        ]
    )


def mirror_average(
    plain: Tensor,
    net: Callable[[Tensor], Tensor],
    batch: Tensor,
    sizes: Sequence[tuple[int, int]],
) -> Tensor:
    """The mean of ``plain`` (``net``'s output ``[B, K, H, W]`` for ``batch``, already
    computed) and ``net``'s output for each photo's mirror image, mirrored back. Outside
    the photos' regions ``sizes`` the result is not meaningful (callers crop it away)."""
    return (plain + mirror_within(net(mirror_within(batch, sizes)), sizes)) / 2


# ------------------------------------------------------------------ multi-scale
def check_scales(scales: Any) -> tuple[float, ...]:
    """``tta_scales`` as a tuple of floats: a non-empty list of positive finite numbers,
    no repeats (ValueError naming the setting otherwise). ``(1.0,)`` is the photo at the
    model's own size alone (no multi-scale TTA)."""
    if isinstance(scales, str | bytes) or not isinstance(scales, Sequence) or not scales:
        raise ValueError(f"tta_scales={scales!r}: give a non-empty list of scales, e.g. [1.0]")
    values = []
    for value in scales:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"tta_scales={list(scales)}: {value!r} is not a number")
        if not math.isfinite(value) or value <= 0 or value > 4:
            raise ValueError(f"tta_scales={list(scales)}: {value} is not a scale in (0, 4]")
        values.append(float(value))
    if len(set(values)) != len(values):
        raise ValueError(f"tta_scales={list(scales)}: a scale is given twice")
    return tuple(values)


def scale_average(
    probs_at: Callable[[float], Sequence[Tensor]], scales: Sequence[float]
) -> list[Tensor]:
    """The mean over ``scales`` of ``probs_at(s)`` (one ``[C, H, W]`` probability map per
    photo, each already at its photo's own size): multi-scale test-time augmentation.

    *Probabilities* are averaged, not logits, as mmsegmentation's TTA does: the logits of
    different input scales are not on one scale (a network is more confident on the size
    it was trained at), so a logit average would let the most confident scale decide;
    the mean of probabilities is a proper ensemble, still sums to 1 over the classes, and
    its maximum is the confidence that pseudo-labelling thresholds. One scale returns its
    maps unchanged (``[1.0]``: exactly the output without multi-scale TTA).
    """
    total: list[Tensor] | None = None
    for scale in scales:
        probs = list(probs_at(scale))
        total = probs if total is None else [a + b for a, b in zip(total, probs, strict=True)]
    assert total is not None, "at least one scale"
    if len(scales) == 1:
        return total
    return [t / len(scales) for t in total]
