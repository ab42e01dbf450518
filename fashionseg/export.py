"""Export a trained checkpoint to ONNX, checked against PyTorch, optionally int8.

    python -m fashionseg.export ckpt=CKPT out=FILE.onnx [quantize=int8] [calibration=16]
        [parity_photos=4] [overwrite=true]

The graph goes from what a user has to what a user wants: a uint8 RGB photo ``H x W x 3``
(any size) in, its uint8 label map ``H x W`` out, with the resize, normalisation, flip
TTA (where the checkpoint uses it) and argmax inside: it is
:class:`fashionseg.model.semantic_pipeline.PhotoToLabels`, the code the PyTorch path runs,
exported by ``torch.export`` + ``torch.onnx`` and checked by ``onnx.checker``. Then the
graph and PyTorch label the run's validation photos (or random photos when the run's data
cannot be found) and must agree on at least 99.9 % of each photo's pixels.

Beside ``FILE.onnx`` goes ``FILE.json`` (:mod:`fashionseg.runtime.sidecar`): the label
set, thresholds, input expectations, the checkpoint's sha256 and the test figures of its
run (``metrics.json``), and the graph's own sha256 (the runtime refuses a sidecar that
does not match its graph).

``quantize=int8`` calibrates onnxruntime's static quantization on ``calibration`` of the
run's validation photos (never test); it needs the run directory (``split.json`` and the
composed config beside ``checkpoints/``) and the data.

Semantic models (LRASPP, DeepLabV3, FCN) and Mask R-CNN (every backbone, with or without
Panoptic FPN's semantic head) export. A Mask R-CNN graph is
:class:`fashionseg.model.detection_pipeline.DetectionPhotoToLabels` (the detector, the
batched paste and the fusion at the checkpoint's threshold(s): ``predict_maps``' code),
exported by torch.onnx's TorchScript exporter (``dynamo=False``, as torchvision exports
its detectors) with a dynamic photo size and number of detections (at most the
checkpoint's ``box_detections_per_img``).
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fashionseg.cli import UsageError
from fashionseg.runtime.sidecar import (
    FORMAT_VERSION,
    INPUT_NAME,
    OUTPUT_NAME,
    sha256_of,
    sidecar_path,
)

PARITY_MIN = 0.999  # the share of each photo's pixels graph and PyTorch must agree on
OPSET = 18
SETTINGS = {"ckpt", "out", "quantize", "calibration", "parity_photos", "overwrite"}


class ExportError(ValueError):
    """A checkpoint that cannot be exported, or an export that failed its check."""


# ------------------------------------------------------------------ the graph
def _round_half_even(x: Any, ndigits: Any = None) -> Any:
    """ONNX for Python's ``round`` of a symbolic size (half to even, as Python rounds)."""
    from onnxscript import INT64
    from onnxscript import opset18 as op

    return op.Cast(op.Round(x), to=INT64.dtype)


def export_detection_graph(module: Any, path: Path) -> Any:
    """A :class:`~fashionseg.model.module.MaskRCNNModule` (eval mode) as
    ``DetectionPhotoToLabels``, traced (``dynamo=False``) with dynamic height and width;
    the ONNX model (not yet checked)."""
    import onnx
    import torch

    from fashionseg.model.detection_pipeline import DetectionPhotoToLabels

    if getattr(module.net, "tta_scales", (1.0,)) != (1.0,):
        raise ExportError(
            f"model.net.tta_scales={list(module.net.tta_scales)}: multi-scale TTA is not "
            "exported; the graph runs the photo at the model's own size"
        )
    wrapper = DetectionPhotoToLabels(module.net.eval(), module.fusion_settings()).eval()
    sample = torch.randint(0, 256, (96, 64, 3), dtype=torch.uint8)
    sides = {0: "height", 1: "width"}
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (sample,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: sides, OUTPUT_NAME: sides},
        )
    return onnx.load(str(path))


def export_graph(module: Any, path: str | Path) -> Path:
    """Export ``module`` (a :class:`~fashionseg.model.semantic.SemanticModule` or
    :class:`~fashionseg.model.module.MaskRCNNModule` in eval mode) as a photo -> label
    map graph with dynamic height and width; ``onnx.checker`` checks it."""
    import onnx
    import torch

    from fashionseg.model.module import MaskRCNNModule
    from fashionseg.model.semantic import SemanticModule
    from fashionseg.model.semantic_pipeline import PhotoToLabels

    path = Path(path)
    if isinstance(module, MaskRCNNModule):
        model = export_detection_graph(module, path)
        onnx.checker.check_model(model, full_check=True)
        return path
    if not isinstance(module, SemanticModule):
        raise ExportError(f"{type(module).__name__}: not a model fashionseg can export")
    if module.tta_scales != (1.0,):
        raise ExportError(
            f"model.net.tta_scales={list(module.tta_scales)}: multi-scale TTA is not exported; "
            "the graph runs the photo at the model's own size (train or export with [1.0])"
        )
    wrapper = PhotoToLabels(module.pipeline.eval()).eval()
    sample = torch.randint(0, 256, (96, 64, 3), dtype=torch.uint8)
    height = torch.export.Dim("height", min=2, max=16384)
    width = torch.export.Dim("width", min=2, max=16384)
    with torch.no_grad():
        program = torch.export.export(
            wrapper, (sample,), dynamic_shapes=({0: height, 1: width},), strict=False
        )
        onnx_program = torch.onnx.export(
            program,
            (sample,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            custom_translation_table={builtins.round: _round_half_even},
            verbose=False,
        )
    assert onnx_program is not None
    model = onnx_program.model_proto
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def tag_graph(path: Path, tags: dict[str, str]) -> None:
    """Write ``tags`` into the graph's metadata (how the runtime knows a graph is ours)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in tags.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


# --------------------------------------------------------------- the run's photos
def run_dir_of(ckpt: Path) -> Path | None:
    """The run directory of a checkpoint in ``<run>/checkpoints/`` (None elsewhere)."""
    run = ckpt.resolve().parent.parent
    return run if (run / "split.json").is_file() else None


def validation_photos(ckpt: Path) -> list[Path]:
    """The run's validation photos (``split.json``'s ``val`` stems in the run's
    ``data.root``); empty when the run directory or its data cannot be found."""
    run = run_dir_of(ckpt)
    if run is None:
        return []
    from omegaconf import OmegaConf

    from fashionseg.data.io import list_photos

    try:
        stems = json.loads((run / "split.json").read_text())["val"]
        cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
        root = Path(str(cfg.data.root))
        photos = list_photos(root / "images")
    except Exception:  # a run without its data (moved, another machine): none
        return []
    return [photos[s] for s in stems if s in photos]


def run_figures(ckpt: Path) -> dict[str, Any] | None:
    """The test figures of the checkpoint's run (``metrics.json``), when there are some."""
    run = ckpt.resolve().parent.parent
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    keys = ("miou", "pixel_accuracy", "iou", "best_val_miou")
    return {k: metrics[k] for k in keys if k in metrics}


# ------------------------------------------------------------------- parity
def parity(module: Any, onnx_path: Path, photos: Sequence[np.ndarray]) -> list[float]:
    """The share of pixels on which the graph and ``module.predict_maps`` agree, per photo
    (``H x W x 3`` uint8)."""
    import torch

    from fashionseg.runtime import open_session

    session = open_session(onnx_path)
    shares = []
    for photo in photos:
        image = torch.from_numpy(photo).permute(2, 0, 1).to(torch.float32) / 255
        with torch.no_grad():
            reference = module.predict_maps([image])[0].numpy()
        labels = session.run([OUTPUT_NAME], {INPUT_NAME: photo})[0]
        shares.append(float((labels == reference).mean()))
    return shares


def sample_photos(ckpt: Path, count: int) -> tuple[list[np.ndarray], str]:
    """Up to ``count`` validation photos of the run (else random ones) and where from."""
    from fashionseg.data.photo import read_photo

    found = validation_photos(ckpt)[:count]
    if found:
        return [read_photo(p)[0] for p in found], f"{len(found)} validation photos"
    rng = np.random.default_rng(0)
    sizes = [(400, 600), (333, 250), (97, 130), (600, 400)][: max(1, count)]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes], (
        f"{len(sizes)} random photos (the run's validation photos were not found)"
    )


# --------------------------------------------------------------------- int8
def quantize_int8(fp32: Path, out: Path, photos: Sequence[np.ndarray]) -> None:
    """Static int8 quantization (QDQ, per-channel weights) calibrated on ``photos``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(photos)

        def get_next(self) -> dict[str, np.ndarray] | None:
            photo = next(self.items, None)
            return None if photo is None else {INPUT_NAME: photo}

    prepared = out.with_name(out.stem + ".pre.onnx")
    try:
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    finally:
        prepared.unlink(missing_ok=True)


# ----------------------------------------------------------------- the command
def export_checkpoint(
    ckpt: str | Path,
    out: str | Path,
    quantize: str | None = None,
    calibration: int = 16,
    parity_photos: int = 4,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export ``ckpt`` to ``out`` (+ its sidecar); returns the sidecar's content."""
    import torch

    from fashionseg.files import atomic_path, write_json
    from fashionseg.model.checkpoint import module_from_checkpoint, read_checkpoint

    ckpt, out = Path(ckpt), Path(out)
    if out.suffix != ".onnx":
        raise UsageError(f"out={out}: the exported file's name must end in .onnx")
    if quantize not in (None, "int8"):
        raise UsageError(f"quantize={quantize}: choose int8 (or leave it out for float32)")
    for path in (out, sidecar_path(out), card_path(out)):
        if path.exists() and not overwrite:
            raise UsageError(f"{path}: exists; pass overwrite=true to replace it")
    module = module_from_checkpoint(read_checkpoint(ckpt), ckpt).eval()
    calibration_photos: list[np.ndarray] = []
    if quantize == "int8":
        from fashionseg.data.photo import read_photo

        found = validation_photos(ckpt)
        if not found:
            raise ExportError(
                f"{ckpt}: quantize=int8 calibrates on the run's validation photos, and "
                "its run directory (split.json, .hydra/config.yaml) or data was not found"
            )
        calibration_photos = [read_photo(p)[0] for p in found[:calibration]]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fp32 = tmp.with_name(tmp.stem + ".fp32.onnx")
        try:
            try:
                export_graph(module, fp32)
            except ExportError:
                raise
            except Exception as err:
                reason = " ".join(str(err).split())[:300] or type(err).__name__
                raise ExportError(f"{ckpt}: cannot be exported ({reason})") from None
            photos, parity_source = sample_photos(ckpt, parity_photos)
            shares = parity(module, fp32, photos)
            if min(shares) < PARITY_MIN:
                raise ExportError(
                    f"{ckpt}: the exported graph agrees with PyTorch on only "
                    f"{100 * min(shares):.3f} % of a photo's pixels (needs "
                    f"{100 * PARITY_MIN:.1f} %)"
                )
            if quantize == "int8":
                quantize_int8(fp32, tmp, calibration_photos)
            else:
                fp32.replace(tmp)
        finally:
            fp32.unlink(missing_ok=True)
        task = module.task
        tags = {
            "fashionseg": str(FORMAT_VERSION),
            "task": task.name,
            "num_classes": str(task.num_classes),
        }
        tag_graph(tmp, tags)
        sidecar = {
            "fashionseg_onnx": FORMAT_VERSION,
            "graph_sha256": sha256_of(tmp),
            "task": task.name,
            "class_names": list(task.class_names),
            "colors": [list(c) for c in task.colors],
            **model_facts(module),
            "input": {
                "name": INPUT_NAME,
                "dtype": "uint8",
                "shape": ["height", "width", 3],
                "channels": "RGB, as displayed (EXIF orientation applied)",
            },
            "output": {"name": OUTPUT_NAME, "dtype": "uint8", "shape": ["height", "width"]},
            "quantize": quantize,
            "calibration_photos": len(calibration_photos) if quantize else None,
            "parity": {"photos": parity_source, "min_share": min(shares)},
            "checkpoint": {"path": str(ckpt.resolve()), "sha256": sha256_of(ckpt)},
            "test": run_figures(ckpt),
            "exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
        }
    write_json(sidecar_path(out), sidecar)
    from fashionseg.reporting.model_card import write_model_card

    write_model_card(card_path(out), run_dir_of(ckpt) or ckpt.parent, module.task)
    return sidecar


def card_path(graph: Path) -> Path:
    """The model card written beside an export: ``X.onnx`` -> ``X_MODEL_CARD.md``."""
    return graph.with_name(f"{graph.stem}_MODEL_CARD.md")


def model_facts(module: Any) -> dict[str, Any]:
    """The sidecar's description of the model: family, arch, threshold(s), TTA, resize."""
    from fashionseg.model.semantic import SemanticModule

    arch = module.hparams.net.get("arch")
    if isinstance(module, SemanticModule):
        return {
            "family": "semantic",
            "arch": arch,
            "threshold": module.score_threshold,
            "class_thresholds": None,
            "tta_hflip": bool(module.tta_hflip),
            "resize": {"min_size": module.min_size, "max_size": module.max_size},
        }
    transform = module.net.transform
    class_thresholds = module.active_class_thresholds
    return {
        "family": "panoptic" if module.has_semantic_head else "maskrcnn",
        "arch": arch,
        "fusion": module.hparams.fusion["method"],
        "threshold": module.score_threshold,
        "class_thresholds": None
        if class_thresholds is None
        else [round(v, 6) for v in class_thresholds.tolist()],
        "tta_hflip": bool(module.tta_hflip) if module.has_semantic_head else False,
        "resize": {"min_size": int(transform.min_size[-1]), "max_size": int(transform.max_size)},
        "max_detections": int(module.net.roi_heads.detections_per_img),
    }


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """``key=value`` arguments (:data:`SETTINGS`) checked; UsageError otherwise."""
    values: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in SETTINGS:
            raise UsageError(
                f"{arg}: not a setting (give {', '.join(sorted(SETTINGS))} as key=value)"
            )
        values[key] = value
    for key in ("ckpt", "out"):
        if not values.get(key):
            raise UsageError(f"{key}: not given (add {key}=PATH to the command)")
    settings: dict[str, Any] = {"ckpt": values["ckpt"], "out": values["out"]}
    settings["quantize"] = values.get("quantize") or None
    for key, default in (("calibration", 16), ("parity_photos", 4)):
        text = values.get(key, str(default))
        if not text.isdigit() or int(text) < 1:
            raise UsageError(f"{key}={text}: must be a whole number >= 1")
        settings[key] = int(text)
    overwrite = values.get("overwrite", "false").lower()
    if overwrite not in ("true", "false"):
        raise UsageError(f"overwrite={overwrite}: must be true or false")
    settings["overwrite"] = overwrite == "true"
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: one ``error:`` line and exit 2 for a user's mistake."""
    from fashionseg.cli import is_user_error

    argv = sys.argv[1:] if argv is None else list(argv)
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        return 0
    try:
        settings = parse_args(argv)
        sidecar = export_checkpoint(**settings)
    except Exception as err:
        if not (isinstance(err, ExportError) or is_user_error(err)):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    share = 100 * sidecar["parity"]["min_share"]
    kind = "int8" if sidecar["quantize"] else "float32"
    print(
        f"exported {settings['out']} ({kind}) and {sidecar_path(Path(settings['out']))}; "
        f"the graph agrees with PyTorch on >= {share:.3f} % of the pixels of "
        f"{sidecar['parity']['photos']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
