"""The ``profile=`` switch: a torch profiler trace of a few training steps.

``python -m fashionseg.train ... profile=true`` hands Lightning a
:class:`~lightning.pytorch.profilers.PyTorchProfiler` that records steps
``wait + warmup + 1`` to ``wait + warmup + active`` of each stage (CPU operators, and
CUDA kernels on a GPU) and writes them as ``<run>/profile/*.pt.trace.json`` (torch's
``tensorboard_trace_handler`` format: TensorBoard's PyTorch Profiler tab with the
``torch-tb-profiler`` plugin, ``tensorboard --logdir <run>/profile``, or
https://ui.perfetto.dev), plus a summary table of the top operators
(``<run>/profile/*profile*.txt``). ``profile=N`` records N active steps instead of 3.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.profilers import PyTorchProfiler

WAIT, WARMUP, ACTIVE = 1, 1, 3


def active_steps(profile: bool | int | None) -> int:
    """The number of recorded steps ``profile`` asks for (0: no profiling); the value is
    checked by :func:`fashionseg.settings.check_settings`."""
    if not profile:
        return 0
    return ACTIVE if profile is True else int(profile)


def trace_profiler(out_dir: str | Path, active: int = ACTIVE) -> PyTorchProfiler:
    """A profiler writing the trace of ``active`` steps (after ``WAIT`` + ``WARMUP``)
    into ``out_dir``."""
    return PyTorchProfiler(
        dirpath=str(out_dir),
        filename="profile",
        export_to_chrome=True,
        schedule=torch.profiler.schedule(wait=WAIT, warmup=WARMUP, active=active),
        sort_by_key="cpu_time_total",
        row_limit=25,
    )
