"""Say so on stderr when this install's replay kernels are not compiled yet.

numba compiles pinscope's kernels (replay's passes, ingest's framer and mapper) on their first
call and caches the machine code beside their modules. So the first `analyze` after an install
takes ~20 s longer than the next ones, without a word: it looks like a hang. Replay's kernels
run for every trace format, so theirs is the cache that tells a first run.
"""

from __future__ import annotations

import os

from rich.console import Console

# Replay's kernels that every replay calls.
ENTRY_KERNELS = ("dense_ids", "resolve_pass", "infer_pass", "state_pass", "page_rows")
MESSAGE = (
    "[dim]First run of this install: compiling pinscope's kernels for this machine "
    "(about 20 s, once; cached after).[/]"
)


def uncached_kernels() -> list[str]:
    """The entry kernels whose cache (numba's index file) is missing or older than their
    source: they compile on their first call. Empty where numba cannot say."""
    from replay import kernel

    source = os.path.getmtime(kernel.__file__)
    missing = []
    for name in ENTRY_KERNELS:
        try:
            index = getattr(kernel, name)._cache._cache_file._index_path  # numba's own lookup
        except AttributeError:  # another numba's layout, or not cached at all: say nothing
            return []
        if not os.path.exists(index) or os.path.getmtime(index) < source:
            missing.append(name)
    return missing


def announce_compile(console: Console | None = None) -> bool:
    """Print MESSAGE on stderr if the kernels will compile in this run; whether it did."""
    if not uncached_kernels():
        return False
    (console or Console(stderr=True)).print(MESSAGE)
    return True
