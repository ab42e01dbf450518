"""Fuse one image's Mask R-CNN instances into a single per-pixel label map.

All functions are pure tensor code on the inputs' device. Inputs for one image are
torchvision Mask R-CNN outputs: ``labels`` int64 ``[N]`` (class ids >= 1), ``scores``
``[N]`` and ``masks`` ``[N, 1, H, W]`` (or ``[N, H, W]``) mask probabilities. The output
is an int64 ``[H, W]`` label map where 0 is background.

An instance is *kept* when ``score > threshold`` (or ``score > class_thresholds[label]``)
and *covers* the pixels where its mask probability is ``> mask_threshold``. For every
method a pixel is foreground exactly when some kept instance covers it; the methods
differ only in which of the kept, covering instances wins the pixel:

- ``"seed"``: the seed report's painting: instances are painted in output order, later
  ones overwrite earlier ones. Torchvision sorts outputs by descending score, so the
  *least* confident kept instance wins overlaps.
- ``"score_order"``: painted from lowest to highest score, so the most confident instance
  wins; on equal scores the instance earlier in output order wins.
- ``"argmax"``: the instance with the highest ``score * mask probability`` (float32) at
  that pixel; on equal products the higher score wins, then the earlier output index.
  Instances that are not kept, or do not cover the pixel, never compete: a dropped
  instance cannot turn a pixel that a kept instance covers into background.

Implementation: instances are visited once by descending score (stable). The instances
kept at threshold ``t`` are exactly the first ``#(score > t)`` visited, so
:func:`fuse_sweep` snapshots the running winner after each such prefix and costs about
one :func:`fuse` at the lowest threshold plus one copy per threshold. Each step is
vectorised over the pixels and needs only ``[H, W]`` working memory.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

METHODS: tuple[str, ...] = ("seed", "score_order", "argmax")


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown fusion method {method!r}: choose one of {', '.join(METHODS)}")


def _mask_probs(labels: Tensor, scores: Tensor, masks: Tensor) -> Tensor:
    """Return ``masks`` as ``[N, H, W]`` after checking that the three inputs agree."""
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.dim() != 3:
        raise ValueError(f"masks must be [N, 1, H, W] or [N, H, W], got {tuple(masks.shape)}")
    n = masks.shape[0]
    if labels.shape != (n,) or scores.shape != (n,):
        raise ValueError(
            f"labels {tuple(labels.shape)} and scores {tuple(scores.shape)} must both be [{n}]"
        )
    return masks


def _winner_maps(
    labels: Tensor,
    scores: Tensor,
    probs: Tensor,
    method: str,
    mask_threshold: float,
    counts: list[int],
) -> Tensor:
    """Label maps ``[len(counts), H, W]`` after visiting the ``k`` highest-scoring instances, for each ``k`` in ``counts``.

    Instances are visited by descending score (stable: equal scores keep output order).
    """
    if method == "argmax":
        return _argmax_maps(labels, scores, probs, mask_threshold, counts)
    # Each instance gets a distinct key >= 1, higher wins; a pixel keeps the running
    # maximum of the keys of the visited instances covering it (0 = none).
    n, height, width = probs.shape
    device = probs.device
    order = torch.argsort(scores, descending=True, stable=True)
    if method == "seed":
        keys = order.to(torch.int32) + 1  # the later output index wins
    else:
        keys = torch.arange(n, 0, -1, dtype=torch.int32, device=device)  # first visited wins
    label_of_key = torch.zeros(n + 1, dtype=torch.int64, device=device)
    label_of_key[keys.long()] = labels[order].to(torch.int64)
    running = torch.zeros(height, width, dtype=torch.int32, device=device)
    snapshots = {0: running}
    wanted = set(counts)
    for step in range(max(counts, default=0)):
        covers = probs[order[step]] > mask_threshold
        running = torch.maximum(running, covers * keys[step])
        if step + 1 in wanted:
            snapshots[step + 1] = running
    maps = torch.empty(len(counts), height, width, dtype=torch.int64, device=device)
    for out, k in zip(maps, counts, strict=True):
        torch.index_select(label_of_key, 0, snapshots[k].view(-1), out=out.view(-1))
    return maps


def _argmax_maps(
    labels: Tensor, scores: Tensor, probs: Tensor, mask_threshold: float, counts: list[int]
) -> Tensor:
    """:func:`_winner_maps` for ``argmax``: the strictly greater ``score * prob`` takes a pixel."""
    height, width = probs.shape[-2:]
    device = probs.device
    best_value = torch.full((height, width), -math.inf, device=device)
    best_label = torch.zeros(height, width, dtype=torch.int64, device=device)
    snapshots = {0: best_label}
    order = torch.argsort(scores, descending=True, stable=True)
    labels = labels.to(torch.int64)
    wanted = set(counts)
    for step in range(max(counts, default=0)):
        i = order[step]
        value = scores[i].float() * probs[i].float()
        take = (probs[i] > mask_threshold) & (value > best_value)
        best_value = torch.where(take, value, best_value)
        best_label = torch.where(take, labels[i], best_label)
        if step + 1 in wanted:
            snapshots[step + 1] = best_label
    return torch.stack([snapshots[k] for k in counts])


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
    """Fuse one image's instances into an int64 ``[H, W]`` label map (0 = background).

    Args:
        labels: int64 ``[N]`` class ids (>= 1).
        scores: ``[N]`` detection scores.
        masks: ``[N, 1, H, W]`` or ``[N, H, W]`` mask probabilities.
        method: one of :data:`METHODS` (see the module docstring).
        threshold: keep instances with ``score > threshold``.
        mask_threshold: an instance covers the pixels with probability ``> mask_threshold``.
        class_thresholds: optional ``[C]`` tensor indexed by class id (entry 0 unused);
            when given, an instance is kept when ``score > class_thresholds[label]`` and
            ``threshold`` is ignored.
    """
    _check_method(method)
    probs = _mask_probs(labels, scores, masks)
    if class_thresholds is None:
        kept = scores > threshold
    else:
        class_thresholds = torch.as_tensor(class_thresholds, device=scores.device)
        kept = scores > class_thresholds.to(scores)[labels]
    maps = _winner_maps(
        labels[kept], scores[kept], probs[kept], method, mask_threshold, [int(kept.sum())]
    )
    return maps[0]


def fuse_sweep(
    labels: Tensor,
    scores: Tensor,
    masks: Tensor,
    thresholds: Tensor,
    *,
    method: str = "seed",
    mask_threshold: float = 0.5,
) -> Tensor:
    """Fuse at every score threshold at once: int64 ``[T, H, W]``.

    Equal to stacking :func:`fuse` over ``thresholds`` (``[T]``, compared in the dtype
    of ``scores`` like :func:`fuse`'s float threshold) at about the cost of one
    :func:`fuse` plus one ``[H, W]`` copy per threshold.
    """
    _check_method(method)
    probs = _mask_probs(labels, scores, masks)
    thresholds = torch.as_tensor(thresholds, device=scores.device)
    if thresholds.dim() != 1:
        raise ValueError(f"thresholds must be 1-D, got shape {tuple(thresholds.shape)}")
    if thresholds.numel() == 0:
        return torch.zeros(0, *probs.shape[-2:], dtype=torch.int64, device=probs.device)
    num_kept = (scores[None, :] > thresholds.to(scores)[:, None]).sum(dim=1).tolist()
    return _winner_maps(labels, scores, probs, method, mask_threshold, num_kept)
