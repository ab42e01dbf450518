"""The rules of pseudo-labelling, as pure functions: tags, class-balanced thresholds, maps.

:func:`read_tags` reads a ``tags.csv`` (``stem``, ``classes``: the classes a photo's
image-level tags imply, background always allowed) into the class ids each photo may
show; :func:`pseudo_label_map` turns a photo's class probabilities into its pseudo label
map (classes the tags rule out get probability 0 before the argmax; pixels whose
confidence, the probability of their class, is below that class's threshold become the
ignore value).

The per-class thresholds (:func:`choose_thresholds`) are chosen on the teacher's
validation split, class-balanced as in CBST (Zou et al., 2018): a single global
threshold keeps the easy, frequent classes and drowns the rare ones, whose confidences
are lower. For each class ``c``, over the validation pixels the teacher predicts as
``c`` (ignored pixels left out):

- ``t_precision``: the lowest threshold at which the kept pixels (confidence >= t) are
  correct with precision >= ``precision`` (1.0 when no threshold reaches it);
- ``t_keep``: the highest threshold that still keeps a ``min_keep`` share of them;
- the threshold is ``min(t_precision, t_keep)``: as lenient as the precision target
  allows, but never so strict that fewer than ``min_keep`` of the class's pixels survive
  (the CBST guarantee that rare classes are not drowned).

A class the teacher never predicts on validation gets the rule applied to every class's
pixels pooled. Confidences are counted in :data:`BINS` histogram bins, so the statistics
of any number of validation photos take ``2 x classes x BINS`` integers.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from fashionseg.errors import UsageError
from fashionseg.tasks import Task

BINS = 1000  # confidence histogram bins: thresholds in steps of 0.001


# ------------------------------------------------------------------------ tags
@dataclass(frozen=True)
class Tags:
    """A tags file: each listed photo's allowed class ids (background always included)."""

    path: Path
    sha256: str
    allowed: dict[str, frozenset[int]]


def sha256_file(path: Path) -> str:
    """The sha256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_tags(path: str | Path, task: Task) -> tuple[Tags | None, str | None]:
    """``(tags, warning)``: the tags file read for ``task``, or None with a warning when
    its classes name no class of the task but background (e.g. the ``person`` task).

    UsageError (one line) for a file that cannot be read, lacks the ``stem`` or
    ``classes`` column, lists a stem twice, or names classes the task does not have
    beside ones it has (tags written for another label set).
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = set(reader.fieldnames or ())
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        reason = getattr(err, "strerror", None) or " ".join(str(err).split())
        raise UsageError(f"tags={path}: cannot read the tags file ({reason})") from None
    missing = [c for c in ("stem", "classes") if c not in columns]
    if not rows or missing:
        raise UsageError(
            f"tags={path}: not a tags file (needs a header with the columns stem and "
            f"classes, and one row per photo; missing: {', '.join(missing) or 'rows'})"
        )
    ids = {name: i for i, name in enumerate(task.class_names)}
    named: dict[str, set[str]] = {}
    for line, row in enumerate(rows, start=2):
        stem = (row.get("stem") or "").strip()
        if not stem:
            raise UsageError(f"tags={path}: line {line} has no stem")
        if stem in named:
            raise UsageError(f"tags={path}: stem {stem!r} is listed twice (line {line})")
        named[stem] = set((row.get("classes") or "").split())
    every = set().union(*named.values())
    known = every & set(task.class_names[1:])
    if not known:
        return None, (
            f"tags={path}: its classes ({', '.join(sorted(every)) or 'none'}) name no class "
            f"of task {task.name!r}; no tag guidance"
        )
    unknown = sorted(every - set(task.class_names))
    if unknown:
        raise UsageError(
            f"tags={path}: names classes task {task.name!r} does not have "
            f"({', '.join(unknown[:5])}); tags for another label set?"
        )
    allowed = {s: frozenset({0, *(ids[n] for n in names)}) for s, names in named.items()}
    return Tags(path, sha256_file(path), allowed), None


# ------------------------------------------------------------------ label maps
def guided(probs: Tensor, allowed: frozenset[int] | None) -> Tensor:
    """``probs`` ``[C, H, W]`` with the classes outside ``allowed`` set to 0 (None: all
    allowed). Not renormalised: a pixel the teacher gave mostly to a ruled-out class keeps
    a low confidence and is likely ignored."""
    if allowed is None or len(allowed) == probs.shape[0]:
        return probs
    keep = torch.zeros(probs.shape[0], dtype=torch.bool, device=probs.device)
    keep[sorted(allowed)] = True
    return probs * keep[:, None, None]


def pseudo_label_map(
    probs: Tensor,
    thresholds: Tensor,
    ignore_index: int,
    allowed: frozenset[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """``(label map, predicted)`` for one photo's probabilities ``[C, H, W]``.

    ``predicted`` is the argmax after :func:`guided` (uint8 ``[H, W]``); the label map is
    that, with pixels whose confidence (its class's probability) is below its class's
    entry of ``thresholds`` ``[C]`` set to ``ignore_index``.
    """
    confidence, predicted = guided(probs, allowed).max(0)
    keep = confidence >= thresholds.to(probs.device, probs.dtype)[predicted]
    label = torch.where(keep, predicted, torch.full_like(predicted, ignore_index))
    return label.to(torch.uint8), predicted.to(torch.uint8)


def class_counts(label: Tensor, predicted: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per class: pixels predicted and kept, and pixels predicted but ignored (int64)."""
    kept = label == predicted
    pred = predicted.reshape(-1).long()
    total = torch.bincount(pred, minlength=num_classes)
    keep = torch.bincount(pred[kept.reshape(-1)], minlength=num_classes)
    return keep.cpu(), (total - keep).cpu()


# ------------------------------------------------------------------ thresholds
def confidence_histograms(
    probs: Tensor, target: Tensor, ignore_index: int, bins: int = BINS
) -> tuple[Tensor, Tensor]:
    """``(correct, total)``, each ``[C, bins]`` int64: the validation pixels predicted as
    each class, by confidence bin, and those of them whose target is that class. Pixels
    of ``ignore_index`` in ``target`` count in neither."""
    num_classes = probs.shape[0]
    confidence, predicted = probs.max(0)
    valid = target != ignore_index
    index = predicted[valid] * bins + (confidence[valid] * bins).long().clamp_(0, bins - 1)
    right = predicted[valid] == target[valid].to(predicted.device)
    size = num_classes * bins
    total = torch.bincount(index, minlength=size).reshape(num_classes, bins)
    correct = torch.bincount(index[right], minlength=size).reshape(num_classes, bins)
    return correct.cpu(), total.cpu()


def _threshold(correct: Tensor, total: Tensor, precision: float, min_keep: float) -> float:
    """The rule (module docstring) for one class's ``[bins]`` histograms."""
    bins = total.numel()
    kept = total.flip(0).cumsum(0).flip(0).double()  # kept[k]: pixels with confidence >= k/bins
    right = correct.flip(0).cumsum(0).flip(0).double()
    reach = (right >= precision * kept) & (kept > 0)
    t_precision = float(reach.nonzero()[0, 0]) / bins if bool(reach.any()) else 1.0
    enough = kept >= min_keep * kept[0]
    t_keep = float(enough.nonzero()[-1, 0]) / bins
    return min(t_precision, t_keep)


def choose_thresholds(
    correct: Tensor, total: Tensor, precision: float = 0.9, min_keep: float = 0.5
) -> list[float]:
    """Per-class confidence thresholds from :func:`confidence_histograms` summed over the
    validation photos (the rule: module docstring)."""
    if not 0 < precision <= 1:
        raise ValueError(f"precision={precision}: must be in (0, 1]")
    if not 0 <= min_keep <= 1:
        raise ValueError(f"min_keep={min_keep}: must be in [0, 1]")
    pooled = _threshold(correct.sum(0), total.sum(0), precision, min_keep)
    found = []
    for c in range(total.shape[0]):
        if int(total[c].sum()) == 0:
            found.append(pooled)
        else:
            found.append(_threshold(correct[c], total[c], precision, min_keep))
    return [round(t, 6) for t in found]


def fixed_thresholds(value: float | Sequence[float], task: Task) -> list[float]:
    """``thresholds=``: one number for every class, or one per class (UsageError)."""
    values = [value] if isinstance(value, int | float) else list(value)
    if len(values) == 1:
        values = values * task.num_classes
    if len(values) != task.num_classes:
        raise UsageError(
            f"thresholds={list(values)}: give one number, or one per class of task "
            f"{task.name!r} ({task.num_classes}: {', '.join(task.class_names)})"
        )
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
            raise UsageError(f"thresholds={list(values)}: {v!r} is not a number in [0, 1]")
    return [float(v) for v in values]
