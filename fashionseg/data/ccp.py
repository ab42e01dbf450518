"""Convert a checkout of the Clothing Co-Parsing (CCP) dataset into the project's layout.

    python -m fashionseg.data.ccp --src CCP_CHECKOUT --out DIR [--size 400x600] [--overwrite]

CCP (W. Yang, P. Luo, L. Lin, CVPR 2014; Apache-2.0) publishes ``photos/NNNN.jpg``,
``annotations/pixel-level/NNNN.mat`` (variable ``groundtruth``: one tag number per pixel)
and ``label_list.mat`` (variable ``label_list``: the 59 tag names, tag 0 = ``null``).
Photos are resized to ``--size`` (W x H; bicubic, masks nearest) and written as
``images/<id>.jpg``, ``person/<id>.png`` (every tag but ``null``) and
``clothes/<id>.png`` (tags grouped into skin, hair, tshirt, shoes, pants, dress; null and
accessories are background), with ``sources.csv`` (image stem -> CCP photo id). Photos
without a pixel-level annotation are skipped and counted.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from tqdm import tqdm

from fashionseg.io_utils import atomic_write, save_label_png, write_text
from fashionseg.tasks import get_task

# CCP tag -> clothes class id (1 skin, 2 hair, 3 tshirt, 4 shoes, 5 pants, 6 dress);
# every other tag listed here is background (0).
CLASS_OF_TAG: dict[str, int] = {
    "skin": 1,
    "hair": 2,
    **dict.fromkeys(
        [
            "blazer",
            "blouse",
            "bodysuit",
            "bra",
            "cape",
            "cardigan",
            "coat",
            "hoodie",
            "intimate",
            "jacket",
            "jumper",
            "shirt",
            "suit",
            "sweater",
            "sweatshirt",
            "swimwear",
            "t-shirt",
            "top",
            "vest",
        ],
        3,
    ),
    **dict.fromkeys(
        [
            "boots",
            "clogs",
            "flats",
            "heels",
            "loafers",
            "pumps",
            "sandals",
            "shoes",
            "sneakers",
            "wedges",
        ],
        4,
    ),
    **dict.fromkeys(
        ["jeans", "leggings", "pants", "shorts", "skirt", "socks", "stockings", "tights"], 5
    ),
    **dict.fromkeys(["dress", "romper"], 6),
    **dict.fromkeys(
        [
            "null",
            "accessories",
            "bag",
            "belt",
            "bracelet",
            "earrings",
            "glasses",
            "gloves",
            "hat",
            "necklace",
            "panties",
            "purse",
            "ring",
            "scarf",
            "sunglasses",
            "tie",
            "wallet",
            "watch",
        ],
        0,
    ),
}


class ConversionError(ValueError):
    """A CCP checkout that cannot be converted; the message names the file."""


def read_tag_names(path: Path) -> list[str]:
    """Tag names in tag-number order from ``label_list.mat``."""
    if not path.is_file():
        raise ConversionError(f"{path}: label list not found (is --src a CCP checkout?)")
    try:
        cells = scipy.io.loadmat(path)["label_list"]
    except (KeyError, ValueError, OSError) as err:
        raise ConversionError(f"{path}: no readable `label_list` ({err})") from None
    return [str(np.asarray(c).squeeze()) for c in np.asarray(cells).ravel()]


def tag_lookup(names: list[str], source: Path) -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables tag number -> clothes class id and -> person (0/1)."""
    unknown = [n for n in names if n not in CLASS_OF_TAG]
    if unknown:
        raise ConversionError(f"{source}: tag {unknown[0]!r} has no class in the mapping")
    clothes = np.zeros(256, dtype=np.uint8)
    person = np.zeros(256, dtype=np.uint8)
    for number, name in enumerate(names):
        clothes[number] = CLASS_OF_TAG[name]
        person[number] = name != "null"
    return clothes, person


def read_tags(path: Path, photo_size: tuple[int, int]) -> np.ndarray:
    """The ``groundtruth`` tag map of one annotation, checked against its photo's size."""
    try:
        tags = np.asarray(scipy.io.loadmat(path)["groundtruth"])
    except (KeyError, ValueError, OSError) as err:
        raise ConversionError(f"{path}: no readable `groundtruth` ({err})") from None
    if (tags.shape[1], tags.shape[0]) != photo_size:
        raise ConversionError(
            f"{path}: annotation size {tags.shape[1]}x{tags.shape[0]} does not match its photo "
            f"{photo_size[0]}x{photo_size[1]}"
        )
    return tags


def convert(
    src: str | Path,
    out: str | Path,
    size: tuple[int, int] = (400, 600),
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Convert the CCP checkout ``src`` into ``out``; return converted/skipped counts."""
    src, out = Path(src), Path(out)
    if not (src / "photos").is_dir():
        raise ConversionError(f"{src / 'photos'}: not found (is --src a CCP checkout?)")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConversionError(f"{out}: output directory is not empty (use --overwrite)")
    label_list = src / "label_list.mat"
    clothes_lut, person_lut = tag_lookup(read_tag_names(label_list), label_list)
    annotations = src / "annotations" / "pixel-level"
    clothing, person = get_task("clothing"), get_task("person")
    rows, skipped = [], 0
    photos = sorted(p for p in (src / "photos").iterdir() if p.suffix.lower() == ".jpg")
    for photo in tqdm(photos, desc="convert CCP", unit="photo", disable=not progress):
        annotation = annotations / f"{photo.stem}.mat"
        if not annotation.is_file():
            skipped += 1
            continue
        image = Image.open(photo).convert("RGB")
        tags = Image.fromarray(read_tags(annotation, image.size))
        tags = np.asarray(tags.resize(size, Image.Resampling.NEAREST))
        resized = image.resize(size, Image.Resampling.BICUBIC)
        atomic_write(
            out / "images" / f"{photo.stem}.jpg",
            lambda p, im=resized: im.save(p, format="JPEG", quality=95),
        )
        save_label_png(out / "clothes" / f"{photo.stem}.png", clothes_lut[tags], clothing)
        save_label_png(out / "person" / f"{photo.stem}.png", person_lut[tags], person)
        rows.append((photo.stem, photo.stem))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "ccp_id"])
    writer.writerows(rows)
    write_text(out / "sources.csv", buffer.getvalue())
    return {"converted": len(rows), "skipped": skipped}


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="CCP checkout (photos/, annotations/)")
    parser.add_argument("--out", required=True, help="output dataset directory")
    parser.add_argument("--size", type=_parse_size, default=(400, 600), help="W x H")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        counts = convert(args.src, args.out, args.size, args.overwrite)
    except ConversionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"converted {counts['converted']} photos, skipped {counts['skipped']} without "
        f"pixel-level annotation -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
