"""The train/val/test split ratios' check, torch-free: the one home of ``data.split``'s
rule, used by :class:`fashionseg.data.datamodule.FashionDataModule` and by the settings
check that runs before torch is imported (:mod:`fashionseg.settings`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from fashionseg.data.photo import DataError


def _number(value: Any) -> float | None:
    """``value`` as a finite float; None when it is not a number (bools are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def check_ratios(ratios: Iterable[Any]) -> list[float]:
    """``data.split`` as floats: three non-negative ratios (train, val, test) summing to 1
    (tolerance 1e-6); a one-line :class:`DataError` naming the setting otherwise."""
    items = list(ratios)
    values = [_number(v) for v in items]
    if len(values) != 3 or any(v is None or v < 0 for v in values):
        shown = "[" + ",".join(str(v) for v in items) + "]"
        raise DataError(
            f"data.split={shown}: need three non-negative ratios [train, val, test] summing to 1"
        )
    numbers = [v for v in values if v is not None]
    if abs(sum(numbers) - 1.0) > 1e-6:
        raise DataError(
            f"data.split=[{','.join(f'{v:g}' for v in numbers)}]: the ratios sum to "
            f"{sum(numbers):g}, not 1"
        )
    return numbers
