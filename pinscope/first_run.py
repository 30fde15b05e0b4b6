"""Say so on stderr when this install's kernels are not compiled yet.

numba compiles pinscope's kernels (replay's passes, ingest's framer and mapper) on their first
call and caches the machine code beside their modules. So the first run after an install takes
~10 s (ingest of ftrace text) to ~20 s (analyze) longer than the next ones, without a word: it
looks like a hang. The check reads numba's cache index of the kernels each stage always calls.
"""

from __future__ import annotations

import importlib
import os

from rich.console import Console

# Per module, the kernels that every run of its stage calls: replay's for every trace; ingest's
# for ftrace and trace-cmd text (perf and bpftrace go through polars only).
REPLAY = "replay.kernel"
INGEST = "ingest.ftrace_kernel"
ENTRY_KERNELS: dict[str, tuple[str, ...]] = {
    REPLAY: ("dense_ids", "resolve_pass", "infer_pass", "state_pass", "page_rows"),
    INGEST: ("scan_lines", "frame_lines", "name_ids", "map_rows", "hash_spans"),
}
INGEST_KERNELS = (INGEST,)
MESSAGE = (
    "[dim]First run of this install: compiling pinscope's kernels for this machine "
    "(10-20 s, once; cached after).[/]"
)
_announced = False


def uncached_kernels(modules: tuple[str, ...] = (REPLAY,)) -> list[str]:
    """The entry kernels (module.name) whose cache (numba's index file) is missing or older
    than their source: they compile on their first call. Empty where numba cannot say."""
    missing = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        source = os.path.getmtime(module.__file__ or "")
        for name in ENTRY_KERNELS[module_name]:
            try:
                index = getattr(module, name)._cache._cache_file._index_path  # numba's lookup
            except AttributeError:  # another numba's layout, or not cached at all: say nothing
                return []
            if not os.path.exists(index) or os.path.getmtime(index) < source:
                missing.append(f"{module_name}.{name}")
    return missing


def announce_compile(console: Console | None = None, modules: tuple[str, ...] = (REPLAY,)) -> bool:
    """Print MESSAGE on stderr, once a process, if these modules' kernels will compile in this
    run; whether it did."""
    global _announced
    if _announced or not uncached_kernels(modules):
        return False
    (console or Console(stderr=True)).print(MESSAGE, soft_wrap=True)
    _announced = True
    return True
