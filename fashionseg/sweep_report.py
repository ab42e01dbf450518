"""Command line of a multirun's report: ``python -m fashionseg.sweep_report SWEEP_DIR``.

The code lives in :mod:`fashionseg.reporting.sweep`.
"""

from __future__ import annotations

from fashionseg.reporting.sweep import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
