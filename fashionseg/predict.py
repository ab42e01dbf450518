"""Write label maps and overlays for photos with a trained checkpoint.

    python -m fashionseg.predict ckpt=PATH input=DIR_OR_FILE output=DIR [overwrite=true]
        [predict.batch_size=4] [predict.num_workers=2] [device=cuda | hardware=ddp ...]
        [tta_hflip=true] [tta_scales=[0.75,1.0,1.25]]

``tta_hflip`` and ``tta_scales`` set the flip and multi-scale test-time augmentation of
the semantic models and of Panoptic FPN's semantic head (default: as trained; the
output folder records them, so outputs made with other TTA are not taken as done).

For each photo ``<stem>.<ext>`` it writes ``<stem>.png`` (a palette PNG in the
dataset's mask format, at the photo's displayed size) and ``<stem>_overlay.jpg``.

Two ways to run, with byte-identical label maps for the same arithmetic (16-bit mixed
precision, or another CPU thread count, can move a pixel at a near tie):

- :func:`predict_lightning` (the command line's): ``Trainer.predict`` over a DataLoader
  whose workers decode the photos (each keeps its size), the model on batches of
  ``predict.batch_size`` photos (run as groups of equal size, so that no photo is padded
  and a batch gives each photo the label map it gets alone), and :class:`PredictionWriter`
  saving each batch's outputs on a background thread while the next batch runs.
  ``hardware=ddp``/``ddp_cpu`` share the photos out between processes (each photo is done
  by exactly one). Nothing per photo is kept beyond the few batches in flight.
- :func:`predict_loop` (alias :func:`predict_files`): one photo after another in this
  process, the reference the bench and the tests compare with.

The output folder must be new, empty, or one predict wrote before; predict writes only
over files it wrote itself, which it records in ``.fashionseg-predict.jsonl`` in that
folder (:mod:`fashionseg.predict_output`). A folder holding anything else, an output
folder that is, is inside or contains the input, and two photos with the same stem are
one-line errors before anything is written. Photos whose outputs are recorded are
skipped, so a run that was stopped can simply be started again; ``overwrite=true``
rewrites them. Files in the input folder that are not images are skipped with a warning.

The code that runs the model is :mod:`fashionseg.predict_engine` (torch and Lightning),
imported once the command line's checks have passed: a mistake on the command line is
reported at once. Its names (:func:`predict_loop`, :func:`predict_lightning`,
:class:`PredictionWriter`...) can still be imported from here, loaded on first use.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from fashionseg.cli import UsageError, run_cli, user_errors
from fashionseg.predict_output import PredictSummary, check_apart, outputs_for
from fashionseg.settings import check_settings

if TYPE_CHECKING:  # loaded on first use (module __getattr__): see _LAZY
    import torch

    from fashionseg.data.io import IMAGE_SUFFIXES as IMAGE_SUFFIXES
    from fashionseg.data.io import DataError as DataError
    from fashionseg.data.io import read_image as read_image
    from fashionseg.predict_engine import PhotoDataset as PhotoDataset
    from fashionseg.predict_engine import PhotoItem as PhotoItem
    from fashionseg.predict_engine import PhotoPredictor as PhotoPredictor
    from fashionseg.predict_engine import PhotoProgressBar as PhotoProgressBar
    from fashionseg.predict_engine import PredictionWriter as PredictionWriter
    from fashionseg.predict_engine import _user_error_of as _user_error_of
    from fashionseg.predict_engine import collate_photos as collate_photos
    from fashionseg.predict_engine import model_source as model_source
    from fashionseg.predict_engine import predict_files as predict_files
    from fashionseg.predict_engine import predict_lightning as predict_lightning
    from fashionseg.predict_engine import predict_loop as predict_loop

log = logging.getLogger(__name__)

# names given here but defined in modules that import torch (and Lightning): imported on
# first use, so that importing this module (the command line) stays quick
_LAZY = {
    **dict.fromkeys(("IMAGE_SUFFIXES", "DataError", "read_image"), "fashionseg.data.io"),
    **dict.fromkeys(
        (
            "PhotoDataset",
            "PhotoItem",
            "PhotoPredictor",
            "PhotoProgressBar",
            "PredictionWriter",
            "_user_error_of",
            "collate_photos",
            "model_source",
            "predict_files",
            "predict_lightning",
            "predict_loop",
        ),
        "fashionseg.predict_engine",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
    from fashionseg.data.photo import IMAGE_SUFFIXES

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
    from fashionseg.data.photo import IMAGE_SUFFIXES

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


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
@user_errors
def hydra_main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    check_settings(cfg, "predict")

    ckpt, input_path, output, overwrite = read_settings(cfg)
    if ckpt.endswith(".onnx"):
        predict_exported(cfg, ckpt, input_path, output, overwrite)
        return
    batch_size, num_workers = loader_settings(cfg)
    runner = trainer_settings(cfg)
    files, unsupported = check_request(input_path, output)
    # Lightning and the model's code load only now: a mistake above is reported without them
    from lightning.pytorch.utilities import rank_zero_only

    from fashionseg.model.checkpoint import load_module
    from fashionseg.predict_engine import model_source, predict_lightning

    module = load_module(ckpt, task=cfg.get("task") or None, threshold=cfg.get("threshold"))
    tta = apply_tta(module, cfg, ckpt)
    # Lightning's start-up lines (devices found...) are not predict's business
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    summary = predict_lightning(
        module,
        files,
        output,
        overwrite=overwrite,
        batch_size=batch_size,
        num_workers=num_workers,
        source={**model_source(module, ckpt), **tta},
        trainer=runner,
    )
    if getattr(rank_zero_only, "rank", 0) != 0:
        return  # the other processes of a multi-process run: process 0 reports
    for f in unsupported:  # warned after the checks: a refused run prints one line
        log.warning("skipped %s: not an image file (suffix %r)", f, f.suffix)
    summary.skipped_invalid.extend(str(f) for f in unsupported)
    threshold = module.score_threshold
    shown = "argmax" if threshold is None else f"threshold {threshold:.2f}"
    print(f"{summary}; {shown}; outputs in {output}")


def predict_exported(
    cfg: DictConfig, ckpt: str, input_path: str, output: str, overwrite: bool
) -> None:
    """``ckpt=FILE.onnx``: predict with :mod:`fashionseg.runtime` (no torch, the CPU)."""
    if cfg.get("trainer") is not None or str(cfg.get("device", "cpu")) != "cpu":
        raise UsageError(
            f"ckpt={ckpt}: an exported model runs on the CPU with onnxruntime; leave out "
            "device=... and hardware=..."
        )
    for key in ("tta_hflip", "tta_scales"):
        if cfg.get(key) is not None:
            raise UsageError(
                f"{key}={cfg.get(key)}: an exported model's TTA is in its graph; export the "
                "checkpoint again to change it"
            )
    if cfg.get("threshold") is not None:
        raise UsageError(
            f"threshold={cfg.get('threshold')}: an exported model's threshold is in its "
            "graph; export the checkpoint again to change it"
        )
    files, unsupported = check_request(input_path, output)
    from fashionseg.runtime import OnnxModel
    from fashionseg.runtime.predict import predict_onnx

    model = OnnxModel(ckpt)
    task = (cfg.get("task") or {}).get("name")
    if task is not None and task != model.labels.name:
        raise UsageError(f"{ckpt}: the model is for task {model.labels.name!r}, not {task!r}")
    written, existing, invalid = predict_onnx(model, files, output, overwrite=overwrite)
    for f in unsupported:
        log.warning("skipped %s: not an image file (suffix %r)", f, f.suffix)
    summary = PredictSummary(written, existing, invalid + [str(f) for f in unsupported])
    threshold = model.threshold
    shown = "argmax" if threshold is None else f"threshold {threshold:.2f}"
    print(f"{summary}; {shown}; onnxruntime; outputs in {output}")


def apply_tta(module: Any, cfg: DictConfig, ckpt: str) -> dict[str, Any]:
    """Set ``tta_hflip``/``tta_scales`` on the module when given (UsageError where the
    model has no such setting); what the output folder records of them (empty: none
    given, the outputs are the checkpoint's as trained)."""
    from omegaconf import ListConfig

    from fashionseg.model.tta import check_scales

    hflip, scales = cfg.get("tta_hflip"), cfg.get("tta_scales")
    if hflip is None and scales is None:
        return {}
    if not hasattr(module, "tta_hflip"):
        raise UsageError(
            f"{ckpt}: tta_hflip and tta_scales apply to the semantic models and Panoptic "
            f"FPN's semantic head only, not {module.hparams.net.get('arch', 'this model')!r}"
        )
    if hflip is not None:
        if not isinstance(hflip, bool):
            raise UsageError(f"tta_hflip={hflip}: must be true or false")
        module.tta_hflip = hflip
    if scales is not None:
        scales = list(scales) if isinstance(scales, ListConfig | list | tuple) else [scales]
        try:
            module.tta_scales = check_scales(scales)
        except ValueError as err:
            raise UsageError(str(err)) from None
    return {"tta": {"hflip": bool(module.tta_hflip), "scales": list(module.tta_scales)}}


def loader_settings(cfg: DictConfig) -> tuple[int, int]:
    """``predict.batch_size`` (>= 1) and ``predict.num_workers`` (>= 0), checked."""
    settings = cfg.get("predict") or {}
    values = []
    for key, default, least in (("batch_size", 4, 1), ("num_workers", 2, 0)):
        value = settings.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UsageError(f"predict.{key}={value}: must be a whole number >= {least}")
        values.append(value)
    return values[0], values[1]


def trainer_settings(cfg: DictConfig) -> dict[str, Any]:
    """The Trainer's arguments: those of ``hardware=...`` when one is chosen (``trainer``
    in the composed config), else one device from ``device=`` (UsageError when unusable)."""
    device = cfg.get("device", "cpu")
    chosen = cfg.get("trainer")
    if chosen is not None:
        if str(device) != "cpu":
            raise UsageError(
                f"device={device}: give hardware=... or device=..., not both (hardware "
                "decides the devices)"
            )
        settings = OmegaConf.to_container(chosen, resolve=True)
        assert isinstance(settings, dict)
        return {str(k): v for k, v in settings.items() if k != "_target_"}
    import torch

    found = device_setting(device)
    if found.type == "cpu":
        return {"accelerator": "cpu", "devices": 1}
    if found.type == "cuda":
        index = found.index if found.index is not None else torch.cuda.current_device()
        return {"accelerator": "gpu", "devices": [index]}
    if found.type == "mps":
        return {"accelerator": "mps", "devices": 1}
    raise UsageError(f"device={device}: predict runs on cpu, cuda or mps; try device=cpu")


def read_settings(cfg: DictConfig) -> tuple[str, str, str, bool]:
    """``ckpt``, ``input``, ``output`` and ``overwrite``, checked (UsageError)."""
    paths = [path_setting(cfg, key) for key in ("ckpt", "input", "output")]
    overwrite = cfg.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise UsageError(f"overwrite={overwrite!r}: must be true or false")
    return paths[0], paths[1], paths[2], overwrite


def device_setting(value: Any) -> torch.device:
    """``device=...`` as a torch device this machine has; UsageError otherwise."""
    import torch

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
