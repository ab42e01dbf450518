"""Extra training roots (``data.extra_roots``) and the sampler that mixes them in.

An extra root is a dataset in the project's layout for the same task (a pseudo-labelled
root written by ``python -m fashionseg.pseudo_label``, say): every photo of it is
training data only, never validation or test. With extra roots the training loader
draws photos with replacement, each with probability proportional to ``root weight /
photos in its root``, so each root's expected share of the draws is its weight over the
sum of the weights (the labelled root's weight is ``data.labelled_weight``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import WeightedRandomSampler

from fashionseg.data.io import DataError, summarize


@dataclass(frozen=True)
class ExtraRoot:
    """One ``data.extra_roots`` entry: its folder as given and its sampling weight."""

    root: str
    weight: float = 1.0

    @property
    def resolved(self) -> Path:
        """The folder as an absolute path (``~`` expanded, links resolved)."""
        return Path(self.root).expanduser().resolve()

    def to_config(self) -> dict[str, Any]:
        """The entry as plain values (hyper-parameters, ``split.json``)."""
        return {"root": self.root, "weight": self.weight}


def check_weight(key: str, value: Any) -> float:
    """``value`` as a finite float > 0, else a one-line DataError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{key}={value!r}: must be a number > 0")
    if not math.isfinite(float(value)) or float(value) <= 0:
        raise DataError(f"{key}={value}: must be a number > 0")
    return float(value)


def parse_extra_roots(entries: Sequence[Any] | None) -> list[ExtraRoot]:
    """``data.extra_roots`` as :class:`ExtraRoot` s: each entry a path, or a mapping with
    ``root`` and an optional ``weight`` (default 1.0, > 0). A bad entry is a one-line
    DataError naming it (``data.extra_roots[i]``)."""
    if entries is None:
        return []
    if isinstance(entries, str | os.PathLike) or not isinstance(entries, Sequence):
        raise DataError(f"data.extra_roots={entries!r}: must be a list of folders")
    roots = []
    for i, entry in enumerate(entries):
        key = f"data.extra_roots[{i}]"
        if isinstance(entry, str | os.PathLike):
            entry = {"root": entry}
        if not isinstance(entry, Mapping):
            raise DataError(f"{key}={entry!r}: give a folder or {{root: DIR, weight: W}}")
        unknown = sorted(set(entry) - {"root", "weight"})
        if unknown:
            raise DataError(f"{key}: unknown key(s) {', '.join(map(str, unknown))} (root, weight)")
        root = entry.get("root")
        if not isinstance(root, str | os.PathLike) or not str(root):
            raise DataError(f"{key}: needs root: DIR (a dataset folder)")
        weight = check_weight(f"{key}.weight", entry.get("weight", 1.0))
        roots.append(ExtraRoot(os.fspath(root), weight))
    return roots


def root_problem(problems: list[str], index: int, root: ExtraRoot, task_name: str) -> str:
    """One message for an extra root's problems: the problem itself (one line, naming the
    file) when there is one, else the summary of them all."""
    key = f"data.extra_roots[{index}]"
    if len(problems) == 1:
        return f"{problems[0]} ({key})"
    return summarize(problems, f"{root.root} ({key}, task {task_name})")


def photo_weights(sizes: Sequence[int], weights: Sequence[float]) -> torch.Tensor:
    """Each photo's draw weight, roots in order: ``root weight / photos in that root``
    (float64), so each root's expected share of draws is its weight over their sum."""
    parts = [
        torch.full((n,), w / n, dtype=torch.float64)
        for n, w in zip(sizes, weights, strict=True)
        if n
    ]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


class EpochWeightedSampler(WeightedRandomSampler):
    """Torch's :class:`~torch.utils.data.WeightedRandomSampler` (with replacement) whose
    draws come from a generator seeded by ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every training epoch (through its
    ``DistributedSamplerWrapper`` under DDP, which then deals this list out to the ranks):
    every rank draws the same list, and a resumed run draws what an uninterrupted one
    would.
    """

    def __init__(self, weights: torch.Tensor, num_samples: int, seed: int) -> None:
        super().__init__(weights, num_samples, replacement=True)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s list next."""
        self.epoch = int(epoch)

    def __iter__(self):  # noqa: ANN204
        self.generator = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + self.epoch) % (1 << 63)
        )
        return super().__iter__()


def sampler_seed() -> int:
    """The run's seed (``PL_GLOBAL_SEED``, set by ``seed_everything``, as Lightning's own
    DistributedSampler takes it); without one a number drawn from torch's global RNG."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is not None and seed.lstrip("-").isdigit():
        return int(seed)
    return int(torch.randint(0, 1 << 62, (1,)).item())
