"""The streaming ingest: line accounting, chunk carry-over, containers, re-ingest, safety."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import zstandard

from ingest import dataset as ds
from ingest import source as src
from ingest.errors import InputError
from ingest.pipeline import ingest_files
from ingest.schema import TABLES

GOLDEN = Path(__file__).parent / "golden" / "real"
PY = sys.executable


# Lines made with the kernel's own TP_printk formats (KERNEL.md), 5-char irq-info flags.
def ftrace_line(comm: str, pid: int, cpu: int, ts_us: int, event: str, body: str) -> str:
    secs, usecs = divmod(ts_us, 1_000_000)
    return f"{comm:>16}-{pid:<7d} [{cpu:03d}] ..... {secs:5d}.{usecs:06d}: {event}: {body}"


def synthetic_trace(n_events: int = 400, *, lost_every: int = 97, stack_every: int = 53) -> str:
    """A trace with page events, other events, lost markers, stacks and a header."""
    out = [
        "# pinscope kernel=6.1.0-test host=box1",
        "# tracer: nop",
        "#",
        "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION",
    ]
    ts = 1_000_000_000
    for i in range(n_events):
        ts += 7
        cpu = i % 2
        k = i % 4
        if k == 0:
            out.append(
                ftrace_line(
                    "dd",
                    100,
                    cpu,
                    ts,
                    "mm_filemap_add_to_page_cache",
                    f"dev 254:0 ino 1a pfn=0x{0x1000 + i:x} ofs={4096 * i} order=0",
                )
            )
        elif k == 1:
            out.append(
                ftrace_line(
                    "dd", 100, cpu, ts, "writeback_dirty_folio", f"bdi 254:0: ino=26 index={i}"
                )
            )
        elif k == 2:
            out.append(
                ftrace_line(
                    "kworker/0:1",
                    7,
                    cpu,
                    ts,
                    "sched_switch",
                    "prev_comm=a prev_pid=1 prev_prio=120 prev_state=S ==> next_comm=b "
                    "next_pid=2 next_prio=120",
                )
            )
        else:
            out.append(
                ftrace_line(
                    "dd", 100, cpu, ts, "mm_page_free", f"page=0000000012345678 pfn=0x{i:x} order=0"
                )
            )
        if i % stack_every == 5:
            out += [
                ftrace_line("dd", 100, cpu, ts, "<stack trace>", "").rstrip(": "),
                " => folio_mark_dirty",
                " => iomap_write_end",
                " => iomap_file_buffered_write",
            ]
        if i % lost_every == 11:
            out.append(f"CPU:{cpu} [LOST {i} EVENTS]")
    return "\n".join(out) + "\n"


def table(dsdir: Path, name: str) -> pl.DataFrame:
    return ds.scan(dsdir, name).collect().sort("line")


def snapshot(dsdir: Path) -> dict[str, object]:
    files = sorted(str(p.relative_to(dsdir)) for p in dsdir.rglob("*") if p.name != ".lock")
    return {"manifest": (dsdir / "manifest.json").read_text(), "files": files}


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    p = tmp_path / "syn.trace"
    p.write_text(synthetic_trace())
    return p


def test_line_accounting_adds_up_on_real_traces(tmp_path: Path) -> None:
    files = sorted(p for p in GOLDEN.iterdir() if p.suffix in (".trace", ".txt"))
    d = tmp_path / "ds"
    res = ingest_files(files, d)
    assert len(res) == len(files)
    for r in res:
        lines = r.entry["lines"]
        n_file = len(r.path.read_bytes().splitlines())
        assert lines["total"] == n_file
        assert sum(v for k, v in lines.items() if k != "total") == n_file
        tid = r.trace_id
        for tname, key in [
            ("events", "events"),
            ("other_events", "other"),
            ("stacks", "stack"),
            ("lost", "lost"),
            ("rejects", "rejected"),
        ]:
            got = table(d, tname).filter(pl.col("trace_id") == tid).height
            assert got == lines[key], (tid, tname)
    by_id = {r.trace_id: r.entry for r in res}
    assert by_id["real-default"]["events_by_kind"].get("free", 0) > 0
    clocks = {tid: e["clock"] for tid, e in by_id.items()}
    assert clocks["real-counter"] == "counter"
    assert clocks["real-tracecmd-ns"] == "ns"
    assert clocks["real-default"] == clocks["real-latency"] == clocks["real-perf"] == "us"


def test_chunking_does_not_change_the_result(
    tmp_path: Path, trace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = ingest_files([trace], tmp_path / "one")[0].entry
    monkeypatch.setattr(src, "BLOCK_SIZE", 1500)  # ~15 lines per chunk: stacks and gaps cross
    many = ingest_files([trace], tmp_path / "many")[0].entry
    for key in ("lines", "events_by_kind", "lost_events", "first_ts_ns", "last_ts_ns", "warnings"):
        assert one[key] == many[key], key
    for name in TABLES:
        a = table(tmp_path / "one", name)
        b = table(tmp_path / "many", name)
        assert a.equals(b), name
    assert len(list((tmp_path / "many" / "events").rglob("*.parquet"))) > 5
    assert one["sha256"] == many["sha256"] == hashlib.sha256(trace.read_bytes()).hexdigest()


def test_manifest_entry(tmp_path: Path, trace: Path) -> None:
    e = ingest_files([trace], tmp_path / "ds")[0].entry
    assert e["trace_id"] == "syn"
    assert e["source"] == str(trace.resolve())
    assert e["size"] == trace.stat().st_size
    assert e["format"] == "ftrace"
    assert (e["kernel"], e["host"]) == ("6.1.0-test", "box1")
    assert e["first_ts_ns"] == 1_000_000_007_000
    assert e["last_ts_ns"] == 1_000_000_000_000 + 7_000 * 400
    assert e["lines"]["lost"] == 5  # i % 97 == 11 for i < 400: 11, 108, 205, 302, 399
    assert e["lost_events"] == 11 + 108 + 205 + 302 + 399
    assert e["lost_markers_unknown"] == 0
    assert e["warnings"]["time_backwards_per_cpu"] == 0
    stacks = table(tmp_path / "ds", "stacks")
    assert e["lines"]["stack"] == stacks.height
    assert stacks["event_line"].n_unique() == 8  # i % 53 == 5 for i < 400
    assert stacks.filter(pl.col("frame").str.contains("folio_mark_dirty")).height == 8
    on_disk = ds.traces(tmp_path / "ds")
    assert on_disk == [e]
    e2 = ingest_files([trace], tmp_path / "ds2", kernel="5.15.0")[0].entry
    assert e2["kernel"] == "5.15.0"


def test_lost_gaps_take_the_neighbouring_timestamps_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        ftrace_line("a", 1, 0, 2_000_000 + i, "sched_wakeup", "comm=x pid=2") for i in range(30)
    ]
    lines.insert(0, "CPU:0 [LOST EVENTS]")  # before any timestamp: open start
    lines.insert(16, "CPU:1 [LOST 3 EVENTS]")  # between line 16 (ts +14) and line 18 (ts +15)
    lines.append("CPU:0 [LOST 4 EVENTS]")  # after the last timestamp: open end
    p = tmp_path / "lost.trace"
    p.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(src, "BLOCK_SIZE", 200)
    e = ingest_files([p], tmp_path / "ds")[0].entry
    assert e["lost_events"] == 7
    assert e["lost_markers_unknown"] == 1
    lost = table(tmp_path / "ds", "lost")
    assert lost.select("line", "cpu", "lost_events", "gap_start_ts_ns", "gap_end_ts_ns").rows() == [
        (1, 0, None, None, 2_000_000_000),
        (17, 1, 3, 2_000_014_000, 2_000_015_000),
        (33, 0, 4, 2_000_029_000, None),
    ]


def test_time_backwards_within_a_cpu_is_counted_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ts = [10, 20, 30, 25, 40, 50, 45, 60, 70, 5]  # cpu 0 goes back at 25, 45 and 5
    lines = [ftrace_line("a", 1, 0, 3_000_000 + t, "sched_wakeup", "comm=x pid=2") for t in ts]
    # cpu 1 interleaves with earlier times: not a per-CPU step back
    lines += [
        ftrace_line("b", 2, 1, 3_000_000 + t, "sched_wakeup", "comm=x pid=2") for t in (1, 2, 3)
    ]
    p = tmp_path / "back.trace"
    p.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(src, "BLOCK_SIZE", 150)
    e = ingest_files([p], tmp_path / "ds")[0].entry
    assert e["warnings"]["time_backwards_per_cpu"] == 3
    assert e["first_ts_ns"] == 3_000_001_000
    assert e["last_ts_ns"] == 3_000_070_000


def test_stack_depth_continues_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(src, "BLOCK_SIZE", 64)
    shutil.copy(GOLDEN / "real-stack.trace", tmp_path / "s.trace")
    ingest_files([tmp_path / "s.trace"], tmp_path / "ds")
    st = table(tmp_path / "ds", "stacks")
    assert st.height > 0
    # depth counts 0,1,2,… within each event's block, in line order
    check = st.with_columns(pl.int_range(pl.len()).over("event_line").alias("want"))
    assert (check["depth"] == check["want"]).all()
    assert (st["event_line"] < st["line"]).all()


def test_reingest_same_file_is_a_noop(tmp_path: Path, trace: Path) -> None:
    d = tmp_path / "ds"
    ingest_files([trace], d)
    before = snapshot(d)
    copy = tmp_path / "renamed.trace"
    shutil.copy(trace, copy)
    res = ingest_files([trace, copy], d)
    assert [r.status for r in res] == ["already", "already"]
    assert res[1].message.endswith("already ingested as syn")
    assert snapshot(d) == before


def test_replace_and_id_dedup(tmp_path: Path, trace: Path) -> None:
    d = tmp_path / "ds"
    ingest_files([trace], d)
    # same stem, different content → a new id
    other = tmp_path / "sub" / "syn.trace"
    other.parent.mkdir()
    other.write_text(synthetic_trace(40))
    r = ingest_files([other], d)[0]
    assert (r.trace_id, r.status) == ("syn-2", "ingested")
    # an explicit id that holds other data needs --replace
    with pytest.raises(InputError, match="already holds"):
        ingest_files([other], d, trace_id="syn")
    r = ingest_files([trace], d, replace=True)[0]
    assert (r.trace_id, r.status) == ("syn", "replaced")
    assert [t["trace_id"] for t in ds.traces(d)] == ["syn-2", "syn"]
    r = ingest_files([other], d, trace_id="syn", replace=True)[0]
    assert r.status == "replaced"
    ev = table(d, "events")
    assert (
        ev.filter(pl.col("trace_id") == "syn").height
        == ev.filter(pl.col("trace_id") == "syn-2").height
    )
    with pytest.raises(InputError, match="trace id"):
        ingest_files([trace], d, trace_id="../evil")


@pytest.mark.parametrize("kind", ["gz", "xz", "bz2", "zst"])
def test_compressed_inputs(tmp_path: Path, trace: Path, kind: str) -> None:
    raw = trace.read_bytes()
    packed = {
        "gz": gzip.compress,
        "xz": lzma.compress,
        "bz2": bz2.compress,
        "zst": lambda b: zstandard.ZstdCompressor().compress(b),
    }[kind](raw)
    p = tmp_path / "packed.log"  # misleading suffix: detection is by magic bytes
    p.write_bytes(packed)
    plain = ingest_files([trace], tmp_path / "a")[0].entry
    e = ingest_files([p], tmp_path / "b")[0].entry
    assert e["container"] == kind
    assert e["lines"] == plain["lines"]
    assert e["sha256"] == hashlib.sha256(packed).hexdigest()  # of the file, not of its text
    assert (
        table(tmp_path / "a", "events")
        .drop("trace_id")
        .equals(table(tmp_path / "b", "events").drop("trace_id"))
    )


def test_crlf_and_missing_final_newline(tmp_path: Path, trace: Path) -> None:
    text = trace.read_text()
    p = tmp_path / "crlf.trace"
    p.write_bytes(text.rstrip("\n").replace("\n", "\r\n").encode())
    a = ingest_files([trace], tmp_path / "a")[0].entry
    b = ingest_files([p], tmp_path / "b")[0].entry
    assert a["lines"] == b["lines"]
    # hashed from the chunks as read: the \r the lines lose and the missing newline count
    assert b["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert (
        table(tmp_path / "a", "events")
        .drop("trace_id")
        .equals(table(tmp_path / "b", "events").drop("trace_id"))
    )


def test_bad_inputs(tmp_path: Path, trace: Path) -> None:
    d = tmp_path / "ds"
    with pytest.raises(InputError, match="no such file"):
        ingest_files([tmp_path / "nope.trace"], d)
    with pytest.raises(InputError, match="is a directory"):
        ingest_files([tmp_path], d)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(InputError, match=r"junk.bin: binary data"):
        ingest_files([trace, junk], d)
    assert not d.exists()  # checked before anything was written
    empty = tmp_path / "empty.trace"
    empty.write_text("")
    with pytest.raises(InputError, match="empty file"):
        ingest_files([empty], d)
    assert ds.traces(d) == []
    with pytest.raises(InputError, match="unknown format"):
        ingest_files([trace], d, format="csv")
    notds = tmp_path / "notds"
    notds.mkdir()
    (notds / "precious.txt").write_text("x")
    with pytest.raises(InputError, match="not a pinscope dataset"):
        ingest_files([trace], notds)


def test_dat_without_trace_cmd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH on which trace-cmd does not exist
    with pytest.raises(InputError, match=r"real.dat is a trace-cmd .dat file; install trace-cmd"):
        ingest_files([GOLDEN / "real.dat"], tmp_path / "ds")


@pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="trace-cmd not installed")
def test_real_dat_through_trace_cmd(tmp_path: Path) -> None:
    e = ingest_files([GOLDEN / "real.dat"], tmp_path / "ds")[0].entry
    assert e["container"] == "dat"
    assert e["format"] == "trace-cmd"
    assert (e["host"], e["kernel"]) == ("vm", "6.18.44-fc-v657")
    assert e["clock"] == "ns"
    # same capture as the -t report text shipped beside it
    text = GOLDEN / "real-tracecmd-ns.txt"
    assert e["lines"]["total"] == len(text.read_bytes().splitlines())
    t = ingest_files([text], tmp_path / "ds2")[0].entry
    assert e["events_by_kind"] == t["events_by_kind"]
    assert e["first_ts_ns"] == t["first_ts_ns"]


def _big_trace(path: Path, copies: int) -> None:
    block = synthetic_trace(2000).encode()
    with open(path, "wb") as f:
        for _ in range(copies):
            f.write(block)


def test_interrupted_ingest_leaves_dataset_as_it_was(tmp_path: Path, trace: Path) -> None:
    d = tmp_path / "ds"
    ingest_files([trace], d)
    before = snapshot(d)
    big = tmp_path / "big.trace"
    _big_trace(big, 150)  # ~45 MB: several chunks
    code = (
        "import sys; from ingest import source; source.BLOCK_SIZE = 1 << 20\n"
        "from ingest.pipeline import ingest_files\n"
        f"ingest_files([{str(big)!r}], {str(d)!r})\n"
    )
    proc = subprocess.Popen([PY, "-c", code], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            parts = list(d.glob(".tmp-*/events/*.parquet"))
            if len(parts) >= 2:
                break
            assert proc.poll() is None, "ingest finished before it could be interrupted"
            time.sleep(0.01)
        else:
            pytest.fail("ingest never started writing")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert list(d.glob(".tmp-*"))  # it had started writing
    assert json.loads(before["manifest"]) == ds.manifest(d)  # type: ignore[arg-type]
    assert [t["trace_id"] for t in ds.traces(d)] == ["syn"]
    assert ds.scan(d, "events").collect()["trace_id"].unique().to_list() == ["syn"]
    # the next writer removes the leftovers
    ingest_files([trace], d)  # no-op ingest still collects garbage
    assert snapshot(d) == before


def test_two_concurrent_ingests_both_commit(tmp_path: Path) -> None:
    d = tmp_path / "ds"
    files = []
    for i in range(2):
        p = tmp_path / f"t{i}.trace"
        _big_trace(p, 10 + i)
        files.append(p)
    code = (
        "import sys\nfrom ingest.pipeline import ingest_files\n"
        "ingest_files([sys.argv[1]], sys.argv[2])\n"
    )
    procs = [subprocess.Popen([PY, "-c", code, str(p), str(d)]) for p in files]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert sorted(t["trace_id"] for t in ds.traces(d)) == ["t0", "t1"]
    counts = ds.scan(d, "events").group_by("trace_id").len().collect().sort("trace_id")
    per_copy = ingest_files([files[0]], tmp_path / "solo")[0].entry["lines"]["events"] // 10
    assert counts["len"].to_list() == [per_copy * 10, per_copy * 11]
    assert not list(d.glob(".tmp-*"))


@pytest.mark.parametrize("seekable", [True, False])
def test_a_files_last_blocks_are_read_smaller(seekable: bool) -> None:
    """With the size known, the last TAIL_BLOCKS blocks come in blocks TAIL_SPLIT times
    smaller (the two workers then finish close together); the bytes and lines are the same."""
    data = b"".join(b"line %d %s\n" % (i, b"x" * (i % 37)) for i in range(3000))
    data += b"no final newline"

    class Pipe(io.BytesIO):
        def seekable(self) -> bool:
            return seekable

    plain = list(src.iter_line_chunks(Pipe(data), 4096))
    tailed = list(src.iter_line_chunks(Pipe(data), 4096, size=len(data)))
    for chunks in (plain, tailed):
        assert b"".join(bytes(c.data[: c.nbytes]) for c in chunks) == data
        assert sum(c.n_lines for c in chunks) == 3001
    assert [c.first_line for c in tailed][:5] == [c.first_line for c in plain][:5]
    sizes = [c.nbytes for c in tailed]
    small = 4096 // src.TAIL_SPLIT + 64  # (a pipe's chunk also holds the line carried over)
    k = len(sizes)  # where the run of small blocks at the end begins
    while k and sizes[k - 1] <= small:
        k -= 1
    assert len(sizes) - k >= 3 and sum(sizes[k:]) > 4096 // 2 and sizes[k - 1] > 4096 // 2
    assert max(c.nbytes for c in plain[-3:-1]) > 4096 // 2  # (without the size: whole blocks)
