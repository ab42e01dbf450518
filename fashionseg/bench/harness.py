"""The benchmarks' shared harness: sizes, the training config, interleaved rounds and the
spread (median, min, max) of a figure.

Every comparison runs its sides interleaved (:func:`interleaved`: A, B, B, A, A, B, ...,
so that drift in the machine's speed hits both sides alike) and reports the median of the
per-round ratios with their min and max, so that a reader can tell overhead from noise.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
SIZES = {"tiny": (64, 48), "small": (240, 160), "full": (600, 400)}
Batch = tuple[list[torch.Tensor], list[dict[str, Any]]]
MIB = 2**20


def parse_size(text: str) -> tuple[int, int]:
    """``tiny``/``small``/``full`` or ``HxW`` (e.g. ``600x400``) as (height, width)."""
    if text in SIZES:
        return SIZES[text]
    found = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not found or min(int(found.group(1)), int(found.group(2))) < 16:
        raise argparse.ArgumentTypeError(
            f"{text!r}: not a size (tiny, small, full or HxW with sides of at least 16)"
        )
    return int(found.group(1)), int(found.group(2))


def size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def compose_config(data_root: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The training config (as ``python -m fashionseg.train`` composes it)."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(
            "train", overrides=[f"data.root={data_root}", "model.net.weights=none", *overrides]
        )


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ------------------------------------------------------------------ the spread of a figure
@dataclass(frozen=True)
class Spread:
    """Median, min and max of repeated measurements (or of per-round ratios)."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no values to summarise")
        return cls(_median(values), float(min(values)), float(max(values)), len(values))

    def inverted(self, scale: float = 1.0) -> Spread:
        """``scale / value``: seconds per item -> items per second (min and max swap)."""
        return Spread(scale / self.median, scale / self.max, scale / self.min, self.n)

    def as_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "min": self.min, "max": self.max, "n": self.n}

    def text(self, digits: int = 3) -> str:
        """``1.012 (0.990-1.050, 5 rounds)``."""
        f = f"{{:.{digits}f}}"
        rounds = f"{self.n} round{'s' if self.n != 1 else ''}"
        return f"{f.format(self.median)} ({f.format(self.min)}-{f.format(self.max)}, {rounds})"


@dataclass(frozen=True)
class Interleaved:
    """What :func:`interleaved` measured: each side's values, one per round, and the order
    in which the timed calls ran."""

    values: dict[str, list[float]]
    order: list[str]

    def spread(self, side: str) -> Spread:
        return Spread.of(self.values[side])

    def ratio(self, a: str, b: str) -> Spread:
        """``a / b`` of each round (the two were measured next to each other), summarised."""
        return Spread.of([x / y for x, y in zip(self.values[a], self.values[b], strict=True)])

    def comparison(self, a: str, b: str) -> dict[str, Any]:
        """The JSON form of ``a / b``: each side's median seconds, the ratio with its spread
        and every round's values."""
        ratio = self.ratio(a, b)
        return {
            f"{a}_s": self.spread(a).median,
            f"{b}_s": self.spread(b).median,
            "ratio": ratio.median,
            "ratio_min": ratio.min,
            "ratio_max": ratio.max,
            "rounds": ratio.n,
            "values": {a: list(self.values[a]), b: list(self.values[b])},
        }


def round_order(sides: Sequence[str], rounds: int) -> list[list[str]]:
    """The sides' order in each round: as given, then reversed, and so on (A B, B A, ...),
    so that a side is neither always first nor always next to the same neighbour."""
    return [list(sides) if r % 2 == 0 else list(reversed(sides)) for r in range(rounds)]


def interleaved(
    sides: Mapping[str, Callable[[], float]], rounds: int, warmup: int = 0
) -> Interleaved:
    """Call each side once per round, the sides interleaved (:func:`round_order`).

    Each callable returns its own measurement (wrap a plain function with :func:`timed`
    to measure its wall time). ``warmup`` rounds run first, in the same alternation
    (the timed rounds carry it on), and are not recorded.
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: need at least 1")
    names = list(sides)
    orders = round_order(names, warmup + rounds)
    for order in orders[:warmup]:
        for name in order:
            sides[name]()
    values: dict[str, list[float]] = {name: [] for name in names}
    ran: list[str] = []
    for order in orders[warmup:]:
        for name in order:
            values[name].append(float(sides[name]()))
            ran.append(name)
    return Interleaved(values, ran)


def timed(
    fn: Callable[[], Any], clock: Callable[[], float] = time.perf_counter
) -> Callable[[], float]:
    """``fn`` as a callable that returns the seconds ``fn()`` took on ``clock``."""

    def run() -> float:
        start = clock()
        fn()
        return clock() - start

    return run


def _ratio_text(entry: Mapping[str, Any]) -> str:
    """``1.012 (0.990-1.050, 5 rounds)`` from a :meth:`Interleaved.comparison` dict."""
    return Spread(entry["ratio"], entry["ratio_min"], entry["ratio_max"], entry["rounds"]).text()


# ---------------------------------------------------------------------- CPU benchmark
def train_batches(cfg: DictConfig, count: int) -> list[Batch]:
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    batches: list[Batch] = []
    while len(batches) < count:
        batches.extend(datamodule.dataloader("train"))
    return batches[:count]
