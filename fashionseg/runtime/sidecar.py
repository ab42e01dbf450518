"""The JSON sidecar beside an exported graph: what it is, what it expects, where it came from.

``FILE.onnx`` comes with ``FILE.json`` (:func:`sidecar_path`), written by
:mod:`fashionseg.export` and read by :class:`fashionseg.runtime.OnnxModel`. It holds the
label set (``task``, ``class_names``, ``colors``), the threshold(s), the input and output
(:data:`INPUT_NAME`: uint8 ``H x W x 3`` RGB; :data:`OUTPUT_NAME`: uint8 ``H x W`` class
ids), the checkpoint's path and sha256, its run's test figures, and ``graph_sha256``: the
graph it describes, so that a sidecar beside another graph is refused. numpy-free,
torch-free: standard library only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
INPUT_NAME = "photo"
OUTPUT_NAME = "labels"
REQUIRED = ("graph_sha256", "task", "class_names", "colors")


class ModelFileError(ValueError):
    """An exported model that cannot be used; the message names the file and the problem."""


def sidecar_path(graph: str | Path) -> Path:
    """``FILE.json`` for ``FILE.onnx``."""
    return Path(graph).with_suffix(".json")


def sha256_of(path: str | Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class LabelSet:
    """The classes of an exported model: ``class_names[i]`` is class id ``i``, drawn in
    ``colors[i]`` (what :func:`fashionseg.files.save_label_png` and the overlays need)."""

    name: str
    class_names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def palette(self) -> list[int]:
        """Flat 768-entry palette for PIL ``Image.putpalette``."""
        flat = [c for rgb in self.colors for c in rgb]
        return flat + [0] * (768 - len(flat))


def read_sidecar(graph: str | Path) -> dict[str, Any]:
    """The sidecar of ``graph``, checked to be ours and to describe this very graph."""
    graph = Path(graph)
    path = sidecar_path(graph)
    if not path.is_file():
        raise ModelFileError(
            f"{graph}: not a fashionseg export (no sidecar {path.name} beside it; "
            "make one with python -m fashionseg.export)"
        )
    try:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split())
        raise ModelFileError(f"{path}: not a readable sidecar ({reason})") from None
    if not isinstance(sidecar, dict) or sidecar.get("fashionseg_onnx") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: not a fashionseg export sidecar (format {FORMAT_VERSION})")
    missing = [k for k in REQUIRED if k not in sidecar]
    if missing:
        raise ModelFileError(f"{path}: sidecar lacks {', '.join(missing)}")
    if sha256_of(graph) != sidecar["graph_sha256"]:
        raise ModelFileError(
            f"{path}: does not match its graph {graph.name} (the graph's sha256 differs "
            "from the one recorded at export); export again"
        )
    names, colors = sidecar["class_names"], sidecar["colors"]
    if len(names) != len(colors) or not names:
        raise ModelFileError(f"{path}: {len(names)} class names but {len(colors)} colours")
    return sidecar


def label_set(sidecar: dict[str, Any]) -> LabelSet:
    """The :class:`LabelSet` a sidecar describes."""
    return LabelSet(
        str(sidecar["task"]),
        tuple(str(n) for n in sidecar["class_names"]),
        tuple((int(r), int(g), int(b)) for r, g, b in sidecar["colors"]),
    )
