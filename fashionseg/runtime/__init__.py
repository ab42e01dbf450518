"""Run an exported fashionseg model with numpy, Pillow and onnxruntime only (no torch).

    from fashionseg.runtime import OnnxModel

    model = OnnxModel("clothing.onnx")          # + clothing.json, its sidecar
    labels = model("photo.jpg")                 # numpy uint8, H x W, class ids
    print(model.labels.class_names[labels[0, 0]])

A path is read as training reads photos (:func:`fashionseg.data.photo.read_photo`: EXIF
orientation applied, every PIL mode as 8-bit RGB), a PIL image gets the same treatment
and an ``H x W x 3`` uint8 array is taken as it is. The graph (from
:mod:`fashionseg.export`) does the rest: resize, normalisation, flip TTA, argmax.
``python -m fashionseg.predict ckpt=FILE.onnx ...`` writes label maps and overlays with
it (:mod:`fashionseg.runtime.predict`). Install with ``pip install fashionseg[runtime]``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from PIL import Image

from fashionseg.data.photo import displayed, read_photo, to_rgb8
from fashionseg.runtime.sidecar import (
    INPUT_NAME,
    OUTPUT_NAME,
    LabelSet,
    ModelFileError,
    label_set,
    read_sidecar,
)

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "LabelSet",
    "ModelFileError",
    "OnnxModel",
    "as_rgb",
    "open_session",
]

Photo: TypeAlias = str | Path | Image.Image | np.ndarray


def as_rgb(photo: Photo) -> np.ndarray:
    """One input as an ``H x W x 3`` uint8 RGB array (see the module docstring)."""
    if isinstance(photo, str | Path):
        return read_photo(photo)[0]
    if isinstance(photo, Image.Image):
        name = getattr(photo, "filename", "") or "PIL image"
        return to_rgb8(displayed(photo), name)
    if isinstance(photo, np.ndarray):
        if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
            raise ValueError(
                f"a NumPy photo must be H x W x 3 uint8 (RGB), got shape {photo.shape} "
                f"{photo.dtype}"
            )
        return np.ascontiguousarray(photo)
    raise TypeError(
        f"cannot segment a {type(photo).__name__}: give a path, a PIL image or an "
        "H x W x 3 uint8 NumPy array (or a list of them)"
    )


def open_session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for ``path`` (``threads``: intra-op threads; default
    ``OMP_NUM_THREADS`` when set, else onnxruntime's choice); ModelFileError when
    onnxruntime cannot load it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(os.environ["OMP_NUM_THREADS"])
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:
        reason = " ".join(str(err).split())[:200]
        raise ModelFileError(f"{path}: not a graph onnxruntime can load ({reason})") from None


class OnnxModel:
    """An exported model and its sidecar, loaded in an onnxruntime session.

    ``threads``: onnxruntime's intra-op threads (default: ``OMP_NUM_THREADS`` when set,
    else onnxruntime's choice). A graph or sidecar that is not a fashionseg export, or
    that do not match, is a one-line :class:`ModelFileError`.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFileError(f"{self.path}: exported model not found")
        self.sidecar = read_sidecar(self.path)
        self.labels = label_set(self.sidecar)
        self.session = open_session(self.path, threads)
        self._check_graph()

    def _check_graph(self) -> None:
        meta = self.session.get_modelmeta().custom_metadata_map
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        ours = (
            meta.get("fashionseg") is not None
            and [i.name for i in inputs] == [INPUT_NAME]
            and [o.name for o in outputs] == [OUTPUT_NAME]
            and inputs[0].type == "tensor(uint8)"
            and len(inputs[0].shape) == 3
        )
        if not ours:
            raise ModelFileError(
                f"{self.path}: not a fashionseg graph (expected a uint8 H x W x 3 input "
                f"{INPUT_NAME!r} and fashionseg's metadata)"
            )
        if meta.get("task") != self.labels.name or meta.get("num_classes") != str(
            self.labels.num_classes
        ):
            raise ModelFileError(
                f"{self.path}: its sidecar does not match the graph (graph: task "
                f"{meta.get('task')}, {meta.get('num_classes')} classes; sidecar: "
                f"{self.labels.name}, {self.labels.num_classes})"
            )

    @property
    def threshold(self) -> float | None:
        """The score threshold label maps are made at (None: argmax models)."""
        value = self.sidecar.get("threshold")
        return None if value is None else float(value)

    def label_map(self, rgb: np.ndarray) -> np.ndarray:
        """The label map (uint8, H x W) of one ``H x W x 3`` uint8 RGB array."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: rgb})[0]

    def __call__(self, photos: Photo | Sequence[Photo]) -> Any:
        """A label map for a photo, or a list of them (in order) for a list or tuple."""
        if isinstance(photos, list | tuple):
            return [self.label_map(as_rgb(p)) for p in photos]
        return self.label_map(as_rgb(photos))

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, task={self.labels.name})"
