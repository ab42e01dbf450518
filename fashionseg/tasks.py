"""Label sets ("tasks") as config: ``conf/task/<name>.yaml`` names the classes.

A task file holds ``name``, ``mask_dir`` (the mask folder under ``data.root``),
``classes`` (names in id order, background first; 2 to 255 of them, so that the ignore
index 255 is never a class id), optional ``colors`` (one ``[r, g, b]`` per class;
default: the PASCAL VOC colour map, extended to 256 ids) and optional ``source_ids``
(mask value on disk -> class id, many-to-one allowed) with ``unmapped_source``
(``error``, the default: a mask value without a mapping is an error naming it;
``ignore``: such pixels are ignored). No Python module names the classes: the built-in
tasks are the YAML files of the project's ``conf/task/``.

Checkpoints carry the whole label set (:meth:`Task.to_config`); a checkpoint written
before label sets were config holds only the task's name, which resolves to the
built-in file of that name (:func:`get_task`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TASK_DIR = Path(__file__).resolve().parents[1] / "conf" / "task"
# Label-map value of pixels that no loss and no metric counts (``data.ignore_index`` in the
# user's masks is read as this); never a class id, and never part of an instance.
IGNORE_INDEX = 255
MAX_CLASSES = IGNORE_INDEX
UNMAPPED = ("error", "ignore")


def voc_colormap(n: int = 256) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map: id -> RGB by spreading the id's bits over the channels."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


VOC_COLORS: tuple[tuple[int, int, int], ...] = voc_colormap(256)


class TaskError(ValueError):
    """A label set that cannot be used (its one-line message names what is wrong)."""


@dataclass(frozen=True)
class Task:
    """One label set: which mask folder it reads, its classes, colours and value mapping."""

    name: str
    mask_dir: str
    class_names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...] = ()
    # (mask value on disk, class id) pairs; empty: mask values are the class ids
    source_ids: tuple[tuple[int, int], ...] = ()
    unmapped_source: str = "error"

    def __post_init__(self) -> None:
        if not self.colors:
            object.__setattr__(self, "colors", VOC_COLORS[: len(self.class_names)])

    @property
    def num_classes(self) -> int:
        """Number of classes, background included."""
        return len(self.class_names)

    def palette(self) -> list[int]:
        """Flat 768-entry palette for PIL ``Image.putpalette``: the class colours, then
        the VOC colour map's for the ids past the classes."""
        colours = list(self.colors) + list(VOC_COLORS[self.num_classes :])
        return [c for rgb in colours[:256] for c in rgb]

    def source_map(self) -> dict[int, int]:
        """``{mask value: class id}`` (empty: the values are the ids)."""
        return dict(self.source_ids)

    def to_config(self) -> dict[str, Any]:
        """The plain dict a task YAML (and a checkpoint's hyper-parameters) holds."""
        config: dict[str, Any] = {
            "name": self.name,
            "mask_dir": self.mask_dir,
            "classes": list(self.class_names),
            "colors": [list(c) for c in self.colors],
        }
        if self.source_ids:
            config["source_ids"] = {int(k): int(v) for k, v in self.source_ids}
            config["unmapped_source"] = self.unmapped_source
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any], where: str = "task") -> Task:
        """A checked task from a task YAML's mapping; ``where`` names it in errors."""
        return task_from_config(config, where)


def _fail(where: str, problem: str) -> TaskError:
    return TaskError(f"{where}: {problem}")


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if str(number) == str(value).strip() else None


def _colours(raw: Any, count: int, where: str) -> tuple[tuple[int, int, int], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple) or len(raw) != count:
        given = len(raw) if isinstance(raw, list | tuple) else type(raw).__name__
        raise _fail(where, f"colors must list one [r, g, b] per class ({count}), got {given}")
    colours = []
    for i, rgb in enumerate(raw):
        values = [_int(c) for c in rgb] if isinstance(rgb, list | tuple) else []
        if len(values) != 3 or any(v is None or not 0 <= v <= 255 for v in values):
            raise _fail(where, f"colors[{i}] = {rgb!r} is not [r, g, b] with values 0..255")
        colours.append((values[0], values[1], values[2]))
    return tuple(colours)  # type: ignore[return-value]


def _source_ids(raw: Any, count: int, where: str) -> tuple[tuple[int, int], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        raise _fail(where, "source_ids must map mask values to class ids, e.g. {0: 0, 7: 1}")
    pairs = []
    for key, value in raw.items():
        source, target = _int(key), _int(value)
        if source is None or not 0 <= source <= 65535:
            raise _fail(where, f"source_ids key {key!r} is not a mask value 0..65535")
        if target is None or not 0 <= target < count:
            raise _fail(where, f"source_ids[{key}] = {value!r} is not a class id 0..{count - 1}")
        pairs.append((source, target))
    return tuple(sorted(pairs))


def task_from_config(config: Mapping[str, Any], where: str = "task") -> Task:
    """:meth:`Task.from_config`: check every field, one-line :class:`TaskError` if bad."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)  # type: ignore[assignment]
    if not isinstance(config, Mapping):
        raise _fail(where, f"a task is a mapping (name, mask_dir, classes), not {config!r}")
    known = {"name", "mask_dir", "classes", "colors", "source_ids", "unmapped_source"}
    unknown = sorted(str(k) for k in config if k not in known)
    if unknown:
        raise _fail(where, f"unknown task key(s) {', '.join(unknown)} (known: {sorted(known)})")
    name = config.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(where, "name is missing (the label set's name, e.g. name: clothing)")
    classes = config.get("classes")
    if classes is None:
        raise _fail(where, f"task {name!r} lists no classes (classes: [background, ...])")
    if not isinstance(classes, list | tuple) or not all(isinstance(c, str) for c in classes):
        raise _fail(where, "classes must be a list of class names, background first")
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise _fail(
            where, f"task {name!r} has {len(classes)} classes; a task has 2 to {MAX_CLASSES}"
        )
    twice = sorted({c for c in classes if list(classes).count(c) > 1})
    if twice:
        raise _fail(where, f"class name(s) listed twice: {', '.join(twice)}")
    mask_dir = config.get("mask_dir", name)
    if not isinstance(mask_dir, str) or not mask_dir.strip() or Path(mask_dir).is_absolute():
        raise _fail(where, f"mask_dir {mask_dir!r} must be a folder name under data.root")
    unmapped = config.get("unmapped_source", "error")
    if unmapped not in UNMAPPED:
        raise _fail(
            where, f"unmapped_source must be one of {', '.join(UNMAPPED)}, not {unmapped!r}"
        )
    return Task(
        name=name,
        mask_dir=mask_dir,
        class_names=tuple(classes),
        colors=_colours(config.get("colors"), len(classes), where),
        source_ids=_source_ids(config.get("source_ids"), len(classes), where),
        unmapped_source=str(unmapped),
    )


def load_task_file(path: str | Path) -> Task:
    """The task of a YAML file; a missing or unreadable file is a one-line TaskError."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"{path}: task file not found")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        reason = " ".join(str(err).split())[:200]
        raise TaskError(f"{path}: not readable YAML ({reason})") from None
    return task_from_config(config or {}, str(path))


def builtin_task_names() -> list[str]:
    """The names of the project's own task files (``conf/task/*.yaml``)."""
    return sorted(p.stem for p in TASK_DIR.glob("*.yaml"))


def get_task(task: str | Mapping[str, Any] | Task) -> Task:
    """A :class:`Task` from a name (a built-in task file), a task mapping (a composed
    config or a checkpoint's hyper-parameters) or a Task; one-line ``TaskError`` if bad."""
    if isinstance(task, Task):
        return task
    if isinstance(task, Mapping):
        return task_from_config(task)
    name = str(task)
    path = TASK_DIR / f"{name}.yaml"
    if "/" in name or not path.is_file():
        raise TaskError(
            f"unknown task {name!r}: choose one of {', '.join(builtin_task_names())}, or "
            "write conf/task/<name>.yaml (or pass its folder with --config-dir)"
        )
    return load_task_file(path)


def resolve_task(spec: str, config_dir: str | Path | None = None) -> Task:
    """The task a command-line tool names: a task YAML file's path, ``NAME`` in
    ``config_dir/task/NAME.yaml`` (Hydra's ``--config-dir`` layout), or a built-in name."""
    if spec.endswith((".yaml", ".yml")):
        return load_task_file(spec)
    if config_dir is not None:
        path = Path(config_dir) / "task" / f"{spec}.yaml"
        if path.is_file():
            return load_task_file(path)
    return get_task(spec)
