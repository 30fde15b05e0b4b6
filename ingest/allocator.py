"""How pinscope's allocators keep freed memory, set once per process before the work starts.

Replay and ingest free and allocate arrays of the same sizes batch after batch. Where an
allocator hands freed pages back to the kernel at once, each batch's arrays are fresh pages
the kernel has to fault in and zero: that was a fifth of a replay's CPU, as system time.

- Polars' jemalloc returns freed pages after half a second by default; kept for five seconds
  they are reused instead (`benchmarks/bench_replay.py`, 20M events: ~8% less wall time,
  ~250 MiB more peak RSS; ten seconds kept ~50 MiB more for no more speed). Polars reads
  `_RJEM_MALLOC_CONF` once, when it is first imported, and appends it to its own setting; so
  this runs from the packages' `__init__` before anything imports polars.
- glibc's malloc (numpy, numba and pyarrow's arrays) gives each thread an arena of its own and
  maps every block over its dynamic threshold (at most 32 MiB) straight from the kernel, so a
  batch's arrays, allocated on one thread and freed on another, were never reused. One arena
  and blocks up to 128 MiB kept in it (256 MiB of free space at its top before it is trimmed):
  on the 20M-event replay 7% less wall and CPU and 100-200 MiB less peak RSS, on a 4.2M-line
  ingest 7% less wall and half the system time (A/B, alternating runs).

Neither is set where the user has set that allocator's own variables.
"""

from __future__ import annotations

import ctypes
import os
import sys

RETAIN = "dirty_decay_ms:5000,muzzy_decay_ms:5000"

# mallopt(3) parameters and pinscope's values for them
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
GLIBC_MALLOPT = {M_ARENA_MAX: 1, M_MMAP_THRESHOLD: 128 << 20, M_TRIM_THRESHOLD: 256 << 20}
# what a user sets glibc's malloc with: then pinscope leaves it alone
GLIBC_ENV = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def configure() -> bool:
    """Set the retention for polars' allocator; False where it is too late or user-set.
    glibc's malloc is set too (see `configure_glibc`)."""
    configure_glibc()
    if "polars" in sys.modules or "_RJEM_MALLOC_CONF" in os.environ:
        return False
    os.environ["_RJEM_MALLOC_CONF"] = RETAIN
    return True


def configure_glibc() -> bool:
    """One malloc arena, large blocks kept; False where this is not glibc or the user set it."""
    if sys.platform != "linux" or any(v in os.environ for v in GLIBC_ENV):
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = _glibc()
    if libc is None:
        return False
    return all(libc.mallopt(param, value) == 1 for param, value in GLIBC_MALLOPT.items())


def _glibc() -> ctypes.CDLL | None:
    libc = ctypes.CDLL(None)  # the process's own symbols: its C library among them
    # musl and others have no gnu_get_libc_version; their mallopt, if any, is not glibc's
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None
