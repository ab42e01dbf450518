"""One command for a machine with a CUDA GPU: the GPU benchmark and a short full-size run.

    python -m fashionseg.gpu_check [--out gpu_check] [--steps 100] [--budget-s 540]
    make gpu-check

On a machine with a CUDA GPU it

1. runs the GPU benchmark (:func:`gpu_benchmark`, also ``python -m fashionseg.bench
   --device cuda``): training and inference images/s of the default R50-FPN at 600x400
   in fp32, fp16 (autocast + GradScaler) and bf16 (autocast) at batch 2, 4 and 8, and the
   peak GPU memory of each, cuDNN benchmark on;
2. trains ``experiment=seed_report`` (R50-FPN at 600x400, batch 10, ``hardware=gpu``:
   Lightning's 16-mixed precision) for ``--steps`` steps and tests it, on
   ``../shared/data/ccp-fashion600`` when it is there and otherwise on 200 synthetic
   photos generated at 600x400; COCO weights when they are in the torch hub cache, random
   init otherwise (decided by looking at the cache: no download is tried);
3. writes ``gpu_check.json`` and ``gpu_check.md`` (card, date, versions, figures) into
   ``--out``; when either name is taken there, ``gpu_check-<UTC time>.json``/``.md``
   instead: a file already there is never overwritten.

A time guard keeps the whole check inside ``--budget-s`` (540 s: it fits the 10 minutes
of one H100): batch sizes of the benchmark not started by its share of the budget are
skipped, the training run gets Lightning's ``max_time`` and is stopped at the budget's
end, and the report says what was cut. On a machine without a CUDA GPU it prints one
line saying so and exits 0.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate

from fashionseg.bench import (
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

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BUDGET_S = 540.0
BENCH_SHARE = 0.4  # of the budget, for the benchmark's batch sizes to start in
MIB = 2**20
AIM_AMP_TRAIN_IMG_PER_S = 60.0

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


# ------------------------------------------------------------------ the short training run
class TrainThroughput(L.Callback):
    """Training images/s of a Lightning run, written as JSON to ``path`` when it ends.

    Counts the wall time of training steps (the GPU synchronised at each step's end) and
    of the data waits between steps of an epoch, after ``skip`` warm-up steps; the time
    spent validating between epochs is left out.
    """

    def __init__(self, path: str, skip: int = 5) -> None:
        self.path = Path(path)
        self.skip = skip
        self.steps = 0
        self.images = 0
        self.batch_size = 0
        self.seconds = 0.0
        self._start = 0.0
        self._last_end: float | None = None

    def _sync(self, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_epoch_start(self, *args: Any) -> None:
        self._last_end = None

    def on_validation_start(self, *args: Any) -> None:
        self._last_end = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        now = time.perf_counter()
        if self._last_end is not None:  # the wait for this batch, after a counted step
            self.seconds += now - self._last_end
        self._start = now

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        self._sync(pl_module)
        now = time.perf_counter()
        self.steps += 1
        self.batch_size = self.batch_size or len(batch[0])
        if self.steps > self.skip:
            self.seconds += now - self._start
            self.images += len(batch[0])
            self._last_end = now

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(
            json.dumps(
                {
                    "steps": self.steps,
                    "batch_size": self.batch_size,
                    "warmup_steps": min(self.skip, self.steps),
                    "images": self.images,
                    "seconds": self.seconds,
                    "img_per_s": self.images / self.seconds if self.seconds else None,
                    "precision": str(trainer.precision),
                },
                indent=2,
            )
        )


def shared_dataset() -> Path | None:
    """``ccp-fashion600`` in ``shared/data`` inside the checkout or beside it, if there."""
    for base in (REPO / "shared", REPO.parent / "shared"):
        root = base / "data" / "ccp-fashion600"
        if (root / "images").is_dir():
            return root
    return None


def _max_time(seconds: float) -> str:
    """Lightning's ``max_time`` as ``DD:HH:MM:SS``."""
    total = max(1, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days:02d}:{hours:02d}:{minutes:02d}:{secs:02d}"


def training_run(
    data_root: Path,
    run_dir: Path,
    steps: int,
    weights: str,
    timeout_s: float,
    hardware: str = "gpu",
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """Run the short training job (``python -m fashionseg.train experiment=seed_report
    ...``) in a child process, its output in ``run_dir/train.log``. Lightning stops
    training at ``max_time`` (two minutes before ``timeout_s``, for the test), and the
    job is killed at ``timeout_s``. Returns what it did."""
    run_dir.mkdir(parents=True, exist_ok=True)

    def quoted(path: Path) -> str:
        return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'

    command = [
        sys.executable,
        "-m",
        "fashionseg.train",
        "experiment=seed_report",
        "task=clothing",
        f"data.root={quoted(data_root)}",
        f"model.net.weights={weights}",
        f"hardware={hardware}",
        f"+trainer.max_steps={steps}",
        f'+trainer.max_time="{_max_time(max(30.0, timeout_s - 120.0))}"',
        f"hydra.run.dir={quoted(run_dir)}",
        "+callbacks.gpu_check_throughput._target_=fashionseg.gpu_check.TrainThroughput",
        f"+callbacks.gpu_check_throughput.path={quoted(run_dir / 'throughput.json')}",
        *extra,
    ]
    log_path = run_dir / "train.log"
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            returncode: int | None = proc.wait(timeout=max(1.0, timeout_s))
            status = "completed" if returncode == 0 else f"failed (exit {returncode})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the job and its loader workers
            proc.wait()
            returncode, status = None, f"stopped by the time guard after {timeout_s:.0f} s"
    result: dict[str, Any] = {
        "command": "python " + shlex.join(command[1:]),
        "steps_asked": steps,
        "hardware": hardware,
        "weights": weights,
        "data": str(data_root),
        "status": status,
        "returncode": returncode,
        "seconds": time.perf_counter() - start,
        "run_dir": str(run_dir),
        "log": str(log_path),
    }
    throughput = run_dir / "throughput.json"
    if throughput.is_file():
        result["train"] = json.loads(throughput.read_text())
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        found = json.loads(metrics.read_text())
        result["test_miou"] = found.get("miou")
        result["best_val_miou"] = found.get("best_val_miou")
        result["threshold"] = found.get("threshold")
    if returncode != 0:
        lines = log_path.read_text(errors="replace").splitlines()
        result["log_tail"] = lines[-20:]
    return result


# ----------------------------------------------------------------------------- reports
def output_paths(out_dir: Path, now: dt.datetime) -> tuple[Path, Path]:
    """``gpu_check.json``/``.md`` in ``out_dir``, or ``gpu_check-<UTC time>[-N]`` ones when
    either name is taken: never a file that exists."""
    stems = ["gpu_check", f"gpu_check-{now:%Y%m%dT%H%M%SZ}"]
    stems += [f"{stems[1]}-{n}" for n in range(2, 100)]
    for stem in stems:
        json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
        if not json_path.exists() and not md_path.exists():
            return json_path, md_path
    raise FileExistsError(f"{out_dir}: no free gpu_check-*.json name")


def _write_new(path: Path, text: str) -> None:
    """Write a file that must not exist yet (mode ``x``: never over someone's file)."""
    with open(path, "x") as f:
        f.write(text)


def environment() -> dict[str, Any]:
    """Card, date and versions the figures belong to."""
    import torchvision

    cuda = torch.cuda.is_available()
    props = torch.cuda.get_device_properties(0) if cuda else None
    return {
        "card": torch.cuda.get_device_name(0) if cuda else None,
        "card_memory_gib": props.total_memory / 2**30 if props else None,
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": L.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def _best_amp_train(bench: Mapping[str, Any]) -> dict[str, Any] | None:
    rows = [r for r in bench.get("train", []) if r.get("precision") != "fp32" and "img_per_s" in r]
    return max(rows, key=lambda r: r["img_per_s"]["median"], default=None)


def format_check(report: Mapping[str, Any]) -> str:
    """``gpu_check.md``."""
    env, bench, run = report["environment"], report.get("benchmark"), report.get("training")
    lines = [
        f"# GPU check: {env['card'] or 'no GPU'}, {env['date_utc']}",
        "",
        f"torch {env['torch']} (CUDA {env['cuda']}, cuDNN {env['cudnn']}), torchvision "
        f"{env['torchvision']}, lightning {env['lightning']}, Python {env['python']}, "
        f"{env['cpus']} CPUs. Command: `{report['command']}` ({report['seconds']:.0f} s of a "
        f"{report['budget_s']:.0f} s budget).",
        "",
        "## Benchmark (`python -m fashionseg.bench --device cuda`)",
        "",
    ]
    if bench is None:
        lines.append(f"not run: {report.get('benchmark_error', 'time guard')}")
    else:
        lines.append(format_gpu_report(bench))
        best = _best_amp_train(bench)
        if best is not None:
            value = best["img_per_s"]["median"]
            met = "met" if value >= AIM_AMP_TRAIN_IMG_PER_S else "not met"
            lines += [
                "",
                f"Aim >= {AIM_AMP_TRAIN_IMG_PER_S:.0f} img/s AMP training at {bench['size']}: "
                f"{met} (best {value:.1f} img/s, {best['precision']} at batch {best['batch']}).",
            ]
    lines += ["", "## Short run of `experiment=seed_report`", ""]
    if run is None:
        lines.append(f"not run: {report.get('training_error', 'time guard')}")
    else:
        train = run.get("train") or {}
        rate = train.get("img_per_s")

        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{100 * x:.1f} %"

        lines += [
            "| what | value |",
            "|---|---|",
            f"| data | {report['data']} |",
            f"| weights | {report['weights_note']} |",
            f"| status | {run['status']} |",
            f"| steps | {train.get('steps', 'n/a')} of {run['steps_asked']} "
            f"(batch {train.get('batch_size', 'n/a')}) |",
            f"| train img/s (Lightning {train.get('precision', 'n/a')}, "
            f"hardware={run['hardware']}, data loading included, after "
            f"{train.get('warmup_steps', 'n/a')} warm-up steps) | "
            f"{'n/a' if rate is None else f'{rate:.1f}'} |",
            f"| best validation mIoU | {pct(run.get('best_val_miou'))} |",
            f"| test mIoU (a check that the pipeline runs, not a result: few steps) | "
            f"{pct(run.get('test_miou'))} |",
            f"| wall time (start, fit, test) | {run['seconds']:.0f} s |",
            "",
            f"Command: `{run['command']}`",
        ]
        if run.get("log_tail"):
            lines += ["", "Last lines of its log:", "", "```", *run["log_tail"], "```"]
    return "\n".join(lines) + "\n"


def run_check(
    out_dir: Path,
    steps: int = 100,
    budget_s: float = DEFAULT_BUDGET_S,
    data: Path | None = None,
    synthetic_photos: int = 200,
    command: str = "python -m fashionseg.gpu_check",
    bench: Callable[..., dict[str, Any]] | None = None,
    hardware: str = "gpu",
    extra: Sequence[str] = (),
) -> tuple[Path, Path]:
    """The benchmark and the short run within ``budget_s``; returns the report's paths.

    ``bench`` replaces :func:`gpu_benchmark` (tests); ``hardware`` and ``extra`` go to the
    training run (tests run it with ``hardware=cpu`` and a tiny recipe).
    """
    start = time.monotonic()
    deadline = start + budget_s
    now = dt.datetime.now(dt.timezone.utc)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output_paths(out_dir, now)
    report: dict[str, Any] = {
        "command": command,
        "budget_s": budget_s,
        "environment": environment(),
    }
    cached = coco_weights_cached()
    weights = "coco" if cached else "none"
    report["weights_note"] = (
        "coco (COCO Mask R-CNN R50-FPN from the torch hub cache, heads replaced)"
        if cached
        else f"none: random init (COCO weights not in the torch hub cache, {torch.hub.get_dir()})"
    )
    try:
        report["benchmark"] = (bench or gpu_benchmark)(
            "cuda" if hardware == "gpu" else "cpu", deadline=start + BENCH_SHARE * budget_s
        )
    except Exception as err:  # the report still comes, naming what broke
        report["benchmark"] = None
        report["benchmark_error"] = f"{type(err).__name__}: {err}"
    run_dir = out_dir / "runs" / json_path.stem
    with tempfile.TemporaryDirectory() as tmp:
        root = data or shared_dataset()
        if root is None:
            height, width = SIZES["full"]
            root = generate(
                Path(tmp) / "synthetic", num_images=synthetic_photos, height=height, width=width
            )
            report["data"] = f"synthetic: {synthetic_photos} photos at {height}x{width} (H x W)"
        else:
            report["data"] = str(root)
        left = deadline - time.monotonic() - 10.0  # for the reports
        if left < 60:
            report["training"] = None
            report["training_error"] = f"time guard: {left:.0f} s left of the budget"
        else:
            report["training"] = training_run(root, run_dir, steps, weights, left, hardware, extra)
    report["seconds"] = time.monotonic() - start
    _write_new(json_path, json.dumps(report, indent=2) + "\n")
    _write_new(md_path, format_check(report))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check"), help="output folder")
    parser.add_argument("--steps", type=int, default=100, help="training steps of the short run")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S)
    parser.add_argument(
        "--data", type=Path, help="dataset root (default: ccp-fashion600 or synthetic)"
    )
    parser.add_argument(
        "--skip-gpu-bench",
        action="store_true",
        help="leave out fashionseg.gpu_bench's (a) ours vs bare, (b) cuDNN, (c) inference",
    )
    args = parser.parse_args(argv)
    why = cuda_unavailable()
    if why:
        print(f"gpu-check: {why}: nothing to check, exit 0")
        return 0
    command = shlex.join(
        ["python", "-m", "fashionseg.gpu_check", *(argv if argv is not None else sys.argv[1:])]
    )
    json_path, md_path = run_check(args.out, args.steps, args.budget_s, args.data, command=command)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    if not args.skip_gpu_bench:  # issue 29's side-by-side figures (fashionseg.gpu_bench)
        from fashionseg import gpu_bench

        gpu_bench.main(["--out", str(args.out)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
