"""The photo and mask folders of a dataset: their usable files by stem, and what is wrong
with the rest (a broken link, a folder named like a photo, an unsupported format, a mask
saved as JPEG, two files with one stem, a photo without its mask ...).

Hidden, system and side-car files (``.txt``, ``.json``, ``.xmp`` ...) are skipped without
a word. Every problem is one line, ``<file>: <problem>``; nothing here writes anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fashionseg.data.photo import IMAGE_SUFFIXES, LOSSY_SUFFIXES, DataError, shown

MASK_SUFFIX = ".png"
# Side-car and system files a photo or mask folder may hold; skipped without a word.
SIDECAR_SUFFIXES = (".txt", ".json", ".csv", ".xml", ".md", ".yaml", ".yml", ".xmp", ".aae")
CLUTTER_NAMES = ("thumbs.db", "desktop.ini")


def _skipped(path: Path) -> bool:
    """Hidden, system and side-car files: not photos or masks, never reported."""
    name = path.name
    return (
        name.startswith(".")
        or name.lower() in CLUTTER_NAMES
        or path.suffix.lower() in SIDECAR_SUFFIXES
    )


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not _skipped(p))
    except PermissionError:
        raise DataError(f"{shown(folder)}: permission denied (cannot list the folder)") from None


def _unusable(path: Path) -> str | None:
    """Why a directory entry cannot be used at all (broken link, folder), else None."""
    if path.is_symlink() and not path.exists():
        return f"{shown(path)}: broken symbolic link (to {shown(os.readlink(path))})"
    if path.is_dir():
        return f"{shown(path)}: a directory, not an image file"
    if not path.is_file():
        return f"{shown(path)}: not a regular file"
    return None


@dataclass
class Folder:
    """The usable files of a photo or mask folder by stem, and what is wrong with the rest.

    ``claimed`` holds the stems of reported files, so pairing does not report them twice.
    """

    files: dict[str, Path]
    problems: list[str]
    claimed: set[str]

    def add(self, path: Path, problem: str | None, kind: str) -> None:
        """Keep ``path`` under its stem, or record its problem (also a second file of a
        stem: two ``kind`` share it)."""
        if problem is None and path.stem in self.files:
            first = shown(self.files[path.stem].name)
            problem = f"{shown(path)}: two {kind} share the stem {path.stem!r} ({first})"
        if problem:
            self.problems.append(problem)
            self.claimed.add(path.stem)
        else:
            self.files[path.stem] = path


def scan_photos(images_dir: str | Path) -> Folder:
    """The photos of a folder (:data:`IMAGE_SUFFIXES`, any case) by stem, and problems.

    Problems: a broken link, a directory or another file with a photo's name, a file of an
    unsupported format, two photos with one stem. Hidden, system and side-car files
    (``.txt``, ``.json``, ``.xmp`` ...) are skipped.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(f"{shown(images_dir)}: dataset directory not found")
    folder = Folder({}, [], set())
    for p in _entries(images_dir):
        supported = p.suffix.lower() in IMAGE_SUFFIXES
        if p.is_dir() and not supported:
            continue  # a sub-folder
        problem = _unusable(p)
        if problem is None and not supported:
            problem = (
                f"{shown(p)}: unsupported photo format {p.suffix or '(no suffix)'!r} "
                f"(photos must be {' '.join(IMAGE_SUFFIXES)})"
            )
        folder.add(p, problem, "photos")
    return folder


def scan_masks(mask_dir: str | Path) -> Folder:
    """The masks of a folder (``.png``, any case) by stem, and problems.

    Problems: a mask saved as JPEG, another image format, a broken link, a directory
    named like a mask, two masks with one stem (``a.png`` and ``a.PNG``).
    """
    mask_dir = Path(mask_dir)
    if not mask_dir.is_dir():
        raise DataError(f"{shown(mask_dir)}: dataset directory not found")
    folder = Folder({}, [], set())
    for p in _entries(mask_dir):
        suffix = p.suffix.lower()
        if p.is_dir() and suffix != MASK_SUFFIX:
            continue
        problem = _unusable(p)
        if problem is None and suffix in LOSSY_SUFFIXES:
            problem = (
                f"{shown(p)}: mask saved as JPEG ({p.suffix!r}): lossy compression corrupts "
                "class ids; save masks as .png"
            )
        elif problem is None and suffix != MASK_SUFFIX:
            problem = (
                f"{shown(p)}: not a PNG mask (suffix {p.suffix or '(none)'!r}); save masks as .png"
            )
        folder.add(p, problem, "masks")
    return folder


def list_photos(images_dir: str | Path) -> dict[str, Path]:
    """Photos of a folder by stem, sorted; DataError on the first problem of the folder."""
    folder = scan_photos(images_dir)
    if folder.problems:
        raise DataError(folder.problems[0])
    return folder.files


def unpaired(photos: Folder, masks: Folder, images_dir: Path, mask_dir: Path) -> list[str]:
    """One message per photo without a mask and per mask without a photo.

    Stems already reported by either folder (e.g. a mask saved as JPEG) are not repeated.
    """
    claimed = photos.claimed | masks.claimed
    problems = [
        f"{shown(photos.files[s])}: photo has no mask {shown(mask_dir / (s + MASK_SUFFIX))}"
        for s in sorted(photos.files.keys() - masks.files.keys() - claimed)
    ]
    problems += [
        f"{shown(masks.files[s])}: mask has no photo in {shown(images_dir)}"
        for s in sorted(masks.files.keys() - photos.files.keys() - claimed)
    ]
    return problems


def no_photos(images_dir: Path) -> str:
    return f"{shown(images_dir)}: no photos ({' '.join(IMAGE_SUFFIXES)}) found"
