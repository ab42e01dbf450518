"""``python -m fashionseg.gpu_check`` (and ``make gpu-check``): the GPU check.

It lives in :mod:`fashionseg.bench.gpu_check`, beside the benchmarks it runs; this module
keeps the command's name.
"""

from __future__ import annotations

from fashionseg.bench.gpu_check import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
