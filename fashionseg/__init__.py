"""fashionseg: per-pixel person and clothing segmentation of fashion photos.

``from fashionseg import Segmenter`` (:mod:`fashionseg.segmenter`) is loaded on first
use: importing the package itself does not import torch or Lightning, so that the
command lines start quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Segmenter", "__version__"]

if TYPE_CHECKING:
    from fashionseg.segmenter import Segmenter


def __getattr__(name: str) -> Any:
    if name == "Segmenter":
        from fashionseg.segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
