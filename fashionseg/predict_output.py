"""The output folder of ``predict``: written only where predict wrote before.

``predict`` writes into a folder that is new, empty, or one it wrote before, and only over
files it wrote itself. It knows them from a record in the folder,
``.fashionseg-predict.jsonl``: a first line with the model that made the outputs
(checkpoint, task, threshold, model hash), then one line per output file naming the photo it was made
from::

    {"fashionseg_predict": 1, "ckpt": "/runs/x/checkpoints/last.ckpt", "task": ..., ...}
    {"file": "0001.png", "photo": "/data/photos/0001.jpg"}
    {"file": "0001_overlay.jpg", "photo": "/data/photos/0001.jpg"}

Why a line-per-file log and not one JSON document: a JSON file rewritten after every
photo costs O(n) per photo, O(n^2) for a run, which for tens of thousands of photos is
gigabytes of writes. The log only grows by one short line per file, written before the
file itself is created (write-ahead) and flushed with ``fsync``, so at any moment every
output file and every temporary file of predict in the folder is on record, even after a
SIGKILL or a power cut; two ``fsync`` calls per photo are cheap beside a forward pass. A
line cut off by a kill is ignored on reading (a file it would have covered was not created
yet). Each run starts by rewriting the log compactly (one line per existing file, O(n)
once) and deleting predict's leftover temporary files.

Several processes (``hardware=ddp``/``ddp_cpu``) never write to one file: process 0
writes the record, process ``k`` its own ``.fashionseg-predict.rank<k>.jsonl`` beside it
(lines without a header). Reading merges them; the first process folds them into the
record when every process has finished, and the next run's compaction does it if a run
was killed first.

Rules (each a one-line :class:`~fashionseg.cli.UsageError` before anything is written):

- a folder holding anything predict did not record (photos, a dataset's masks, folders,
  other files) is refused, ``overwrite=true`` included; only OS clutter (``.DS_Store``,
  ``Thumbs.db``, ``desktop.ini``), which predict never writes, is tolerated;
- outputs recorded for another model (checkpoint, task, threshold, or content: a hash of
  the weights and settings, so a model retrained into the same path is another model) or
  for another photo of the same name (compared ignoring case, across runs too) are
  replaced only with ``overwrite=true``;
- two photos whose outputs would have the same name (same stem, compared ignoring case so
  that the folder also works on macOS and Windows) are an error naming both: neither is
  renamed behind the user's back or taken as "already done".
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
from PIL import Image

from fashionseg.cli import UsageError
from fashionseg.files import atomic_write, is_temp_of, save_label_png, write_text
from fashionseg.overlay import overlay_rgb


@dataclass
class PredictSummary:
    """What a predict run did."""

    written: list[str] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    skipped_invalid: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{len(self.written)} predicted, {len(self.skipped_existing)} already done, "
            f"{len(self.skipped_invalid)} skipped (not readable images)"
        )


MANIFEST = ".fashionseg-predict.jsonl"
_RANK_LOG = re.compile(r"\.fashionseg-predict\.rank([1-9][0-9]*)\.jsonl")
FORMAT_VERSION = 1
OS_CLUTTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
_SHOWN = 3  # foreign files named in an error


@dataclass(frozen=True)
class PhotoOutputs:
    """One photo and the names of its outputs in the output folder: its label map and
    its overlay (None for a folder of label maps alone: pseudo-labelling's)."""

    photo: Path
    label: str
    overlay: str | None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.label,) if self.overlay is None else (self.label, self.overlay)


def outputs_for(photos: Sequence[str | Path]) -> list[PhotoOutputs]:
    """``<stem>.png`` and ``<stem>_overlay.jpg`` for each photo; UsageError on a name clash."""
    seen: dict[str, Path] = {}
    result = []
    for photo in map(Path, photos):
        key = photo.stem.casefold()
        if key in seen:
            raise UsageError(
                f"{seen[key]}, {photo}: two photos with the same name {photo.stem!r} would "
                f"write the same outputs ({photo.stem}.png, {photo.stem}_overlay.jpg); rename "
                "one, or predict them into separate output folders"
            )
        seen[key] = photo
        result.append(PhotoOutputs(photo, f"{photo.stem}.png", f"{photo.stem}_overlay.jpg"))
    return result


def check_apart(input_path: str | Path, output: str | Path) -> None:
    """UsageError when ``output`` is, is inside, or contains ``input_path`` (symlinks resolved)."""
    inp, out = Path(input_path).resolve(), Path(output).resolve()
    if out == inp:
        raise UsageError(f"{output}: the output folder is the input; choose another folder")
    if inp in out.parents:
        raise UsageError(
            f"{output}: the output folder is inside the input folder {input_path}; "
            "choose a folder outside it"
        )
    if out in inp.parents:
        raise UsageError(
            f"{output}: the output folder contains the input {input_path}; "
            "choose a new or empty folder"
        )


def _plain_name(name: Any) -> bool:
    """A file name predict could have written: no folder part, not hidden."""
    return isinstance(name, str) and name == Path(name).name and not name.startswith(".")


def rank_log(rank: int) -> str:
    """The name of the record process ``rank`` (> 0) of a multi-process run appends to."""
    if rank < 1:
        raise ValueError(f"rank {rank}: process 0 writes {MANIFEST} itself")
    return f".fashionseg-predict.rank{rank}.jsonl"


def rank_logs(folder: Path) -> list[Path]:
    """The per-process records in ``folder``, by rank (none when it cannot be listed)."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    found = [(int(m.group(1)), e) for e in entries if (m := _RANK_LOG.fullmatch(e))]
    return [folder / name for _, name in sorted(found)]


def _records(path: Path) -> list[Any]:
    """The JSON values of a record's lines; a line that is not JSON (cut off) is left out."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise UsageError(f"{path}: cannot read predict's record ({err.strerror})") from None
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _file_records(records: Iterable[Any]) -> dict[str, str]:
    return {
        r["file"]: r["photo"]
        for r in records
        if isinstance(r, dict) and _plain_name(r.get("file")) and isinstance(r.get("photo"), str)
    }


def read_manifest(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The header and ``{file name: photo}`` of a manifest (later lines win).

    Lines that are not JSON (a line cut off by a kill) or that name something predict
    cannot have written are ignored: the files they would cover count as foreign.
    """
    records = _records(path)
    header = records[0] if records and isinstance(records[0], dict) else {}
    if header.get("fashionseg_predict") != FORMAT_VERSION:
        raise UsageError(
            f"{path}: not a record predict can read, so it cannot tell which files here it "
            "wrote; choose a new or empty output folder"
        )
    return header, _file_records(records[1:])


def read_records(folder: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`read_manifest` of ``folder``'s record merged with its per-process records
    (:func:`rank_log`); ``({}, {})`` when there is no record."""
    if not (folder / MANIFEST).is_file():
        return {}, {}
    header, files = read_manifest(folder / MANIFEST)
    for log in rank_logs(folder):
        files.update(_file_records(_records(log)))
    return header, files


def _is_our_temp(entry: str, recorded: Iterable[str]) -> bool:
    """A temporary file predict made for a recorded output or for its record."""
    return entry.startswith(".") and any(is_temp_of(entry, n) for n in (*recorded, MANIFEST))


def _is_rank_log(entry: str) -> bool:
    return _RANK_LOG.fullmatch(entry) is not None


def _describe(source: dict[str, Any]) -> str:
    threshold = source.get("threshold")
    shown = "argmax" if threshold is None else f"threshold {threshold}"
    text = f"checkpoint {source.get('ckpt')}, task {source.get('task')}, {shown}"
    if "model" in source:  # the model's content (a hash of weights and settings)
        text += f", model {str(source['model'])[:12]}"
    return text


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record) + "\n"  # ASCII: file names that are not UTF-8 survive


class PredictFolder:
    """An output folder opened for one predict run; use :meth:`open` as a context manager."""

    def __init__(self, path: Path, files: dict[str, str]) -> None:
        self.path = path
        self.files = files  # name -> photo it was made from (resolved path)
        self._log: IO[str] | None = None

    @staticmethod
    def check(
        path: str | Path,
        source: dict[str, Any],
        photos: Iterable[PhotoOutputs],
        overwrite: bool = False,
    ) -> dict[str, str]:
        """The rules (module docstring) without changing anything: UsageError when the
        folder cannot be used; else ``{file name: photo}`` of everything recorded there."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise UsageError(f"{path}: the output is not a folder")
        files: dict[str, str] = {}
        if path.is_dir():
            header, files = read_records(path)
            _refuse_foreign(path, files)
            if not overwrite:
                _refuse_replacing(path, header, source, files, photos)
        return files

    @classmethod
    def open(
        cls,
        path: str | Path,
        source: dict[str, Any],
        photos: Iterable[PhotoOutputs],
        overwrite: bool = False,
    ) -> PredictFolder:
        """Check the folder against the rules (module docstring), then take it.

        Nothing is created or changed before every check has passed. ``source``
        describes the model (``ckpt``, ``task``, ``threshold``); it is recorded.
        """
        path = Path(path)
        files = cls.check(path, source, photos, overwrite=overwrite)
        folder = cls(path, {n: p for n, p in files.items() if (path / n).is_file()})
        folder._start(source, recorded=set(files))
        return folder

    @classmethod
    def recorded(cls, path: str | Path) -> PredictFolder:
        """The folder as its records (merged) describe it, read-only: for :meth:`done`."""
        path = Path(path)
        _, files = read_records(path)
        return cls(path, {n: p for n, p in files.items() if (path / n).is_file()})

    @classmethod
    def attach(cls, path: str | Path, rank: int) -> PredictFolder:
        """Process ``rank`` (> 0) of a run whose process 0 has :meth:`open`-ed the folder:
        it records the files it writes in its own :func:`rank_log`."""
        folder = cls.recorded(path)
        try:
            folder._log = open(folder.path / rank_log(rank), "a", encoding="utf-8")  # noqa: SIM115
        except OSError as err:
            raise UsageError(f"{folder.path}: cannot write here ({err.strerror})") from None
        return folder

    @classmethod
    def merge_rank_logs(cls, path: str | Path) -> None:
        """Fold the per-process records into the record (process 0, once every process of
        the run has closed its folder); nothing to do for a single process."""
        path = Path(path)
        if not rank_logs(path):
            return
        header, files = read_records(path)
        folder = cls(path, {n: p for n, p in files.items() if (path / n).is_file()})
        folder._rewrite(header)

    def _start(self, source: dict[str, Any], recorded: set[str]) -> None:
        """Create the folder, delete leftover temporary files, rewrite the record compactly."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for entry in os.listdir(self.path):
                if _is_our_temp(entry, recorded):
                    (self.path / entry).unlink()  # a file a killed run left half-written
            self._rewrite({"fashionseg_predict": FORMAT_VERSION, **source})
            self._log = open(self.path / MANIFEST, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as err:
            raise UsageError(f"{self.path}: cannot write here ({err.strerror})") from None

    def _rewrite(self, header: dict[str, Any]) -> None:
        """The record, one line per file of :attr:`files`; then the per-process records
        (folded into it) are deleted."""
        records = [header] + [{"file": n, "photo": p} for n, p in sorted(self.files.items())]
        write_text(self.path / MANIFEST, "".join(map(_line, records)))
        for log in rank_logs(self.path):
            log.unlink()

    def done(self, outputs: PhotoOutputs) -> bool:
        """Both outputs exist under their own names and were written for this photo."""
        photo = str(outputs.photo.resolve())
        return all(self.files.get(n) == photo and (self.path / n).is_file() for n in outputs.names)

    def claim(self, name: str, photo: Path) -> Path:
        """Record ``name`` as predict's (durably) before it is written; its path."""
        photo_str = str(photo.resolve())
        if self.files.get(name) != photo_str:
            assert self._log is not None, "claim() after close()"
            self._log.write(_line({"file": name, "photo": photo_str}))
            self._log.flush()
            try:
                os.fsync(self._log.fileno())
            except OSError as err:  # a file system without fsync: flushed is what it gets
                if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
            self.files[name] = photo_str
        return self.path / name

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> PredictFolder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def save_outputs(
    folder: PredictFolder, outputs: PhotoOutputs, rgb: np.ndarray, label_map: np.ndarray, task: Any
) -> None:
    """The label map and the overlay of one photo (``rgb``: ``H x W x 3`` uint8), each
    recorded before it is written; a write that fails (a full disk, a folder made
    read-only meanwhile...) is a one-line UsageError. ``task`` gives ``colors`` and what
    :func:`fashionseg.files.save_label_png` needs."""
    assert outputs.overlay is not None, "predict's outputs have an overlay"
    try:
        save_label_png(folder.claim(outputs.label, outputs.photo), label_map, task)
        pil = Image.fromarray(overlay_rgb(rgb, label_map, task.colors))
        atomic_write(
            folder.claim(outputs.overlay, outputs.photo),
            lambda p: pil.save(p, format="JPEG", quality=90),
        )
    except OSError as err:
        raise UsageError(
            f"{folder.path}: cannot write the outputs of {outputs.photo} "
            f"({err.strerror or err}); the photos done so far are kept, run again to go on"
        ) from None


def _refuse_foreign(path: Path, files: dict[str, str]) -> None:
    """UsageError when ``path`` holds anything predict did not record."""
    ours = set(files) | {MANIFEST}
    try:
        entries = os.listdir(path)
    except OSError as err:
        raise UsageError(f"{path}: cannot read the output folder ({err.strerror})") from None
    foreign = sorted(
        entry
        for entry in entries
        if entry not in OS_CLUTTER
        and not (entry in ours and (path / entry).is_file() and not (path / entry).is_symlink())
        and not _is_our_temp(entry, files)
        and not (_is_rank_log(entry) and (path / MANIFEST).is_file())
    )
    if foreign:
        more = f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else ""
        raise UsageError(
            f"{path}: the output folder holds files predict did not write "
            f"({', '.join(foreign[:_SHOWN])}{more}); choose a new or empty folder"
        )


def _refuse_replacing(
    path: Path,
    header: dict[str, Any],
    source: dict[str, Any],
    files: dict[str, str],
    photos: Iterable[PhotoOutputs],
) -> None:
    """UsageError when, without ``overwrite``, this run would replace a recorded output."""
    if not files:
        return
    recorded = {k: header.get(k) for k in source}
    if recorded != source:
        raise UsageError(
            f"{path}: holds predictions of another model ({_describe(recorded)}; this run: "
            f"{_describe(source)}); pass overwrite=true to replace them, or choose another "
            "output folder"
        )
    # names compared case-folded, as within one run: on macOS and Windows img.png and
    # IMG.png are one file
    folded = {name.casefold(): name for name in files}
    for outputs in photos:
        photo = str(outputs.photo.resolve())
        for name in outputs.names:
            recorded_name = folded.get(name.casefold(), name)
            taken = files.get(recorded_name, photo) != photo or recorded_name != name
            if taken and (path / recorded_name).is_file():
                raise UsageError(
                    f"{path / recorded_name}: was written for the photo {files[recorded_name]}, not "
                    f"{outputs.photo}; pass overwrite=true to replace it, or choose another "
                    "output folder"
                )
