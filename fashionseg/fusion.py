"""Instances -> one label map per image (pure tensor functions, no model needed).

Input for one image is torchvision Mask R-CNN's output: ``labels`` [N] (class ids >= 1),
``scores`` [N] and soft ``masks`` [N, 1, H, W] (or [N, H, W]) of mask probabilities.
The output is an int64 [H, W] label map, 0 = background. Methods:

- ``seed``: the seed report's. Keep instances with ``score > threshold``; paint them in
  output order (torchvision sorts by descending score, so the least confident kept
  instance wins overlaps); an instance covers the pixels where its mask probability is
  ``> mask_threshold``.
- ``score_order``: as ``seed`` but painted from lowest to highest score, so the most
  confident instance wins overlaps (on equal scores, the earlier instance wins).
- ``argmax``: each pixel takes, among the instances covering it (mask probability
  ``> mask_threshold``), the one with the highest ``score x mask probability``; the pixel
  stays background unless that value is ``> threshold``.

``class_thresholds`` (a [C] tensor indexed by class id) replaces the global threshold by
the threshold of each instance's class. Everything runs on the inputs' device;
:func:`fuse_sweep` gives the maps for many thresholds at about the cost of one.
"""

from __future__ import annotations

import torch
from torch import Tensor

METHODS = ("seed", "score_order", "argmax")


def _check(method: str, masks: Tensor) -> Tensor:
    if method not in METHODS:
        raise ValueError(f"unknown fusion method {method!r}: choose one of {', '.join(METHODS)}")
    if masks.dim() == 4:
        masks = masks[:, 0]
    if masks.dim() != 3:
        raise ValueError(f"masks must be N x 1 x H x W or N x H x W, got {tuple(masks.shape)}")
    return masks


def _paint_ranks(scores: Tensor, method: str) -> Tensor:
    """1-based painting position of each instance (the highest rank wins a pixel)."""
    n = scores.numel()
    index = torch.arange(n, device=scores.device)
    if method == "seed":
        return index + 1
    # ascending score; on ties the earlier instance is painted last (so it wins)
    by_index_desc = index.flip(0)
    order = by_index_desc[torch.argsort(scores[by_index_desc], stable=True)]
    ranks = torch.empty_like(index)
    ranks[order] = index + 1
    return ranks


def _argmax_map(
    labels: Tensor, scores: Tensor, probs: Tensor, mask_threshold: float
) -> tuple[Tensor, Tensor]:
    """Per pixel the best ``score x prob`` among covering instances, and its class."""
    value = torch.where(probs > mask_threshold, probs * scores[:, None, None], 0.0)
    best, winner = value.max(0)
    return best, labels[winner]


def fuse_sweep(
    labels: Tensor,
    scores: Tensor,
    masks: Tensor,
    thresholds: Tensor,
    *,
    method: str = "seed",
    mask_threshold: float = 0.5,
) -> Tensor:
    """Label maps [T, H, W] for every score threshold in ``thresholds`` at once.

    Equal to stacking :func:`fuse` for each threshold. The instances are visited once:
    for ``seed``/``score_order`` a running maximum of painting ranks over instances
    sorted by descending score gives, for every prefix of kept instances, each pixel's
    winner; for ``argmax`` the per-pixel best value is computed once and thresholded.
    """
    probs = _check(method, masks)
    thresholds = torch.as_tensor(thresholds, dtype=torch.float32, device=probs.device)
    n, height, width = probs.shape
    out = torch.zeros((thresholds.numel(), height, width), dtype=torch.int64, device=probs.device)
    if n == 0:
        return out
    labels = labels.to(torch.int64)
    if method == "argmax":
        best, best_label = _argmax_map(labels, scores, probs, mask_threshold)
        keep = best[None] > thresholds[:, None, None]
        return torch.where(keep, best_label[None], out)
    ranks = _paint_ranks(scores, method)
    order = torch.argsort(scores, descending=True, stable=True)
    covered = (probs[order] > mask_threshold).flatten(1)
    running = torch.cummax(covered * ranks[order, None].to(torch.int32), dim=0).values
    kept = (scores[None, :] > thresholds[:, None]).sum(1)  # kept instances form a prefix
    winner_rank = torch.where(
        (kept > 0)[:, None], running[(kept - 1).clamp(min=0)], torch.zeros_like(running[:1])
    )
    label_of_rank = torch.zeros(n + 1, dtype=torch.int64, device=probs.device)
    label_of_rank[ranks] = labels
    return label_of_rank[winner_rank.long()].view(-1, height, width)


def fuse(
    labels: Tensor,
    scores: Tensor,
    masks: Tensor,
    *,
    method: str = "seed",
    threshold: float = 0.5,
    mask_threshold: float = 0.5,
    class_thresholds: Tensor | None = None,
) -> Tensor:
    """One image's instances -> int64 [H, W] label map (see the module docstring)."""
    if class_thresholds is None:
        thr = torch.tensor([float(threshold)], device=masks.device)
        return fuse_sweep(labels, scores, masks, thr, method=method, mask_threshold=mask_threshold)[
            0
        ]
    probs = _check(method, masks)
    n, height, width = probs.shape
    out = torch.zeros((height, width), dtype=torch.int64, device=probs.device)
    if n == 0:
        return out
    labels = labels.to(torch.int64)
    class_thresholds = torch.as_tensor(class_thresholds, device=probs.device)
    if method == "argmax":
        best, best_label = _argmax_map(labels, scores, probs, mask_threshold)
        return torch.where(best > class_thresholds[best_label], best_label, out)
    kept = scores > class_thresholds[labels]
    ranks = _paint_ranks(scores, method)
    value = (probs > mask_threshold) & kept[:, None, None]
    best_rank = (value * ranks[:, None, None]).max(0).values
    label_of_rank = torch.zeros(n + 1, dtype=torch.int64, device=probs.device)
    label_of_rank[ranks] = labels
    return label_of_rank[best_rank]
