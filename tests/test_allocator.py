"""pinscope's packages set its allocators before the work starts: polars' retention before polars
loads, glibc's arena and thresholds; never over the user's own setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest import allocator

ROOT = Path(__file__).resolve().parents[1]
SHOW = "import replay.run, os, polars; print(os.environ.get('_RJEM_MALLOC_CONF', ''))"


def _conf(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", SHOW], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_set_before_polars_loads():
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    # polars appends the setting to its own defaults: the later keys win in jemalloc
    assert _conf(env).endswith("," + allocator.RETAIN)


def test_a_users_setting_is_kept():
    env = {**os.environ, "_RJEM_MALLOC_CONF": "dirty_decay_ms:0"}
    conf = _conf(env)
    assert conf.endswith(",dirty_decay_ms:0") and allocator.RETAIN not in conf


def test_too_late_once_polars_is_loaded(monkeypatch):
    import polars  # noqa: F401

    monkeypatch.delenv("_RJEM_MALLOC_CONF", raising=False)
    assert allocator.configure() is False
    assert "_RJEM_MALLOC_CONF" not in os.environ


# Faults taken touching a 64 MiB array allocated again after one was freed: ~0 when glibc kept
# the first block, 16384 (4 KiB pages) when it was handed back to the kernel and mapped anew
# (numpy's huge-page advice off, or a fault would bring in 2 MiB).
REFAULTS = (
    "import ingest, numpy as np, resource\n"
    "def faults(): return resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
    "a = np.ones(8 << 20); del a\n"
    "f = faults(); a = np.ones(8 << 20); print(faults() - f)"
)


def _refaults(env: dict[str, str]) -> int:
    out = subprocess.run(
        [sys.executable, "-c", REFAULTS], cwd=ROOT, env=env, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return int(out.stdout)


@pytest.mark.skipif(allocator._glibc() is None, reason="glibc's malloc only")
def test_glibc_keeps_large_blocks_for_reuse():
    env = {k: v for k, v in os.environ.items() if k not in allocator.GLIBC_ENV}
    env.pop("GLIBC_TUNABLES", None)
    env["NUMPY_MADVISE_HUGEPAGE"] = "0"
    assert _refaults(env) < 1000
    # a user's own malloc setting is left alone: the block goes back to the kernel
    assert _refaults({**env, "MALLOC_ARENA_MAX": "8"}) > 10_000
