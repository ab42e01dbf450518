"""The GPU benchmark (``python -m fashionseg.bench --device cuda``).

It measures, on the GPU, training and inference images/s of the default R50-FPN at
600x400 (``experiment=seed_report``'s model and sizes) in fp32 and with automatic mixed
precision (fp16 with a GradScaler, bf16) at batch 2, 4 and 8, and the peak GPU memory of
each; on a machine without a CUDA GPU it is a one-line error, exit 2.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from fashionseg.bench.harness import (
    MIB,
    SIZES,
    Batch,
    Spread,
    compose_config,
    interleaved,
    size_text,
    train_batches,
)
from fashionseg.data.synthetic import generate
from fashionseg.model.module import TARGET_KEYS, SegmentationModule

# ------------------------------------------------------------------------- GPU benchmark
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
AMP_NOTE = (
    "bare torchvision loop; fp16: torch.autocast(float16) + torch.amp.GradScaler, bf16: "
    "torch.autocast(bfloat16) without a scaler (what Lightning's 16-mixed and bf16-mixed "
    "do); SGD as experiment=seed_report; batches already on the device"
)


def coco_weights_cached(arch: str = "maskrcnn_resnet50_fpn") -> bool:
    """Whether the COCO weights of ``arch`` are in the torch hub cache (no download tried)."""
    from fashionseg.model.builder import _RESNET

    entry = _RESNET.get(arch)
    if entry is None:
        return False
    name = entry[1].url.rsplit("/", 1)[-1]
    return (Path(torch.hub.get_dir()) / "checkpoints" / name).is_file()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _to_device(batch: Batch, device: torch.device) -> Batch:
    images, targets = batch
    return (
        [img.to(device) for img in images],
        [{k: t[k].to(device) for k in TARGET_KEYS} for t in targets],
    )


class _PrecisionStep:
    """One step per call on the next of ``batches``, in fp32 or automatic mixed precision."""

    def __init__(
        self,
        module: SegmentationModule,
        batches: Sequence[Batch],
        precision: str,
        device: torch.device,
    ) -> None:
        self.module = module
        self.batches = batches
        self.device = device
        self.dtype = PRECISIONS[precision]
        self.count = 0
        self.prepare()

    def prepare(self) -> None:
        """What a subclass sets up once, before its first step."""

    def next_batch(self) -> Batch:
        batch = self.batches[self.count % len(self.batches)]
        self.count += 1
        return batch

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)


class PrecisionTrainer(_PrecisionStep):
    """One training step per call (the next batch) in fp32 or automatic mixed precision."""

    def prepare(self) -> None:
        self.net = self.module.net
        params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = instantiate(self.module.hparams.optimizer, params=params)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    def __call__(self) -> None:
        images, targets = self.next_batch()
        self.net.train()
        with self.autocast():
            losses = self.net(images, targets)
            loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


class PrecisionInference(_PrecisionStep):
    """Forward + fusion of the next batch per call, in fp32 or under autocast."""

    @torch.no_grad()
    def __call__(self) -> None:
        images, _ = self.next_batch()
        self.module.eval()
        with self.autocast():
            self.module.predict_maps(images)


def _per_item_seconds(fn: Callable[[], None], steps: int, device: torch.device) -> Callable:
    """A callable that runs ``fn`` ``steps`` times between two device synchronisations
    and returns the seconds per call."""

    def run() -> float:
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        return (time.perf_counter() - start) / steps

    return run


def _peak_memory(fn: Callable[[], None], device: torch.device) -> float | None:
    """Peak memory allocated on the GPU by one call of ``fn`` in MiB (None on a CPU)."""
    if device.type != "cuda":
        fn()
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) / MIB


def _measure_group(
    kind: str,
    steppers: Mapping[str, Callable[[], None]],
    batch: int,
    module: SegmentationModule,
    state: Mapping[str, torch.Tensor],
    device: torch.device,
    warmup: int,
    rounds: int,
    steps: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Warm up each precision, take its peak memory (alone, counters reset), then time
    the precisions interleaved; rows per precision and ratios against fp32."""
    rows: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for precision, step in steppers.items():
        try:
            for _ in range(warmup):  # cuDNN autotuning, allocator growth, first kernels
                step()
            module.load_state_dict(state)
            rows[precision] = {
                "kind": kind,
                "batch": batch,
                "precision": precision,
                "peak_mem_mib": _peak_memory(step, device),
            }
        except torch.cuda.OutOfMemoryError:
            failed[precision] = "out of memory"
            torch.cuda.empty_cache()
        except Exception as err:  # one precision that fails must not cost the others' rows
            failed[precision] = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        module.load_state_dict(state)

    def reset_then(step: Callable[[], None]) -> Callable[[], float]:
        per_step = _per_item_seconds(step, steps, device)

        def run() -> float:
            module.load_state_dict(state)  # each round from the same weights
            return per_step()

        return run

    usable = {p: reset_then(s) for p, s in steppers.items() if p in rows}
    ratios: list[dict[str, Any]] = []
    if usable:
        timing = interleaved(usable, rounds)
        for precision, row in rows.items():
            row["step_s"] = timing.spread(precision).as_dict()
            row["img_per_s"] = timing.spread(precision).inverted(batch).as_dict()
        base = "fp32" if "fp32" in usable else None
        for precision in usable:
            if base is not None and precision != base:
                r = timing.ratio(base, precision)  # fp32 seconds / amp seconds = speedup
                ratios.append(
                    {"kind": kind, "batch": batch, "ratio": f"{precision}/{base}", **r.as_dict()}
                )
    result = list(rows.values())
    result += [
        {"kind": kind, "batch": batch, "precision": p, "error": why} for p, why in failed.items()
    ]
    return result, ratios


def gpu_benchmark(
    device: str | torch.device = "cuda",
    size: tuple[int, int] = SIZES["full"],
    batch_sizes: Sequence[int] = (2, 4, 8),
    precisions: Sequence[str] = ("fp32", "fp16", "bf16"),
    warmup: int = 3,
    rounds: int = 3,
    steps: int = 3,
    weights: str | None = None,
    overrides: Sequence[str] = (),
    deadline: float | None = None,
) -> dict[str, Any]:
    """Training and inference images/s of ``experiment=seed_report``'s R50-FPN per precision
    and batch size, with peak memory and the AMP/fp32 ratios (interleaved rounds).

    ``weights``: ``coco`` or ``none``; by default ``coco`` when its file is in the torch
    hub cache, else ``none`` (random init; BatchNorm then trains and all backbone layers
    learn, which costs more than the COCO layout). ``deadline`` (``time.monotonic()``) is
    a time guard: batch sizes not started by then are listed under ``skipped``.
    ``device`` may be ``cpu`` (tests of this code; no memory figures there).
    """
    device = torch.device(device)
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise ValueError(f"unknown precisions {unknown}; known: {list(PRECISIONS)}")
    if weights is None:
        weights = "coco" if coco_weights_cached() else "none"
    previous_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "size": size_text(size),
        "weights": weights,
        "precisions": list(precisions),
        "batch_sizes": list(batch_sizes),
        "warmup": warmup,
        "rounds": rounds,
        "steps_per_round": steps,
        "cudnn_benchmark": True,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "amp": AMP_NOTE,
        "torch": torch.__version__,
        "train": [],
        "infer": [],
        "ratios": [],
        "skipped": [],
    }
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = generate(
                Path(tmp) / "data",
                num_images=max(8, 2 * max(batch_sizes)),  # train split >= the batch
                seed=0,
                height=size[0],
                width=size[1],
            )
            base = [
                "task=clothing",
                "experiment=seed_report",
                f"model.net.weights={weights}",
                "data.split=[0.5,0.25,0.25]",
                *overrides,
            ]
            cfg = compose_config(root, base)
            torch.manual_seed(0)
            module: SegmentationModule = instantiate(cfg.model, _recursive_=False).to(device)
            result["model"] = {
                "arch": cfg.model.net.arch,
                "resize": f"{cfg.model.net.min_size}/{cfg.model.net.max_size}",
            }
            state = copy.deepcopy(module.state_dict())
            for batch in batch_sizes:
                if deadline is not None and time.monotonic() > deadline:
                    result["skipped"].append({"batch": batch, "why": "time guard"})
                    continue
                batches = [
                    _to_device(b, device)
                    for b in train_batches(
                        compose_config(root, [*base, f"data.batch_size={batch}"]), 2
                    )
                ]
                for kind, make in (("train", PrecisionTrainer), ("infer", PrecisionInference)):
                    steppers = {p: make(module, batches, p, device) for p in precisions}
                    rows, ratios = _measure_group(
                        kind, steppers, batch, module, state, device, warmup, rounds, steps
                    )
                    result[kind] += rows
                    result["ratios"] += ratios
                del batches
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    finally:
        torch.backends.cudnn.benchmark = previous_benchmark
    result["seconds"] = time.perf_counter() - start
    return result


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def format_gpu_report(r: dict[str, Any]) -> str:
    """The GPU figures as Markdown."""

    def mem(row: Mapping[str, Any]) -> str:
        return "n/a" if row.get("peak_mem_mib") is None else f"{row['peak_mem_mib']:,.0f}"

    lines = [
        f"{r['device']}: {r['model']['arch']} at {r['size']} (H x W, resize "
        f"{r['model']['resize']}), weights {r['weights']}, cuDNN benchmark on, "
        f"{r['rounds']} interleaved rounds of {_count(r['steps_per_round'], 'step')} after "
        f"{_count(r['warmup'], 'warm-up step')}; {r['amp']}",
        "",
        "| what | batch | precision | img/s: median (min-max) | peak memory MiB |",
        "|---|---:|---|---:|---:|",
    ]
    for kind in ("train", "infer"):
        for row in r[kind]:
            if "error" in row:
                lines.append(f"| {kind} | {row['batch']} | {row['precision']} | {row['error']} | |")
                continue
            s = row["img_per_s"]
            lines.append(
                f"| {kind} | {row['batch']} | {row['precision']} | {s['median']:.1f} "
                f"({s['min']:.1f}-{s['max']:.1f}) | {mem(row)} |"
            )
    if r["ratios"]:
        lines += ["", "| what | batch | speed-up | median (min-max) |", "|---|---:|---|---:|"]
        for q in r["ratios"]:
            lines.append(
                f"| {q['kind']} | {q['batch']} | {q['ratio']} | "
                f"{Spread(q['median'], q['min'], q['max'], q['n']).text()} |"
            )
    for s in r["skipped"]:
        lines.append(f"\nbatch {s['batch']} skipped ({s['why']})")
    return "\n".join(lines)


def cuda_unavailable() -> str | None:
    """Why the GPU benchmark cannot run here (None when it can)."""
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (torch.cuda.is_available() is False)"
    return None
