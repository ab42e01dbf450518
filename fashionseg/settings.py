"""Check the user's settings before any work: one ``UsageError`` line per mistake.

:func:`check_settings` reads only the keys it checks, so it works on a config composed
outside a Hydra run (the CLIs' pre-check in :func:`fashionseg.cli.hydra_cli`) as well as
inside one (every job of a multirun checks its own settings).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from fashionseg.errors import UsageError

# what each CLI must be given: (key, what to write)
REQUIRED = {
    "train": (("data.root", "data.root=DIR"),),
    "evaluate": (("ckpt", "ckpt=PATH"), ("data.root", "data.root=DIR")),
    "predict": (("ckpt", "ckpt=PATH"), ("input", "input=PATH"), ("output", "output=PATH")),
    "pseudo_label": (("ckpt", "ckpt=PATH"), ("input", "input=PATH"), ("out", "out=DIR")),
}


def _get(cfg: DictConfig, key: str) -> Any:
    """``cfg``'s value at dotted ``key`` (None when absent or not resolvable here)."""
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except Exception:  # an interpolation only a Hydra run can resolve, or ???
        return None


def _is_missing(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    try:
        return isinstance(node, DictConfig) and OmegaConf.is_missing(node, leaf)
    except Exception:  # no such key
        return False


def _number(value: Any) -> float | None:
    """``value`` as a finite float; None when it is not a number (bools are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def _items(value: Any) -> Iterator[Any]:
    yield from value if isinstance(value, ListConfig | list | tuple) else [value]


def _check_threshold(key: str, value: Any) -> None:
    number = _number(value)
    if number is None or not 0.0 <= number <= 1.0:
        raise UsageError(f"{key}={value}: a score threshold must be a number in [0, 1]")


def _check_thresholds(key: str, value: Any) -> None:
    values = list(_items(value))
    if not values:
        raise UsageError(f"{key}=[]: give at least one score threshold in [0, 1]")
    for item in values:
        number = _number(item)
        if number is None or not 0.0 <= number <= 1.0:
            shown = "[" + ",".join(str(v) for v in values) + "]"
            raise UsageError(f"{key}={shown}: {item!r} is not a score threshold in [0, 1]")


def _check_int(key: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"{key}={value}: must be a whole number >= {low}")


def _check_ratios(value: Any) -> None:
    from fashionseg.data.split import check_ratios

    try:
        check_ratios(_items(value))
    except ValueError as err:
        raise UsageError(str(err)) from None


def _check_augmentation(data: DictConfig) -> None:
    """Probabilities in [0, 1], strengths >= 0, ``[min, max]`` ranges in order."""
    for key, high in (("hflip", 1.0), ("color_jitter", None), ("hue_jitter", 0.5)):
        value = data.get(key)
        if value is None:
            continue
        number = _number(value)
        if number is None or number < 0 or (high is not None and number > high):
            limit = f"in [0, {high:g}]" if high is not None else ">= 0"
            raise UsageError(f"data.{key}={value}: must be a number {limit}")
    for key, top in (("crop", 1.0), ("scale_jitter", None)):
        value = data.get(key)
        if value is None:
            continue
        values = [_number(v) for v in _items(value)]
        shown = "[" + ",".join(str(v) for v in _items(value)) + "]"
        bad = len(values) != 2 or any(v is None or v <= 0 for v in values)
        if bad or values[0] > values[1] or (top is not None and values[1] > top):
            need = "0 < min <= max <= 1" if top is not None else "0 < min <= max"
            raise UsageError(f"data.{key}={shown}: need [min, max] with {need}")


def _check_fusion(cfg: DictConfig, method: str) -> None:
    """A fusion method that exists; ``panoptic``/``semantic`` only for a Mask R-CNN with
    the semantic head (a semantic model's ``fusion`` is never used)."""
    from fashionseg.fusion import check_fusion_setting

    arch = _get(cfg, "model.net.arch")
    is_maskrcnn = isinstance(arch, str) and arch.startswith("maskrcnn")
    head = bool(_get(cfg, "model.net.semantic_head")) or not is_maskrcnn
    try:
        check_fusion_setting(str(method), head)
    except ValueError as err:
        raise UsageError(str(err)) from None


def check_settings(cfg: DictConfig, cli: str) -> None:
    """Raise :class:`UsageError` for the first setting of ``cli`` (train | evaluate |
    predict) that cannot work: a missing required value, a threshold outside [0, 1], a
    batch size, worker count or epoch count out of range, a learning rate <= 0, split
    ratios that are not three non-negative numbers summing to 1."""
    for key, example in REQUIRED[cli]:
        if _is_missing(cfg, key):
            raise UsageError(f"{key}: not given (add {example} to the command)")
    for key in ("threshold", "model.threshold"):
        if _get(cfg, key) is not None:
            _check_threshold(key, _get(cfg, key))
    for key in ("thresholds", "fusion.thresholds"):
        if _get(cfg, key) is not None:
            _check_thresholds(key, _get(cfg, key))
    fusion_mask = _get(cfg, "fusion.mask_threshold")
    if fusion_mask is not None:
        _check_threshold("fusion.mask_threshold", fusion_mask)
    if cli == "predict":
        for key, low in (("predict.batch_size", 1), ("predict.num_workers", 0)):
            value = _get(cfg, key)
            if value is not None:
                _check_int(key, value, low)
        return
    data = _get(cfg, "data")
    if isinstance(data, DictConfig):
        if data.get("batch_size") is not None:
            _check_int("data.batch_size", data.batch_size, 1)
        if data.get("eval_batch_size") is not None:
            _check_int("data.eval_batch_size", data.eval_batch_size, 1)
        if data.get("num_workers") is not None:
            _check_int("data.num_workers", data.num_workers, 0)
        if cli == "train" and isinstance(data.get("split"), ListConfig | list):
            _check_ratios(data.split)
        if cli == "train":
            _check_augmentation(data)
    if cli != "train":
        return
    lr = _get(cfg, "optimizer.lr")
    if lr is not None and (_number(lr) is None or _number(lr) <= 0):
        raise UsageError(f"optimizer.lr={lr}: the learning rate must be a number > 0")
    decay = _get(cfg, "optimizer.weight_decay")
    if decay is not None and (_number(decay) is None or _number(decay) < 0):
        raise UsageError(f"optimizer.weight_decay={decay}: must be a number >= 0")
    momentum = _get(cfg, "optimizer.momentum")
    if momentum is not None and (_number(momentum) is None or not 0 <= _number(momentum) < 1):
        raise UsageError(f"optimizer.momentum={momentum}: must be a number in [0, 1)")
    profile = _get(cfg, "profile")
    if profile is not None and not isinstance(profile, bool):
        _check_int("profile", profile, 1)
    seed = _get(cfg, "seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise UsageError(f"seed={seed}: must be a whole number or null")
    warmup = _get(cfg, "scheduler.warmup_steps")
    if warmup is not None:
        _check_int("scheduler.warmup_steps", warmup, 0)
    method = _get(cfg, "fusion.method")
    if method is not None:
        _check_fusion(cfg, method)
    schedule = _get(cfg, "scheduler.name")
    if schedule is not None:
        from fashionseg.model.schedule import SCHEDULES

        if schedule not in SCHEDULES:
            raise UsageError(f"scheduler.name={schedule}: choose one of {', '.join(SCHEDULES)}")
    target = _get(cfg, "optimizer._target_")
    if target is not None:
        from hydra.utils import get_class

        try:
            get_class(str(target))
        except Exception:
            raise UsageError(
                f"optimizer._target_={target}: no such optimizer class (e.g. torch.optim.SGD)"
            ) from None
    ckpt_path = _get(cfg, "ckpt_path")
    if ckpt_path is not None and not Path(str(ckpt_path)).is_file():
        raise UsageError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    decay = _get(cfg, "callbacks.ema.decay")
    if decay is not None and (_number(decay) is None or not 0 < _number(decay) < 1):
        raise UsageError(f"callbacks.ema.decay={decay}: must be a number in (0, 1), or null (off)")
    init_from = _get(cfg, "model.init_from")
    if init_from is not None and not Path(str(init_from)).is_file():
        raise UsageError(f"model.init_from={init_from}: no such checkpoint file")
    if _get(cfg, "train") is not False:
        epochs = _get(cfg, "trainer.max_epochs")
        if epochs is not None:
            _check_int("trainer.max_epochs", epochs, 1)
