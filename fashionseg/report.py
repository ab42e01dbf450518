"""Command line of the results rows: ``python -m fashionseg.report`` (``make results``).

The code lives in :mod:`fashionseg.reporting.results_table`.
"""

from __future__ import annotations

from fashionseg.reporting.results_table import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
