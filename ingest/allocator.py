"""How long polars' allocator keeps freed memory before handing it back to the kernel.

Polars' jemalloc returns freed pages after half a second by default. Replay frees and
allocates arrays of the same sizes batch after batch, so each batch's arrays were fresh pages
that the kernel had to fault in and zero: about a tenth of a 20M-event replay's CPU. Kept for
five seconds, the pages are reused instead (`benchmarks/bench_replay.py`, 20M events: ~8%
less wall time, ~250 MiB more peak RSS; ten seconds kept ~50 MiB more for no more speed).

Polars reads `_RJEM_MALLOC_CONF` once, when it is first imported, and appends it to its own
setting; so this runs from the packages' `__init__` before anything imports polars, and only
where the user has not set it.
"""

from __future__ import annotations

import os
import sys

RETAIN = "dirty_decay_ms:5000,muzzy_decay_ms:5000"


def configure() -> bool:
    """Set the retention for polars' allocator; False where it is too late or user-set."""
    if "polars" in sys.modules or "_RJEM_MALLOC_CONF" in os.environ:
        return False
    os.environ["_RJEM_MALLOC_CONF"] = RETAIN
    return True
