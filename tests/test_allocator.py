"""pinscope's packages set polars' allocator retention before polars loads, unless the user has."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
