"""``python -m fashionseg.bench --export``: PyTorch eager vs ONNX Runtime fp32 vs int8.

For a checkpoint of any family (``--ckpt``: semantic, Mask R-CNN, Panoptic FPN; default:
an untrained model of the best semantic
row's recipe, ``experiment=ccp_semantic_plus``, in a scratch run whose "validation photos"
are random photos: speed does not depend on the weights), it exports the float32 and the
int8 graph (:mod:`fashionseg.export`), then measures photos/s of the three at ``--size``
(600x400) with :func:`fashionseg.bench.interleaved` rounds (the sides alternate, median
and spread), each with the same number of threads (``--threads``).

With ``--data ROOT`` and a checkpoint from a run, it also scores the run's test photos
under each runtime: test mIoU (IoU over every test photo's pixels, as evaluate does) and
the share of each photo's pixels on which each graph agrees with PyTorch.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fashionseg.bench.harness import CONF_DIR, Spread, interleaved, size_text

SIDES = ("eager", "ort_fp32", "ort_int8")


def scratch_run(root: Path, photos: int, size: tuple[int, int], seed: int = 0) -> Path:
    """An untrained checkpoint of ``ccp_semantic_plus``'s model in a run directory whose
    validation split is ``photos`` random ``size`` (W x H) photos; the checkpoint's path."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from PIL import Image

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "experiment=ccp_semantic_plus",
                "task=clothing",
                "model.net.weights=none",
                f"data.root={root / 'data'}",
            ],
        )
    torch.manual_seed(seed)
    module = instantiate(cfg.model, _recursive_=False)
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / ".hydra").mkdir()
    images = root / "data" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    stems = [f"{i:03d}" for i in range(photos)]
    for stem in stems:
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{stem}.png")
    (run / "split.json").write_text(json.dumps({"val": stems, "test": []}))
    (run / ".hydra" / "config.yaml").write_text(f"data:\n  root: {root / 'data'}\n")
    ckpt = run / "checkpoints" / "untrained.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    return ckpt


def _sides(module: Any, graphs: dict[str, Path], rgb: np.ndarray, count: int, threads: int) -> dict:
    """One timed callable per side: ``count`` photos labelled, seconds returned."""
    import torch

    from fashionseg.runtime import INPUT_NAME, OUTPUT_NAME, open_session

    image = torch.from_numpy(rgb).permute(2, 0, 1)

    def eager() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for _ in range(count):
                module.predict_maps([image.to(torch.float32) / 255])
        return time.perf_counter() - start

    def graph(path: Path) -> Callable[[], float]:
        session = open_session(path, threads)

        def run() -> float:
            start = time.perf_counter()
            for _ in range(count):
                session.run([OUTPUT_NAME], {INPUT_NAME: rgb})
            return time.perf_counter() - start

        return run

    return {"eager": eager, **{name: graph(path) for name, path in graphs.items()}}


def test_scores(
    module: Any, graphs: dict[str, Path], ckpt: Path, data_root: Path, limit: int | None = None
) -> dict:
    """Test mIoU under each runtime and each graph's per-photo agreement with PyTorch
    (the first ``limit`` test photos of the run's split; default all)."""
    import torch

    from fashionseg.data.io import list_photos, read_mask
    from fashionseg.data.photo import read_photo
    from fashionseg.export import run_dir_of
    from fashionseg.metrics import iou_from_confmat, mean_iou
    from fashionseg.runtime import INPUT_NAME, OUTPUT_NAME, open_session

    run = run_dir_of(ckpt)
    if run is None:
        raise ValueError(f"{ckpt}: not in a run directory (no split.json beside checkpoints/)")
    stems = json.loads((run / "split.json").read_text())["test"][:limit]
    photos = list_photos(data_root / "images")
    task = module.task
    num = task.num_classes
    sessions = {name: open_session(path) for name, path in graphs.items()}
    confmats = {name: np.zeros((num, num), np.int64) for name in ("eager", *graphs)}
    agree: dict[str, list[float]] = {name: [] for name in graphs}
    for stem in stems:
        rgb, _ = read_photo(photos[stem])
        truth = read_mask(data_root / task.mask_dir / f"{stem}.png", task).astype(np.int64)
        image = torch.from_numpy(rgb).permute(2, 0, 1).to(torch.float32) / 255
        with torch.inference_mode():
            maps = {"eager": module.predict_maps([image])[0].numpy()}
        for name, session in sessions.items():
            maps[name] = session.run([OUTPUT_NAME], {INPUT_NAME: rgb})[0]
            agree[name].append(float((maps[name] == maps["eager"]).mean()))
        valid = truth < num
        for name, labels in maps.items():
            index = truth[valid] * num + labels.astype(np.int64)[valid]
            confmats[name] += np.bincount(index, minlength=num * num).reshape(num, num)
    miou = {
        name: float(mean_iou(iou_from_confmat(torch.from_numpy(cm))))
        for name, cm in confmats.items()
    }
    return {
        "test_photos": len(stems),
        "miou": miou,
        "agreement": {
            name: {
                "min": min(v),
                "mean": float(np.mean(v)),
                "photos_below_99_9": sum(x < 0.999 for x in v),
            }
            for name, v in agree.items()
        },
    }


def export_benchmark(
    ckpt: Path | None = None,
    size: tuple[int, int] = (600, 400),
    photos: int = 4,
    rounds: int = 5,
    warmup: int = 1,
    threads: int = 1,
    calibration: int = 8,
    data_root: Path | None = None,
    test_photos: int | None = None,
) -> dict[str, Any]:
    """Export ``ckpt`` (fp32 and int8) and time the three runtimes side by side."""
    import onnxruntime
    import torch

    from fashionseg.export import export_checkpoint
    from fashionseg.model.checkpoint import load_module

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="fashionseg-bench-export-") as tmp:
        root = Path(tmp)
        source = "checkpoint"
        if ckpt is None:
            ckpt = scratch_run(root / "scratch", calibration, size)
            source = "untrained ccp_semantic_plus model (speed does not depend on the weights)"
        graphs = {"ort_fp32": root / "fp32.onnx", "ort_int8": root / "int8.onnx"}
        start = time.perf_counter()
        export_checkpoint(ckpt, graphs["ort_fp32"])
        export_checkpoint(ckpt, graphs["ort_int8"], quantize="int8", calibration=calibration)
        export_s = time.perf_counter() - start
        module = load_module(ckpt).eval()
        rgb = np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        measured = interleaved(_sides(module, graphs, rgb, photos, threads), rounds, warmup)
        scores = test_scores(module, graphs, ckpt, data_root, test_photos) if data_root else None
    rates = {name: measured.spread(name).inverted(photos) for name in SIDES}
    ratios = {
        f"{name}_vs_eager": measured.ratio("eager", name) for name in ("ort_fp32", "ort_int8")
    }
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "model": source,
        "arch": module.hparams.net.get("arch"),
        "tta_hflip": bool(module.tta_hflip),
        "size": size_text(size),
        "photos_per_round": photos,
        "threads": threads,
        "export_s": export_s,
        "photos_per_s": {name: rate.as_dict() for name, rate in rates.items()},
        "speedup": {name: r.as_dict() for name, r in ratios.items()},
        "scores": scores,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average": list(os.getloadavg()),
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
    }


def format_export_report(r: dict[str, Any]) -> str:
    """The benchmark as a few lines of text."""
    lines = [
        f"export benchmark, {r['date']}: {r['arch']} (flip TTA {r['tta_hflip']}), "
        f"{r['model']}; {r['size']} photos, {r['threads']} thread(s), "
        f"load average {', '.join(f'{x:.1f}' for x in r['load_average'])}",
    ]
    for name in SIDES:
        s = r["photos_per_s"][name]
        lines.append(f"  {name:9s} {Spread(**s).text(2)} photos/s")
    for name, s in r["speedup"].items():
        lines.append(f"  {name}: {Spread(**s).text(2)}x")
    if r["scores"]:
        sc = r["scores"]
        miou = ", ".join(f"{k} {100 * v:.2f}" for k, v in sc["miou"].items())
        lines.append(f"  test mIoU ({sc['test_photos']} photos): {miou}")
        for name, a in sc["agreement"].items():
            lines.append(
                f"  {name} = eager on {100 * a['mean']:.3f} % of pixels (worst photo "
                f"{100 * a['min']:.3f} %, {a['photos_below_99_9']} photos below 99.9 %)"
            )
    return "\n".join(lines)


def run_export_bench(args: Any) -> dict[str, Any]:
    """``bench --export`` with bench's parsed arguments."""
    return export_benchmark(
        ckpt=args.ckpt,
        size=args.size or (600, 400),
        photos=args.export_photos,
        rounds=args.reps or 5,
        warmup=args.warmup,
        threads=args.threads,
        data_root=args.data,
        test_photos=args.test_photos,
    )
