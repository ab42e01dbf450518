"""The dataset pseudo-labelling writes: layout, record, progress and the resume rules.

``ROOT/images/<stem>.<ext>`` is a hard link to the input photo (a copy when the two
are on different file systems): the same bytes, so the photo keeps its EXIF
orientation, and the label map is made at the photo's *displayed* size, the size every
reader here gives it (:mod:`fashionseg.data.photo`); a link also costs no disk space.
``ROOT/<task.mask_dir>/<stem>.png`` is the palette PNG of class ids, ignored pixels
written as the ignore value. Those label maps are an output folder of
:class:`fashionseg.predict_output.PredictFolder` (its write-ahead record, temporary
files and rules: reused, not written twice), with no overlays.

``ROOT/.pseudo_label-progress.jsonl`` gains one line per finished photo (its per-class
pixel counts, whether tags guided it, seconds), appended and flushed after its label
map is written; ``ROOT/pseudo_label.json`` (the record: teacher, settings, thresholds,
shares, progress) is rewritten from it every few photos and at the end. A photo is done
when its label map is recorded by the folder *and* its progress line is there, so a
run stopped anywhere resumes where it stopped and ends with the files of one
uninterrupted run. A ROOT made with another teacher or other settings is a one-line
error; so is anything in ROOT pseudo-labelling did not write.
"""

from __future__ import annotations

import errno
import filecmp
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fashionseg.errors import UsageError
from fashionseg.files import write_json
from fashionseg.predict_output import MANIFEST, OS_CLUTTER, PhotoOutputs

RECORD = "pseudo_label.json"
PROGRESS = ".pseudo_label-progress.jsonl"
FORMAT_VERSION = 1


def label_outputs(photos: Sequence[Path]) -> list[PhotoOutputs]:
    """``<stem>.png`` (no overlay) for each photo; UsageError when two share a stem."""
    from fashionseg.predict_output import outputs_for

    return [PhotoOutputs(o.photo, o.label, None) for o in outputs_for(photos)]


def read_record(root: Path) -> dict[str, Any] | None:
    """``ROOT/pseudo_label.json`` (None when there is none); UsageError when unreadable."""
    path = root / RECORD
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: cannot read the pseudo-labelling record ({err})") from None
    if not isinstance(record, dict) or record.get("fashionseg_pseudo_label") != FORMAT_VERSION:
        raise UsageError(f"{path}: not a record pseudo-labelling wrote; choose another out")
    return record


def check_root(
    root: Path, mask_dir: str, photos: Iterable[Path], source: dict[str, Any]
) -> dict[str, Any] | None:
    """The rules (module docstring) before anything is written: UsageError when ``root``
    cannot take this run; the record of an earlier run of the same settings, if any."""
    if root.exists() and not root.is_dir():
        raise UsageError(f"out={root}: not a folder")
    if not root.is_dir():
        return None
    record = read_record(root)
    entries = set(os.listdir(root)) - OS_CLUTTER
    ours = {"images", mask_dir, RECORD, PROGRESS}
    if record is None:
        ours -= {"images", mask_dir, PROGRESS}  # without a record nothing here is ours
    foreign = sorted(entries - ours)
    if foreign:
        raise UsageError(
            f"out={root}: holds files pseudo-labelling did not write ({', '.join(foreign[:3])}"
            f"{' ...' if len(foreign) > 3 else ''}); choose a new or empty folder"
        )
    if record is None:
        return None
    if record.get("source") != source:
        old = record.get("source") or {}
        differ = sorted(k for k in {*old, *source} if old.get(k) != source.get(k))
        raise UsageError(
            f"out={root}: holds pseudo labels made with another teacher or settings "
            f"(differs in {', '.join(differ)}); choose another out folder"
        )
    names = {p.name for p in photos}
    images = root / "images"
    if images.is_dir():
        others = sorted(set(os.listdir(images)) - names - OS_CLUTTER)
        if others:
            raise UsageError(
                f"{images}: holds photos that are not in this input ({', '.join(others[:3])}); "
                "choose another out folder"
            )
    return record


def place_photo(photo: Path, dest: Path) -> str:
    """Put ``photo`` at ``dest``: a hard link, or a copy across file systems; ``dest``
    already there and identical is kept. Returns ``link``, ``copy`` or ``kept``."""
    if dest.exists():
        if os.path.samefile(photo, dest) or filecmp.cmp(photo, dest, shallow=False):
            return "kept"
        raise UsageError(f"{dest}: exists and is not the photo {photo}; choose another out")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(photo, dest)
        return "link"
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
    tmp = dest.with_name(f".{dest.name}.copy")
    shutil.copyfile(photo, tmp)
    os.replace(tmp, dest)
    return "copy"


class Progress:
    """The per-photo progress log (:data:`PROGRESS`): read on start, appended per photo."""

    def __init__(self, root: Path) -> None:
        self.path = root / PROGRESS
        self.photos: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text(errors="replace").splitlines():
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:  # a line cut off by a kill
                    continue
                if isinstance(item, dict) and isinstance(item.get("stem"), str):
                    self.photos[item["stem"]] = item
        self._log: Any = None

    def add(self, item: dict[str, Any]) -> None:
        """Record one finished photo (flushed and synced: it survives a kill)."""
        if self._log is None:
            self._log = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._log.write(json.dumps(item) + "\n")
        self._log.flush()
        os.fsync(self._log.fileno())
        self.photos[item["stem"]] = item

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def summary(
    class_names: Sequence[str], photos: dict[str, dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """Per class: its share of all labelled pixels (``predicted``, %), the share of those
    kept (``kept``, %) and ignored (``ignored``, %), over the finished photos."""
    count = len(class_names)
    kept, ignored = [0] * count, [0] * count
    for item in photos.values():
        for c in range(count):
            kept[c] += int(item["kept"][c])
            ignored[c] += int(item["ignored"][c])
    total = max(sum(kept) + sum(ignored), 1)
    out = {}
    for c, name in enumerate(class_names):
        predicted = kept[c] + ignored[c]
        out[name] = {
            "predicted": round(100 * predicted / total, 3),
            "kept": round(100 * kept[c] / max(predicted, 1), 3),
            "ignored": round(100 * ignored[c] / max(predicted, 1), 3),
        }
    out["all"] = {
        "predicted": 100.0 if sum(kept) + sum(ignored) else 0.0,
        "kept": round(100 * sum(kept) / total, 3),
        "ignored": round(100 * sum(ignored) / total, 3),
    }
    return out


def write_record(
    root: Path, record: dict[str, Any], progress: Progress, names: Sequence[str]
) -> dict[str, Any]:
    """Rewrite the record with the progress so far (shares, counts, per-photo items)."""
    photos = progress.photos
    record = {
        **record,
        "pixels": summary(names, photos),
        "photos": {
            **record.get("photos", {}),
            "done": len(photos),
            "without_tags": sum(1 for p in photos.values() if p.get("tags") is False),
            # every pixel below its threshold: no files (an all-ignored map teaches nothing)
            "all_ignored": sum(1 for p in photos.values() if p.get("written") is False),
        },
        "seconds": {
            **record.get("seconds", {}),
            "labelling": round(sum(float(p.get("seconds", 0)) for p in photos.values()), 3),
        },
        "progress": dict(sorted(photos.items())),
    }
    write_json(root / RECORD, record)
    return record


__all__ = [
    "MANIFEST",
    "PROGRESS",
    "RECORD",
    "Progress",
    "check_root",
    "label_outputs",
    "place_photo",
    "read_record",
    "summary",
    "write_record",
]
