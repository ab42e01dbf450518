"""Benchmarks: wrapper overhead, threshold-sweep cost, data pipeline, inference, predict, GPU.

    python -m fashionseg.bench [--size small|full|tiny|HxW] [--reps 5] [--json bench.json]
    python -m fashionseg.bench --predict [--photos 24] [--size 600x400] [--memory-photos 2000]
    python -m fashionseg.bench --device cuda [--gpu-batches 2,4,8] [--precisions fp32,fp16,bf16]
    python -m fashionseg.gpu_check [--out gpu_check] [--steps 100] [--budget-s 540]

One module per benchmark over a shared harness, imported downward only:

- :mod:`fashionseg.bench.harness`: sizes, the training config, interleaved rounds, spreads;
- :mod:`fashionseg.bench.memory`: load average, memory sampling, the memory-flat verdict;
- :mod:`fashionseg.bench.cpu`: the CPU benchmark (the default);
- :mod:`fashionseg.bench.predict`: the predict benchmark (``--predict``);
- :mod:`fashionseg.bench.gpu`: the GPU benchmark (``--device cuda``);
- :mod:`fashionseg.bench.gpu_check`: the GPU check (benchmark + a short full-size run);
- ``fashionseg/bench/__main__.py``: the command line.

The names below are re-exported so that ``from fashionseg.bench import run`` keeps working.
"""

from __future__ import annotations

from fashionseg.bench.cpu import format_report, run
from fashionseg.bench.gpu import PRECISIONS, cuda_unavailable, format_gpu_report, gpu_benchmark
from fashionseg.bench.harness import (
    MIB,
    SIZES,
    Interleaved,
    Spread,
    compose_config,
    interleaved,
    parse_size,
    round_order,
    size_text,
    timed,
    train_batches,
)
from fashionseg.bench.memory import MemorySampler, memory_verdict
from fashionseg.bench.predict import format_predict_report, predict_benchmark

__all__ = [
    "MIB",
    "PRECISIONS",
    "SIZES",
    "Interleaved",
    "MemorySampler",
    "Spread",
    "compose_config",
    "cuda_unavailable",
    "format_gpu_report",
    "format_predict_report",
    "format_report",
    "gpu_benchmark",
    "interleaved",
    "memory_verdict",
    "parse_size",
    "predict_benchmark",
    "round_order",
    "run",
    "size_text",
    "timed",
    "train_batches",
]
