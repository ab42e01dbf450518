"""Benchmarks: wrapper overhead, threshold-sweep cost, data pipeline, inference, predict, GPU.

    python -m fashionseg.bench [--size small|full|tiny|HxW] [--reps 5] [--json bench.json]
    python -m fashionseg.bench --predict [--photos 24] [--size 600x400] [--memory-photos 2000]
    python -m fashionseg.bench --device cuda [--gpu-batches 2,4,8] [--precisions fp32,fp16,bf16]

The CPU benchmark (the default) measures, in one run (warm-up excluded):

a. train step time of the LightningModule inside a Lightning Trainer (with its
   TensorBoard logger) vs a bare torchvision loop: same model, same batches, same SGD
   step -> ratio;
b. a validation step sweeping 19 score thresholds vs one threshold -> ratio;
c. data pipeline samples/s of one worker at 600x400 (decode + targets + augmentation);
d. inference images/s including fusion;
e. train and inference seconds per image of the default model and of
   ``experiment=cpu_fast`` -> ratios.

``--predict`` measures predict end to end (photos/s from photo files to written label maps
and overlays) of the single-photo loop and of the Lightning path, on the same model
(``experiment=cpu_fast``, random init, saved to a temporary checkpoint) and photos, and
whether memory stays flat over ``--memory-photos`` small photos.

``--device cuda`` measures, on the GPU, training and inference images/s of the default
R50-FPN at 600x400 (``experiment=seed_report``'s model and sizes) in fp32 and with
automatic mixed precision (fp16 with a GradScaler, bf16) at batch 2, 4 and 8, and the
peak GPU memory of each; on a machine without a CUDA GPU it is a one-line error, exit 2.

Every comparison runs its sides interleaved (:func:`interleaved`: A, B, B, A, A, B, ...,
so that drift in the machine's speed hits both sides alike) and reports the median of the
per-round ratios with their min and max, so that a reader can tell overhead from noise.

``--size small`` uses 240x160 photos (a quick run), ``full`` the dataset's 600x400 and
``tiny`` 64x48 (a smoke test of the benchmark itself, no meaningful figures); sizes are
height x width.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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
from fashionseg.tasks import builtin_task_names

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
SIZES = {"tiny": (64, 48), "small": (240, 160), "full": (600, 400)}
Batch = tuple[list[torch.Tensor], list[dict[str, Any]]]
MIB = 2**20


def parse_size(text: str) -> tuple[int, int]:
    """``tiny``/``small``/``full`` or ``HxW`` (e.g. ``600x400``) as (height, width)."""
    if text in SIZES:
        return SIZES[text]
    found = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not found or min(int(found.group(1)), int(found.group(2))) < 16:
        raise argparse.ArgumentTypeError(
            f"{text!r}: not a size (tiny, small, full or HxW with sides of at least 16)"
        )
    return int(found.group(1)), int(found.group(2))


def size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def compose_config(data_root: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The training config (as ``python -m fashionseg.train`` composes it)."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(
            "train", overrides=[f"data.root={data_root}", "model.net.weights=none", *overrides]
        )


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ------------------------------------------------------------------ the spread of a figure
@dataclass(frozen=True)
class Spread:
    """Median, min and max of repeated measurements (or of per-round ratios)."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no values to summarise")
        return cls(_median(values), float(min(values)), float(max(values)), len(values))

    def inverted(self, scale: float = 1.0) -> Spread:
        """``scale / value``: seconds per item -> items per second (min and max swap)."""
        return Spread(scale / self.median, scale / self.max, scale / self.min, self.n)

    def as_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "min": self.min, "max": self.max, "n": self.n}

    def text(self, digits: int = 3) -> str:
        """``1.012 (0.990-1.050, 5 rounds)``."""
        f = f"{{:.{digits}f}}"
        rounds = f"{self.n} round{'s' if self.n != 1 else ''}"
        return f"{f.format(self.median)} ({f.format(self.min)}-{f.format(self.max)}, {rounds})"


@dataclass(frozen=True)
class Interleaved:
    """What :func:`interleaved` measured: each side's values, one per round, and the order
    in which the timed calls ran."""

    values: dict[str, list[float]]
    order: list[str]

    def spread(self, side: str) -> Spread:
        return Spread.of(self.values[side])

    def ratio(self, a: str, b: str) -> Spread:
        """``a / b`` of each round (the two were measured next to each other), summarised."""
        return Spread.of([x / y for x, y in zip(self.values[a], self.values[b], strict=True)])

    def comparison(self, a: str, b: str) -> dict[str, Any]:
        """The JSON form of ``a / b``: each side's median seconds, the ratio with its spread
        and every round's values."""
        ratio = self.ratio(a, b)
        return {
            f"{a}_s": self.spread(a).median,
            f"{b}_s": self.spread(b).median,
            "ratio": ratio.median,
            "ratio_min": ratio.min,
            "ratio_max": ratio.max,
            "rounds": ratio.n,
            "values": {a: list(self.values[a]), b: list(self.values[b])},
        }


def round_order(sides: Sequence[str], rounds: int) -> list[list[str]]:
    """The sides' order in each round: as given, then reversed, and so on (A B, B A, ...),
    so that a side is neither always first nor always next to the same neighbour."""
    return [list(sides) if r % 2 == 0 else list(reversed(sides)) for r in range(rounds)]


def interleaved(
    sides: Mapping[str, Callable[[], float]], rounds: int, warmup: int = 0
) -> Interleaved:
    """Call each side once per round, the sides interleaved (:func:`round_order`).

    Each callable returns its own measurement (wrap a plain function with :func:`timed`
    to measure its wall time). ``warmup`` rounds run first, in the same alternation
    (the timed rounds carry it on), and are not recorded.
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: need at least 1")
    names = list(sides)
    orders = round_order(names, warmup + rounds)
    for order in orders[:warmup]:
        for name in order:
            sides[name]()
    values: dict[str, list[float]] = {name: [] for name in names}
    ran: list[str] = []
    for order in orders[warmup:]:
        for name in order:
            values[name].append(float(sides[name]()))
            ran.append(name)
    return Interleaved(values, ran)


def timed(
    fn: Callable[[], Any], clock: Callable[[], float] = time.perf_counter
) -> Callable[[], float]:
    """``fn`` as a callable that returns the seconds ``fn()`` took on ``clock``."""

    def run() -> float:
        start = clock()
        fn()
        return clock() - start

    return run


def _ratio_text(entry: Mapping[str, Any]) -> str:
    """``1.012 (0.990-1.050, 5 rounds)`` from a :meth:`Interleaved.comparison` dict."""
    return Spread(entry["ratio"], entry["ratio_min"], entry["ratio_max"], entry["rounds"]).text()


# ---------------------------------------------------------------------- CPU benchmark
def train_batches(cfg: DictConfig, count: int) -> list[Batch]:
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    batches: list[Batch] = []
    while len(batches) < count:
        batches.extend(datamodule.dataloader("train"))
    return batches[:count]


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


# -------------------------------------------------------------------- load and memory
def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return None


def _load_text(load: Sequence[float] | None) -> str:
    return "n/a" if not load else " ".join(f"{x:.2f}" for x in load)


def memory_now() -> tuple[int, int, str]:
    """(resident bytes of this process, bytes of this process and its child processes
    (loader workers), what the second covers).

    With psutil, the second is the sum of proportional set sizes (PSS: pages shared by
    forked workers counted once in all), else this process's resident memory alone.
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        me = psutil.Process()
        total = 0
        for proc in (me, *me.children(recursive=True)):
            with contextlib.suppress(psutil.Error):  # a worker that ended meanwhile
                info = proc.memory_full_info()
                total += getattr(info, "pss", info.rss)
        return me.memory_info().rss, total, "PSS of the process + workers (psutil)"
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        rss = pages * os.sysconf("SC_PAGE_SIZE")
        return rss, rss, "RSS of the process (/proc/self/statm)"
    except (OSError, ValueError, IndexError):
        peak = _peak_rss_bytes()["self"]
        return peak, peak, "peak RSS of the process (ru_maxrss)"


def _peak_rss_bytes() -> dict[str, int]:
    """``ru_maxrss`` of this process and of its finished children, in bytes."""
    scale = 1 if sys.platform == "darwin" else 1024  # Linux reports KiB
    return {
        "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
        "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale,
    }


class MemorySampler:
    """Samples (seconds, photos done, process RSS, process + workers bytes) every
    ``interval`` s in a thread while a predict run writes into ``out_dir``; photos done
    = label maps (``*.png``) there."""

    def __init__(self, out_dir: Path, interval: float = 0.25) -> None:
        self.out_dir = out_dir
        self.interval = interval
        self.samples: list[tuple[float, int, int, int]] = []
        self.scope = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._start = 0.0

    def _done(self) -> int:
        try:
            with os.scandir(self.out_dir) as entries:
                return sum(
                    1 for e in entries if e.name.endswith(".png") and not e.name.startswith(".")
                )
        except FileNotFoundError:
            return 0

    def sample(self) -> None:
        rss, total, self.scope = memory_now()
        self.samples.append((time.perf_counter() - self._start, self._done(), rss, total))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self._start = time.perf_counter()
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()  # after the run: the loader's workers may be gone

    def at(self, done: int) -> tuple[float, int, int, int]:
        """The first sample with at least ``done`` photos written."""
        found = next((s for s in self.samples if s[1] >= done), None)
        if found is None:
            raise ValueError(f"no sample with {done} photos done (samples: {len(self.samples)})")
        return found


def memory_verdict(
    after_first: int, at_end: int, tolerance_mib: float = 32.0, tolerance_fraction: float = 0.05
) -> dict[str, Any]:
    """Flat when the resident memory at the end exceeds that after the first photos by at
    most ``max(tolerance_mib, tolerance_fraction x it)``."""
    allowed = max(tolerance_mib * MIB, tolerance_fraction * after_first)
    growth = at_end - after_first
    return {
        "after_first_mib": after_first / MIB,
        "near_end_mib": at_end / MIB,
        "growth_mib": growth / MIB,
        "allowed_growth_mib": allowed / MIB,
        "flat": growth <= allowed,
    }


# ---------------------------------------------------------------------- predict benchmark
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


# ---------------------------------------------------------------------- command line
def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: not a comma-separated list of integers"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: need positive integers")
    return values


def _precision_list(text: str) -> list[str]:
    from fashionseg.gpu_check import PRECISIONS

    values = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [v for v in values if v not in PRECISIONS]
    if not values or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(PRECISIONS)}")
    return values


def _emit(report: str, result: dict[str, Any], path: Path | None) -> None:
    """Print the report and the figures as JSON; also write the JSON to ``path``."""
    print(report)
    if path:
        from fashionseg.files import write_json

        write_json(path, result)
    print(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size",
        type=parse_size,
        default=None,
        help="tiny, small, full or HxW (default: small; full with --predict and --device cuda)",
    )
    parser.add_argument("--reps", type=int, default=None, help="interleaved rounds (5; 3)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--task", choices=builtin_task_names(), default="clothing")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--predict", action="store_true", help="the predict benchmark")
    parser.add_argument("--photos", type=int, default=24, help="--predict: photos per run")
    parser.add_argument("--memory-photos", type=int, default=2000, help="--predict: 0 skips")
    parser.add_argument("--memory-size", type=parse_size, default=(64, 48))
    parser.add_argument("--predict-batch-size", type=int, default=None)
    parser.add_argument("--predict-workers", type=int, default=None)
    parser.add_argument("--gpu-batches", type=_int_list, default=[2, 4, 8])
    parser.add_argument("--precisions", type=_precision_list, default=["fp32", "fp16", "bf16"])
    args = parser.parse_args(argv)

    if args.device == "cuda":
        from fashionseg.gpu_check import cuda_unavailable, format_gpu_report, gpu_benchmark

        why = cuda_unavailable()
        if why:
            print(f"error: --device cuda: {why}", file=sys.stderr)
            return 2
        result = gpu_benchmark(
            "cuda",
            size=args.size or SIZES["full"],
            batch_sizes=args.gpu_batches,
            precisions=args.precisions,
            warmup=args.warmup,
            rounds=args.reps or 3,
            steps=args.steps or 3,
        )
        _emit(format_gpu_report(result), result, args.json)
        return 0
    if args.predict:
        options = {
            k: v
            for k, v in (
                ("batch_size", args.predict_batch_size),
                ("num_workers", args.predict_workers),
            )
            if v is not None
        }
        result = predict_benchmark(
            photos=args.photos,
            size=args.size or SIZES["full"],
            reps=args.reps or 3,
            memory_photos=args.memory_photos,
            memory_size=args.memory_size,
            task=args.task,
            options=options,
        )
        _emit(format_predict_report(result), result, args.json)
        return 0
    result = run(
        args.size or SIZES["small"],
        args.reps or 5,
        args.warmup,
        args.batch_size,
        args.task,
        args.steps or 2,
    )
    _emit(format_report(result), result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
