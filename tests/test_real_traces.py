"""Traces captured from a real 6.18 kernel (tests/golden/real/README.md) through the whole pipeline.

The expected counts were taken from the files with grep/awk, independently of pinscope's
parsers: every line is accounted for, each tracepoint lands as its kind, and the file-only
`writeback_dirty_folio` events resolve to the pfns `mm_filemap_add_to_page_cache` put there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest import dataset
from ingest.pipeline import ingest_files

REAL = Path(__file__).parent / "golden" / "real"

# file -> (format, total lines, comment lines, stack lines, events by kind)
BASE_KINDS = {"wb_wait": 2, "cache_add": 8, "cache_del": 8, "fork": 9, "dirty": 10}
CASES = {
    "real-default.trace": (
        "ftrace",
        120,
        12,
        0,
        {"wb_wait": 2, "cache_add": 51, "cache_del": 8, "free": 25, "fork": 9, "dirty": 13},
    ),
    "real-tgid.trace": ("ftrace", 51, 12, 0, {**BASE_KINDS, "cache_add": 9, "dirty": 11}),
    "real-noirq.trace": ("ftrace", 43, 6, 0, BASE_KINDS),
    "real-latency.trace": ("ftrace", 55, 18, 0, BASE_KINDS),
    "real-counter.trace": ("ftrace", 49, 12, 0, BASE_KINDS),
    "real-stack.trace": ("ftrace", 451, 12, 402, BASE_KINDS),
    "real-tracecmd.txt": ("trace-cmd", 41, 1, 0, {**BASE_KINDS, "dirty": 13}),
    "real-tracecmd-ns.txt": ("trace-cmd", 41, 1, 0, {**BASE_KINDS, "dirty": 13}),
    "real-perf.txt": ("perf", 34, 0, 0, {**BASE_KINDS, "wb_wait": 0, "fork": 8}),
    "real-perf-g.txt": ("perf", 410, 34, 342, {**BASE_KINDS, "wb_wait": 0, "fork": 8}),
}


def _ingest(tmp_path: Path, name: str) -> tuple[Path, dict]:
    ds = tmp_path / "ds"
    ingest_files([REAL / name], ds)
    (trace,) = dataset.traces(ds)
    return ds, trace


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_trace_is_fully_accounted(tmp_path: Path, name: str) -> None:
    fmt, total, comments, stack, kinds = CASES[name]
    ds, trace = _ingest(tmp_path, name)
    lines = trace["lines"]
    assert trace["format"] == fmt
    assert lines["total"] == total
    assert lines["rejected"] == 0, dataset.scan(ds, "rejects").collect()
    assert lines["comments"] == comments
    assert lines["stack"] == stack
    expected_events = sum(kinds.values())
    assert lines["events"] == expected_events
    assert sum(lines[k] for k in ("events", "other", "stack", "lost", "comments", "rejected")) == (
        total
    )
    got = {k: v for k, v in trace["events_by_kind"].items() if v}
    assert got == {k: v for k, v in kinds.items() if v}


def test_real_dat_matches_its_report(tmp_path: Path) -> None:
    if shutil.which("trace-cmd") is None:
        pytest.fail("trace-cmd is not installed (Debian: apt-get install trace-cmd)")
    ds_dat = tmp_path / "dat"
    ds_txt = tmp_path / "txt"
    ingest_files([REAL / "real.dat"], ds_dat)
    ingest_files([REAL / "real-tracecmd-ns.txt"], ds_txt)  # .dat keeps ns
    cols = ["ts_ns", "cpu", "pid", "kind", "pfn", "dev", "ino", "index"]
    a = dataset.scan(ds_dat, "events").select(cols).sort(cols).collect()
    b = dataset.scan(ds_txt, "events").select(cols).sort(cols).collect()
    assert a.height == 40
    assert a.equals(b)


def test_real_dirty_events_resolve_to_cached_pfns(tmp_path: Path) -> None:
    from replay.run import replay_dataset

    ds, _ = _ingest(tmp_path, "real-tracecmd.txt")
    replay_dataset(ds)
    con = dataset.connect(ds)
    # ino 0x51435d (mm_filemap_add_to_page_cache prints hex) == 5325661 (writeback prints decimal)
    rows = con.execute(
        """
        select d.line, d.pfn, a.event_pfn as added_pfn
        from page_events d
        join page_events a
          on a.kind = 'cache_add' and a.ino = d.ino and a.index = d.index and a.line < d.line
        where d.kind = 'dirty' and d.ino = 5325661
        qualify row_number() over (partition by d.line order by a.line desc) = 1
        order by d.line
        """
    ).fetchall()
    assert len(rows) >= 8
    assert all(pfn == added for _, pfn, added in rows)
