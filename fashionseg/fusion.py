"""Fuse Mask R-CNN instances into per-pixel label maps: one set of tensor ops per batch.

All functions are pure tensor code on the inputs' device, with no loop over photos or
instances and no host round trip (no ``.item()``, ``.tolist()``, ``nonzero``, no Python
``if`` on a tensor's values), so the same code runs eagerly, batched on a GPU, and
exports to ONNX (``torch.onnx.export(..., dynamo=False)``) with a dynamic number of
detections. Inputs for one image are torchvision Mask R-CNN outputs: ``labels`` int64
``[N]`` (class ids >= 1), ``scores`` ``[N]`` and ``masks`` ``[N, 1, H, W]`` (or
``[N, H, W]``) mask probabilities; a batch adds a leading ``B`` (``labels [B, N]``,
``masks [B, N, 1, H, W]`` or ``[B, N, H, W]``: pad images with fewer detections with
all-zero masks, which cover no pixel). The output is an int64 ``[H, W]`` (``[B, H, W]``)
label map where 0 is background.

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
label map (``[B, ...]`` for a batch; :class:`fashionseg.model.panoptic.PanopticMaskRCNN`
outputs ``sem_probs``).

Implementation: every instance gets a distinct integer *key* >= 1 (seed: its output
index + 1; score_order: the number of instances ranked below it by the stable
descending-score order, + 1), and a pixel takes the largest key among the kept
instances covering it (0: none), looked up in a key -> label table: a painting order is
a maximum. The ranks come from an ``[N, N]`` comparison (no sort, so stable everywhere).
:func:`fuse_sweep` takes the running maximum (``cummax``) over the instances in
descending-score order, since the instances kept at threshold ``t`` are the first
``#(score > t)`` of them, and reads one prefix per threshold: about the cost of one
:func:`fuse`.
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


def check_fusion_setting(method: str, semantic_head: bool) -> None:
    """``fusion.method`` of a Mask R-CNN with (``semantic_head``) or without the semantic
    head: a ValueError whose one line names the setting when it cannot work. The one
    home of this rule: the module's constructor and the settings check before any work
    (:mod:`fashionseg.settings`) both call it."""
    if method not in ALL_METHODS:
        raise ValueError(f"fusion.method={method}: choose one of {', '.join(ALL_METHODS)}")
    if method in SEMANTIC_METHODS and not semantic_head:
        raise ValueError(
            f"fusion.method={method}: needs the semantic head "
            "(add model.net.semantic_head=true or use model=maskrcnn_panoptic)"
        )


def semantic_labels(semantic: Tensor | None, method: str, size: tuple[int, ...]) -> Tensor | None:
    """The semantic label map ``[H, W]`` (int64) that ``method`` starts from; None for the
    methods that do not use one. ``semantic`` is ``[C, H, W]`` scores (argmax taken; ties
    to the lower class) or an ``[H, W]`` label map, at the masks' size ``size``; with a
    batch (``size`` ``(B, H, W)``) ``[B, C, H, W]`` or ``[B, H, W]``."""
    if method not in SEMANTIC_METHODS:
        return None
    if semantic is None:
        raise ValueError(
            f"fusion method {method!r} needs the semantic head's output "
            "(a model with model.net.semantic_head=true)"
        )
    if semantic.dim() == len(size) + 1:
        semantic = semantic.argmax(-3)
    if tuple(semantic.shape) != tuple(size):
        want = ", ".join(str(s) for s in size)
        raise ValueError(
            f"semantic must be [{want}] labels or class scores with a C before the "
            f"last two sides (the masks' size), got {tuple(semantic.shape)}"
        )
    return semantic.to(torch.int64)


def _paint(instance_maps: Tensor, semantic: Tensor | None) -> Tensor:
    """Instance label maps (0 where no instance) over the semantic map (broadcast)."""
    if semantic is None:
        return instance_maps
    semantic = semantic.to(instance_maps.device)
    return torch.where(instance_maps > 0, instance_maps, semantic)


def _instance_method(method: str) -> str:
    """The instance painting of ``method`` (panoptic paints as score_order)."""
    return "score_order" if method == "panoptic" else method


def _batched(labels: Tensor, scores: Tensor, masks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``labels``/``scores`` ``[B, N]`` and ``masks`` ``[B, N, H, W]`` after checking them."""
    single = labels.dim() == 1
    if single:
        labels, scores, masks = labels[None], scores[None], masks[None]
    if masks.dim() == 5 and masks.shape[2] == 1:
        masks = masks[:, :, 0]
    if masks.dim() != 4 or labels.dim() != 2:
        raise ValueError(
            f"masks must be [N, 1, H, W] or [N, H, W] (a leading B for a batch), got "
            f"{tuple(masks.shape[1:] if single else masks.shape)}"
        )
    if labels.shape != masks.shape[:2] or scores.shape != masks.shape[:2]:
        raise ValueError(
            f"labels {tuple(labels.shape)} and scores {tuple(scores.shape)} must both be "
            f"{list(masks.shape[:2])} (the masks' leading sides)"
        )
    return labels, scores, masks


def ranks(scores: Tensor) -> tuple[Tensor, Tensor]:
    """``(rank, below)`` ``[..., N]`` int64 of the stable descending-score order: ``rank``
    counts the instances visited before each (higher score, or equal and earlier in
    output order), ``below`` those visited after it."""
    index = torch.ones_like(scores, dtype=torch.int64).cumsum(-1)
    before = (scores[..., None, :] > scores[..., :, None]) | (
        (scores[..., None, :] == scores[..., :, None]) & (index[..., None, :] < index[..., :, None])
    )  # before[..., i, j]: j is visited before i
    return before.sum(-1), before.sum(-2)


def _keys(scores: Tensor, method: str) -> Tensor:
    """Each instance's painting key ``[B, N]`` (int64, distinct, >= 1; larger paints last)."""
    if method == "seed":
        return torch.ones_like(scores, dtype=torch.int64).cumsum(-1)  # later output wins
    return ranks(scores)[1] + 1  # the first visited (highest score) wins


def _labels_of(keys: Tensor, labels: Tensor, winner: Tensor) -> Tensor:
    """Label maps ``[B, ..., H, W]`` of the winning keys (0 -> background)."""
    table = torch.nn.functional.pad(torch.zeros_like(labels, dtype=torch.int64), (1, 0))
    table = table.scatter(1, keys, labels.to(torch.int64))
    flat = winner.reshape(winner.shape[0], -1).to(torch.int64)
    return table.gather(1, flat).reshape(winner.shape)


def _max_over_instances(values: Tensor, fill: float | int) -> Tensor:
    """``values [B, N, ...]`` reduced by max over N (``fill`` where N is 0)."""
    if values.shape[1] == 0:
        return values.new_full((values.shape[0], *values.shape[2:]), fill)
    # at least ``fill``: an exported graph meets N = 0 here too (ONNX's ReduceMax of an
    # empty set is the dtype's lowest value)
    return values.amax(1).clamp(min=fill)


def kept_instances(
    labels: Tensor, scores: Tensor, threshold: float | Tensor, class_thresholds: Tensor | None
) -> Tensor:
    """``[B, N]`` bool: ``score > threshold`` or, given ``[C]`` per-class thresholds,
    ``score > class_thresholds[label]`` (compared in the dtype of ``scores``)."""
    if class_thresholds is None:
        return scores > torch.as_tensor(threshold, device=scores.device).to(scores)
    class_thresholds = torch.as_tensor(class_thresholds, device=scores.device).to(scores)
    return scores > class_thresholds[labels]


def argmax_best(
    labels: Tensor, scores: Tensor, probs: Tensor, mask_threshold: float
) -> tuple[Tensor, Tensor]:
    """Per pixel the best ``score * prob`` among covering instances (-1 where none), and
    its class. Ties go to the higher score, then the earlier output index. Shapes as
    :func:`fuse` takes them (one image or a batch); the results are ``[(B,) H, W]``."""
    single = labels.dim() == 1
    labels, scores, probs = _batched(labels, scores, probs)
    covers = probs > mask_threshold
    value = scores[:, :, None, None].float() * probs.float()
    value = torch.where(covers, value, torch.full_like(value, -1.0))
    best = _max_over_instances(value, -1.0)
    key = ranks(scores)[1] + 1
    tied = covers & (value == best[:, None])
    winner = _max_over_instances(torch.where(tied, key[:, :, None, None], 0), 0)
    label = _labels_of(key, labels, winner)
    return (best[0], label[0]) if single else (best, label)


def fuse(
    labels: Tensor,
    scores: Tensor,
    masks: Tensor,
    *,
    method: str = "seed",
    threshold: float | Tensor = 0.5,
    mask_threshold: float = 0.5,
    class_thresholds: Tensor | None = None,
    semantic: Tensor | None = None,
) -> Tensor:
    """Fuse one image's (or a batch's) instances into int64 ``[(B,) H, W]`` label maps.

    Args:
        labels: int64 ``[N]`` (``[B, N]``) class ids (>= 1).
        scores: ``[N]`` (``[B, N]``) detection scores.
        masks: ``[N, 1, H, W]`` or ``[N, H, W]`` mask probabilities (a leading ``B``).
        method: one of :data:`ALL_METHODS` (see the module docstring).
        threshold: keep instances with ``score > threshold`` (``argmax``: keep pixels whose
            best ``score * mask probability`` is ``> threshold``); a float or 0-d tensor.
        mask_threshold: an instance covers the pixels with probability ``> mask_threshold``.
        class_thresholds: optional ``[C]`` tensor indexed by class id (entry 0 unused);
            when given, an instance is kept when ``score > class_thresholds[label]`` and
            ``threshold`` is ignored.
        semantic: the semantic head's ``[(B,) C, H, W]`` scores or ``[(B,) H, W]`` labels,
            needed by ``panoptic`` and ``semantic`` (ignored by the other methods).
    """
    _check_method(method)
    single = labels.dim() == 1
    labels, scores, probs = _batched(labels, scores, masks)
    size = (probs.shape[0], *probs.shape[-2:])
    base = semantic_labels(
        None if semantic is None else (semantic[None] if single else semantic), method, size
    )
    if method == "semantic":
        out = base.to(probs.device)
    elif method == "argmax":
        best, label = argmax_best(labels, scores, probs, mask_threshold)
        if class_thresholds is None:
            limit = torch.as_tensor(threshold, device=best.device).to(best)
        else:
            limit = torch.as_tensor(class_thresholds, device=best.device).to(best)[label]
        out = torch.where(best > limit, label, torch.zeros_like(label))
    else:
        kept = kept_instances(labels, scores, threshold, class_thresholds)
        keys = _keys(scores, _instance_method(method))
        kept_keys = torch.where(kept, keys, 0).to(torch.int32)  # 0: not kept, paints nothing
        keyed = torch.where(probs > mask_threshold, kept_keys[:, :, None, None], 0)
        winner = _max_over_instances(keyed, 0).to(torch.int64)
        out = _paint(_labels_of(keys, labels, winner), base)
    return out[0] if single else out


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
    """Fuse one image at every score threshold at once: int64 ``[T, H, W]``.

    Without ``class_thresholds``, map ``i`` equals :func:`fuse` with
    ``threshold=thresholds[i]`` (``[T]``, compared in the dtype of ``scores`` like
    :func:`fuse`'s float threshold), at about the cost of one :func:`fuse` plus one
    ``[H, W]`` copy per threshold.

    With ``class_thresholds [C]`` and a class id ``cls``, map ``i`` equals :func:`fuse`
    with those per-class thresholds and ``class_thresholds[cls] = thresholds[i]``: class
    ``cls`` takes each threshold while every other class keeps its own (what a search
    over per-class thresholds scores, one class at a time), at about the same cost.
    """
    _check_method(method)
    if (class_thresholds is None) != (cls is None):
        raise ValueError("class_thresholds and cls go together: give both or neither")
    labels, scores, probs = (x[0] for x in _batched(labels, scores, masks))
    thresholds = torch.as_tensor(thresholds, device=scores.device)
    if thresholds.dim() != 1:
        raise ValueError(f"thresholds must be 1-D, got shape {tuple(thresholds.shape)}")
    base = semantic_labels(semantic, method, tuple(probs.shape[-2:]))
    if thresholds.numel() == 0:
        return torch.zeros(0, *probs.shape[-2:], dtype=torch.int64, device=probs.device)
    if method == "semantic":
        return base.to(probs.device)[None].repeat(thresholds.numel(), 1, 1)
    method = _instance_method(method)
    if method == "argmax":
        best, label = argmax_best(labels, scores, probs, mask_threshold)
        if class_thresholds is not None:
            return argmax_class_sweep(best, label, class_thresholds, int(cls), thresholds)
        keep = best[None] > thresholds.to(best)[:, None, None]
        return torch.where(keep, label[None], torch.zeros_like(label)[None])
    keys = _keys(scores[None], method)[0]
    covers = probs > mask_threshold
    # the instances kept at threshold t lead the descending-score order: #(score > t)
    visited = (scores[None, :] > thresholds.to(scores)[:, None]).sum(dim=1)
    fixed = torch.zeros(probs.shape[-2:], dtype=torch.int32, device=probs.device)
    if class_thresholds is not None:
        # every other class keeps its own threshold: painted once; cls's own instances
        # join the running maximum in score order
        own = labels == int(cls)
        other = ~own & kept_instances(labels, scores, 0.0, class_thresholds)
        fixed = _max_over_instances(
            torch.where(covers & other[:, None, None], keys.to(torch.int32)[:, None, None], 0)[
                None
            ],
            0,
        )[0]
        covers = covers & own[:, None, None]
    winner = _prefix_winners(covers, keys, ranks(scores)[0], visited)
    return _paint(_labels_of(keys[None], labels[None], torch.maximum(winner, fixed)[None])[0], base)


def _prefix_winners(covers: Tensor, keys: Tensor, rank: Tensor, visited: Tensor) -> Tensor:
    """``[T, H, W]`` int32: per pixel the largest key among the first ``visited[t]``
    instances (by ``rank``) covering it; 0 where none."""
    size = covers.shape[-2:]
    if covers.shape[0] == 0:
        return torch.zeros(visited.shape[0], *size, dtype=torch.int32, device=covers.device)
    order = torch.empty_like(rank).scatter_(
        0, rank, torch.arange(rank.shape[0], device=rank.device)
    )
    keyed = torch.where(covers, keys.to(torch.int32)[:, None, None], 0).index_select(0, order)
    prefix = torch.cummax(keyed, dim=0).values
    winner = prefix.index_select(0, (visited - 1).clamp(min=0))
    return torch.where(visited[:, None, None] > 0, winner, torch.zeros_like(winner))


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
