"""The predict benchmark (``python -m fashionseg.bench --predict``).

It measures predict end to end (photos/s from photo files to written label maps and
overlays) of the single-photo loop and of the Lightning path, on the same model
(``experiment=cpu_fast``, random init, saved to a temporary checkpoint) and photos, and
whether memory stays flat over ``--memory-photos`` small photos.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from fashionseg.bench.harness import MIB, SIZES, Spread, compose_config, interleaved, size_text
from fashionseg.bench.memory import (
    MemorySampler,
    _load_average,
    _load_text,
    _peak_rss_bytes,
    memory_verdict,
)
from fashionseg.data.synthetic import generate
from fashionseg.model.module import SegmentationModule


def save_random_checkpoint(
    path: Path, data_root: Path, task: str = "clothing", overrides: Sequence[str] = ()
) -> Path:
    """``experiment=cpu_fast``'s model from random init (seed 0), saved as predict reads it."""
    cfg = compose_config(data_root, [f"task={task}", "experiment=cpu_fast", *overrides])
    torch.manual_seed(0)
    module = instantiate(cfg.model, _recursive_=False)
    hparams = {k: v for k, v in module.hparams.items()}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams}, path)
    return path


def predict_paths() -> dict[str, Callable[..., Any]]:
    """The two predict implementations compared, as ``fn(module, photos, out_dir, ...)``:
    ``old`` the single-photo loop, ``new`` the Lightning path (``Trainer.predict`` with
    a prediction writer, decoding workers and batches)."""
    from fashionseg.predict import predict_lightning, predict_loop

    return {"old": predict_loop, "new": predict_lightning}


def _effective_options(fn: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The batch size and workers ``fn`` runs with: ``options`` over its defaults."""
    import inspect

    defaults = {
        k: p.default
        for k, p in inspect.signature(fn).parameters.items()
        if k in ("batch_size", "num_workers") and p.default is not inspect.Parameter.empty
    }
    return {**defaults, **{k: v for k, v in options.items() if k in defaults}}


def _predict_call(
    fn: Callable[..., Any], module: Any, photos: Sequence[Path], out_dir: Path, **options: Any
) -> None:
    """Run one predict implementation quietly; options it does not take are left out."""
    import inspect

    accepted = inspect.signature(fn).parameters
    given = {"progress": False, **options}
    fn(module, list(photos), out_dir, **{k: v for k, v in given.items() if k in accepted})


def predict_stages(module: SegmentationModule, photos: Sequence[Path], out_dir: Path) -> dict:
    """Mean seconds per photo of each stage of the single-photo loop (decode, model,
    fusion, label PNG, overlay JPEG): where the time of predict goes."""
    from PIL import Image

    from fashionseg.data.io import read_image
    from fashionseg.files import save_label_png
    from fashionseg.model.visualize import overlay

    out_dir.mkdir(parents=True, exist_ok=True)
    stages: dict[str, list[float]] = {
        k: [] for k in ("decode", "model", "fusion", "label_png", "overlay_jpeg")
    }
    module.eval()
    with torch.no_grad():
        for photo in photos:
            t0 = time.perf_counter()
            image = read_image(photo)
            t1 = time.perf_counter()
            output = module.net([image.float() / 255])[0]
            t2 = time.perf_counter()
            label_map = module.fuse_outputs(output)
            t3 = time.perf_counter()
            save_label_png(out_dir / f"{photo.stem}.png", label_map.numpy(), module.task)
            t4 = time.perf_counter()
            shown = overlay(image, label_map, module.task.colors)
            Image.fromarray(shown.permute(1, 2, 0).numpy()).save(
                out_dir / f"{photo.stem}_overlay.jpg", format="JPEG", quality=90
            )
            t5 = time.perf_counter()
            for key, seconds in zip(
                stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True
            ):
                stages[key].append(seconds)
    return {k: statistics.fmean(v) for k, v in stages.items()}


@torch.no_grad()
def model_scaling(module: SegmentationModule, photos: Sequence[Path], rounds: int = 2) -> dict:
    """Seconds per photo of the model alone: one photo at a time on 1 thread and on all
    of torch's threads, and all ``photos`` in one batch on all threads; ratios per round.

    Tells which lever can speed predict up: a thread speed-up well below the thread count
    means processes each on one thread (``hardware=ddp_cpu``) beat one process on all;
    ``one at a time / batched`` is what batching gives.
    """
    from fashionseg.data.io import read_image

    module.eval()
    images = [read_image(p).float() / 255 for p in photos]
    threads = torch.get_num_threads()

    def one_at_a_time(n: int) -> Callable[[], float]:
        def run() -> float:
            torch.set_num_threads(n)
            try:
                start = time.perf_counter()
                for image in images:
                    module.net([image])
                return (time.perf_counter() - start) / len(images)
            finally:
                torch.set_num_threads(threads)

        return run

    def batched() -> float:
        start = time.perf_counter()
        module.net(images)
        return (time.perf_counter() - start) / len(images)

    sides = {"one_thread": one_at_a_time(1), "all_threads": one_at_a_time(threads)}
    result = interleaved({**sides, "batched": batched}, rounds, warmup=1)
    return {
        "threads": threads,
        "photos": len(images),
        "s_per_photo": {k: result.spread(k).as_dict() for k in result.values},
        "thread_speedup": result.ratio("one_thread", "all_threads").as_dict(),
        "batch_speedup": result.ratio("all_threads", "batched").as_dict(),
    }


def _same_files(a: Path, b: Path, pattern: str) -> bool:
    names = sorted(p.name for p in a.glob(pattern))
    return (
        bool(names)
        and names == sorted(p.name for p in b.glob(pattern))
        and all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
    )


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's start-up lines ("GPU available: ...", tips) and warnings left out."""
    import logging
    import warnings

    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def predict_benchmark(
    photos: int = 24,
    size: tuple[int, int] = SIZES["full"],
    reps: int = 3,
    memory_photos: int = 2000,
    memory_size: tuple[int, int] = (64, 48),
    memory_after: int = 200,
    task: str = "clothing",
    options: Mapping[str, Any] | None = None,
    paths: Mapping[str, Callable[..., Any]] | None = None,
) -> dict[str, Any]:
    """Predict photos/s end to end, old single-photo loop vs the Lightning path, and the
    memory-flat check of the Lightning path.

    Both paths get the same module (``experiment=cpu_fast``, random init, loaded from a
    temporary checkpoint as predict loads it) and the same ``photos`` synthetic photos of
    ``size``; each run writes into a new folder. ``options`` go to the paths that take
    them (e.g. ``batch_size``, ``num_workers``). The memory check predicts
    ``memory_photos`` photos of ``memory_size`` with the same architecture, its resize
    set to the photo size and few detections (:data:`MEMORY_CHECK_NET`: the memory of
    the pipeline is measured, not the model's speed), and compares the memory after
    ``memory_after`` photos with that near the end.
    """
    with _quiet_lightning():
        return _predict_benchmark(
            photos, size, reps, memory_photos, memory_size, memory_after, task, options, paths
        )


def _predict_benchmark(
    photos: int,
    size: tuple[int, int],
    reps: int,
    memory_photos: int,
    memory_size: tuple[int, int],
    memory_after: int,
    task: str,
    options: Mapping[str, Any] | None,
    paths: Mapping[str, Callable[..., Any]] | None,
) -> dict[str, Any]:
    from fashionseg.model.checkpoint import load_module

    paths = dict(paths or predict_paths())
    options = dict(options or {})
    result: dict[str, Any] = {
        "photos": photos,
        "size": size_text(size),
        "reps": reps,
        "options": _effective_options(paths["new"], options),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "load_average_start": _load_average(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        root = generate(tmp_path / "data", num_images=photos, seed=0, height=size[0], width=size[1])
        files = sorted((root / "images").iterdir())
        ckpt = save_random_checkpoint(tmp_path / "cpu_fast.ckpt", root, task)
        module = load_module(ckpt)
        result["model"] = {
            "arch": module.hparams.net["arch"],
            "resize": f"{module.hparams.net['min_size']}/{module.hparams.net['max_size']}",
        }
        outs = iter(range(10**6))

        def side(name: str) -> Callable[[], float]:
            def call() -> float:
                out = tmp_path / f"out-{name}-{next(outs)}"
                start = time.perf_counter()
                _predict_call(paths[name], module, files, out, **options)
                return time.perf_counter() - start

            return call

        for name in ("old", "new"):  # warm-up: first model calls, worker start-up code
            _predict_call(paths[name], module, files[:2], tmp_path / f"warm-{name}", **options)
        runs = interleaved({"old": side("old"), "new": side("new")}, reps)
        speedup = runs.ratio("old", "new")  # old seconds / new seconds = new photos/s / old
        result["old_photos_per_s"] = runs.spread("old").inverted(photos).as_dict()
        result["new_photos_per_s"] = runs.spread("new").inverted(photos).as_dict()
        result["speedup"] = {
            **runs.comparison("old", "new"),
            "ratio": speedup.median,
            "meaning": "old seconds / new seconds per round = new photos/s / old photos/s",
        }
        last = runs.order.count("old") - 1
        old_dirs = sorted(tmp_path.glob("out-old-*"), key=lambda p: int(p.name.split("-")[-1]))
        new_dirs = sorted(tmp_path.glob("out-new-*"), key=lambda p: int(p.name.split("-")[-1]))
        result["same_label_maps"] = _same_files(old_dirs[last], new_dirs[last], "*.png")
        result["stages_s_per_photo"] = predict_stages(module, files[:4], tmp_path / "stages")
        result["model_scaling"] = model_scaling(module, files[:4])
        result["load_average_end"] = _load_average()

        if memory_photos:
            result["memory"] = _memory_check(
                tmp_path, paths["new"], memory_photos, memory_size, memory_after, task, options
            )
    return result


# The memory check's model: cpu_fast's architecture with few proposals and detections. An
# untrained model keeps every allowed detection, and the mask head over 30 of them costs
# ~0.5 s a photo whatever its size (~17 min for 2,000 photos on 2 cores); the memory of
# the pipeline is measured here, not the model's speed.
MEMORY_CHECK_NET = ("model.net.rpn_post_nms_top_n_test=20", "model.net.box_detections_per_img=3")


def _memory_check(
    tmp_path: Path,
    fn: Callable[..., Any],
    count: int,
    size: tuple[int, int],
    after: int,
    task: str,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """Predict ``count`` photos of ``size`` with ``fn`` while sampling memory; compare the
    memory after ``after`` photos with that near the end (at 95 % of the photos, while
    the loader's workers still run: after the run they are gone)."""
    from fashionseg.model.checkpoint import load_module

    root = generate(tmp_path / "small", num_images=count, seed=2, height=size[0], width=size[1])
    ckpt = save_random_checkpoint(
        tmp_path / "small.ckpt",
        root,
        task,
        [
            f"model.net.min_size={min(size)}",
            f"model.net.max_size={max(size)}",
            *MEMORY_CHECK_NET,
        ],
    )
    module = load_module(ckpt)
    out = tmp_path / "out-memory"
    after = min(after, max(1, count // 10))
    near_end = max(after, int(0.95 * count))
    start = time.perf_counter()
    with MemorySampler(out, interval=0.25 if count > 200 else 0.05) as sampler:
        _predict_call(fn, module, sorted((root / "images").iterdir()), out, **options)
    seconds = time.perf_counter() - start
    first, last = sampler.at(after), sampler.at(near_end)
    during = last is not sampler.samples[-1]  # else the run ended between two samples
    return {
        "photos": count,
        "size": size_text(size),
        "resize": f"{min(size)}/{max(size)}",
        "model_overrides": list(MEMORY_CHECK_NET),
        "after": after,
        "near_end": near_end,
        "near_end_during_run": during,
        "seconds": seconds,
        "photos_per_s": count / seconds,
        "scope": sampler.scope,
        "samples": len(sampler.samples),
        "process_rss_after_first_mib": first[2] / MIB,
        "process_rss_near_end_mib": last[2] / MIB,
        "peak_sampled_mib": max(s[3] for s in sampler.samples) / MIB,
        "peak_rss_mib": {k: v / MIB for k, v in _peak_rss_bytes().items()},
        **memory_verdict(first[3], last[3]),
    }


def format_predict_report(r: dict[str, Any]) -> str:
    """The predict figures as Markdown."""
    old, new, s = r["old_photos_per_s"], r["new_photos_per_s"], r["speedup"]
    spread = Spread(s["ratio"], s["ratio_min"], s["ratio_max"], s["rounds"])
    lines = [
        f"Predict end to end: {r['photos']} photos of {r['size']} (H x W), model "
        f"{r['model']['arch']} (resize {r['model']['resize']}, experiment=cpu_fast, random "
        f"init), {r['reps']} interleaved rounds, {r['threads']} threads on {r['cpus']} CPUs, "
        f"options {r['options'] or 'default'}; load average "
        f"{_load_text(r['load_average_start'])} at start, "
        f"{_load_text(r['load_average_end'])} at end",
        "",
        "| path | photos/s: median (min-max) |",
        "|---|---:|",
        f"| old: single-photo loop | {old['median']:.3f} ({old['min']:.3f}-{old['max']:.3f}) |",
        f"| new: Trainer.predict + writer | {new['median']:.3f} "
        f"({new['min']:.3f}-{new['max']:.3f}) |",
        f"| new / old | {spread.text()} |",
        "",
        f"label maps of the two paths byte-identical: {'yes' if r['same_label_maps'] else 'NO'}",
        "single-photo loop, seconds per photo by stage: "
        + ", ".join(f"{k} {v:.4f}" for k, v in r["stages_s_per_photo"].items()),
    ]
    scaling = r.get("model_scaling")
    if scaling:
        per = scaling["s_per_photo"]
        threads, batch = scaling["thread_speedup"], scaling["batch_speedup"]
        lines.append(
            f"model alone, s/photo: {per['one_thread']['median']:.3f} on 1 thread, "
            f"{per['all_threads']['median']:.3f} on {scaling['threads']} threads, "
            f"{per['batched']['median']:.3f} in a batch of {scaling['photos']}; thread "
            f"speed-up {Spread(**threads).text()}, batch speed-up {Spread(**batch).text()}"
        )
    m = r.get("memory")
    if m:
        peak = m["peak_rss_mib"]
        lines += [
            "",
            f"Memory over {m['photos']} photos of {m['size']} (new path, resize {m['resize']}, "
            f"{' '.join(m['model_overrides'])}, "
            f"{m['photos_per_s']:.1f} photos/s, {m['samples']} samples of the "
            f"{m['scope']}): {m['after_first_mib']:.0f} MiB after the first {m['after']} photos, "
            f"{m['near_end_mib']:.0f} MiB after {m['near_end']}"
            f"{'' if m['near_end_during_run'] else ' (after the run)'} (growth "
            f"{m['growth_mib']:+.1f} MiB, allowed {m['allowed_growth_mib']:.0f}): "
            f"{'flat' if m['flat'] else 'NOT FLAT'}; the process alone "
            f"{m['process_rss_after_first_mib']:.0f} -> {m['process_rss_near_end_mib']:.0f} "
            f"MiB RSS. Peak: {m['peak_sampled_mib']:.0f} MiB sampled; ru_maxrss "
            f"{peak['self']:.0f} MiB (process), {peak['children']:.0f} MiB (largest "
            "finished child)",
        ]
    return "\n".join(lines)
