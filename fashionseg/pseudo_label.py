"""Pseudo labels from a teacher checkpoint: a dataset in our layout for self-training.

    python -m fashionseg.pseudo_label ckpt=TEACHER input=PHOTOS out=ROOT [tags=tags.csv]
        [tta_scales=[0.75,1.0,1.25]] [tta_hflip=true] [precision=0.9] [min_keep=0.5]
        [thresholds=0.7 | thresholds=[...]] [data.root=DIR] [device=cpu|cuda]

For each photo of ``input`` (a folder or one photo) it writes ``ROOT/images/<photo>``
(a hard link: :mod:`fashionseg.pseudo_output`) and ``ROOT/<task.mask_dir>/<stem>.png``:
the teacher's label map with its test-time augmentation (``tta_hflip``, ``tta_scales``:
default as the teacher was trained), pixels whose confidence is below their class's
threshold written as the teacher's ``data.ignore_index`` (255). Confidence is the
TTA-averaged probability of the pixel's class. The per-class thresholds are chosen on
the teacher's validation split (its ``split.json``, or its data settings' seed and
ratios; ``data.root=`` where the data moved) by the class-balanced rule of
:mod:`fashionseg.pseudo_rules` (``precision``, ``min_keep``), or fixed by
``thresholds=``. With ``tags=``, the classes a photo's tags rule out get probability 0
before the argmax, so they never appear in its map (validation is labelled without
tags: its photos have none).

``ROOT/pseudo_label.json`` records the teacher (path, sha256), the label set, the TTA,
the thresholds and how they were chosen, the tags file (sha256), per-class pixel shares
kept and ignored, the photo counts, per-photo progress and the time taken. Photos are
done one at a time (flat memory); running the same command again continues where a
run stopped; another teacher or other settings into the same ROOT is a one-line error.
Unreadable photos are skipped with a warning and counted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, ListConfig

from fashionseg.cli import UsageError, run_cli, user_errors
from fashionseg.settings import check_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import Tensor

    from fashionseg.model.base import SegmentationBase

log = logging.getLogger("fashionseg.pseudo_label")
WRITE_EVERY = 25  # photos between rewrites of the record


@dataclass(frozen=True)
class Request:
    """The command's settings, checked."""

    ckpt: str
    input: str
    out: str
    tags: str | None = None
    tta_hflip: bool | None = None  # None: as trained
    tta_scales: tuple[float, ...] | None = None
    precision: float = 0.9
    min_keep: float = 0.5
    thresholds: float | tuple[float, ...] | None = None
    data_root: str | None = None
    device: str = "cpu"


def _fraction(key: str, value: Any, low_open: bool) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    if not ok or not (0 < value <= 1 if low_open else 0 <= value <= 1):
        span = "(0, 1]" if low_open else "[0, 1]"
        raise UsageError(f"{key}={value}: must be a number in {span}")
    return float(value)


def read_request(cfg: DictConfig) -> Request:
    """The settings of ``cfg`` as a :class:`Request` (UsageError naming the setting)."""
    from fashionseg.model.tta import check_scales
    from fashionseg.predict import path_setting

    paths = [path_setting(cfg, key) for key in ("ckpt", "input", "out")]
    hflip = cfg.get("tta_hflip")
    if hflip is not None and not isinstance(hflip, bool):
        raise UsageError(f"tta_hflip={hflip}: must be true, false or null")
    scales = cfg.get("tta_scales")
    if scales is not None:
        scales = list(scales) if isinstance(scales, ListConfig | list | tuple) else [scales]
        try:
            scales = check_scales(scales)
        except ValueError as err:
            raise UsageError(str(err)) from None
    thresholds = cfg.get("thresholds")
    if isinstance(thresholds, ListConfig | list | tuple):
        thresholds = tuple(_fraction("thresholds", v, False) for v in thresholds)
    elif thresholds is not None:
        thresholds = _fraction("thresholds", thresholds, False)
    tags = cfg.get("tags")
    data_root = (cfg.get("data") or {}).get("root")
    return Request(
        *paths,
        tags=None if tags in (None, "") else str(tags),
        tta_hflip=hflip,
        tta_scales=scales,
        precision=_fraction("precision", cfg.get("precision", 0.9), True),
        min_keep=_fraction("min_keep", cfg.get("min_keep", 0.5), False),
        thresholds=thresholds,
        data_root=None if data_root in (None, "") else str(data_root),
        device=str(cfg.get("device", "cpu")),
    )


# ---------------------------------------------------------------------- teacher
def teacher_probs(module: SegmentationBase) -> Callable[[list[Tensor]], list[Tensor]]:
    """Photos (float [0, 1], 3 x H x W) -> class probabilities [C, H, W] at each photo's
    size, with the module's TTA: a semantic model's, or Panoptic FPN's semantic head's
    (a Mask R-CNN without the head has no per-pixel probabilities: UsageError)."""
    from fashionseg.model.semantic import SemanticModule

    if isinstance(module, SemanticModule):
        return lambda images: module(images)
    if getattr(module, "has_semantic_head", False):
        return lambda images: [out["sem_probs"] for out in module.net(images)]
    raise UsageError(
        f"{module.hparams.net.get('arch')}: pseudo-labelling needs per-pixel class "
        "probabilities: a semantic model or a Mask R-CNN with Panoptic FPN's semantic head"
    )


def apply_tta(module: SegmentationBase, request: Request) -> dict[str, Any]:
    """Set the requested TTA on the module; the TTA in use ``{hflip, scales}``."""
    if request.tta_hflip is not None:
        module.tta_hflip = request.tta_hflip
    if request.tta_scales is not None:
        module.tta_scales = request.tta_scales
    return {"hflip": bool(module.tta_hflip), "scales": list(module.tta_scales)}


def ignore_value(ckpt: dict[str, Any], num_classes: int) -> int:
    """The teacher data's ``ignore_index`` (255 when unset): the value of ignored pixels."""
    value = ckpt.get("datamodule_hyper_parameters", {}).get("ignore_index")
    value = 255 if value is None else value
    if not num_classes <= int(value) <= 255:
        raise UsageError(
            f"the teacher's data.ignore_index={value}: pseudo labels are 8-bit PNGs, the "
            f"ignore value must be in {num_classes}..255"
        )
    return int(value)


def validation_dataset(ckpt_path: str, ckpt: dict[str, Any], task: Any, data_root: str | None):
    """The teacher's validation photos and label maps (a FashionDataset, no instances)."""
    from fashionseg.data.datamodule import FashionDataModule, read_manifest
    from fashionseg.data.dataset import FashionDataset
    from fashionseg.evaluate import run_manifest

    data = dict(ckpt.get("datamodule_hyper_parameters", {}))
    root = data_root or data.get("root")
    if not root:
        raise UsageError(
            f"{ckpt_path}: holds no data settings, so its validation split cannot be found; "
            "give data.root=DIR (the teacher's labelled data) or fixed thresholds=..."
        )
    manifest = data.get("manifest") or run_manifest(ckpt_path)
    rules = {"ignore_index": data.get("ignore_index", 255), "binary_255": data.get("binary_255")}
    if manifest:
        stems = read_manifest(manifest)["val"]
        return FashionDataset(root, task, stems=stems, with_instances=False, **rules)
    keep = ("split", "seed", "instances", "min_area", *rules)
    kwargs = {k: data[k] for k in keep if k in data}
    datamodule = FashionDataModule(root, task=task, augment=False, **kwargs)
    return datamodule.dataset("val")


def choose_on_validation(
    probs_of: Callable[[list[Tensor]], list[Tensor]],
    dataset: Any,
    num_classes: int,
    request: Request,
    device: Any,
) -> dict[str, Any]:
    """The class-balanced thresholds chosen on ``dataset`` (one photo at a time), with
    each class's precision and kept share there."""
    import torch

    from fashionseg.data.targets import IGNORE_INDEX
    from fashionseg.pseudo_rules import BINS, choose_thresholds, confidence_histograms

    correct = torch.zeros(num_classes, BINS, dtype=torch.int64)
    total = torch.zeros_like(correct)
    with torch.no_grad():
        for index in range(len(dataset)):
            image, target = dataset[index]
            probs = probs_of([image.to(device)])[0]
            c, t = confidence_histograms(probs, target["semantic"].to(device), IGNORE_INDEX)
            correct += c
            total += t
    values = choose_thresholds(correct, total, request.precision, request.min_keep)
    start = [min(int(round(v * BINS)), BINS) for v in values]
    kept = [int(total[c, s:].sum()) for c, s in enumerate(start)]
    right = [int(correct[c, s:].sum()) for c, s in enumerate(start)]
    predicted = total.sum(1).tolist()
    return {
        "values": values,
        "chosen": "validation",
        "precision": request.precision,
        "min_keep": request.min_keep,
        "validation_photos": len(dataset),
        "validation_precision": [
            round(r / k, 4) if k else None for r, k in zip(right, kept, strict=True)
        ],
        "validation_kept": [
            round(k / p, 4) if p else None for k, p in zip(kept, predicted, strict=True)
        ],
    }


# -------------------------------------------------------------------- the run
def pseudo_label(request: Request) -> dict[str, Any]:
    """Run the request (module docstring); the record written to ``ROOT/pseudo_label.json``."""
    from fashionseg.predict import check_request, device_setting

    photos, others = check_request(request.input, request.out)
    started = time.perf_counter()
    import torch

    from fashionseg.data.io import DataError, read_image
    from fashionseg.model.checkpoint import module_from_checkpoint, read_checkpoint
    from fashionseg.predict_engine import model_fingerprint
    from fashionseg.predict_output import PredictFolder
    from fashionseg.pseudo_output import (
        FORMAT_VERSION,
        Progress,
        check_root,
        label_outputs,
        write_record,
    )
    from fashionseg.pseudo_rules import (
        class_counts,
        fixed_thresholds,
        pseudo_label_map,
        read_tags,
        sha256_file,
    )

    root = Path(request.out)
    outputs = label_outputs(photos)
    device = device_setting(request.device)
    ckpt = read_checkpoint(request.ckpt)
    module = module_from_checkpoint(ckpt, request.ckpt)
    task = module.task
    probs_of = teacher_probs(module)
    tta = apply_tta(module, request)
    ignore = ignore_value(ckpt, task.num_classes)
    tags, warning = (None, None) if request.tags is None else read_tags(request.tags, task)
    if warning:
        log.warning("%s", warning)
    source = {
        "ckpt": str(Path(request.ckpt).resolve()),
        "task": task.name,
        "threshold": None,
        "model": model_fingerprint(module),
        "tta": tta,
        "tags": None if tags is None else tags.sha256,
        "thresholds": request.thresholds
        if not isinstance(request.thresholds, tuple)
        else list(request.thresholds),
        "precision": request.precision,
        "min_keep": request.min_keep,
        "ignore_index": ignore,
    }
    earlier = check_root(root, task.mask_dir, photos, source)
    masks = root / task.mask_dir
    PredictFolder.check(masks, source, outputs)  # the label maps' folder, before writing
    module.to(device).eval()
    if earlier is not None:
        thresholds = earlier["thresholds"]
    elif request.thresholds is not None:
        thresholds = {"values": fixed_thresholds(request.thresholds, task), "chosen": "fixed"}
    else:
        chosen_at = time.perf_counter()
        dataset = validation_dataset(request.ckpt, ckpt, task, request.data_root)
        thresholds = choose_on_validation(probs_of, dataset, task.num_classes, request, device)
        thresholds["seconds"] = round(time.perf_counter() - chosen_at, 3)
    record: dict[str, Any] = {
        "fashionseg_pseudo_label": FORMAT_VERSION,
        "source": source,
        "teacher": {"ckpt": source["ckpt"], "sha256": sha256_file(Path(request.ckpt))},
        "task": task.to_config(),
        "tta": tta,
        "ignore_index": ignore,
        "thresholds": {
            **thresholds,
            "by_class": dict(zip(task.class_names, thresholds["values"], strict=True)),
        },
        "tags": None if tags is None else {"path": str(tags.path.resolve()), "sha256": tags.sha256},
        "input": str(Path(request.input).resolve()),
        "photos": {"total": len(photos), "unreadable": [], "not_photos": len(others)},
        "seconds": {"thresholds": thresholds.get("seconds", 0.0)},
    }
    if earlier is not None:
        record["seconds"]["runs"] = earlier.get("seconds", {}).get("runs", 0.0)
    level = torch.tensor(thresholds["values"])
    root.mkdir(parents=True, exist_ok=True)
    progress = Progress(root)
    names = task.class_names
    record = write_record(root, record, progress, names)  # first: ROOT is known as ours
    unreadable: list[str] = []
    try:
        with PredictFolder.open(masks, source, outputs) as folder, torch.no_grad():
            for count, item in enumerate(outputs, start=1):
                stem = item.photo.stem
                finished = progress.photos.get(stem)
                if finished and (finished.get("written") is False or folder.done(item)):
                    continue
                began = time.perf_counter()
                try:
                    image = read_image(item.photo)
                except DataError as err:
                    log.warning("skipped %s", err)
                    unreadable.append(str(item.photo))
                    continue
                allowed = None if tags is None else tags.allowed.get(stem)
                probs = probs_of([image.to(device, torch.float32) / 255])[0]
                label, predicted = pseudo_label_map(probs, level, ignore, allowed)
                kept, dropped = class_counts(label, predicted, task.num_classes)
                written = bool(kept.sum() > 0)  # a map of ignored pixels alone teaches nothing
                if written:
                    _write(folder, item, root, label.cpu().numpy(), task, ignore, masks)
                progress.add(
                    {
                        "stem": stem,
                        "written": written,
                        "kept": kept.tolist(),
                        "ignored": dropped.tolist(),
                        "tags": None if tags is None else allowed is not None,
                        "seconds": round(time.perf_counter() - began, 4),
                    }
                )
                if count % WRITE_EVERY == 0:
                    record = write_record(root, record, progress, names)
    finally:
        progress.close()
        record["photos"]["unreadable"] = unreadable
        spent = time.perf_counter() - started
        record["seconds"]["runs"] = round(record["seconds"].get("runs", 0.0) + spent, 3)
        record = write_record(root, record, progress, names)
    for f in others:
        log.warning("skipped %s: not an image file (suffix %r)", f, f.suffix)
    return record


def _write(
    folder: Any, item: Any, root: Path, label: Any, task: Any, ignore: int, masks: Path
) -> None:
    """One photo's files: the photo placed in ``images/``, then its recorded label map."""
    from fashionseg.files import save_label_png
    from fashionseg.pseudo_output import place_photo

    place_photo(item.photo, root / "images" / item.photo.name)
    try:
        save_label_png(folder.claim(item.label, item.photo), label, task, ignore)
    except OSError as err:
        raise UsageError(
            f"{masks}: cannot write the label map of {item.photo} ({err.strerror or err}); "
            "the photos done so far are kept, run again to go on"
        ) from None


def describe(record: dict[str, Any]) -> str:
    """The run's one-paragraph summary: photos, thresholds, kept shares."""
    photos = record["photos"]
    shown = ", ".join(f"{n} {t:.3f}" for n, t in record["thresholds"]["by_class"].items())
    pixels = record["pixels"]["all"]
    return (
        f"{photos['done']} of {photos['total']} photos pseudo-labelled "
        f"({len(photos['unreadable'])} unreadable, {photos['without_tags']} without tags); "
        f"thresholds ({record['thresholds']['chosen']}): {shown}; "
        f"{pixels['kept']:.1f} % of the pixels kept, {pixels['ignored']:.1f} % ignored"
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="pseudo_label")
@user_errors
def hydra_main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    check_settings(cfg, "pseudo_label")
    record = pseudo_label(read_request(cfg))
    print(describe(record))
    print(f"dataset in {cfg.out} (record: {Path(cfg.out) / 'pseudo_label.json'})")


def main() -> None:
    """Command-line entry point: the command line is checked, then Hydra runs."""
    run_cli(hydra_main, "pseudo_label", "pseudo_label")


if __name__ == "__main__":
    main()
