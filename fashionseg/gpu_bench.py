"""``python -m fashionseg.gpu_bench``: the GPU side-by-side benchmark, which lives in
:mod:`fashionseg.bench.gpu_bench` (this module keeps the short command working)."""

from __future__ import annotations

from fashionseg.bench.gpu_bench import *  # noqa: F403
from fashionseg.bench.gpu_bench import main

if __name__ == "__main__":
    raise SystemExit(main())
