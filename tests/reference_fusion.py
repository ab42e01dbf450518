"""Today's fusion (fashionseg/fusion.py at commit 2ca2a05): the reference for tests.

All functions are pure tensor code on the inputs' device. Inputs for one image are
torchvision Mask R-CNN outputs: ``labels`` int64 ``[N]`` (class ids >= 1), ``scores``
``[N]`` and ``masks`` ``[N, 1, H, W]`` (or ``[N, H, W]``) mask probabilities. The output
is an int64 ``[H, W]`` label map where 0 is background.

An instance *covers* the pixels where its mask probability is ``> mask_threshold``.

- ``"seed"``: the seed report's painting. Instances with ``score > threshold`` (or
  ``> class_thresholds[label]``) are *kept* and painted in output order, later ones
  overwriting earlier ones. Torchvision sorts outputs by descending score, so the
  *least* confident kept instance wins overlaps.
- ``"score_order"``: the kept instances painted from lowest to highest score, so the
  most confident one wins; on equal scores the instance earlier in output order wins.
- ``"argmax"``: each pixel takes, among the instances covering it, the one with the
  highest ``score * mask probability`` (float32; on equal products the higher score
  wins, then the earlier output index), and stays background unless that value is
  ``> threshold`` (or ``> class_thresholds`` of the winner's class). The threshold thus
  applies to the per-pixel confidence, not to whole instances.

- ``"panoptic"`` (Panoptic FPN's heuristic fusion): start from the semantic head's
  label map (``semantic``: its per-pixel argmax) and paint the kept instances over it as
  ``score_order`` does (lowest to highest score, so the most confident wins), each only
  on the pixels it covers. Pixels no kept instance covers keep the semantic label.
- ``"semantic"``: the semantic head's label map alone; instances, ``threshold`` and
  ``class_thresholds`` are not used (a sweep gives the same map at every threshold).

The last two need ``semantic``: the head's ``[C, H, W]`` class scores or ``[H, W]``
label map (:class:`fashionseg.model.panoptic.PanopticMaskRCNN` outputs ``sem_probs``).

Implementation: for ``seed``/``score_order`` instances are visited once by descending
score (stable). The instances kept at threshold ``t`` are exactly the first
``#(score > t)`` visited, so :func:`fuse_sweep` snapshots the running winner after each
such prefix and costs about one :func:`fuse` at the lowest threshold plus one copy per
threshold, with ``[H, W]`` working memory. ``argmax`` finds each pixel's best instance
once and compares its value with every threshold.
"""

from __future__ import annotations

import torch
from torch import Tensor

# the methods that fuse instances alone
METHODS: tuple[str, ...] = ("seed", "score_order", "argmax")
# the methods that need the semantic head's output too
SEMANTIC_METHODS: tuple[str, ...] = ("panoptic", "semantic")
# every method fuse() takes
ALL_METHODS: tuple[str, ...] = METHODS + SEMANTIC_METHODS
# the methods whose label maps do not depend on a score threshold
THRESHOLDLESS_METHODS: tuple[str, ...] = ("semantic",)


def _check_method(method: str) -> None:
    if method not in ALL_METHODS:
        raise ValueError(
            f"unknown fusion method {method!r}: choose one of {', '.join(ALL_METHODS)}"
        )


def semantic_labels(semantic: Tensor | None, method: str, size: tuple[int, int]) -> Tensor | None:
    """The semantic label map ``[H, W]`` (int64) that ``method`` starts from; None for the
    methods that do not use one. ``semantic`` is ``[C, H, W]`` scores (argmax taken; ties
    to the lower class) or an ``[H, W]`` label map, at the masks' size ``size``."""
    if method not in SEMANTIC_METHODS:
        return None
    if semantic is None:
        raise ValueError(
            f"fusion method {method!r} needs the semantic head's output "
            "(a model with model.net.semantic_head=true)"
        )
    if semantic.dim() == 3:
        semantic = semantic.argmax(0)
    if semantic.dim() != 2 or tuple(semantic.shape) != tuple(size):
        raise ValueError(
            f"semantic must be [C, {size[0]}, {size[1]}] or [{size[0]}, {size[1]}] "
            f"(the masks' size), got {tuple(semantic.shape)}"
        )
    return semantic.to(torch.int64)


def _paint(instance_maps: Tensor, semantic: Tensor | None) -> Tensor:
    """Instance label maps ``[T, H, W]`` (0 where no instance) over the semantic map."""
    if semantic is None:
        return instance_maps
    semantic = semantic.to(instance_maps.device)
    return torch.where(instance_maps > 0, instance_maps, semantic[None])


def _instance_method(method: str) -> str:
    """The instance painting of ``method`` (panoptic paints as score_order)."""
    return "score_order" if method == "panoptic" else method


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


def argmax_best(
    labels: Tensor, scores: Tensor, probs: Tensor, mask_threshold: float
) -> tuple[Tensor, Tensor]:
    """Per pixel the best ``score * prob`` among covering instances (-1 where none), and
    its class. Ties go to the higher score, then the earlier output index."""
    height, width = probs.shape[-2:]
    best = torch.full((height, width), -1.0, device=probs.device)
    label = torch.zeros(height, width, dtype=torch.int64, device=probs.device)
    for i in torch.argsort(scores, descending=True, stable=True).tolist():
        value = scores[i].float() * probs[i].float()
        take = (probs[i] > mask_threshold) & (value > best)
        best = torch.where(take, value, best)
        label = torch.where(take, labels[i].to(torch.int64), label)
    return best, label


def fuse(
    labels: Tensor,
    scores: Tensor,
    masks: Tensor,
    *,
    method: str = "seed",
    threshold: float = 0.5,
    mask_threshold: float = 0.5,
    class_thresholds: Tensor | None = None,
    semantic: Tensor | None = None,
) -> Tensor:
    """Fuse one image's instances into an int64 ``[H, W]`` label map (0 = background).

    Args:
        labels: int64 ``[N]`` class ids (>= 1).
        scores: ``[N]`` detection scores.
        masks: ``[N, 1, H, W]`` or ``[N, H, W]`` mask probabilities.
        method: one of :data:`ALL_METHODS` (see the module docstring).
        threshold: keep instances with ``score > threshold`` (``argmax``: keep pixels whose
            best ``score * mask probability`` is ``> threshold``).
        mask_threshold: an instance covers the pixels with probability ``> mask_threshold``.
        class_thresholds: optional ``[C]`` tensor indexed by class id (entry 0 unused);
            when given, an instance is kept when ``score > class_thresholds[label]`` and
            ``threshold`` is ignored.
        semantic: the semantic head's ``[C, H, W]`` scores or ``[H, W]`` labels, needed by
            ``panoptic`` and ``semantic`` (ignored by the other methods).
    """
    _check_method(method)
    probs = _mask_probs(labels, scores, masks)
    base = semantic_labels(semantic, method, tuple(probs.shape[-2:]))
    if method == "semantic":
        return base.to(probs.device)
    if method == "argmax":
        best, label = argmax_best(labels, scores, probs, mask_threshold)
        if class_thresholds is None:
            return torch.where(best > threshold, label, torch.zeros_like(label))
        class_thresholds = torch.as_tensor(class_thresholds, device=probs.device)
        limit = class_thresholds.to(best)[label]
        return torch.where(best > limit, label, torch.zeros_like(label))
    if class_thresholds is None:
        kept = scores > threshold
    else:
        class_thresholds = torch.as_tensor(class_thresholds, device=scores.device)
        kept = scores > class_thresholds.to(scores)[labels]
    maps = _winner_maps(
        labels[kept],
        scores[kept],
        probs[kept],
        _instance_method(method),
        mask_threshold,
        [int(kept.sum())],
    )
    return _paint(maps, base)[0]


def fuse_sweep(
    labels: Tensor,
    scores: Tensor,
    masks: Tensor,
    thresholds: Tensor,
    *,
    method: str = "seed",
    mask_threshold: float = 0.5,
    semantic: Tensor | None = None,
    class_thresholds: Tensor | None = None,
    cls: int | None = None,
) -> Tensor:
    """Fuse at every score threshold at once: int64 ``[T, H, W]``.

    Without ``class_thresholds``, map ``i`` equals :func:`fuse` with
    ``threshold=thresholds[i]`` (``[T]``, compared in the dtype of ``scores`` like
    :func:`fuse`'s float threshold), at about the cost of one :func:`fuse` plus one
    ``[H, W]`` copy per threshold.

    With ``class_thresholds [C]`` and a class id ``cls``, map ``i`` equals :func:`fuse`
    with those per-class thresholds and ``class_thresholds[cls] = thresholds[i]``: class
    ``cls`` takes each threshold while every other class keeps its own. The cost is about
    one :func:`fuse` (the other classes' instances are painted once, then those of ``cls``
    by descending score with a snapshot per threshold); this is what a search over
    per-class thresholds scores, one class at a time.
    """
    _check_method(method)
    if (class_thresholds is None) != (cls is None):
        raise ValueError("class_thresholds and cls go together: give both or neither")
    probs = _mask_probs(labels, scores, masks)
    thresholds = torch.as_tensor(thresholds, device=scores.device)
    if thresholds.dim() != 1:
        raise ValueError(f"thresholds must be 1-D, got shape {tuple(thresholds.shape)}")
    base = semantic_labels(semantic, method, tuple(probs.shape[-2:]))
    if thresholds.numel() == 0:
        return torch.zeros(0, *probs.shape[-2:], dtype=torch.int64, device=probs.device)
    if method == "semantic":
        return base.to(probs.device)[None].repeat(thresholds.numel(), 1, 1)
    method = _instance_method(method)
    if class_thresholds is not None:
        class_thresholds = torch.as_tensor(class_thresholds, device=scores.device)
        return _class_sweep(
            labels,
            scores,
            probs,
            base,
            class_thresholds,
            int(cls),
            thresholds,
            method,
            mask_threshold,
        )
    if method == "argmax":
        best, label = argmax_best(labels, scores, probs, mask_threshold)
        keep = best[None] > thresholds.to(best)[:, None, None]
        return torch.where(keep, label[None], torch.zeros_like(label)[None])
    num_kept = (scores[None, :] > thresholds.to(scores)[:, None]).sum(dim=1).tolist()
    maps = _winner_maps(labels, scores, probs, method, mask_threshold, num_kept)
    return _paint(maps, base)


def argmax_class_sweep(
    best: Tensor, label: Tensor, class_thresholds: Tensor, cls: int, thresholds: Tensor
) -> Tensor:
    """``argmax`` label maps ``[T, H, W]`` where class ``cls`` takes each of ``thresholds``.

    ``best``/``label`` are each pixel's best ``score * mask probability`` and its class
    (see :func:`fuse`); every other class keeps its entry of ``class_thresholds [C]``.
    Map ``i`` equals :func:`fuse` with ``class_thresholds[cls] = thresholds[i]``.
    """
    label = label.to(torch.int64)
    thresholds = torch.as_tensor(thresholds, device=best.device).to(best)
    limit = torch.as_tensor(class_thresholds, device=best.device).to(best)[label]
    keep_other = (best > limit) & (label != cls)
    keep_cls = (label == cls)[None] & (best[None] > thresholds[:, None, None])
    keep = keep_other[None] | keep_cls
    return torch.where(keep, label[None], torch.zeros_like(label)[None])


def _class_sweep(
    labels: Tensor,
    scores: Tensor,
    probs: Tensor,
    base: Tensor | None,
    class_thresholds: Tensor,
    cls: int,
    thresholds: Tensor,
    method: str,
    mask_threshold: float,
) -> Tensor:
    """:func:`fuse_sweep`'s per-class case, for an instance ``method``."""
    if method == "argmax":
        best, label = argmax_best(labels, scores, probs, mask_threshold)
        return argmax_class_sweep(best, label, class_thresholds, cls, thresholds)
    own = labels == cls
    kept_other = ~own & (scores > class_thresholds.to(scores)[labels])
    candidates = own & (scores > thresholds.to(scores).min())
    keep = kept_other | candidates
    labels, scores, probs, own = labels[keep], scores[keep], probs[keep], own[keep]
    # Visit every kept other-class instance first (a running maximum does not depend on
    # the visiting order), then this class's by descending score; the keys still rank
    # instances as the full fusion does.
    n, height, width = probs.shape
    device = probs.device
    order = torch.argsort(scores, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, device=device)
    if method == "seed":
        key = torch.arange(n, dtype=torch.int32, device=device) + 1  # later output wins
    else:
        key = (n - rank).to(torch.int32)  # higher score (then earlier output) wins
    label_of_key = torch.zeros(n + 1, dtype=torch.int64, device=device)
    label_of_key[key.long()] = labels.to(torch.int64)
    running = torch.zeros(height, width, dtype=torch.int32, device=device)
    for i in torch.nonzero(~own).flatten().tolist():
        running = torch.maximum(running, (probs[i] > mask_threshold) * key[i])
    own_order = [i for i in order.tolist() if own[i]]
    own_scores = scores[own_order] if own_order else scores.new_zeros(0)
    counts = (own_scores[None, :] > thresholds.to(scores)[:, None]).sum(dim=1).tolist()
    snapshots = {0: running}
    for step, i in enumerate(own_order[: max(counts, default=0)]):
        running = torch.maximum(running, (probs[i] > mask_threshold) * key[i])
        snapshots[step + 1] = running
    maps = torch.empty(len(counts), height, width, dtype=torch.int64, device=device)
    for out, k in zip(maps, counts, strict=True):
        torch.index_select(label_of_key, 0, snapshots[k].view(-1), out=out.view(-1))
    return _paint(maps, base)
