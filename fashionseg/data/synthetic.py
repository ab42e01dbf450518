"""Procedurally drawn people in the dataset layout: the project's embedded default data.

    python -m fashionseg.data.synthetic --out DIR --num-images N --seed S [--height H --width W]

Each image holds one stylised person: a head with hair and face skin, a neck, skin arms
under tshirt sleeves, a tshirt or a dress, pants or shorts (with skin legs) when there is
no dress, and two shoes, on a textured, noisy background. Position, scale, pose and all
colours vary (garments sometimes resemble each other or the background), so the task is
learnable but not trivial. Labels are drawn first; the photo is rendered from them with
shading, noise and blur. The same seed writes byte-identical files, and image ``i``
depends only on ``(seed, i)``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFilter

from fashionseg.files import atomic_write, save_label_png, write_text
from fashionseg.tasks import get_task

BACKGROUND, SKIN, HAIR, TSHIRT, SHOES, PANTS, DRESS = range(7)


def _rgb(hex_colours: str) -> tuple[tuple[int, int, int], ...]:
    """``"#rrggbb #rrggbb ..."`` as RGB tuples."""
    return tuple(ImageColor.getrgb(c) for c in hex_colours.split())  # type: ignore[misc]


SKIN_TONES = _rgb("#ffdbac #f1c27d #e0ac69 #c68642 #8d5524 #5c381e")
HAIR_TONES = _rgb("#140f0a #3c2814 #6e461e #c8a05a #962814 #5a5a5a")


def _limb(
    draw: ImageDraw.ImageDraw,
    start: tuple[float, float],
    angle: float,
    length: float,
    width: float,
    label: int,
) -> tuple[float, float]:
    """Draw a limb segment as a thick line with round ends; return its end point."""
    end = (start[0] + length * math.sin(angle), start[1] + length * math.cos(angle))
    draw.line([start, end], fill=label, width=max(int(width), 1))
    r = width / 2
    for x, y in (start, end):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=label)
    return end


def draw_labels(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """The clothes label map (class ids) of one random person."""
    canvas = Image.new("L", (width, height), BACKGROUND)
    d = ImageDraw.Draw(canvas)
    h = height * rng.uniform(0.6, 0.95)  # person height
    u = h / 8  # one "head" unit
    if rng.random() < 0.15:  # anywhere, so the person may be cut at the image border
        cx = width * rng.uniform(0.1, 0.9)
        top = rng.uniform(-0.1, 1.1) * (height - h)
    else:  # mostly inside the frame (raised arms may still reach the border)
        margin = min(2.6 * u, width / 2)
        cx = rng.uniform(margin, width - margin)
        top = rng.uniform(0.1 * u, max(height - h, 0.1 * u))
    lean = rng.uniform(-0.08, 0.08)
    dress = rng.random() < 0.35
    shorts = not dress and rng.random() < 0.3
    long_hair = rng.random() < 0.4

    def x(frac_y: float) -> float:  # body axis x at a height (in head units from the top)
        return cx + lean * frac_y * u

    head_r = 0.5 * u
    hx, hy = x(0.5), top + 0.5 * u
    shoulder_y, hip_y, knee_y, foot_y = top + 1.45 * u, top + 4.0 * u, top + 5.8 * u, top + 7.6 * u
    sw = u * rng.uniform(0.8, 1.05)  # half shoulder width
    hw = u * rng.uniform(0.6, 0.85)  # half hip width
    limb_w = u * rng.uniform(0.42, 0.55)

    # legs (skin) with shoes
    for side in (-1, 1):
        hip = (x(4.0) + side * hw * 0.5, hip_y)
        knee = _limb(d, hip, side * rng.uniform(0.0, 0.22), knee_y - hip_y, limb_w * 1.2, SKIN)
        foot = _limb(d, knee, side * rng.uniform(-0.05, 0.15), foot_y - knee_y, limb_w, SKIN)
        toe = side * rng.choice([-1, 1]) * u * 0.45
        d.ellipse(
            [
                foot[0] - u * 0.3 + min(toe, 0),
                foot[1] - u * 0.2,
                foot[0] + u * 0.3 + max(toe, 0),
                foot[1] + u * 0.25,
            ],
            fill=SHOES,
        )
        if not dress:  # pants cover the leg down to the ankle, shorts to above the knee
            end = knee if shorts else (foot[0], foot[1] - u * 0.3)
            d.line([hip, knee], fill=PANTS, width=int(limb_w * 1.5))
            if not shorts:
                d.line([knee, end], fill=PANTS, width=int(limb_w * 1.3))
    if not dress:
        d.polygon(
            [
                (x(3.4) - hw, top + 3.4 * u),
                (x(3.4) + hw, top + 3.4 * u),
                (x(4.3) + hw * 1.05, top + 4.4 * u),
                (x(4.3) - hw * 1.05, top + 4.4 * u),
            ],
            fill=PANTS,
        )

    # arms: skin, with sleeves of the upper garment over the upper arm
    sleeve = DRESS if dress else TSHIRT
    sleeve_len = rng.uniform(0.2, 1.0)
    for side in (-1, 1):
        shoulder = (x(1.6) + side * sw * 0.85, shoulder_y + 0.15 * u)
        upper = side * rng.uniform(0.05, 0.8)  # mostly down, some raised
        elbow = _limb(d, shoulder, upper, 1.4 * u, limb_w, SKIN)
        _limb(d, elbow, upper + side * rng.uniform(-0.4, 0.5), 1.3 * u, limb_w * 0.85, SKIN)
        cut = (
            shoulder[0] + (elbow[0] - shoulder[0]) * sleeve_len,
            shoulder[1] + (elbow[1] - shoulder[1]) * sleeve_len,
        )
        _limb(d, shoulder, upper, math.dist(shoulder, cut), limb_w * 1.3, sleeve)

    # torso: tshirt, or a dress flaring to the knees
    if dress:
        hem_y = top + rng.uniform(5.0, 6.3) * u
        flare = hw * rng.uniform(1.2, 1.8)
        d.polygon(
            [
                (x(1.4) - sw, shoulder_y),
                (x(1.4) + sw, shoulder_y),
                (x(3.0) + hw * 0.9, top + 3.0 * u),
                (x(5.5) + flare, hem_y),
                (x(5.5) - flare, hem_y),
                (x(3.0) - hw * 0.9, top + 3.0 * u),
            ],
            fill=DRESS,
        )
    else:
        d.polygon(
            [
                (x(1.4) - sw, shoulder_y),
                (x(1.4) + sw, shoulder_y),
                (x(3.6) + hw, top + 3.6 * u),
                (x(3.6) - hw, top + 3.6 * u),
            ],
            fill=TSHIRT,
        )

    # neck, long hair behind the head, face, hair on top
    d.rectangle([hx - 0.18 * u, hy + 0.3 * u, hx + 0.18 * u, shoulder_y + 0.05 * u], fill=SKIN)
    if long_hair:
        d.rounded_rectangle(
            [
                hx - head_r * 1.15,
                hy - head_r * 0.4,
                hx + head_r * 1.15,
                hy + rng.uniform(1.5, 3.0) * head_r,
            ],
            radius=head_r * 0.6,
            fill=HAIR,
        )
    d.ellipse([hx - head_r * 0.85, hy - head_r, hx + head_r * 0.85, hy + head_r * 1.05], fill=SKIN)
    d.chord(
        [hx - head_r * 0.95, hy - head_r * 1.15, hx + head_r * 0.95, hy + head_r * 0.7],
        start=180 + rng.uniform(-15, 0),
        end=360 + rng.uniform(0, 15),
        fill=HAIR,
    )
    return np.asarray(canvas).copy()


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A float RGB background: gradient, stripes or blobs, and noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    c0, c1 = rng.uniform(40, 230, 3), rng.uniform(40, 230, 3)
    t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) / max(height, width)
    bg = c0 + (c1 - c0) * ((t - t.min()) / (np.ptp(t) + 1e-6))[..., None]
    kind = rng.integers(3)
    if kind == 0:  # stripes
        period = rng.uniform(6, 30)
        angle = rng.uniform(0, math.pi)
        s = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
        bg += (s > 0)[..., None] * rng.uniform(-50, 50, 3)
    elif kind == 1:  # blobs
        for _ in range(rng.integers(3, 9)):
            by, bx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(5, width / 3)
            blob = ((yy - by) ** 2 + (xx - bx) ** 2) < r * r
            bg[blob] = rng.uniform(30, 230, 3)
    return bg + rng.normal(0, rng.uniform(3, 15), bg.shape)


def render(rng: np.random.Generator, labels: np.ndarray) -> Image.Image:
    """An RGB photo of a label map: per-class colours, shading, texture, noise, blur."""
    height, width = labels.shape
    img = _background(rng, height, width)
    skin = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))], np.float32) + rng.normal(0, 8, 3)
    hair = np.array(HAIR_TONES[rng.integers(len(HAIR_TONES))], np.float32) + rng.normal(0, 8, 3)
    colours = {SKIN: skin, HAIR: hair}
    for cls in (TSHIRT, SHOES, PANTS, DRESS):
        colours[cls] = rng.uniform(10, 245, 3)
    if rng.random() < 0.25:  # matching outfit: pants (or shoes) close to the top's colour
        colours[PANTS] = colours[TSHIRT] + rng.normal(0, 20, 3)
    if rng.random() < 0.2:  # garment close to the background
        colours[TSHIRT if rng.random() < 0.5 else DRESS] = img[0, 0] + rng.normal(0, 20, 3)
    yy = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    light = 1 + 0.15 * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))
    for cls, colour in colours.items():
        region = labels == cls
        if not region.any():
            continue
        texture = np.ones_like(light)
        if cls in (TSHIRT, DRESS, PANTS) and rng.random() < 0.4:  # stripes or checks
            period = rng.uniform(3, 10)
            texture = 1 + 0.2 * np.sign(np.sin(np.arange(height)[:, None] * 2 * np.pi / period))
            texture = np.broadcast_to(texture, light.shape)
        shade = (light * texture)[region][:, None]
        img[region] = colour * shade + rng.normal(0, 6, (int(region.sum()), 3))
    photo = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    return photo.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))


def _readme(num_images: int, seed: int, height: int, width: int) -> str:
    """The dataset's README (it does not name the output directory, so it is reproducible)."""
    return (
        "# Synthetic fashion people\n\n"
        f"{num_images} procedurally drawn photos of one stylised person each, "
        f"{width} x {height} px (W x H), seed {seed}: the fashionseg project's built-in demo "
        "and test data, not real photos. Regenerate byte for byte with\n\n"
        f"    python -m fashionseg.data.synthetic --out DIR --num-images {num_images} "
        f"--seed {seed} --height {height} --width {width}\n\n"
        "```\n"
        "images/<stem>.jpg    RGB photo (JPEG quality 95), stems 0000, 0001, ...\n"
        "person/<stem>.png   palette PNG: 0 background, 1 person\n"
        "clothes/<stem>.png  palette PNG: 0 background, 1 skin, 2 hair, 3 tshirt, 4 shoes,\n"
        "                    5 pants, 6 dress\n"
        "```\n\n"
        "The person mask is exactly the union of the non-background clothes classes.\n"
    )


def generate(
    out: str | Path,
    num_images: int = 200,
    seed: int = 0,
    height: int = 240,
    width: int = 160,
    overwrite: bool = False,
) -> Path:
    """Write ``num_images`` synthetic photos with person and clothes masks into ``out``."""
    out = Path(out)
    if (out / "images").exists() and not overwrite:
        raise FileExistsError(f"{out}: already holds images/; pass overwrite=True (--overwrite)")
    if num_images < 1 or height < 16 or width < 16:
        raise ValueError(
            f"need num_images >= 1 and a size of at least 16x16, got "
            f"{num_images} images of {height}x{width}"
        )
    clothing, person = get_task("clothing"), get_task("person")
    for i in range(num_images):
        rng = np.random.default_rng([seed, i])
        labels = draw_labels(rng, height, width)
        photo = render(rng, labels)
        stem = f"{i:04d}"
        atomic_write(
            out / "images" / f"{stem}.jpg",
            lambda p, photo=photo: photo.save(p, format="JPEG", quality=95),
        )
        save_label_png(out / "clothes" / f"{stem}.png", labels, clothing)
        save_label_png(out / "person" / f"{stem}.png", (labels > 0).astype(np.uint8), person)
    _remove_stale(out, {f"{i:04d}" for i in range(num_images)})
    write_text(out / "README.md", _readme(num_images, seed, height, width))
    return out


def _remove_stale(out: Path, stems: set[str]) -> None:
    """Delete numbered samples an earlier, larger generation left (after ``overwrite``)."""
    for folder in ("images", "person", "clothes"):
        for path in (out / folder).iterdir():
            if path.stem.isdigit() and path.stem not in stems and path.suffix in {".jpg", ".png"}:
                path.unlink()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m fashionseg.data.synthetic", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, help="output dataset directory")
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    try:
        out = generate(
            args.out, args.num_images, args.seed, args.height, args.width, args.overwrite
        )
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.num_images} images to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
