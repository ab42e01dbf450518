"""Write label maps and overlays for photos with a trained checkpoint.

    python -m fashionseg.predict ckpt=PATH input=DIR_OR_FILE output=DIR [overwrite=true]

For each photo ``<stem>.<ext>`` it writes ``<stem>.png`` (a palette PNG in the
dataset's mask format, at the photo's own size) and ``<stem>_overlay.jpg``. Existing
outputs are kept and their photos skipped unless ``overwrite=true``, so a run that was
stopped can simply be started again. Files that are not images are skipped with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from PIL import Image
from tqdm import tqdm

from fashionseg.cli import user_errors
from fashionseg.data.io import DataError, read_image
from fashionseg.io_utils import atomic_write, save_label_png
from fashionseg.model.module import SegmentationModule
from fashionseg.model.visualize import overlay

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class PredictSummary:
    """What a predict run did."""

    written: list[str] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    skipped_invalid: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{len(self.written)} predicted, {len(self.skipped_existing)} already done, "
            f"{len(self.skipped_invalid)} skipped (not readable images)"
        )


def list_inputs(path: str | Path) -> list[Path]:
    """The files to predict: ``path`` itself, or every file directly inside it (sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    raise FileNotFoundError(f"{path}: no such file or directory")


@torch.no_grad()
def predict_files(
    module: SegmentationModule,
    files: Sequence[str | Path],
    out_dir: str | Path,
    overwrite: bool = False,
    progress: bool = True,
) -> PredictSummary:
    """Predict every file; write ``<stem>.png`` and ``<stem>_overlay.jpg`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    module.eval()
    device = next(module.parameters()).device
    summary = PredictSummary()
    for path in tqdm(list(files), desc="predict", unit="img", disable=not progress):
        path = Path(path)
        label_path = out_dir / f"{path.stem}.png"
        overlay_path = out_dir / f"{path.stem}_overlay.jpg"
        if not overwrite and label_path.exists() and overlay_path.exists():
            summary.skipped_existing.append(str(path))
            continue
        try:
            image = read_image(path)
        except DataError as err:
            log.warning("skipped %s", err)
            summary.skipped_invalid.append(str(path))
            continue
        label_map = module.predict_maps([image.to(device, torch.float32) / 255])[0].cpu()
        save_label_png(label_path, label_map.numpy(), module.task)
        shown = overlay(image, label_map, module.task.colors)
        pil = Image.fromarray(shown.permute(1, 2, 0).numpy())
        atomic_write(overlay_path, lambda p, pil=pil: pil.save(p, format="JPEG", quality=90))
        summary.written.append(str(path))
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
@user_errors
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    from fashionseg.model.checkpoint import load_module

    module = load_module(
        cfg.ckpt, task=(cfg.get("task") or {}).get("name"), threshold=cfg.get("threshold")
    )
    if cfg.get("device", "cpu") != "cpu":
        module.to(cfg.device)
    files = list_inputs(cfg.input)
    unsupported = [f for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
    for f in unsupported:
        log.warning("skipped %s: not an image file (suffix %r)", f, f.suffix)
    files = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    summary = predict_files(module, files, cfg.output, overwrite=cfg.overwrite)
    summary.skipped_invalid.extend(str(f) for f in unsupported)
    threshold = module.score_threshold
    shown = "argmax" if threshold is None else f"threshold {threshold:.2f}"
    print(f"{summary}; {shown}; outputs in {cfg.output}")


if __name__ == "__main__":
    main()
