"""The CPU benchmark (``python -m fashionseg.bench``), in one run (warm-up excluded):

a. train step time of the LightningModule inside a Lightning Trainer (with its
   TensorBoard logger) vs a bare torchvision loop: same model, same batches, same SGD
   step -> ratio;
b. a validation step sweeping 19 score thresholds vs one threshold -> ratio;
c. data pipeline samples/s of one worker at 600x400 (decode + targets + augmentation);
d. inference images/s including fusion;
e. train and inference seconds per image of the default model and of
   ``experiment=cpu_fast`` -> ratios.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger

from fashionseg.bench.harness import (
    SIZES,
    Batch,
    Spread,
    _median,
    _ratio_text,
    compose_config,
    interleaved,
    parse_size,
    timed,
    train_batches,
)
from fashionseg.bench.memory import _load_average, _load_text
from fashionseg.data.dataset import FashionDataset
from fashionseg.data.synthetic import generate
from fashionseg.data.transforms import build_train_transforms
from fashionseg.model.module import TARGET_KEYS, SegmentationModule


class BareTrainer:
    """A plain torchvision training loop: each call is one step (forward, summed losses,
    SGD step) on the next batch, cycling through ``batches``."""

    def __init__(self, module: SegmentationModule, batches: Sequence[Batch]) -> None:
        self.net = module.net
        params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = instantiate(module.hparams.optimizer, params=params)
        self.batches = batches
        self.step_count = 0

    def __call__(self) -> None:
        images, targets = self.batches[self.step_count % len(self.batches)]
        self.step_count += 1
        self.net.train()
        losses = self.net(images, [{k: t[k] for k in TARGET_KEYS} for t in targets])
        loss = sum(losses.values())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def bare_train_steps(module: SegmentationModule, batches: Sequence[Batch]) -> list[float]:
    """Seconds per step of a plain torchvision loop over ``batches``."""
    step = timed(BareTrainer(module, batches))
    return [step() for _ in batches]


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


def train_step_ratio(
    module: SegmentationModule,
    state: Mapping[str, torch.Tensor],
    batches: Sequence[Batch],
    warmup: int,
    rounds: int,
    log_dir: Path,
) -> dict[str, Any]:
    """(a): per round, one bare loop and one ``Trainer.fit`` over ``batches``, each from the
    weights ``state``; a round's value is the median step after ``warmup`` steps."""
    fits = iter(range(10**6))

    def bare() -> float:
        module.load_state_dict(state)
        return _median(bare_train_steps(module, batches)[warmup:])

    def lightning() -> float:
        module.load_state_dict(state)
        steps = lightning_train_steps(module, batches, log_dir / f"fit{next(fits)}")
        return _median(steps[warmup:])

    result = interleaved({"lightning": lightning, "bare": bare}, rounds)
    module.load_state_dict(state)
    return result.comparison("lightning", "bare")


@torch.no_grad()
def validation_ratio(
    module: SegmentationModule, batch: Batch, reps: int, warmup: int
) -> dict[str, Any]:
    """A validation step with the module's threshold sweep vs with one threshold."""
    single = copy.deepcopy(module)
    single.hparams.thresholds = [0.5]
    single.sweep_thresholds = torch.tensor([0.5])
    single.val_sweep = type(module.val_sweep)(module.task.num_classes, [0.5])
    module.eval()
    single.eval()
    result = interleaved(
        {
            "sweep": timed(lambda: module.validation_step(batch, 0)),
            "single": timed(lambda: single.validation_step(batch, 0)),
        },
        reps,
        warmup,
    )
    return {**result.comparison("sweep", "single"), "thresholds": len(module.hparams.thresholds)}


def data_pipeline(root: Path, task: str, reps: int) -> dict[str, Any]:
    """Samples/s of one worker: decode, targets, flip + scale + colour augmentation
    (medians, and their spread under ``spread``)."""
    augmented = build_train_transforms(hflip=0.5, scale_jitter=(0.75, 1.25), color_jitter=0.3)
    with_hue = build_train_transforms(
        hflip=0.5, scale_jitter=(0.75, 1.25), color_jitter=0.3, hue_jitter=0.02
    )
    results: dict[str, Any] = {"spread": {}}
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
        spread = Spread.of(rates)
        results[name] = spread.median
        results["spread"][name] = spread.as_dict()
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


def _cycling_inference(module: SegmentationModule, images: Sequence[torch.Tensor]) -> Callable:
    """A callable that infers (forward + fusion) the next image of ``images`` per call."""
    counter = iter(range(10**9))

    @torch.no_grad()
    def infer() -> None:
        module.eval()
        image = images[next(counter) % len(images)]
        module.fuse_outputs(module([image])[0])

    return infer


def run(
    size: str | tuple[int, int] = "small",
    reps: int = 5,
    warmup: int = 2,
    batch_size: int = 2,
    task: str = "clothing",
    steps: int = 2,
) -> dict[str, Any]:
    """Run the CPU benchmarks (a) to (e); return the figures as a dict.

    ``reps`` is the number of interleaved rounds of each comparison; (a) runs ``warmup +
    steps`` training steps per round and side.
    """
    torch.manual_seed(0)
    height, width = parse_size(size) if isinstance(size, str) else size
    tiny = max(height, width) <= 64
    result: dict[str, Any] = {
        "size": f"{height}x{width}",
        "reps": reps,
        "warmup": warmup,
        "steps": steps,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": _load_average(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        root = generate(tmp_path / "data", num_images=12, seed=0, height=height, width=width)
        common = [f"task={task}", f"data.batch_size={batch_size}", "data.split=[0.5,0.25,0.25]"]
        if tiny:  # a smoke test: small models, small photos everywhere
            common += ["model.net.min_size=48", "model.net.max_size=64"]
        cfg = compose_config(root, common)
        module: SegmentationModule = instantiate(cfg.model, _recursive_=False)
        state = copy.deepcopy(module.state_dict())
        batches = train_batches(cfg, warmup + steps)

        result["a_train_step"] = train_step_ratio(
            module, state, batches, warmup, reps, tmp_path / "logs"
        )

        module.load_state_dict(state)
        result["b_validation"] = validation_ratio(module, batches[0], reps, warmup)

        full = (
            root
            if (height, width) == SIZES["full"] or tiny
            else generate(tmp_path / "full", num_images=12, seed=1, height=600, width=400)
        )
        result["c_data_samples_per_s"] = data_pipeline(full, task, reps)
        result["c_size"] = "x".join(map(str, SIZES["tiny" if tiny else "full"]))

        module.load_state_dict(state)
        fast_cfg = compose_config(root, [*common, "experiment=cpu_fast"])
        fast: SegmentationModule = instantiate(fast_cfg.model, _recursive_=False)
        images = [img for imgs, _ in batches for img in imgs]
        train = interleaved(
            {
                "default": timed(BareTrainer(module, batches)),
                "cpu_fast": timed(BareTrainer(fast, batches)),
            },
            reps,
            warmup,
        )
        infer = interleaved(
            {
                "default": timed(_cycling_inference(module, images)),
                "cpu_fast": timed(_cycling_inference(fast, images)),
            },
            reps,
            warmup,
        )
        module.load_state_dict(state)
        result["d_inference_images_per_s"] = 1.0 / infer.spread("default").median
        result["d_inference_spread"] = infer.spread("default").inverted().as_dict()

        per_config: dict[str, Any] = {}
        for name, config in (("default", cfg), ("cpu_fast", fast_cfg)):
            per_config[name] = {
                "model": config.model.net.arch,
                "resize": f"{config.model.net.min_size}/{config.model.net.max_size}",
                "train_s_per_img": train.spread(name).median / batch_size,
                "infer_s_per_img": infer.spread(name).median,
            }
        per_config["cpu_fast"]["train_speedup"] = train.comparison("default", "cpu_fast")
        per_config["cpu_fast"]["infer_speedup"] = infer.comparison("default", "cpu_fast")
        result["e_configs"] = per_config
    return result


def format_report(r: dict[str, Any]) -> str:
    """The CPU figures as a Markdown table; ratios as ``median (min-max, rounds)``."""
    a, b, c, d = (
        r["a_train_step"],
        r["b_validation"],
        r["c_data_samples_per_s"],
        r["d_inference_images_per_s"],
    )

    def rate(name: str) -> str:
        s = c["spread"][name]
        return f"{c[name]:.1f} ({s['min']:.1f}-{s['max']:.1f})"

    lines = [
        f"Benchmark at {r['size']} (H x W), batch {r['batch_size']}, {r['threads']} threads, "
        f"{r['reps']} interleaved rounds after {r['warmup']} warm-up; load average "
        f"{_load_text(r.get('load_average'))}",
        "",
        "| measure | value: median (min-max over rounds) | target |",
        "|---|---:|---:|",
        f"| (a) train step, Lightning / bare loop | {_ratio_text(a)}; "
        f"{a['lightning_s']:.3f} s / {a['bare_s']:.3f} s | <= 1.03 |",
        f"| (b) validation, {b['thresholds']} thresholds / 1 | {_ratio_text(b)}; "
        f"{b['sweep_s']:.3f} s / {b['single_s']:.3f} s | <= 1.10 |",
        f"| (c) data samples/s, 1 worker, {r['c_size']}, flip+scale+brightness/contrast/saturation | "
        f"{rate('augmented')} | >= 140 |",
        f"| (c) the same with hue jitter (data.hue_jitter=0.02) | {rate('augmented_hue')} | |",
        f"| (c) data samples/s, 1 worker, {r['c_size']}, no augmentation | {rate('plain')} | |",
        f"| (d) inference images/s with fusion (default model) | {d:.2f} "
        f"({r['d_inference_spread']['min']:.2f}-{r['d_inference_spread']['max']:.2f}) | |",
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
        f"cpu_fast vs default (default / cpu_fast per round): training "
        f"{_ratio_text(fast['train_speedup'])}x, inference "
        f"{_ratio_text(fast['infer_speedup'])}x faster per image"
    )
    return "\n".join(lines)
