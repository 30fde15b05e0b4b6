"""The first run after an install says that it is compiling, and later runs do not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from ingest.schema import conform
from pinscope import first_run
from replay.core import replay_events

ROOT = Path(__file__).resolve().parents[1]


def test_later_runs_say_nothing(tmp_path):
    events = conform(
        pl.DataFrame(
            {
                "trace_id": ["t"] * 3,
                "line": [1, 2, 3],
                "ts_ns": [10, 20, 30],
                "kind": ["cache_add", "pin", "unpin"],
                "pfn": [4096] * 3,
                "ino": [7, None, None],
                "index": [0, None, None],
            }
        ),
        "events",
    )
    replay_events(events, None, kernel="6.8.0")  # compiled, or loaded from the cache
    assert first_run.uncached_kernels() == []
    console = Console(file=(tmp_path / "err").open("w"), width=200)
    assert first_run.announce_compile(console) is False


def test_a_fresh_cache_is_announced(tmp_path):
    """An empty numba cache is what a new install has (nothing compiled here: only looked up)."""
    code = (
        "from rich.console import Console; from pinscope import first_run; "
        "print(first_run.uncached_kernels()); "
        "first_run.announce_compile(Console(stderr=True, width=200))"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    replay = first_run.REPLAY
    assert out.stdout.strip() == repr([f"{replay}.{k}" for k in first_run.ENTRY_KERNELS[replay]])
    assert "compiling pinscope's kernels" in out.stderr and "once" in out.stderr
    code = (
        "from pinscope import first_run; "
        "print(first_run.uncached_kernels(first_run.INGEST_KERNELS)); "
        "print(first_run.announce_compile(modules=first_run.INGEST_KERNELS)); "
        "print(first_run.announce_compile())"  # once a process
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    names, said, again = out.stdout.strip().splitlines()
    assert names == repr(
        [f"{first_run.INGEST}.{k}" for k in first_run.ENTRY_KERNELS["ingest.ftrace_kernel"]]
    )
    assert (said, again) == ("True", "False")
    assert out.stderr.count("compiling pinscope's kernels") == 1


@pytest.mark.parametrize(("fmt", "calls"), [("ftrace", 1), ("perf", 0)])
def test_ingest_calls_its_hook_before_the_compiled_kernels_only(tmp_path, fmt, calls):
    """The command line's message hook runs for ftrace text (compiled kernels), not for perf
    (polars only), where it would announce a compile that does not happen."""
    from ingest.pipeline import ingest_files
    from ingest.simulate import simulate

    trace = tmp_path / f"t.{fmt}"
    simulate("rdma-writeback", trace, fmt=fmt)
    hooked = []
    ingest_files([trace], tmp_path / "ds", before_kernels=lambda: hooked.append(1))
    assert len(hooked) == calls
