"""How much host work lies between Mask R-CNN's raw outputs and the label maps (CPU).

A GPU waits while the host issues kernels one by one: each operator call costs a launch
(microseconds of Python and dispatch) however small, and a host round trip (``.item()``,
``.tolist()``, ``nonzero``: torch's ``aten::_local_scalar_dense``/``aten::nonzero``)
stops the host until the device has caught up. The torch profiler counts both on a CPU,
so this measure needs no GPU: :func:`count_calls` profiles one call and
:func:`synthetic_detections` makes the raw outputs of a batch (``B`` photos of one size,
``N`` detections each, like ``roi_heads``'s output) for the two paths:

- *after*: :func:`fashionseg.postprocess.detections_to_label_maps`, the batched path the
  models use;
- *before*: torchvision's own post-processing (per photo: ``resize_boxes`` and
  ``paste_masks_in_image``, one mask at a time) then a per-photo ``fuse`` — today's
  (the ``fusion.py`` of a file given with ``--before``, e.g. commit 2ca2a05's), or the
  current one.

``python -m fashionseg.host_overhead [--batch 8] [--detections 50] [--before FILE]``
prints both counts and their ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from fashionseg.cli import UsageError, user_errors
from fashionseg.fusion import fuse
from fashionseg.postprocess import detections_to_label_maps

SYNCS = ("aten::_local_scalar_dense", "aten::nonzero")


def count_calls(fn: Callable[[], Any]) -> dict[str, int]:
    """Run ``fn`` once under the torch profiler (CPU): ``calls``, every operator call
    (nested ones included), and ``syncs``, the calls that read a value back to the host."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    return {
        "calls": sum(e.count for e in events),
        "syncs": sum(e.count for e in events if e.key in SYNCS),
    }


def synthetic_detections(
    batch: int = 8, detections: int = 50, size: tuple[int, int] = (600, 400), seed: int = 0
) -> dict[str, Any]:
    """Raw outputs of ``batch`` photos of ``size`` (H, W), ``detections`` each: boxes in
    the photo's coordinates (resized images of the same size), 28 x 28 mask
    probabilities, scores in descending order as torchvision gives them."""
    g = torch.Generator().manual_seed(seed)
    height, width = size
    corner = torch.rand(batch, detections, 2, generator=g) * torch.tensor([width, height]) * 0.8
    extent = torch.rand(batch, detections, 2, generator=g) * torch.tensor([width, height]) * 0.5
    return {
        "boxes": torch.cat([corner, corner + extent + 1], -1),
        "labels": torch.randint(1, 7, (batch, detections), generator=g),
        "scores": torch.rand(batch, detections, generator=g).sort(-1, descending=True).values,
        "masks": torch.rand(batch, detections, 1, 28, 28, generator=g),
        "image_sizes": torch.tensor([list(size)] * batch),
        "size": size,
    }


def batched(raw: dict[str, Any], method: str = "seed") -> Tensor:
    """The path the models use: one batched call (the photos' size is known on the host,
    as :func:`fashionseg.postprocess.label_maps` knows it)."""
    return detections_to_label_maps(
        raw["boxes"], raw["labels"], raw["scores"], raw["masks"], raw["image_sizes"],
        raw["size"], method=method,
    )  # fmt: skip


def per_photo(
    raw: dict[str, Any], fuse_fn: Callable[..., Tensor], method: str = "seed"
) -> list[Tensor]:
    """Torchvision's post-processing (per photo, one mask at a time), then ``fuse_fn`` per
    photo: what the models did before the batched path."""
    sizes = [raw["size"]] * len(raw["boxes"])
    transform = GeneralizedRCNNTransform(800, 1333, [0.0] * 3, [1.0] * 3).eval()
    outputs = [
        {k: raw[k][i] for k in ("boxes", "labels", "scores", "masks")} for i in range(len(sizes))
    ]
    outputs = transform.postprocess(outputs, sizes, sizes)
    return [fuse_fn(o["labels"], o["scores"], o["masks"], method=method) for o in outputs]


def load_fusion(path: str | Path) -> ModuleType:
    """A ``fusion.py`` from a file (e.g. ``git show 2ca2a05:fashionseg/fusion.py``)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file (give a fusion.py to measure as 'before')")
    spec = importlib.util.spec_from_file_location("fusion_before", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - any failure is the file's
        raise UsageError(f"{path}: cannot be loaded as a fusion module ({err})") from None
    if not callable(getattr(module, "fuse", None)):
        raise UsageError(f"{path}: has no fuse() function")
    return module


def measure(
    batch: int = 8,
    detections: int = 50,
    size: tuple[int, int] = (600, 400),
    method: str = "seed",
    before: Callable[..., Tensor] = fuse,
) -> dict[str, Any]:
    """Operator calls and host round trips of both paths on one synthetic batch, and
    whether their label maps agree (fraction of equal pixels)."""
    raw = synthetic_detections(batch, detections, size)
    after_maps, before_maps = batched(raw, method), per_photo(raw, before, method)
    agree = (after_maps == torch.stack(before_maps)).float().mean().item()
    after = count_calls(lambda: batched(raw, method))
    old = count_calls(lambda: per_photo(raw, before, method))
    return {
        "batch": batch,
        "detections": detections,
        "size": list(size),
        "method": method,
        "before": old,
        "after": after,
        "fewer_calls": round(old["calls"] / after["calls"], 1),
        "pixels_equal": agree,
    }


@user_errors
def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: prints :func:`measure`'s figures as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m fashionseg.host_overhead", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--detections", type=int, default=50)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--width", type=int, default=400)
    parser.add_argument("--method", default="seed")
    parser.add_argument(
        "--before", help="a fusion.py to measure as 'before' (default: the current fuse per photo)"
    )
    args = parser.parse_args(argv)
    if min(args.batch, args.detections, args.height, args.width) < 1:
        raise UsageError("--batch, --detections, --height and --width must be >= 1")
    before = load_fusion(args.before).fuse if args.before else fuse
    result = measure(args.batch, args.detections, (args.height, args.width), args.method, before)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
