"""Benchmarks: wrapper overhead, threshold-sweep cost, data pipeline, inference speed.

    python -m fashionseg.bench [--size small|full] [--reps 5] [--json bench.json]

Measures, in one run (warm-up steps excluded, medians of ``--reps`` repetitions):

a. train step time of the LightningModule inside a Lightning Trainer (with its
   TensorBoard logger) vs a bare torchvision loop: same model, same batches, same SGD
   step -> ratio;
b. a validation step sweeping 19 score thresholds vs one threshold -> ratio;
c. data pipeline samples/s of one worker at 600x400 (decode + targets + augmentation);
d. inference images/s including fusion;
e. train and inference seconds per image of the default model and of
   ``experiment=cpu_fast``.

``--size small`` uses 240x160 photos (a quick run), ``full`` the dataset's 600x400 and
``tiny`` 64x48 (a smoke test of the benchmark itself, no meaningful figures).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from fashionseg.data.dataset import FashionDataset
from fashionseg.data.synthetic import generate
from fashionseg.data.transforms import build_train_transforms
from fashionseg.model.module import TARGET_KEYS, SegmentationModule

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
SIZES = {"tiny": (64, 48), "small": (240, 160), "full": (600, 400)}
Batch = tuple[list[torch.Tensor], list[dict[str, Any]]]


def compose_config(data_root: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The training config (as ``python -m fashionseg.train`` composes it)."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(
            "train", overrides=[f"data.root={data_root}", "model.net.weights=none", *overrides]
        )


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _batches(cfg: DictConfig, count: int) -> list[Batch]:
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    batches: list[Batch] = []
    while len(batches) < count:
        batches.extend(datamodule.dataloader("train"))
    return batches[:count]


def bare_train_steps(module: SegmentationModule, batches: Sequence[Batch]) -> list[float]:
    """Seconds per step of a plain torchvision loop: forward, summed losses, SGD step."""
    net = module.net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = instantiate(module.hparams.optimizer, params=params)
    times = []
    for images, targets in batches:
        start = time.perf_counter()
        losses = net(images, [{k: t[k] for k in TARGET_KEYS} for t in targets])
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times


class _StepTimer(L.Callback):
    """Wall time from one training batch's start to the next (the whole loop's cost)."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self.marks.append(time.perf_counter())

    def on_train_end(self, *args: Any) -> None:
        self.marks.append(time.perf_counter())


def lightning_train_steps(
    module: SegmentationModule, batches: Sequence[Batch], log_dir: Path
) -> list[float]:
    """Seconds per step of the same batches through ``Trainer.fit``."""
    timer = _StepTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=len(batches),
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=TensorBoardLogger(str(log_dir), name="bench"),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    loader = torch.utils.data.DataLoader(list(batches), batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    return [b - a for a, b in zip(timer.marks, timer.marks[1:], strict=False)]


def _timed(fn: Callable[[], Any], reps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


@torch.no_grad()
def validation_ratio(module: SegmentationModule, batch: Batch, reps: int, warmup: int) -> dict:
    """A validation step with the module's threshold sweep vs with one threshold."""
    single = copy.deepcopy(module)
    single.hparams.thresholds = [0.5]
    single.sweep_thresholds = torch.tensor([0.5])
    single.val_sweep = type(module.val_sweep)(module.task.num_classes, [0.5])
    module.eval()
    single.eval()
    _timed(lambda: module.validation_step(batch, 0), 0, warmup)
    _timed(lambda: single.validation_step(batch, 0), 0, warmup)
    sweeps, ones = [], []
    for i in range(reps):  # alternate, so that drift in machine speed hits both alike
        first, second = (sweeps, ones) if i % 2 == 0 else (ones, sweeps)
        for times in (first, second):
            step = module if times is sweeps else single
            times += _timed(lambda step=step: step.validation_step(batch, 0), 1, 0)
    sweep, one = _median(sweeps), _median(ones)
    return {
        "sweep_s": sweep,
        "single_s": one,
        "ratio": sweep / one,
        "thresholds": len(module.hparams.thresholds),
    }


def data_pipeline(root: Path, task: str, reps: int) -> dict:
    """Samples/s of one worker: decode, targets, flip + scale + colour augmentation."""
    augmented = build_train_transforms(hflip=0.5, scale_jitter=(0.75, 1.25), color_jitter=0.3)
    with_hue = build_train_transforms(
        hflip=0.5, scale_jitter=(0.75, 1.25), color_jitter=0.3, hue_jitter=0.02
    )
    results = {}
    for name, tf in (("augmented", augmented), ("augmented_hue", with_hue), ("plain", None)):
        dataset = FashionDataset(root, task, transforms=tf)
        count = len(dataset)
        dataset[0]  # warm-up
        rates = []
        for _ in range(reps):
            start = time.perf_counter()
            for i in range(count):
                dataset[i]
            rates.append(count / (time.perf_counter() - start))
        results[name] = _median(rates)
    return results


@torch.no_grad()
def inference_times(
    module: SegmentationModule, images: Sequence[torch.Tensor], warmup: int
) -> list[float]:
    """Seconds per image for the forward pass plus fusion into a label map."""
    module.eval()
    times = []
    for i, image in enumerate(images):
        start = time.perf_counter()
        module.fuse_outputs(module([image])[0])
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def run(
    size: str = "small", reps: int = 5, warmup: int = 2, batch_size: int = 2, task: str = "clothing"
) -> dict[str, Any]:
    """Run every benchmark; return the figures as a dict."""
    torch.manual_seed(0)
    height, width = SIZES[size]
    result: dict[str, Any] = {
        "size": f"{height}x{width}",
        "reps": reps,
        "warmup": warmup,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        root = generate(tmp_path / "data", num_images=12, seed=0, height=height, width=width)
        common = [f"task={task}", f"data.batch_size={batch_size}", "data.split=[0.5,0.25,0.25]"]
        if size == "tiny":  # a smoke test: small models, small photos everywhere
            common += ["model.net.min_size=48", "model.net.max_size=64"]
        cfg = compose_config(root, common)
        module: SegmentationModule = instantiate(cfg.model, _recursive_=False)
        state = copy.deepcopy(module.state_dict())
        batches = _batches(cfg, warmup + reps)

        # A-B-B-A order, each from the same weights: drift of the machine's speed during
        # the run (other load, memory) cancels instead of biasing one side.
        bare, lit = [], []
        for i, kind in enumerate(("bare", "lightning", "lightning", "bare")):
            module.load_state_dict(state)
            if kind == "bare":
                bare += bare_train_steps(module, batches)[warmup:]
            else:
                lit += lightning_train_steps(module, batches, tmp_path / f"logs{i}")[warmup:]
        module.load_state_dict(state)
        result["a_train_step"] = {
            "lightning_s": _median(lit),
            "bare_s": _median(bare),
            "ratio": _median(lit) / _median(bare),
        }

        module.load_state_dict(state)
        result["b_validation"] = validation_ratio(module, batches[0], reps, warmup)

        full = (
            root
            if size in ("full", "tiny")
            else generate(tmp_path / "full", num_images=12, seed=1, height=600, width=400)
        )
        result["c_data_samples_per_s"] = data_pipeline(full, task, reps)
        result["c_size"] = "x".join(map(str, SIZES["tiny" if size == "tiny" else "full"]))

        images = [img for imgs, _ in batches for img in imgs][: warmup + reps]
        infer = _median(inference_times(module, images, warmup))
        result["d_inference_images_per_s"] = 1.0 / infer

        configs = {
            "default": cfg,
            "cpu_fast": compose_config(root, [*common, "experiment=cpu_fast"]),
        }
        per_config = {}
        for name, config in configs.items():
            mod = module if name == "default" else instantiate(config.model, _recursive_=False)
            steps = (
                bare
                if name == "default"
                else bare_train_steps(mod, _batches(config, warmup + reps))[warmup:]
            )
            inf = infer if name == "default" else _median(inference_times(mod, images, warmup))
            per_config[name] = {
                "model": config.model.net.arch,
                "resize": f"{config.model.net.min_size}/{config.model.net.max_size}",
                "train_s_per_img": _median(steps) / batch_size,
                "infer_s_per_img": inf,
            }
        per_config["cpu_fast"]["train_speedup"] = (
            per_config["default"]["train_s_per_img"] / per_config["cpu_fast"]["train_s_per_img"]
        )
        per_config["cpu_fast"]["infer_speedup"] = (
            per_config["default"]["infer_s_per_img"] / per_config["cpu_fast"]["infer_s_per_img"]
        )
        result["e_configs"] = per_config
    return result


def format_report(r: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    a, b, c, d = (
        r["a_train_step"],
        r["b_validation"],
        r["c_data_samples_per_s"],
        r["d_inference_images_per_s"],
    )
    lines = [
        f"Benchmark at {r['size']} (H x W), batch {r['batch_size']}, {r['threads']} threads, "
        f"medians of {r['reps']} after {r['warmup']} warm-up",
        "",
        "| measure | value | target |",
        "|---|---:|---:|",
        f"| (a) train step, Lightning / bare loop | {a['ratio']:.3f} "
        f"({a['lightning_s']:.3f} s / {a['bare_s']:.3f} s) | <= 1.03 |",
        f"| (b) validation, {b['thresholds']} thresholds / 1 | {b['ratio']:.3f} "
        f"({b['sweep_s']:.3f} s / {b['single_s']:.3f} s) | <= 1.10 |",
        f"| (c) data samples/s, 1 worker, {r['c_size']}, flip+scale+brightness/contrast/saturation | "
        f"{c['augmented']:.1f} "
        "| >= 140 |",
        f"| (c) the same with hue jitter (data.hue_jitter=0.02) | {c['augmented_hue']:.1f} | |",
        f"| (c) data samples/s, 1 worker, {r['c_size']}, no augmentation | {c['plain']:.1f} | |",
        f"| (d) inference images/s with fusion (default model) | {d:.2f} | |",
        "",
        "| config | model | resize min/max | train s/img | inference s/img |",
        "|---|---|---|---:|---:|",
    ]
    for name, e in r["e_configs"].items():
        lines.append(
            f"| {name} | {e['model']} | {e['resize']} | {e['train_s_per_img']:.3f} | "
            f"{e['infer_s_per_img']:.3f} |"
        )
    fast = r["e_configs"]["cpu_fast"]
    lines.append("")
    lines.append(
        f"cpu_fast vs default: {fast['train_speedup']:.1f}x faster training, "
        f"{fast['infer_speedup']:.1f}x faster inference per image"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--task", choices=("person", "clothing"), default="clothing")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    result = run(args.size, args.reps, args.warmup, args.batch_size, args.task)
    print(format_report(result))
    if args.json:
        from fashionseg.files import write_json

        write_json(args.json, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
