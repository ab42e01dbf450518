"""``python -m fashionseg.predict ckpt=FILE.onnx ...``: predict with an exported model.

The same outputs, record and rules as PyTorch's predict (:mod:`fashionseg.predict`,
:mod:`fashionseg.predict_output`): ``<stem>.png`` and ``<stem>_overlay.jpg`` per photo,
only files it recorded are ever replaced, photos already done are skipped (a stopped run
is simply started again), ``overwrite=true`` redoes them. One photo after another, with
numpy, Pillow and onnxruntime only: no torch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fashionseg.data.photo import DataError, read_photo
from fashionseg.predict_output import PredictFolder, outputs_for, save_outputs
from fashionseg.runtime import OnnxModel

log = logging.getLogger("fashionseg.predict")


def onnx_source(model: OnnxModel) -> dict[str, Any]:
    """What made the outputs, as recorded in the output folder (as for a checkpoint)."""
    return {
        "ckpt": str(model.path.resolve()),
        "task": model.labels.name,
        "threshold": model.threshold,
    }


def predict_onnx(
    model: OnnxModel,
    files: Sequence[str | Path],
    out_dir: str | Path,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[list[str], list[str], list[str]]:
    """Predict every file with ``model`` into ``out_dir``; the photos written, those
    already done (skipped) and those that could not be read (skipped with a warning)."""
    photos = outputs_for(files)
    written: list[str] = []
    existing: list[str] = []
    invalid: list[str] = []
    with PredictFolder.open(out_dir, onnx_source(model), photos, overwrite=overwrite) as folder:
        for outputs in tqdm(photos, desc="predict", unit="photo", disable=not progress):
            path = outputs.photo
            if not overwrite and folder.done(outputs):
                existing.append(str(path))
                continue
            try:
                rgb, _ = read_photo(path)
            except DataError as err:
                log.warning("skipped %s", err)
                invalid.append(str(path))
                continue
            save_outputs(folder, outputs, rgb, model.label_map(rgb), model.labels)
            written.append(str(path))
    return written, existing, invalid
