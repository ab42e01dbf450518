"""Convert a checkout of the Clothing Co-Parsing (CCP) dataset into the project's layout.

    python -m fashionseg.data.convert ccp --src CCP_CHECKOUT --out DIR [--size 400x600]
        [--overwrite] [--sources ccp-fashion600/sources.csv]   (or: python -m fashionseg.data.ccp)

CCP (W. Yang, P. Luo, L. Lin, CVPR 2014; Apache-2.0) publishes ``photos/NNNN.jpg``,
``annotations/pixel-level/NNNN.mat`` (variable ``groundtruth``: one tag number per pixel)
and ``label_list.mat`` (variable ``label_list``: the 59 tag names, tag 0 = ``null``).
Photos are resized to ``--size`` (W x H; bicubic, masks nearest) and written as
``images/<id>.jpg``, ``person/<id>.png`` (every tag but ``null``) and
``clothes/<id>.png`` (tags grouped into skin, hair, tshirt, shoes, pants, dress; null and
accessories are background), with ``sources.csv`` (image stem -> CCP photo id). Photos
without a pixel-level annotation are skipped and counted. ccp-fashion600 names its 600
photos 0001..0600 in a shuffled order recorded in its ``sources.csv``; ``--sources`` with
that file reproduces those names (on the 16-photo CCP sample the photos come out
byte-identical to ccp-fashion600's and the masks pixel-identical).
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

from fashionseg.data.annotations import ConversionError
from fashionseg.files import atomic_write, save_label_png, write_text
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
    clothes = np.zeros(len(names), dtype=np.uint8)
    person = np.zeros(len(names), dtype=np.uint8)
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


def read_sources(path: Path) -> dict[str, str]:
    """CCP photo id -> output stem from a ``sources.csv`` (columns ``image``, ``ccp_id``)."""
    if not path.is_file():
        raise ConversionError(f"{path}: sources file not found")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"image", "ccp_id"} <= set(reader.fieldnames or ()):
            raise ConversionError(
                f"{path}: needs the columns image,ccp_id, has {reader.fieldnames}"
            )
        stem_of: dict[str, str] = {}
        for row in reader:
            if row["ccp_id"] in stem_of or row["image"] in stem_of.values():
                raise ConversionError(f"{path}: row {row['image']},{row['ccp_id']} repeats a name")
            stem_of[row["ccp_id"]] = row["image"]
    return stem_of


def _write_sample(
    photo: Path,
    annotation: Path,
    out: Path,
    stem: str,
    size: tuple[int, int],
    luts: tuple[np.ndarray, np.ndarray],
) -> None:
    """Resize one photo (bicubic) and its tag map (nearest); write photo and both masks."""
    clothes_lut, person_lut = luts
    image = Image.open(photo).convert("RGB")
    tags = read_tags(annotation, image.size)
    if tags.size and int(tags.max()) >= len(clothes_lut):
        raise ConversionError(
            f"{annotation}: tag number {int(tags.max())} is not among the "
            f"{len(clothes_lut)} tags of label_list.mat"
        )
    tags = Image.fromarray(tags.astype(np.uint8)).resize(size, Image.Resampling.NEAREST)
    tags = np.asarray(tags)
    resized = image.resize(size, Image.Resampling.BICUBIC)
    atomic_write(
        out / "images" / f"{stem}.jpg",
        lambda p: resized.save(p, format="JPEG", quality=95),
    )
    save_label_png(out / "clothes" / f"{stem}.png", clothes_lut[tags], get_task("clothing"))
    save_label_png(out / "person" / f"{stem}.png", person_lut[tags], get_task("person"))


def convert(
    src: str | Path,
    out: str | Path,
    size: tuple[int, int] = (400, 600),
    overwrite: bool = False,
    sources: str | Path | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """Convert the CCP checkout ``src`` into ``out`` at ``size`` (W, H).

    Output stems are CCP's photo ids, or, with ``sources`` (a ``sources.csv`` such as
    ccp-fashion600's), the ``image`` names it gives each ``ccp_id``; photos it does not
    list are left out. Returns counts: ``converted``, ``skipped`` (photo without a
    pixel-level annotation) and, with ``sources``, ``unlisted`` (photos not in it) and
    ``missing`` (ids it lists that ``src`` has no photo of).
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise ConversionError(f"{src}: CCP checkout not found")
    if not (src / "photos").is_dir():
        raise ConversionError(f"{src / 'photos'}: not found (is --src a CCP checkout?)")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConversionError(f"{out}: output directory is not empty (use --overwrite)")
    label_list = src / "label_list.mat"
    luts = tag_lookup(read_tag_names(label_list), label_list)
    stem_of = read_sources(Path(sources)) if sources is not None else None
    annotations = src / "annotations" / "pixel-level"
    photos = sorted(p for p in (src / "photos").iterdir() if p.suffix.lower() == ".jpg")
    counts = {"converted": 0, "skipped": 0}
    if stem_of is not None:
        ids = {p.stem for p in photos}
        counts["unlisted"] = sum(p.stem not in stem_of for p in photos)
        counts["missing"] = sum(i not in ids for i in stem_of)
        photos = [p for p in photos if p.stem in stem_of]
    rows = []
    for photo in tqdm(photos, desc="convert CCP", unit="photo", disable=not progress):
        annotation = annotations / f"{photo.stem}.mat"
        if not annotation.is_file():
            counts["skipped"] += 1
            continue
        stem = stem_of[photo.stem] if stem_of is not None else photo.stem
        _write_sample(photo, annotation, out, stem, size, luts)
        rows.append((stem, photo.stem))
    counts["converted"] = len(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "ccp_id"])
    writer.writerows(sorted(rows))
    write_text(out / "sources.csv", buffer.getvalue())
    return counts


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return width, height


def main(argv: list[str] | None = None, prog: str = "python -m fashionseg.data.ccp") -> int:
    """Command-line entry point (also ``python -m fashionseg.data.convert ccp``)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="CCP checkout (photos/, annotations/)")
    parser.add_argument("--out", required=True, help="output dataset directory")
    parser.add_argument("--size", type=_parse_size, default=(400, 600), help="W x H")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    parser.add_argument(
        "--sources",
        help="name (and select) outputs as this sources.csv does (columns image,ccp_id), "
        "e.g. ccp-fashion600/sources.csv to rebuild ccp-fashion600",
    )
    args = parser.parse_args(argv)
    try:
        counts = convert(args.src, args.out, args.size, args.overwrite, args.sources)
    except ConversionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"converted {counts['converted']} photos, skipped {counts['skipped']} without "
        f"pixel-level annotation -> {args.out}"
    )
    if args.sources:
        print(
            f"{counts['unlisted']} photos not listed in {args.sources}; "
            f"{counts['missing']} listed ids have no photo in {args.src}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
