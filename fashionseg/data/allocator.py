"""The C allocator setting of data-loading processes: keep freed photo-sized blocks.

Standard library only, so that a process can set it (and a test can measure it) before
torch or anything heavy is imported.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_reuse_set_in: int | None = None  # the process whose allocator keep_freed_memory tuned


def keep_freed_memory(mmap_threshold: int = 64 << 20, trim_threshold: int = 128 << 20) -> bool:
    """Let this process's C allocator reuse freed photo-sized blocks (glibc; once per process).

    By default glibc serves every block above its mmap threshold (at most 32 MiB, adapting)
    from fresh pages and hands it back to the OS when freed, so each float photo an
    augmentation step creates page-faults in anew: measured on a 600x400 photo, ~2,900
    minor page faults per augmented item and ~9 ms of its time; with blocks up to
    ``mmap_threshold`` kept on the heap (and the heap trimmed only above
    ``trim_threshold``), 92 faults. The cost is memory the process keeps for reuse, at
    most about ``trim_threshold`` beyond its peak. Returns whether the setting was applied
    (False on other C libraries).
    """
    global _reuse_set_in
    if _reuse_set_in == os.getpid():
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
        )
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return False
    if ok:
        _reuse_set_in = os.getpid()
    return ok
