"""Load average and memory of this process: the memory sampler and the memory-flat verdict
of the predict benchmark.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fashionseg.bench.harness import MIB


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
