"""Flip test-time augmentation for padded batches.

A batch pads every photo at its right and bottom. Flipping the whole padded tensor would
put the mirror image's padding on its left, a layout the network never saw in training
(and a shift of the content against the borders it may have learned). Instead each
photo is mirrored within its own region ``[:h, :w]``, padding kept at the right, and the
network's output is mirrored back within the same region.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def mirror_within(batch: Tensor, sizes: Sequence[tuple[int, int]]) -> Tensor:
    """A copy of ``batch`` ``[B, C, H, W]`` whose ``i``-th item is mirrored left-right
    within its top-left ``sizes[i]`` region (the rest, padding, is zero)."""
    out = torch.zeros_like(batch)
    for i, (h, w) in enumerate(sizes):
        out[i, :, :h, :w] = batch[i, :, :h, :w].flip(-1)
    return out


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
