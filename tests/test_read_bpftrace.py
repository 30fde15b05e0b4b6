"""bpftrace output (plain and -f json) framed and mapped."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from ingest.framing import FRAMED_SCHEMA, ChunkContext
from ingest.mapping import load_mapping, map_events
from ingest.read_bpftrace import frame_bpftrace

GOLDEN = Path(__file__).parent / "golden" / "bpftrace"


def frame(name: str, fmt: str, first_line: int = 1, lines: list[str] | None = None):
    text = lines if lines is not None else (GOLDEN / name).read_text().splitlines()
    ctx = ChunkContext(path=str(GOLDEN / name), format=fmt)
    out = frame_bpftrace(pl.Series(text, dtype=pl.String), first_line, ctx)
    assert out.schema == pl.Schema(FRAMED_SCHEMA)
    assert out.height == len(text)
    assert out["line"].to_list() == list(range(first_line, first_line + len(text)))
    return out, ctx


def test_plain_output_frames_every_line():
    out, ctx = frame("pinscope.txt", "bpftrace")
    cls = out["cls"].cast(pl.String).to_list()
    assert cls[:2] == ["comment", "comment"]
    assert cls[2:-1] == ["event"] * 14
    assert cls[-1] == "reject"
    assert ctx.extra["kernel"] == "6.8.0-45-generic" and ctx.extra["host"] == "rdma-node1"
    pin = out.row(2, named=True)
    assert (pin["ts_ns"], pin["cpu"], pin["pid"], pin["tgid"]) == (1026681333000, 1, 4242, 4240)
    assert pin["event"] == "pinscope_pin" and pin["comm"] == "ib_write_bw"
    assert pin["body"] == "pfn=1065296 refs=1 flags=0x80003 caller=ib_umem_get"
    kworker = out.row(4, named=True)
    assert kworker["comm"] == "kworker/u8:1 flush-254:0" and kworker["body"] == "pfn=1065296"
    fork = out.row(14, named=True)
    assert fork["body"] == "child_pid=4300" and fork["comm"] == "ib_write_bw"
    bad = out.row(-1, named=True)
    assert str(GOLDEN / "pinscope.txt") in bad["reason"] and "line 17" in bad["reason"]
    assert "expected '<ts_ns> <cpu> <tid> <pid> pinscope_<kind>:" in bad["reason"]
    assert bad["text"] == "this line is not from pinscope.bt"


def test_json_output_frames_printf_lost_and_bookkeeping():
    out, ctx = frame("pinscope.json", "bpftrace-json", first_line=101)
    cls = out["cls"].cast(pl.String).to_list()
    assert cls.count("event") == 14
    assert cls.count("lost") == 1 and cls.count("reject") == 1
    assert cls[0] == "comment" and cls[1] == "comment" and cls[-2] == "comment"
    lost = out.filter(pl.col("cls") == "lost").row(0, named=True)
    assert lost["lost_events"] == 17 and lost["line"] == 101 + 7
    assert ctx.extra["kernel"] == "6.8.0-45-generic"
    plain, _ = frame("pinscope.txt", "bpftrace")
    cols = ["ts_ns", "cpu", "pid", "tgid", "comm", "event", "body"]
    assert (
        out.filter(pl.col("cls") == "event")
        .select(cols)
        .equals(plain.filter(pl.col("cls") == "event").select(cols))
    )
    bad = out.filter(pl.col("cls") == "reject").row(0, named=True)
    assert "not valid bpftrace JSON" in bad["reason"]


def test_plain_lost_events_marker():
    out, _ = frame("x.txt", "bpftrace", lines=["Lost 42 events", "Lost many events"])
    assert out["cls"].cast(pl.String).to_list() == ["lost", "reject"]
    assert out["lost_events"][0] == 42 and out["text"][0] == "Lost 42 events"


def test_json_unknown_type_is_rejected_not_dropped():
    out, _ = frame(
        "x.json", "bpftrace-json", lines=['{"type": "helper_error", "data": {"msg": "x"}}', ""]
    )
    assert out["cls"].cast(pl.String).to_list() == ["reject", "comment"]
    assert "helper_error" in out["reason"][0]


@pytest.mark.parametrize(
    ("name", "fmt"), [("pinscope.txt", "bpftrace"), ("pinscope.json", "bpftrace-json")]
)
def test_framed_bpftrace_maps_to_kinds(name, fmt):
    out, _ = frame(name, fmt)
    chunk = map_events(out.filter(pl.col("cls") == "event"), "bt", load_mapping())
    assert chunk.other.height == 0
    ev = chunk.events.sort("ts_ns")
    kinds = ev["kind"].cast(pl.String).to_list()
    assert kinds == [
        "pin", "get", "mkclean", "wb_start", "wb_end", "dirty", "unpin", "put",
        "truncate", "free_buffers", "mkwrite", "replace", "fork",
    ]  # fmt: skip
    first = ev.row(0, named=True)
    assert (first["pfn"], first["refs"], first["gup_flags"], first["caller"]) == (
        1065296,
        1,
        0x80003,
        "ib_umem_get",
    )
    assert ev.row(1, named=True)["refs"] == 2
    assert ev.row(6, named=True)["refs"] == -1
    assert ev.row(11, named=True)["new_pfn"] == 2000000
    assert chunk.rejects.height == 1 and "pfn=-1" in chunk.rejects["reason"][0]


def test_chunks_carry_the_header_once():
    lines = (GOLDEN / "pinscope.txt").read_text().splitlines()
    ctx = ChunkContext(path="x", format="bpftrace")
    a = frame_bpftrace(pl.Series(lines[:5]), 1, ctx)
    b = frame_bpftrace(pl.Series(lines[5:]), 6, ctx)
    assert ctx.extra["kernel"] == "6.8.0-45-generic"
    assert pl.concat([a, b])["line"].to_list() == list(range(1, len(lines) + 1))
