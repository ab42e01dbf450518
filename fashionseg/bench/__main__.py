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
import json
import sys
from pathlib import Path
from typing import Any

from fashionseg.bench.cpu import format_report, run
from fashionseg.bench.harness import SIZES, parse_size
from fashionseg.bench.predict import format_predict_report, predict_benchmark
from fashionseg.tasks import builtin_task_names


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
    from fashionseg.bench.gpu import PRECISIONS

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
    parser = argparse.ArgumentParser(
        prog="python -m fashionseg.bench", description=__doc__.split("\n\n")[0]
    )
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
    parser.add_argument("--export", action="store_true", help="eager vs ONNX fp32 vs int8")
    parser.add_argument("--ckpt", type=Path, help="--export: a checkpoint (any model family)")
    parser.add_argument("--data", type=Path, help="--export: score the run's test photos")
    parser.add_argument("--threads", type=int, default=1, help="--export: threads per side")
    parser.add_argument("--export-photos", type=int, default=4, help="--export: per round")
    parser.add_argument("--test-photos", type=int, help="--export --data: the first N (all)")
    args = parser.parse_args(argv)
    if args.export:
        from fashionseg.bench.export import format_export_report, run_export_bench

        result = run_export_bench(args)
        _emit(format_export_report(result), result, args.json)
        return 0

    if args.device == "cuda":
        from fashionseg.bench.gpu import cuda_unavailable, format_gpu_report, gpu_benchmark

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
