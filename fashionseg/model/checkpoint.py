"""Load trained checkpoints safely (``weights_only=True``: no pickled code runs)."""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fashionseg.model.base import SegmentationBase
from fashionseg.model.module import MaskRCNNModule
from fashionseg.tasks import Task, TaskError, get_task
from fashionseg.thresholds import THRESHOLD_BUFFERS


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, unsafe, or for another task."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``.

    A file that needs arbitrary unpickling (and so could run code) is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is a page of advice; the object it met is what names the problem
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
        first = found.group(1) if found else (text.splitlines() or ["?"])[0]
        raise CheckpointError(
            f"{path}: refused, it holds objects a weights-only load does not allow ({first})"
        ) from None
    except Exception as err:  # garbage bytes reach the unpickler's IndexError, KeyError...
        reason = " ".join(str(err).split()) or type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(
            f"{path}: not a fashionseg checkpoint (no state_dict/hyper_parameters)"
        )
    return ckpt


def load_module(
    path: str | Path, task: str | Mapping[str, Any] | Task | None = None, **overrides: Any
) -> SegmentationBase:
    """Rebuild the module of a checkpoint (Mask R-CNN or semantic), in eval mode on the CPU.

    ``task`` (a name, a task mapping or a Task), when given, must match the checkpoint's
    label set: the same name, and the same classes where it is more than a name. The
    module's ``task`` is the checkpoint's own label set (names, colours, mask folder);
    a checkpoint that holds only a task name (written before label sets were config)
    gets the built-in task of that name. ``overrides`` replace
    hyper-parameters (e.g. ``threshold=0.3`` or ``fusion={...}``); hyper-parameters the
    module does not take are left out (``threshold`` for an argmax model, and those of
    older checkpoints: ``log_images``, now a callback's, or the ``fusion`` and
    ``thresholds`` that semantic models carried while they inherited Mask R-CNN's).
    """
    return module_from_checkpoint(read_checkpoint(path), path, task=task, **overrides)


def module_from_checkpoint(
    ckpt: dict[str, Any],
    path: str | Path,
    task: str | Mapping[str, Any] | Task | None = None,
    **overrides: Any,
) -> SegmentationBase:
    """:func:`load_module` for a checkpoint already read by :func:`read_checkpoint`."""
    hparams = dict(ckpt["hyper_parameters"])
    try:
        ckpt_task = get_task(hparams.get("task", "person"))
    except TaskError as err:
        raise CheckpointError(f"{path}: {err}") from None
    if task is not None:
        _check_task(path, ckpt_task, task)
    hparams["task"] = ckpt_task.to_config()
    # The trained weights come from the state dict: never fetch pretrained ones here.
    hparams["net"] = {**hparams.get("net", {}), "weights": "none"}
    hparams.update({k: v for k, v in overrides.items() if v is not None})
    kind = module_class(path, hparams)
    accepted = kind.accepted_settings()
    module = kind(**{k: v for k, v in hparams.items() if k in accepted})
    try:
        module.load_state_dict(_with_batchnorm_counters(ckpt["state_dict"], module.state_dict()))
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        raise CheckpointError(
            f"{path}: weights do not fit a {module.task.name} model "
            f"({module.task.num_classes} classes): {detail[:300]}"
        ) from None
    return module.eval()


def module_class(path: str | Path, hparams: Mapping[str, Any]) -> type[SegmentationBase]:
    """The LightningModule class of a checkpoint's ``hyper_parameters``: the one its
    ``family`` names (every module saves its class's ``SegmentationBase.family``); only a
    checkpoint written before the family was saved is told by its ``net.arch`` (a
    semantic architecture, or else Mask R-CNN)."""
    from fashionseg.model.semantic import SEMANTIC_ARCHS, SemanticModule

    families = {kind.family: kind for kind in (MaskRCNNModule, SemanticModule)}
    family = hparams.get("family")
    if family is None:  # an older checkpoint
        arch = (hparams.get("net") or {}).get("arch")
        return SemanticModule if arch in SEMANTIC_ARCHS else MaskRCNNModule
    if family not in families:
        raise CheckpointError(
            f"{path}: unknown model family {family!r} in its hyper_parameters "
            f"(known: {', '.join(sorted(families))})"
        )
    return families[family]


def _known_task(task: str | Mapping[str, Any] | Task) -> Task | None:
    """The label set asked for: a mapping or Task as given, a name when it is a task file."""
    if not isinstance(task, str):
        return get_task(task)
    try:
        return get_task(task)
    except ValueError:  # a name that is no task file: compared by name alone
        return None


def _check_task(path: str | Path, ckpt_task: Task, task: str | Mapping[str, Any] | Task) -> None:
    """A CheckpointError unless ``task`` (asked for) is the checkpoint's label set."""
    asked = _known_task(task)
    name = task if isinstance(task, str) else get_task(task).name
    if name != ckpt_task.name or (asked and asked.class_names != ckpt_task.class_names):
        count = f" ({asked.num_classes} classes)" if asked else ""
        raise CheckpointError(
            f"{path}: checkpoint is for task {ckpt_task.name!r} ({ckpt_task.num_classes} classes), "
            f"not {name!r}{count}"
        )


# buffers that checkpoints written before they existed lack: their defaults reproduce
# what such checkpoints did (per-class thresholds used whenever asked for)
CHOICE_BUFFERS = ("use_class_thresholds", "val_miou", "val_miou_global", "val_miou_per_class")


def _with_batchnorm_counters(state: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """Fill the BatchNorm step counters that frozen-BN (pretrained) models do not have,
    and the threshold-choice buffers of older checkpoints; drop the threshold buffers
    that older semantic checkpoints hold and the module has not.

    A model fine-tuned from pretrained weights uses FrozenBatchNorm2d; rebuilt without
    those weights it has BatchNorm2d, whose eval-mode output is the same but whose state
    also counts batches. Every other key must match exactly (strict load).
    """
    missing = [
        k
        for k in own
        if k not in state and (k.endswith("num_batches_tracked") or k in CHOICE_BUFFERS)
    ]
    foreign = {k for k in THRESHOLD_BUFFERS if k in state and k not in own}
    kept = {k: v for k, v in state.items() if k not in foreign}
    return {**kept, **{k: own[k] for k in missing}}


def init_from_checkpoint(module: SegmentationBase, path: str | Path) -> SegmentationBase:
    """Load the network weights of the checkpoint at ``path`` into ``module`` (in place).

    The checkpoint must be of the same family (Mask R-CNN or semantic) and label set and
    its network must fit ``module``'s exactly; anything else is a one-line CheckpointError
    naming the file. Only ``net.*`` is loaded: the module's own buffers (validated
    thresholds, ``val_miou``) stay fresh, and so do the optimizer and the epoch.
    """
    from fashionseg.model.semantic import SEMANTIC_ARCHS, SemanticModule

    ckpt = read_checkpoint(path)
    hparams = ckpt["hyper_parameters"]
    arch = (hparams.get("net") or {}).get("arch", "maskrcnn_resnet50_fpn")
    family = "semantic" if arch in SEMANTIC_ARCHS else "Mask R-CNN"
    own = "semantic" if isinstance(module, SemanticModule) else "Mask R-CNN"
    if family != own:
        raise CheckpointError(
            f"{path}: model.init_from holds a {family} model ({arch}), this run trains a "
            f"{own} one ({module.hparams.net.get('arch')})"
        )
    try:
        teacher = get_task(hparams.get("task", "person"))
    except TaskError as err:
        raise CheckpointError(f"{path}: {err}") from None
    if teacher.class_names != module.task.class_names:
        raise CheckpointError(
            f"{path}: model.init_from is for task {teacher.name!r} ({teacher.num_classes} "
            f"classes: {', '.join(teacher.class_names)}), this run trains "
            f"{module.task.name!r} ({module.task.num_classes} classes: "
            f"{', '.join(module.task.class_names)})"
        )
    state = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    try:  # the network's BatchNorm counters filled as a checkpoint load fills them
        module.net.load_state_dict(_with_batchnorm_counters(state, module.net.state_dict()))
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        raise CheckpointError(
            f"{path}: model.init_from's network does not fit this run's "
            f"{module.hparams.net.get('arch')}: {detail[:300]}"
        ) from None
    return module
