"""Where the GPU's time goes: issue 29's three side-by-side measurements, one call.

``python -m fashionseg.gpu_bench [--out gpu_bench.json]`` (also part of
``make gpu-check``) measures, on the default R50-FPN at 600x400 (``experiment=
seed_report``) and in interleaved rounds (each figure a median with its spread):

a. **our training step vs a bare torchvision loop** on the same model and batches:
   ``Trainer.fit`` of :class:`~fashionseg.model.module.MaskRCNNModule` (mixed precision as
   ``hardware=gpu``) against a plain loop (autocast, GradScaler for fp16, the same
   optimizer), both moving the same pinned CPU batches to the device, with
   ``nvidia-smi``'s GPU utilisation sampled every 100 ms during each side;
b. **cuDNN autotuning on vs off** (``torch.backends.cudnn.benchmark``: the
   ``hardware.cudnn_benchmark`` setting) on the bare training loop;
c. **inference, batch 1 to 32**: :meth:`MaskRCNNModule.predict_maps` (the network plus
   the batched post-processing and fusion, :mod:`fashionseg.postprocess`) against the
   network alone (:func:`fashionseg.postprocess.raw_outputs`), images already on the
   device.

Every part takes tiny sizes too (``--size 64x48 --batches 1,2``), which is how the tests
run it on a CPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate

from fashionseg.bench.harness import (
    SIZES,
    Batch,
    compose_config,
    interleaved,
    parse_size,
    train_batches,
)
from fashionseg.data.synthetic import generate
from fashionseg.model.module import TARGET_KEYS, MaskRCNNModule
from fashionseg.postprocess import raw_outputs

AMP = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
LIGHTNING_PRECISION = {"fp32": "32-true", "fp16": "16-mixed", "bf16": "bf16-mixed"}
SMI_QUERY = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class UtilisationSampler:
    """Samples ``command`` (by default ``nvidia-smi``'s GPU utilisation every 100 ms) in
    the background; :meth:`stop` returns the percentages read (empty without the tool)."""

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self.command = list(command) if command is not None else [*SMI_QUERY, "-lms", "100"]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> UtilisationSampler:
        try:
            self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True)
        except OSError:
            self.proc = None
        return self

    def __exit__(self, *exc: object) -> None:
        self.samples = self.stop()

    def stop(self) -> list[float]:
        if self.proc is None:
            return []
        if self.proc.poll() is None:
            self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        self.proc = None
        return [float(line) for line in out.split() if line.replace(".", "", 1).isdigit()]


def utilisation_summary(samples: Sequence[float]) -> dict[str, Any]:
    """Median, mean and share of samples >= 60 % of GPU utilisation percentages."""
    if not samples:
        return {"samples": 0}
    ordered = sorted(samples)
    return {
        "samples": len(samples),
        "median": ordered[len(ordered) // 2],
        "mean": sum(samples) / len(samples),
        "share_ge_60": sum(s >= 60 for s in samples) / len(samples),
    }


class BareLoop:
    """A plain torchvision training loop: each call runs ``steps`` steps on ``batches``
    (CPU, pinned on a GPU machine; moved with ``non_blocking``) and returns seconds per
    step between two device synchronisations."""

    def __init__(self, module: MaskRCNNModule, batches: Sequence[Batch], precision: str) -> None:
        self.net = module.net
        self.device = next(self.net.parameters()).device
        self.batches = batches
        self.dtype = AMP[precision]
        params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = instantiate(module.hparams.optimizer, params=params)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.count = 0

    def step(self) -> None:
        images, targets = self.batches[self.count % len(self.batches)]
        self.count += 1
        images = [i.to(self.device, non_blocking=True) for i in images]
        targets = [
            {k: t[k].to(self.device, non_blocking=True) for k in TARGET_KEYS} for t in targets
        ]
        self.net.train()
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            loss = sum(self.net(images, targets).values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def __call__(self, steps: int) -> float:
        sync(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        sync(self.device)
        return (time.perf_counter() - start) / steps


class _Clock(L.Callback):
    """Seconds per step of ``Trainer.fit`` after ``warmup`` steps (device synchronised)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.seconds = warmup, 0.0, float("nan")
        self.steps = 0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            sync(trainer.strategy.root_device)
            self.start = time.perf_counter()
            self.steps = trainer.max_steps - self.warmup

    def on_train_end(self, trainer: L.Trainer, *args: Any) -> None:
        sync(trainer.strategy.root_device)
        self.seconds = (time.perf_counter() - self.start) / max(self.steps, 1)


def lightning_seconds(
    module: MaskRCNNModule, batches: Sequence[Batch], precision: str, steps: int, warmup: int
) -> float:
    """Seconds per step of our training (``Trainer.fit``, no validation or logging
    output) over ``batches``, after ``warmup`` steps."""
    device = next(module.parameters()).device
    clock = _Clock(warmup)
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision=LIGHTNING_PRECISION[precision],
        max_steps=warmup + steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    loader = torch.utils.data.DataLoader(list(batches), batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    return clock.seconds


def train_vs_bare(
    module: MaskRCNNModule,
    batches: Sequence[Batch],
    precision: str = "bf16",
    rounds: int = 3,
    steps: int = 10,
    warmup: int = 3,
    sampler: Callable[[], UtilisationSampler] = UtilisationSampler,
) -> dict[str, Any]:
    """(a): ours vs the bare loop, interleaved, each round from the same weights."""
    state = copy.deepcopy(module.state_dict())
    batch = len(batches[0][0])
    samples: dict[str, list[float]] = {"ours": [], "bare": []}

    def side(name: str, fn: Callable[[], float]) -> Callable[[], float]:
        def run() -> float:
            module.load_state_dict(state)
            with sampler() as s:
                seconds = fn()
            samples[name] += s.samples
            return seconds

        return run

    bare = BareLoop(module, batches, precision)

    def bare_run() -> float:
        bare(warmup)
        return bare(steps)

    timing = interleaved(
        {
            "ours": side(
                "ours", lambda: lightning_seconds(module, batches, precision, steps, warmup)
            ),
            "bare": side("bare", bare_run),
        },
        rounds,
    )
    module.load_state_dict(state)
    return {
        "precision": precision,
        "batch": batch,
        **timing.comparison("ours", "bare"),
        "img_per_s": {k: timing.spread(k).inverted(batch).as_dict() for k in ("ours", "bare")},
        "gpu_utilisation": {k: utilisation_summary(v) for k, v in samples.items()},
    }


def cudnn_on_off(
    module: MaskRCNNModule,
    batches: Sequence[Batch],
    precision: str = "bf16",
    rounds: int = 3,
    steps: int = 10,
) -> dict[str, Any]:
    """(b): the bare training loop with ``torch.backends.cudnn.benchmark`` on vs off."""
    state = copy.deepcopy(module.state_dict())
    previous = torch.backends.cudnn.benchmark
    loop = BareLoop(module, batches, precision)

    def with_benchmark(on: bool) -> Callable[[], float]:
        def run() -> float:
            torch.backends.cudnn.benchmark = on
            module.load_state_dict(state)
            loop(2)  # autotuning of this round's shapes
            return loop(steps)

        return run

    try:
        timing = interleaved({"on": with_benchmark(True), "off": with_benchmark(False)}, rounds)
    finally:
        torch.backends.cudnn.benchmark = previous
        module.load_state_dict(state)
    batch = len(batches[0][0])
    return {
        "precision": precision,
        "batch": batch,
        **timing.comparison("on", "off"),
        "img_per_s": {k: timing.spread(k).inverted(batch).as_dict() for k in ("on", "off")},
    }


def _timed_inference(
    fn: Callable[[list[torch.Tensor]], Any], images: list[torch.Tensor], dtype: Any, steps: int
) -> Callable[[], float]:
    """A callable returning the seconds per ``fn(images)`` (``steps`` calls, autocast to
    ``dtype`` unless None, between two device synchronisations)."""
    device = images[0].device

    def run() -> float:
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                fn(images)
        sync(device)
        return (time.perf_counter() - start) / steps

    return run


@torch.no_grad()
def inference_sweep(
    module: MaskRCNNModule,
    images: Sequence[torch.Tensor],
    batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32),
    precision: str = "bf16",
    rounds: int = 3,
    steps: int = 3,
) -> list[dict[str, Any]]:
    """(c): images/s of ``predict_maps`` (network + batched post-processing and fusion)
    vs the network alone, per batch size, images already on the device."""
    module.eval()
    dtype = AMP[precision]
    rows = []
    for batch in batch_sizes:
        chunk = [images[i % len(images)] for i in range(batch)]

        sides = {
            "fused": _timed_inference(module.predict_maps, chunk, dtype, steps),
            "network": _timed_inference(lambda x: raw_outputs(module.net, x), chunk, dtype, steps),
        }
        timing = interleaved(sides, rounds, warmup=1)
        rows.append(
            {
                "batch": batch,
                "precision": precision,
                **timing.comparison("fused", "network"),
                "img_per_s": {k: timing.spread(k).inverted(batch).as_dict() for k in sides},
            }
        )
    return rows


def run_all(
    device: str = "cuda",
    size: tuple[int, int] = SIZES["full"],
    train_batch: int = 8,
    batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32),
    precision: str = "bf16",
    rounds: int = 3,
    steps: int = 10,
    experiment: str = "seed_report",
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Parts (a), (b) and (c) on synthetic photos of ``size`` (H, W), for the model and
    optimizer of ``experiment`` (random init, no download) and ``overrides``."""
    device_ = torch.device(device)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device_) if device_.type == "cuda" else "cpu",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "size": list(size),
        "precision": precision,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(
            Path(tmp) / "data", num_images=max(8, 4 * train_batch), height=size[0], width=size[1]
        )
        base = [
            "task=clothing",
            f"experiment={experiment}",
            "data=fashion",
            "data.split=[0.5,0.25,0.25]",
            *overrides,
        ]
        cfg = compose_config(root, [*base, f"data.batch_size={train_batch}"])
        torch.manual_seed(0)
        module: MaskRCNNModule = instantiate(cfg.model, _recursive_=False).to(device_)
        result["model"] = {
            "arch": cfg.model.net.arch,
            "resize": f"{cfg.model.net.min_size}/{cfg.model.net.max_size}",
        }
        batches = train_batches(cfg, 4)
        if device_.type == "cuda":
            batches = [
                (
                    [i.pin_memory() for i in im],
                    [{k: v.pin_memory() for k, v in t.items()} for t in tg],
                )
                for im, tg in batches
            ]
        result["a_train_vs_bare"] = train_vs_bare(module, batches, precision, rounds, steps)
        result["b_cudnn_benchmark"] = cudnn_on_off(module, batches, precision, rounds, steps)
        images = [i.to(device_) for im, _ in batches for i in im]
        result["c_inference"] = inference_sweep(module, images, batch_sizes, precision, rounds)
    result["seconds"] = time.perf_counter() - started
    return result


def _side(spread: dict[str, Any]) -> str:
    return f"{spread['median']:.1f} ({spread['min']:.1f}-{spread['max']:.1f})"


def format_report(r: dict[str, Any]) -> str:
    """The figures of :func:`run_all` as Markdown (img/s: median (min-max) of the rounds)."""
    a, b = r["a_train_vs_bare"], r["b_cudnn_benchmark"]
    util = a["gpu_utilisation"]
    lines = [
        f"# gpu_bench: {r['device']}, {r['date']}",
        "",
        f"torch {r['torch']}, {r['model']['arch']} at {r['size'][0]}x{r['size'][1]} "
        f"(resize {r['model']['resize']}), {r['precision']}; img/s as median (min-max)",
        "",
        f"(a) training, batch {a['batch']}: ours {_side(a['img_per_s']['ours'])} img/s, bare "
        f"loop {_side(a['img_per_s']['bare'])} img/s; ours/bare step time "
        f"{a['ratio']:.3f} ({a['ratio_min']:.3f}-{a['ratio_max']:.3f}, {a['rounds']} rounds)",
        f"    GPU utilisation (nvidia-smi, median / share of samples >= 60 %): ours "
        f"{util['ours'].get('median', 'n/a')} / {util['ours'].get('share_ge_60', 'n/a')}, "
        f"bare {util['bare'].get('median', 'n/a')} / {util['bare'].get('share_ge_60', 'n/a')}",
        f"(b) cudnn.benchmark, batch {b['batch']}: on {_side(b['img_per_s']['on'])} img/s, off "
        f"{_side(b['img_per_s']['off'])} img/s; on/off step time {b['ratio']:.3f} "
        f"({b['ratio_min']:.3f}-{b['ratio_max']:.3f})",
        "(c) inference img/s, fused (network + post-processing + fusion) vs network alone:",
    ]
    for row in r["c_inference"]:
        lines.append(
            f"    batch {row['batch']:>2}: fused {_side(row['img_per_s']['fused'])}, network "
            f"{_side(row['img_per_s']['network'])}, time ratio {row['ratio']:.3f}"
        )
    return "\n".join(lines) + "\n"


def write_report(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``gpu_bench-<UTC time>.json`` and ``.md`` in ``out_dir`` (never over a file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"gpu_bench-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    with open(json_path, "x") as fh:
        fh.write(json.dumps(result, indent=2) + "\n")
    with open(md_path, "x") as fh:
        fh.write(format_report(result))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: runs :func:`run_all`, prints and writes its JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m fashionseg.gpu_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=parse_size, default=SIZES["full"], help="HxW, e.g. 600x400")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--batches", default="1,2,4,8,16,32", help="inference batch sizes")
    parser.add_argument("--precision", choices=list(AMP), default="bf16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("gpu_check"), help="output folder")
    args = parser.parse_args(argv)
    batch_sizes = [int(b) for b in args.batches.split(",")]
    result = run_all(
        args.device,
        args.size,
        args.train_batch,
        batch_sizes,
        args.precision,
        args.rounds,
        args.steps,
    )
    json_path, md_path = write_report(result, args.out)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
