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

from fashionseg.bench.gpu import (
    coco_weights_cached,
    cuda_unavailable,
    format_gpu_report,
    gpu_benchmark,
)
from fashionseg.bench.harness import SIZES
from fashionseg.data.synthetic import generate

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BUDGET_S = 540.0
BENCH_SHARE = 0.4  # of the budget, for the benchmark's batch sizes to start in
AIM_AMP_TRAIN_IMG_PER_S = 60.0


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
        "+callbacks.gpu_check_throughput._target_=fashionseg.bench.gpu_check.TrainThroughput",
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
    parser = argparse.ArgumentParser(
        prog="python -m fashionseg.gpu_check", description=__doc__.split("\n\n")[0]
    )
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
        from fashionseg.bench import gpu_bench

        gpu_bench.main(["--out", str(args.out)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
