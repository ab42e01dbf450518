"""What the demo page (:mod:`fashionseg.serve`) computes, without Gradio.

A :class:`DemoModel` runs a checkpoint's network once per photo and keeps its raw output
(:class:`RawOutput`: a Mask R-CNN's detections, or an argmax model's label map), so that
moving the score-threshold slider or choosing another fusion re-labels the photo with
:func:`fashionseg.fusion.fuse` alone, without running the network again.

Photos are read as everywhere else (:func:`fashionseg.data.photo.read_photo`: EXIF
orientation applied, every PIL mode as 8-bit RGB); a file that is not a readable photo is
a one-line :class:`fashionseg.data.photo.DataError`. A photo whose long side exceeds
:data:`NET_LIMIT` pixels is scaled down for the network (the models scale it down further
anyway) and its label map scaled back (nearest) to the photo's own size, so the cached
masks stay small; smaller photos get exactly the label map ``predict`` writes.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fashionseg.data.photo import DataError, read_photo
from fashionseg.fusion import ALL_METHODS, METHODS, THRESHOLDLESS_METHODS, fuse
from fashionseg.model.base import SegmentationBase
from fashionseg.model.visualize import overlay
from fashionseg.tasks import Task

# the longest side (pixels) of the photo the network is given
NET_LIMIT = 1024


@dataclass
class RawOutput:
    """One photo's network output, kept for re-labelling.

    ``rgb`` is the photo (H x W x 3 uint8) and ``net_size`` the (H, W) the network saw;
    ``detections`` (Mask R-CNN: labels, scores, masks as float16, the semantic head's
    label map ``semantic``) or ``label_map`` (argmax models) at ``net_size``.
    """

    rgb: np.ndarray
    net_size: tuple[int, int]
    detections: dict[str, Tensor] | None = None
    label_map: Tensor | None = None


def read_upload(path: str | Path) -> np.ndarray:
    """An uploaded file as an H x W x 3 uint8 photo; a one-line DataError otherwise."""
    return read_photo(path)[0]


def shrunk(rgb: np.ndarray, limit: int = NET_LIMIT) -> np.ndarray:
    """The photo (H x W x 3 uint8) with its long side at most ``limit`` (bilinear)."""
    height, width = rgb.shape[:2]
    scale = min(1.0, limit / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = np.array(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    return np.ascontiguousarray(rgb)


def network_input(rgb: np.ndarray, limit: int = NET_LIMIT) -> Tensor:
    """The photo as a 3 x h x w float tensor in [0, 1], its long side at most ``limit``."""
    return torch.from_numpy(shrunk(rgb, limit)).permute(2, 0, 1).float() / 255


def resize_labels(label_map: Tensor, size: tuple[int, int]) -> np.ndarray:
    """An H x W label map as uint8 at ``size`` (H, W), scaled by nearest neighbour."""
    labels = label_map.to(torch.uint8).cpu().numpy()
    if labels.shape == tuple(size):
        return labels
    return np.asarray(Image.fromarray(labels).resize((size[1], size[0]), Image.Resampling.NEAREST))


def class_shares(label_map: np.ndarray, num_classes: int) -> list[float]:
    """Each class's fraction of the label map's pixels (summing to 1; zeros when empty)."""
    counts = np.bincount(np.asarray(label_map).ravel(), minlength=num_classes)[:num_classes]
    total = int(counts.sum())
    return [float(c) / total if total else 0.0 for c in counts]


def hex_colour(rgb: tuple[int, int, int]) -> str:
    """``(128, 0, 0)`` -> ``"#800000"``."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def legend_html(task: Task, shares: list[float] | None = None) -> str:
    """An HTML legend: one row per class with its colour swatch, name and share (in %)."""
    rows = []
    for i, (name, colour) in enumerate(zip(task.class_names, task.colors, strict=True)):
        share = "" if shares is None else f"{100 * shares[i]:.1f} %"
        rows.append(
            f'<tr class="legend-row" data-class="{html.escape(name)}">'
            f'<td><span style="display:inline-block;width:1.2em;height:1.2em;'
            f'background:{hex_colour(colour)};border:1px solid #888"></span></td>'
            f'<td class="legend-name">{html.escape(name)}</td>'
            f'<td class="legend-share" style="text-align:right">{share}</td></tr>'
        )
    head = "<tr><th></th><th>class</th><th>share of the photo</th></tr>"
    return f'<table class="legend">{head}{"".join(rows)}</table>'


def colour_labels(label_map: np.ndarray, task: Task) -> np.ndarray:
    """The label map in the classes' colours, H x W x 3 uint8."""
    palette = np.asarray(task.colors, dtype=np.uint8)
    return palette[np.clip(label_map, 0, task.num_classes - 1)]


def overlay_photo(rgb: np.ndarray, label_map: np.ndarray, task: Task) -> np.ndarray:
    """The photo with each class painted half-transparent in its colour (H x W x 3)."""
    image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    painted = overlay(image, torch.from_numpy(label_map.astype(np.int64)), task.colors)
    return painted.permute(1, 2, 0).numpy()


class DemoModel:
    """A loaded module ready for the page: run once, re-label at will."""

    def __init__(self, module: SegmentationBase, net_limit: int = NET_LIMIT) -> None:
        self.module = module.eval()
        self.net_limit = int(net_limit)
        self.is_instance_model = hasattr(module, "fuse_outputs")

    @property
    def task(self) -> Task:
        """The checkpoint's task (``class_names`` and ``colors``)."""
        return self.module.task

    @property
    def threshold(self) -> float | None:
        """The validated (or overridden) score threshold; None for argmax models."""
        return self.module.score_threshold

    @property
    def method(self) -> str | None:
        """The fusion the model was trained and validated with (None: argmax model)."""
        return self.module.hparams.fusion["method"] if self.is_instance_model else None

    @property
    def methods(self) -> tuple[str, ...]:
        """The fusions this model can use: all with a semantic head, else the instance ones."""
        if not self.is_instance_model:
            return ()
        return ALL_METHODS if self.module.has_semantic_head else METHODS

    @property
    def class_thresholds(self) -> dict[str, float] | None:
        """The validated per-class thresholds in use (by class name), else None."""
        values = self.module.active_class_thresholds if self.is_instance_model else None
        if values is None:
            return None
        names = self.task.class_names
        return {names[i]: round(float(values[i]), 6) for i in range(1, len(names))}

    @torch.inference_mode()
    def run(self, rgb: np.ndarray) -> RawOutput:
        """Run the network once on a photo (H x W x 3 uint8)."""
        device = next(self.module.parameters()).device
        image = network_input(rgb, self.net_limit).to(device)
        size = (int(image.shape[1]), int(image.shape[2]))
        if not self.is_instance_model:
            return RawOutput(rgb, size, label_map=self.module.predict_maps([image])[0].cpu())
        output = self.module.net([image])[0]
        detections = {
            "labels": output["labels"].cpu(),
            "scores": output["scores"].cpu(),
            "masks": output["masks"].to("cpu", torch.float16),
        }
        if output.get("sem_probs") is not None:
            detections["semantic"] = output["sem_probs"].argmax(0).cpu()
        return RawOutput(rgb, size, detections=detections)

    def label_map(
        self,
        raw: RawOutput,
        method: str | None = None,
        threshold: float | None = None,
        per_class: bool = True,
    ) -> np.ndarray:
        """The photo's label map (H x W uint8 at its own size) from the cached output.

        ``method`` (default: the model's), ``threshold`` (default: the validated one) and
        ``per_class`` (use the validated per-class thresholds, where the model has them;
        ``threshold`` is then ignored) say how a Mask R-CNN's detections are fused.
        """
        photo_size = tuple(raw.rgb.shape[:2])
        if raw.detections is None:
            return resize_labels(raw.label_map, photo_size)
        method = method or self.method
        if method not in self.methods:
            raise ValueError(f"fusion {method!r}: choose one of {', '.join(self.methods)}")
        det = raw.detections
        class_thresholds = self.module.active_class_thresholds if per_class else None
        fused = fuse(
            det["labels"],
            det["scores"],
            det["masks"].float(),
            method=method,
            threshold=self.threshold if threshold is None else float(threshold),
            mask_threshold=self.module.hparams.fusion["mask_threshold"],
            class_thresholds=None if class_thresholds is None else class_thresholds.cpu(),
            semantic=det.get("semantic"),
        )
        return resize_labels(fused, photo_size)

    def uses_threshold(self, method: str | None) -> bool:
        """Whether label maps of ``method`` depend on the score threshold."""
        return self.is_instance_model and (method or self.method) not in THRESHOLDLESS_METHODS

    def describe(self) -> str:
        """One line on the model: architecture, task, threshold(s), fusion."""
        hp: dict[str, Any] = dict(self.module.hparams)
        arch = hp.get("net", {}).get("arch", "maskrcnn")
        text = f"{arch}, task {self.task.name} ({self.task.num_classes} classes)"
        if self.is_instance_model:
            text += f", fusion {self.method}"
            if self.uses_threshold(None):
                text += f", validated score threshold {self.threshold}"
            if self.class_thresholds:
                shown = ", ".join(f"{k} {v:g}" for k, v in self.class_thresholds.items())
                text += f"; per-class thresholds: {shown}"
        else:
            text += ", argmax (no score threshold)"
        return text


class OnnxDemoModel:
    """An exported ``.onnx`` (:class:`fashionseg.runtime.OnnxModel`) for the page, with the
    same interface as :class:`DemoModel`. Its threshold and fusion are fixed inside the
    graph, so the page shows no slider and no fusion choice."""

    is_instance_model = False
    threshold = None
    method = None
    methods: tuple[str, ...] = ()
    class_thresholds = None

    def __init__(self, path: str | Path, net_limit: int = NET_LIMIT) -> None:
        from fashionseg.runtime import OnnxModel

        self.model = OnnxModel(path)
        self.net_limit = int(net_limit)

    @property
    def task(self) -> Any:
        """The exported label set (``name``, ``class_names``, ``colors``)."""
        return self.model.labels

    def run(self, rgb: np.ndarray) -> RawOutput:
        """Run the graph once on a photo (H x W x 3 uint8), shrunk as for checkpoints."""
        small = shrunk(rgb, self.net_limit)
        labels = torch.from_numpy(self.model.label_map(small))
        return RawOutput(rgb, (small.shape[0], small.shape[1]), label_map=labels)

    def label_map(
        self,
        raw: RawOutput,
        method: str | None = None,
        threshold: float | None = None,
        per_class: bool = True,
    ) -> np.ndarray:
        """The photo's label map at its own size (the settings are fixed in the graph)."""
        return resize_labels(raw.label_map, tuple(raw.rgb.shape[:2]))

    def uses_threshold(self, method: str | None) -> bool:
        """Never: an exported graph's threshold cannot be moved."""
        return False

    def describe(self) -> str:
        """One line on the model: the file, its task and its fixed threshold."""
        task, fixed = self.task, self.model.threshold
        text = f"exported {self.model.path.name}, task {task.name} ({task.num_classes} classes)"
        if fixed is None:
            return text + ", argmax (no score threshold)"
        return text + f", score threshold {fixed:g} (fixed in the graph)"


def example_photos(ckpt: str | Path, limit: int = 8) -> list[Path]:
    """The first ``limit`` test photos of the checkpoint's run (its ``split.json`` and its
    config's ``data.root``); empty when the checkpoint is not in a run directory or the
    photos are not where the run found them."""
    import json

    from omegaconf import OmegaConf

    from fashionseg.data.io import list_photos
    from fashionseg.export import run_dir_of

    run = run_dir_of(Path(ckpt))
    config = None if run is None else run / ".hydra" / "config.yaml"
    if config is None or not config.is_file():
        return []
    try:
        stems = json.loads((run / "split.json").read_text())["test"][:limit]
        root = Path(str(OmegaConf.load(config).data.root)).expanduser()
        if not root.is_absolute():
            hydra_file = run / ".hydra" / "hydra.yaml"
            cwd = OmegaConf.load(hydra_file).hydra.runtime.cwd if hydra_file.is_file() else "."
            root = Path(str(cwd)) / root
        photos = list_photos(root / "images")
    except (OSError, KeyError, ValueError, DataError, AttributeError):
        return []
    return [photos[s] for s in stems if s in photos]
