"""Reading photos as displayed, without torch (the training data, predict, ``Segmenter``
and the torch-free ONNX runtime all read photos here).

Photos are read as displayed: an EXIF orientation tag is applied (as
:func:`PIL.ImageOps.exif_transpose` does), and every mode PIL reads is turned into 8-bit
RGB by :func:`to_rgb8` (16-bit and 32-bit integer grey scaled from 0..65535, float grey from
0..1 or 0..255, palette, 1-bit, CMYK, LA/RGBA with the alpha dropped, not composited).

Every problem is a :class:`DataError` whose message is one line, ``<file>: <problem>``.
This module imports only numpy and Pillow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# The photo suffixes datasets and predict accept (matched case-insensitively).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
LOSSY_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
EXIF_ORIENTATION = 0x0112
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = (5, 6, 7, 8)


class DataError(ValueError):
    """A problem with a dataset file or setting; the message names the file."""


@dataclass(frozen=True)
class PhotoInfo:
    """What decoding a photo tells: displayed size (W, H), EXIF orientation, PIL mode."""

    size: tuple[int, int]
    orientation: int = 1
    mode: str = "RGB"

    @property
    def stored_size(self) -> tuple[int, int]:
        """(W, H) of the pixels as stored in the file, before the EXIF orientation."""
        w, h = self.size
        return (h, w) if self.orientation in _SWAPS_SIDES else (w, h)


def shown(path: str | os.PathLike[str]) -> str:
    """A path as printable text: bytes that are not UTF-8 appear as ``\\xNN``."""
    text = os.fspath(path)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _reason(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# --------------------------------------------------------------------------- decoding
def _check_file(path: Path) -> None:
    """DataError for what is not a readable, non-empty file (named precisely)."""
    if path.is_symlink() and not path.exists():
        raise DataError(f"{shown(path)}: broken symbolic link (to {shown(os.readlink(path))})")
    if not path.exists():
        raise DataError(f"{shown(path)}: file not found")
    if path.is_dir():
        raise DataError(f"{shown(path)}: a directory, not an image file")
    if not path.is_file():
        raise DataError(f"{shown(path)}: not a regular file")
    if path.stat().st_size == 0:
        raise DataError(f"{shown(path)}: empty file (0 bytes)")


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent, unreadable or invalid)."""
    try:
        value = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block: viewers ignore it, so do we
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def displayed(img: Image.Image) -> Image.Image:
    """A PIL image turned as its EXIF orientation tag says (how viewers show it).

    The image is loaded first: Pillow's TIFF loader applies the orientation itself while
    loading and drops the tag, so a tag read before loading would turn it twice."""
    img.load()
    turn = _ORIENTATIONS.get(_orientation(img))
    return img.transpose(turn) if turn is not None else img


def _decode(path: Path) -> tuple[Image.Image, int]:
    """Fully decode an image (so truncation shows) in its displayed orientation.

    Returns the image and the file's EXIF orientation tag (1: none). Any decoder failure
    is a one-line DataError naming the file.
    """
    _check_file(path)
    try:
        with Image.open(path) as img:
            tagged = _orientation(img)
            img.load()
    except PermissionError:
        raise DataError(f"{shown(path)}: permission denied (cannot read the file)") from None
    except Image.DecompressionBombError as err:
        raise DataError(
            f"{shown(path)}: image too large, refused as a possible decompression bomb "
            f"({_reason(err)}; PIL.Image.MAX_IMAGE_PIXELS sets the limit)"
        ) from None
    except UnidentifiedImageError:
        raise DataError(
            f"{shown(path)}: not an image format PIL can read (suffix {path.suffix!r}; "
            "a HEIC/AVIF/RAW file or not an image?)"
        ) from None
    except Exception as err:  # decoders raise OSError, SyntaxError, ValueError, EOFError...
        raise DataError(
            f"{shown(path)}: unreadable, corrupt or truncated image ({_reason(err)})"
        ) from None
    return displayed(img), tagged


def _scale_to_8bit(values: np.ndarray, path: Path, mode: str) -> np.ndarray:
    """Grey values of a 16/32-bit integer or float image -> uint8 (H x W)."""
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise DataError(f"{shown(path)}: float photo (mode {mode}) holds NaN or infinity")
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if lo < 0 or hi > 255:
            raise DataError(
                f"{shown(path)}: float photo (mode {mode}) with values {lo:g}..{hi:g}, "
                "outside 0..1 and 0..255; save it as an 8- or 16-bit image"
            )
        top = 1.0 if hi <= 1 else 255.0
        return np.rint(values.astype(np.float64) * (255.0 / top)).astype(np.uint8)
    values = values.astype(np.int64)
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if lo < 0 or hi > 65535:
        raise DataError(
            f"{shown(path)}: integer photo (mode {mode}) with values {lo}..{hi}, outside "
            "0..65535 (16-bit); save it as an 8- or 16-bit image"
        )
    return ((values * 255 + 32767) // 65535).astype(np.uint8)  # rounded 0..65535 -> 0..255


def to_rgb8(img: Image.Image, path: str | Path) -> np.ndarray:
    """An image of any mode PIL reads as 8-bit RGB, H x W x 3 uint8 (pure: no I/O).

    16-bit grey (``I;16*``) and 32-bit integer grey (``I``) are scaled from the 16-bit
    range 0..65535 (what scanners and raw converters write; other values are an error);
    float grey (``F``) from 0..1 when its maximum is <= 1, else from 0..255 (beyond that,
    negative or NaN: an error); ``1``, ``L``, ``P`` (its transparency ignored), ``CMYK``,
    ``YCbCr``, ``LAB``, ``HSV`` through PIL's conversion; ``LA``, ``PA``, ``RGBA``: the
    alpha channel is dropped, not composited. Other modes are a DataError naming ``path``.
    """
    path = Path(path)
    mode = img.mode
    if mode == "RGB":
        return np.array(img, dtype=np.uint8)
    if mode == "I" or mode.startswith("I;") or mode == "F":
        try:
            grey = np.asarray(img)
        except Exception as err:
            raise DataError(
                f"{shown(path)}: photo mode {mode} cannot be read ({_reason(err)})"
            ) from None
        grey = _scale_to_8bit(grey, path, mode)
        return np.repeat(grey[..., None], 3, axis=2)
    try:
        return np.array(img.convert("RGB"), dtype=np.uint8)
    except Exception:
        raise DataError(f"{shown(path)}: photo mode {mode} cannot be converted to RGB") from None


def read_photo(path: str | Path) -> tuple[np.ndarray, PhotoInfo]:
    """A photo as displayed, H x W x 3 uint8 RGB, with its :class:`PhotoInfo`."""
    path = Path(path)
    img, orientation = _decode(path)
    rgb = to_rgb8(img, path)
    return rgb, PhotoInfo((rgb.shape[1], rgb.shape[0]), orientation, img.mode)


def photo_rgb(photo: str | os.PathLike[str] | Image.Image | np.ndarray) -> np.ndarray:
    """The one reading of a photo for every entry point: H x W x 3 uint8 RGB as displayed.

    A path is decoded by :func:`read_photo`; a PIL image is loaded, turned by its EXIF
    orientation (:func:`displayed`: once, also for TIFF) and converted by :func:`to_rgb8`;
    a NumPy array must be H x W x 3 uint8 (RGB) already and is returned as it is. A
    problem with a path or PIL image is a DataError naming it; a wrong array shape a
    ValueError; anything else a TypeError. (Tensors are the caller's: no torch here.)
    """
    if isinstance(photo, str | os.PathLike):
        return read_photo(photo)[0]
    if isinstance(photo, Image.Image):
        name = getattr(photo, "filename", "") or "PIL image"
        try:
            img = displayed(photo)
        except Exception as err:  # a lazily opened, corrupt or truncated file
            raise DataError(f"{shown(name)}: unreadable image ({_reason(err)})") from None
        return to_rgb8(img, name)
    if isinstance(photo, np.ndarray):
        if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
            raise ValueError(
                f"a NumPy photo must be H x W x 3 uint8 (RGB), got shape {photo.shape} "
                f"{photo.dtype}"
            )
        return photo
    raise TypeError(
        f"cannot read a {type(photo).__name__} as a photo: give a path, a PIL image or an "
        "H x W x 3 uint8 NumPy array"
    )


def photo_info(path: str | Path) -> PhotoInfo:
    """Decode and convert a photo fully (DataError on any problem); what it found."""
    return read_photo(path)[1]


def decode_size(path: str | Path) -> tuple[int, int]:
    """Displayed (width, height) of a photo after fully decoding and converting it."""
    return photo_info(path).size


def image_size(path: str | Path) -> tuple[int, int]:
    """Displayed (width, height) of an image from its header, without decoding it."""
    path = Path(path)
    _check_file(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
            swap = _orientation(img) in _SWAPS_SIDES and img.format != "TIFF"
    except Exception as err:
        raise DataError(f"{shown(path)}: unreadable image ({_reason(err)})") from None
    return (h, w) if swap else (w, h)
