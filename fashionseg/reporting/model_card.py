"""``MODEL_CARD.md``: a Hugging Face style model card made from a run, never by hand.

Every training run writes one into its run directory (:func:`fashionseg.train.train`);
an exporter writes one beside the exported file with :func:`write_model_card`
(``run_dir=`` the checkpoint's run). The card holds Hugging Face front matter (library,
tags, datasets, metrics as ``model-index``), the label set with its colours, the data
(root, photos per split, split file, the first lines of the root's LICENSE and README as
the data's terms), the recipe (model, weights, epochs, optimizer, augmentation, fusion),
the validated threshold(s), the test figures of ``metrics.json`` (per-class IoU, mIoU,
pixel accuracy, AP where measured), train time and hardware, and its limits.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fashionseg.files import write_text
from fashionseg.reporting.run_results import format_percent
from fashionseg.tasks import Task

CARD_NAME = "MODEL_CARD.md"
TRAIN_INFO = "train_info.json"  # train time and hardware, written by train beside the card
LOW_IOU = 0.5  # classes below this test IoU are named in the limits
TERMS_LINES = 6  # lines quoted from a data root's LICENSE / README
SPLITS = ("train", "val", "test")
AUGMENTATIONS = ("hflip", "scale_jitter", "crop", "color_jitter", "hue_jitter")


def data_terms(root: str | Path, lines: int = TERMS_LINES) -> list[tuple[str, list[str]]]:
    """``(file name, first non-empty lines)`` of the LICENSE* and README* files of ``root``."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for pattern in ("LICENSE*", "LICENCE*", "COPYING*", "README*"):
        for path in sorted(root.glob(pattern)):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            kept = [line.rstrip() for line in text.splitlines() if line.strip()][:lines]
            found.append((path.name, kept))
    return found


def _train_sizes(root: Path, stems: list[str]) -> str | None:
    """The photo sizes (W x H) of the training split with their counts, from file headers."""
    from fashionseg.data.io import image_size, list_photos

    try:
        photos = list_photos(root / "images")
        sizes = Counter(image_size(photos[s]) for s in stems if s in photos)
    except (OSError, ValueError):
        return None
    return ", ".join(f"{w}x{h} ({n} photos)" for (w, h), n in sizes.most_common(5)) or None


def _short(target: Any) -> str:
    return str(target or "?").rsplit(".", 1)[-1]


def front_matter(task: Task, config: Mapping[str, Any], metrics: Mapping[str, Any] | None) -> str:
    """Hugging Face model-card front matter (YAML, between ``---`` lines)."""
    import yaml

    model = config.get("model", {})
    arch = model.get("net", {}).get("arch", "maskrcnn")
    dataset = Path(str(config.get("data", {}).get("root", "data"))).name or "data"
    kind = (
        "semantic-segmentation"
        if "Semantic" in _short(model.get("_target_"))
        else "instance-segmentation"
    )
    meta: dict[str, Any] = {
        "library_name": "pytorch",
        "pipeline_tag": "image-segmentation",
        "tags": ["fashionseg", "image-segmentation", kind, "pytorch-lightning", arch, task.name],
        "datasets": [dataset],
        "metrics": ["mean_iou", "accuracy"],
    }
    if metrics:
        values = [
            {"type": "mean_iou", "name": "test mIoU", "value": metrics.get("miou")},
            {
                "type": "accuracy",
                "name": "test pixel accuracy",
                "value": metrics.get("pixel_accuracy"),
            },
        ]
        values += [
            {"type": "iou", "name": f"test IoU {name}", "value": value}
            for name, value in metrics.get("iou", {}).items()
        ]
        for key, value in (metrics.get("ap") or {}).items():
            if value is not None:
                values.append(
                    {"type": "mean_average_precision", "name": f"test {key}", "value": value}
                )
        meta["model-index"] = [
            {
                "name": f"fashionseg-{task.name}-{arch}",
                "results": [
                    {
                        "task": {"type": "image-segmentation"},
                        "dataset": {"name": dataset, "type": dataset, "split": "test"},
                        "metrics": values,
                    }
                ],
            }
        ]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _recipe(config: Mapping[str, Any]) -> list[str]:
    model, data = config.get("model", {}), config.get("data", {})
    net, optimizer = model.get("net", {}), config.get("optimizer", {})
    scheduler = config.get("scheduler", {})
    fusion = model.get("fusion")
    augment = [f"{k}={data[k]}" for k in AUGMENTATIONS if data.get(k)]
    if data.get("augment") is False:
        augment = []
    weights = net.get("weights", "?")
    ema = (config.get("callbacks") or {}).get("ema") or {}
    return [
        f"- model: `{_short(model.get('_target_'))}`, architecture `{net.get('arch', 'maskrcnn')}`",
        f"- weights at the start: `{weights}`"
        + (" (random init, trained from scratch)" if weights == "none" else "")
        + (f", then those of `{model['init_from']}` (init_from)" if model.get("init_from") else ""),
        *(
            [f"- weight averaging: EMA, decay {ema['decay']} (validated, saved and tested)"]
            if ema.get("decay") is not None
            else []
        ),
        f"- network input: photos resized to min side {net.get('min_size', '?')} / "
        f"max side {net.get('max_size', '?')} px",
        f"- epochs: {config.get('trainer', {}).get('max_epochs', '?')}, batch size "
        f"{data.get('batch_size', '?')}, seed {config.get('seed')}",
        f"- optimizer: `{_short(optimizer.get('_target_'))}` lr {optimizer.get('lr')}, "
        f"weight decay {optimizer.get('weight_decay', 0)}; scheduler "
        f"`{scheduler.get('name') or _short(scheduler.get('_target_')) or 'constant'}`",
        f"- augmentation: {', '.join(augment) if augment else 'none'}",
        "- fusion: "
        + (
            f"`{fusion.get('method')}` (mask threshold {fusion.get('mask_threshold')}, "
            f"per-class thresholds searched: {bool(fusion.get('per_class_thresholds'))})"
            if isinstance(fusion, Mapping)
            else "none (argmax of the per-pixel class scores)"
        ),
    ]


def _thresholds(config: Mapping[str, Any], metrics: Mapping[str, Any] | None) -> list[str]:
    argmax = ["- none: pixels take the class of highest score (argmax)"]
    if not isinstance(config.get("model", {}).get("fusion"), Mapping):
        return argmax
    if not metrics:
        return ["- not tested: no validated threshold recorded"]
    if metrics.get("threshold") is None:
        return argmax
    lines = [f"- score threshold in use: {metrics['threshold']}"]
    choice = metrics.get("threshold_choice") or {}
    if choice.get("override") is not None:
        lines.append(f"- (set by hand: threshold={choice['override']})")
    if metrics.get("class_thresholds"):
        shown = ", ".join(f"{k} {v:g}" for k, v in list(metrics["class_thresholds"].items())[1:])
        lines.append(f"- per-class thresholds in use: {shown}")
    return lines


def _scores(task: Task, metrics: Mapping[str, Any] | None) -> list[str]:
    if not metrics:
        return ["Not tested (the run had `test=false`)."]
    lines = ["| class | IoU (%) |", "|---|---:|"]
    lines += [f"| {n} | {format_percent(metrics['iou'].get(n))} |" for n in task.class_names]
    lines += [
        "",
        f"- mIoU: **{format_percent(metrics.get('miou'))} %** (classes present in the test split)",
        f"- pixel accuracy: {format_percent(metrics.get('pixel_accuracy'))} %",
    ]
    if metrics.get("best_val_miou") is not None:
        lines.append(
            f"- validation mIoU of the tested checkpoint: {format_percent(metrics['best_val_miou'])} %"
        )
    ap = metrics.get("ap") or {}
    if ap:
        shown = ", ".join(f"{k} {format_percent(v)}" for k, v in ap.items())
        lines.append(f"- COCO AP (%, instances against the label maps' own): {shown}")
    else:
        lines.append("- AP: not measured (argmax model, or AP switched off)")
    return lines


def _limits(
    task: Task, config: Mapping[str, Any], metrics: Mapping[str, Any] | None, sizes: str | None
) -> list[str]:
    lines = []
    if metrics:
        low = [
            f"{n} ({format_percent(v, 1)} %)"
            for n, v in metrics.get("iou", {}).items()
            if v is not None and v < LOW_IOU
        ]
        absent = [n for n, v in metrics.get("iou", {}).items() if v is None]
        if low:
            lines.append(f"- classes below {LOW_IOU:.0%} test IoU: {', '.join(low)}")
        if absent:
            lines.append(f"- classes absent from the test split (no IoU): {', '.join(absent)}")
    weights = config.get("model", {}).get("net", {}).get("weights")
    if weights == "none":
        lines.append("- random init: no pretrained weights, only this dataset's training photos")
    else:
        lines.append(f"- started from pretrained weights (`{weights}`)")
    if sizes:
        lines.append(f"- trained on photos of {sizes}; other sizes and framings are untested")
    lines.append(f"- labels only the {task.num_classes} classes above; anything else is background")
    return lines


def model_card(
    task: Task,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    split: Mapping[str, Any] | None = None,
    split_file: str | None = None,
    train_info: Mapping[str, Any] | None = None,
) -> str:
    """The card's Markdown (pure but for reading the data root's terms and photo headers).

    ``config`` is the run's composed config as plain dicts, ``metrics`` its
    ``metrics.json`` (None: not tested), ``split`` its ``split.json``, ``train_info``
    ``{"seconds": ..., "hardware": ...}``.
    """
    root = Path(str(config.get("data", {}).get("root", "")))
    split = split or {}
    sizes = _train_sizes(root, list(split.get("train", []))) if split else None
    arch = config.get("model", {}).get("net", {}).get("arch", "maskrcnn")
    lines = [front_matter(task, config, metrics), f"# fashionseg {task.name} model ({arch})", ""]
    lines += ["## Label set", "", "| id | class | colour (RGB) |", "|---:|---|---|"]
    for i, (name, colour) in enumerate(zip(task.class_names, task.colors, strict=True)):
        hex_code = "#{:02x}{:02x}{:02x}".format(*colour)
        lines.append(f"| {i} | {name} | `{hex_code}` {tuple(colour)} |")
    counts = ", ".join(f"{s} {len(split.get(s, []))}" for s in SPLITS) if split else "not recorded"
    lines += ["", "## Data", "", f"- root: `{root}`", f"- photos per split: {counts}"]
    for extra in split.get("extra") or []:  # data.extra_roots: training photos only
        lines.append(
            f"- extra training root: `{extra.get('root')}` (weight {extra.get('weight')}): "
            f"{len(extra.get('stems', []))} photos, never validated or tested on"
        )
    lines.append(f"- split file: `{split_file}`" if split_file else "- split file: none")
    for name, quoted in data_terms(root):
        fence = "~" * max(4, *(len(q) - len(q.lstrip("~")) + 1 for q in quoted))
        lines += ["", f"Terms of the data, first lines of `{name}`:", "", fence + "text"]
        lines += [*quoted, fence]
    lines += ["", "## Recipe", "", *_recipe(config)]
    lines += ["", "## Validated threshold(s)", "", *_thresholds(config, metrics)]
    lines += ["", "## Test scores", "", *_scores(task, metrics)]
    info = train_info or {}
    minutes = (
        f"{info['seconds'] / 60:.1f} min" if info.get("seconds") is not None else "not recorded"
    )
    lines += ["", "## Training", "", f"- train time (wall, fit + test): {minutes}"]
    if config.get("ckpt_path") or config.get("resume"):
        lines.append("  (a resumed run: since it resumed, earlier runs not counted)")
    lines.append(f"- hardware: {info.get('hardware', 'not recorded')}")
    lines += ["", "## Limits", "", *_limits(task, config, metrics, sizes), ""]
    return "\n".join(lines)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def run_config(run_dir: str | Path) -> dict[str, Any]:
    """A run's composed config (``.hydra/config.yaml``) as plain dicts, interpolations
    resolved (``paths.output_dir``, Hydra's run directory, is ``run_dir``); ``{}`` when
    ``run_dir`` has none."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}  # a checkpoint outside a run directory: the card says what it can
    config = OmegaConf.load(path)
    if "paths" in config:
        config.paths.output_dir = str(run_dir)
    return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]


def write_model_card(
    path: str | Path,
    run_dir: str | Path,
    task: Task,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Write the card of the run in ``run_dir`` to ``path`` (e.g. beside an export).

    Reads the run's ``metrics.json``, ``split.json``, ``train_info.json`` and (unless
    ``config`` is given) ``.hydra/config.yaml``; ``task`` names the label set
    (``module.task``: ``class_names`` and ``colors``).
    """
    run_dir = Path(run_dir)
    config = config if config is not None else run_config(run_dir)
    split_path = run_dir / "split.json"
    text = model_card(
        task,
        config,
        metrics=_read_json(run_dir / "metrics.json"),
        split=_read_json(split_path),
        split_file=str(split_path) if split_path.is_file() else None,
        train_info=_read_json(run_dir / TRAIN_INFO),
    )
    return write_text(path, text)
