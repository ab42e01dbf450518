"""Write label maps and overlays for photos with a trained checkpoint.

    python -m fashionseg.predict ckpt=PATH input=DIR_OR_FILE output=DIR [overwrite=true]

For each photo ``<stem>.<ext>`` it writes ``<stem>.png`` (a palette PNG in the
dataset's mask format, at the photo's displayed size) and ``<stem>_overlay.jpg``.

The output folder must be new, empty, or one predict wrote before; predict writes only
over files it wrote itself, which it records in ``.fashionseg-predict.jsonl`` in that
folder (:mod:`fashionseg.predict_output`). A folder holding anything else, an output
folder that is, is inside or contains the input, and two photos with the same stem are
one-line errors before anything is written. Photos whose outputs are recorded are
skipped, so a run that was stopped can simply be started again; ``overwrite=true``
rewrites them. Files in the input folder that are not images are skipped with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from tqdm import tqdm

from fashionseg.cli import UsageError, run_cli, user_errors
from fashionseg.data.io import IMAGE_SUFFIXES, DataError, read_image
from fashionseg.files import atomic_write, save_label_png
from fashionseg.model.module import SegmentationModule
from fashionseg.model.visualize import overlay
from fashionseg.predict_output import PhotoOutputs, PredictFolder, check_apart, outputs_for
from fashionseg.settings import check_settings
from fashionseg.tasks import Task

log = logging.getLogger(__name__)


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
    """The files to predict: ``path`` itself, or every file directly inside it (sorted).

    Hidden files and subfolders are left out. UsageError when ``path`` does not exist or
    cannot be read.
    """
    path = Path(path)
    try:
        if path.is_file():
            return [path]
        if path.is_dir():
            return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as err:
        raise UsageError(f"{path}: cannot read the input ({err.strerror})") from None
    raise UsageError(f"{path}: no such file or folder")


def photos_to_predict(path: str | Path) -> tuple[list[Path], list[Path]]:
    """The photos of ``path`` and its other files (which predict skips with a warning).

    UsageError when there is nothing to predict: a file that is not a photo, an empty
    folder, a folder without photos.
    """
    files = list_inputs(path)
    photos = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    others = [f for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
    if not photos:
        if Path(path).is_file():
            raise UsageError(
                f"{path}: not a photo (suffix {Path(path).suffix!r}; predict reads "
                f"{', '.join(IMAGE_SUFFIXES)})"
            )
        raise UsageError(f"{path}: {_no_photos(Path(path), len(files))}")
    return photos, others


def _no_photos(folder: Path, other_files: int) -> str:
    """Why a folder without photos has none: empty, other files, subfolders (not searched)."""
    subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name[:1] != ".")
    if not other_files and not subfolders:
        return "the input folder is empty"
    found = [f"{other_files} other file{'s' if other_files != 1 else ''}"] if other_files else []
    if subfolders:
        shown = ", ".join(subfolders[:3]) + (", ..." if len(subfolders) > 3 else "")
        found.append(f"subfolders, not searched: {shown}")
    return (
        f"no photos in the input folder ({'; '.join(found)}); predict reads "
        f"{', '.join(IMAGE_SUFFIXES)} directly inside it"
    )


def check_request(input_path: str | Path, output: str | Path) -> tuple[list[Path], list[Path]]:
    """The checks that need no model: :func:`photos_to_predict`, then the output folder is
    apart from the input and no two photos' outputs have the same name (UsageError).
    """
    photos, others = photos_to_predict(input_path)
    check_apart(input_path, output)
    outputs_for(photos)
    return photos, others


def model_source(module: SegmentationModule, ckpt: str | Path | None = None) -> dict[str, Any]:
    """What made the outputs, as recorded in the output folder."""
    threshold = module.score_threshold
    return {
        "ckpt": None if ckpt is None else str(Path(ckpt).resolve()),
        "task": module.task.name,
        "threshold": None if threshold is None else float(threshold),
    }


@torch.no_grad()
def predict_files(
    module: SegmentationModule,
    files: Sequence[str | Path],
    out_dir: str | Path,
    overwrite: bool = False,
    progress: bool = True,
    source: dict[str, Any] | None = None,
) -> PredictSummary:
    """Predict every file; write ``<stem>.png`` and ``<stem>_overlay.jpg`` into ``out_dir``.

    ``out_dir`` follows :mod:`fashionseg.predict_output`'s rules (UsageError otherwise,
    before anything is written); ``source`` is what the outputs are recorded as coming
    from (default: :func:`model_source` without a checkpoint path).
    """
    photos = outputs_for(files)
    source = source if source is not None else model_source(module)
    module.eval()
    device = next(module.parameters()).device
    summary = PredictSummary()
    with PredictFolder.open(out_dir, source, photos, overwrite=overwrite) as folder:
        for outputs in tqdm(photos, desc="predict", unit="img", disable=not progress):
            path = outputs.photo
            if not overwrite and folder.done(outputs):
                summary.skipped_existing.append(str(path))
                continue
            try:
                image = read_image(path)
            except DataError as err:
                log.warning("skipped %s", err)
                summary.skipped_invalid.append(str(path))
                continue
            label_map = module.predict_maps([image.to(device, torch.float32) / 255])[0].cpu()
            try:
                _write_outputs(folder, outputs, image, label_map, module.task)
            except OSError as err:  # a full disk, a folder made read-only meanwhile...
                raise UsageError(
                    f"{folder.path}: cannot write the outputs of {path} ({err.strerror or err}); "
                    "the photos done so far are kept, run again to go on"
                ) from None
            summary.written.append(str(path))
    return summary


def _write_outputs(
    folder: PredictFolder,
    outputs: PhotoOutputs,
    image: torch.Tensor,
    label_map: torch.Tensor,
    task: Task,
) -> None:
    """The label map and the overlay of one photo, each recorded before it is written."""
    save_label_png(folder.claim(outputs.label, outputs.photo), label_map.numpy(), task)
    shown = overlay(image, label_map, task.colors)
    pil = Image.fromarray(shown.permute(1, 2, 0).numpy())
    atomic_write(
        folder.claim(outputs.overlay, outputs.photo),
        lambda p: pil.save(p, format="JPEG", quality=90),
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
@user_errors
def hydra_main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    from fashionseg.model.checkpoint import load_module

    check_settings(cfg, "predict")

    ckpt, input_path, output, overwrite = read_settings(cfg)
    files, unsupported = check_request(input_path, output)
    module = load_module(
        ckpt, task=(cfg.get("task") or {}).get("name"), threshold=cfg.get("threshold")
    )
    module.to(device_setting(cfg.get("device", "cpu")))
    summary = predict_files(
        module, files, output, overwrite=overwrite, source=model_source(module, ckpt)
    )
    for f in unsupported:  # warned after the checks: a refused run prints one line
        log.warning("skipped %s: not an image file (suffix %r)", f, f.suffix)
    summary.skipped_invalid.extend(str(f) for f in unsupported)
    threshold = module.score_threshold
    shown = "argmax" if threshold is None else f"threshold {threshold:.2f}"
    print(f"{summary}; {shown}; outputs in {output}")


def read_settings(cfg: DictConfig) -> tuple[str, str, str, bool]:
    """``ckpt``, ``input``, ``output`` and ``overwrite``, checked (UsageError)."""
    paths = [path_setting(cfg, key) for key in ("ckpt", "input", "output")]
    overwrite = cfg.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise UsageError(f"overwrite={overwrite!r}: must be true or false")
    return paths[0], paths[1], paths[2], overwrite


def device_setting(value: Any) -> torch.device:
    """``device=...`` as a torch device this machine has; UsageError otherwise."""
    try:
        device = torch.device(str(value))
        torch.empty(0, device=device)  # no CUDA/MPS build, no GPU, no such index
    except (RuntimeError, AssertionError) as err:
        reason = (str(err).strip().split(". ")[0] or type(err).__name__).rstrip(".")
        reason = reason if len(reason) <= 160 else reason[:159] + "…"
        raise UsageError(f"device={value}: not usable here ({reason}); try device=cpu") from None
    return device


def path_setting(cfg: DictConfig, key: str) -> str:
    """``cfg[key]`` as a path; UsageError when it is not given, null or empty."""
    if OmegaConf.is_missing(cfg, key):
        raise UsageError(f"{key}: not given (add {key}=PATH to the command)")
    value = cfg.get(key)
    if value is None or not str(value).strip():
        shown = "null" if value is None else repr(value)
        raise UsageError(f"{key}={shown}: not a path (add {key}=PATH to the command)")
    return str(value)


def main() -> None:
    """Command-line entry point: the command line is checked, then Hydra runs."""
    run_cli(hydra_main, "predict", "predict")


if __name__ == "__main__":
    main()
