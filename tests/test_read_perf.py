"""The perf script framer against golden files and the perf traces captured on a real kernel.

PINSCOPE_UPDATE_GOLDENS=1 rewrites the expected `.framed.jsonl` files.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from ingest.framing import FRAMED_SCHEMA, ChunkContext
from ingest.read_perf import frame_perf

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("PINSCOPE_UPDATE_GOLDENS") == "1"
CASES = ["perf/perf.txt", "perf/perf-g.txt", "real/real-perf.txt", "real/real-perf-g.txt"]


def read_lines(path: Path) -> pl.Series:
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return pl.Series("line", lines, dtype=pl.String)


def frame_file(rel: str, chunk: int | None = None) -> pl.DataFrame:
    lines = read_lines(GOLDEN / rel)
    ctx = ChunkContext(path=rel, format="perf")
    if chunk is None:
        return frame_perf(lines, 1, ctx)
    return pl.concat(
        [frame_perf(lines.slice(i, chunk), i + 1, ctx) for i in range(0, len(lines), chunk)]
    )


@pytest.mark.parametrize("rel", CASES)
def test_golden(rel: str) -> None:
    got = frame_file(rel).write_ndjson()
    path = GOLDEN / "perf" / f"{Path(rel).name}.framed.jsonl"
    if UPDATE or not path.exists():
        path.write_text(got)
    assert got == path.read_text()


@pytest.mark.parametrize("rel", CASES)
def test_every_line_once_and_chunking_is_invisible(rel: str) -> None:
    whole = frame_file(rel)
    assert whole.schema == pl.Schema(FRAMED_SCHEMA)
    assert whole["line"].to_list() == list(range(1, len(read_lines(GOLDEN / rel)) + 1))
    for chunk in (1, 3, 5):
        assert frame_file(rel, chunk).equals(whole)


def test_default_layout() -> None:
    out = frame_file("perf/perf.txt")
    ev = out.filter(pl.col("cls") == "event")
    assert ev.select("comm", "pid", "tgid", "cpu", "ts_ns", "event").rows() == [
        ("ib_write_bw", 4242, None, 2, 106439_675591_000, "probe:pinscope_pin"),
        ("dd", 7059, None, 1, 1116_711768_000, "writeback:writeback_dirty_folio"),
        ("my app-x", 7060, None, 0, 1116_711781_000, "filemap:mm_filemap_add_to_page_cache"),
        ("workload.sh", 7058, 7057, 0, 1116_712026_000, "sched:sched_process_fork"),
        ("perf", 7100, None, 1, 1116_712100_000, "cycles"),
        ("dd", 7059, None, 1, 1116_711768123, "page:bare_event"),
    ]
    assert ev["body"][0] == (
        "(ffffffff8123abcd) page=0xffffea0004d54000 vmemmap=0xffffea0000000000 refs=1 flags=0x40001"
    )
    assert ev["body"][5] == ""
    lost = out.filter(pl.col("cls") == "lost")
    assert lost.select("line", "cpu", "lost_events").rows() == [(7, 3, 17)]
    rejects = dict(out.filter(pl.col("cls") == "reject").select("line", "reason").rows())
    assert rejects == {
        9: "broken timestamp",
        10: "expected a perf script line 'comm tid [cpu] secs.usecs: group:event: fields'",
    }
    assert row_cls(out, 8) == "comment"


def row_cls(df: pl.DataFrame, line: int) -> str:
    return df.filter(pl.col("line") == line)["cls"][0]


def test_callchains_attach_to_their_event() -> None:
    out = frame_file("perf/perf-g.txt")
    assert out["cls"].to_list() == [
        "reject",  # a frame before any event cannot be placed
        "comment",
        "event",
        "stack",
        "stack",
        "stack",
        "stack",
        "comment",
        "event",
        "stack",
        "stack",
        "comment",
    ]
    stacks = out.filter(pl.col("cls") == "stack")
    assert stacks["event_line"].to_list() == [3, 3, 3, 3, 9, 9]
    assert stacks["body"][0] == "ffffffff8123abcd try_grab_folio+0x0 ([kernel.kallsyms])"
    assert stacks["body"][3] == "d4353 _Fork+0x23 (/usr/lib/x86_64-linux-gnu/libc.so.6)"


def test_real_perf_has_no_rejects() -> None:
    for rel in ("real/real-perf.txt", "real/real-perf-g.txt"):
        out = frame_file(rel)
        assert (out["cls"] == "reject").sum() == 0
        assert (out["cls"] == "event").sum() == 34
