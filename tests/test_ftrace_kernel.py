"""The compiled ftrace path must give exactly what the polars readers give.

The kernels (ingest/ftrace_kernel.py) frame and map the plain lines and leave the rest to
polars; these properties feed both paths lines close to the layout — comms with spaces and
dashes, `<...>`, 4/5/6-character irq flags or none, a TGID column or none, odd numbers,
non-ASCII, NUL — and bodies with every kind of number the mapping reads, and require the
same frames and tables. The edge tests cover chunk boundaries, a cut-off last line, CRLF and
invalid UTF-8 through the whole pipeline.
"""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from ingest import pipeline
from ingest import read_ftrace as rf
from ingest import source as src
from ingest.framing import ChunkContext, conform_framed
from ingest.ftrace_chunk import frame_map_chunk
from ingest.mapping import load_mapping, map_events
from ingest.schema import conform

GOLDEN_MAP = Path(__file__).parent / "golden" / "mapping" / "user_map.toml"

# --------------------------------------------------------------------------- framing

_COMMS = ["dd", "kworker/u8:2-events", "jbd2/sda1-8", "a-1-2 [3]", "my app-x", "<...>", "a-1b",
          "  lead", "#x", "=>z", "", "é-x", "a\x00b", "a: b", "-", "x-12 [3] ",
          "sh-5 (12) [1] "]  # fmt: skip
_PIDS = ["4242", "0", "0007", "2147483647", "2147483648", "99999999999", "4 2", "42x", ""]
_TGIDS = ["", "(   12) ", "(-------) ", "(2147483648) ", "( 1 2) ", "(12)", "(-1) "]
_CPUS = ["002", "0", "32767", "32768", "00001", "x1", ""]
_FLAGS = ["", "d..1 ", "d..2. ", "dNs2.. ", ".... ", "..... ", "...... ", "d.. ", "d....... ",
          "1..2 ", ".:.. ", "é... ", "d..1  "]  # fmt: skip
_SECS = ["1000", " 1000", "   7", "0", "9000000000", "9000000001", "1234567890123456789", "1 0"]
_FRACS = ["", ".000006", ".123456789", ".1234567890", ".", ".12a", ".0"]
_EVENTS = ["sched_switch", "pinscope_pin", "probe:pinscope_pin", "", "a b", "x:y", "é"]
_SEPS = [": ", ":", ":  ", " : "]
_BODIES = ["pfn=0x1 val=3", " lead", "", "a: b: c", "é", "\x00", "k=v", ": ", "x\ty", "v=1\r"]


@st.composite
def _ftrace_line(draw: st.DrawFn) -> str:
    """A line in the ftrace layout, each piece now and then replaced by an odd one."""

    def pick(options: list[str], usual: str) -> str:
        return draw(st.sampled_from(options)) if draw(st.integers(0, 7)) == 0 else usual

    kind = draw(st.integers(0, 19))
    if kind == 0:
        return draw(st.text(max_size=40))
    if kind == 1:
        return draw(
            st.sampled_from(
                [
                    " => foo+0x1/0x2",
                    "CPU:1 [LOST 3 EVENTS]",
                    "CPU:12 [LOST EVENTS]  ",
                    "CPU:2 [-5 EVENTS DROPPED]",
                    "CPU:70000 [LOST 1 EVENTS]",
                    "CPU:1 [LOST x EVENTS]",
                    "# tracer: nop",
                    "",
                    "   ",
                    " <stack trace>",
                    "version = 6",
                    "CPU 3 is empty",
                ]
            )
        )
    comm = pick(_COMMS, "dd").rjust(draw(st.sampled_from([16, 12, 0])))
    head = (
        f"{comm}-{pick(_PIDS, '4242')}{pick(['', '   '], ' ')} {pick(_TGIDS, '')}"
        f"[{pick(_CPUS, '002')}] {pick(_FLAGS, '..... ')}{pick(_SECS, '1000')}"
        f"{pick(_FRACS, '.000006')}"
    )
    if kind == 2:  # latency format
        return f"{comm}-4242    2d..1. 276242022us : {pick(_EVENTS, 'sched_switch')}: x=1"
    if kind == 3:  # function tracer
        return f"{head}: do_sys_open <-__x64_sys_openat"
    if kind == 4:  # a stack-trace marker, now and then not quite one
        marker = ["<stack trace>", "<user stack trace>", "<stack trace> ", "<stack trace", "<x>"]
        return f"{head}{pick(_SEPS, ': ')}{pick(marker, '<stack trace>')}"
    return (
        f"{head}{pick(_SEPS, ': ')}{pick(_EVENTS, 'page_ref_mod')}{pick(_SEPS, ': ')}"
        f"{pick(_BODIES, 'pfn=0x1 val=3')}"
    )


def _ctx() -> ChunkContext:
    return ChunkContext(path="prop.trace", format="ftrace")


@settings(max_examples=300, deadline=None)
@given(st.lists(_ftrace_line(), min_size=1, max_size=30), st.integers(1, 5))
@example(["              dd-4242    [002] ..... 1000.000006: page_ref_mod: pfn=0x1 val=3"], 1)
@example([" => foo", "   x-1 [000] 1.5: ev: b", " => bar"], 1)
def test_kernel_frames_what_the_polars_reader_frames(lines: list[str], first: int) -> None:
    s = pl.Series("line", lines, dtype=pl.String)
    assert_frame_equal(rf.frame_ftrace(s, first, _ctx()), rf.frame_ftrace_polars(s, first, _ctx()))


def test_the_kernel_takes_the_plain_lines() -> None:
    """The property above means something only if the kernel really frames lines."""
    from ingest import arrow_cols, ftrace_kernel

    s = pl.Series(
        [
            "              dd-4242    [002] ..... 1000.000006: page_ref_mod: pfn=0x1 val=3",
            "     kworker/1:2-117     (  117) [001] d..1 1000.5: sched_switch: a=b",
            "           <...>-7       [000] 12345678: pinscope_pin: pfn=0x1",
            "       my app-x-31337 [003] 1.000000001: x: ",
            "              dd-4242    [002] ..... 1000.000006: page_ref_mod:  lead",
            "# tracer: nop",
        ]
    )
    buf, starts, ends = arrow_cols.string_buffers(s)
    clean = ftrace_kernel.clean_spans(buf, starts, ends)
    out = ftrace_kernel.frame_lines(buf, ftrace_kernel.loads_of(buf), starts, ends, clean)
    assert out[0].tolist() == [True, True, True, True, False, False]
    # then compact, one entry per framed line: its index, ..., name and body spans
    assert out[1].tolist() == [0, 1, 2, 3]
    text = buf.tobytes().decode()
    assert [text[a:b] for a, b in zip(out[8], out[9], strict=True)] == [
        "page_ref_mod",
        "sched_switch",
        "pinscope_pin",
        "x",
    ]
    assert [text[a:b] for a, b in zip(out[10], out[11], strict=True)] == [
        "pfn=0x1 val=3",
        "a=b",
        "pfn=0x1",
        "",
    ]


def test_the_kernel_takes_function_lines_and_stack_frames() -> None:
    """Function-tracer lines (an empty name span: the event `function`) and ` => ` frames
    are the kernel's too, so that the property above covers them; the odd ones are not."""
    from ingest import arrow_cols, ftrace_kernel

    s = pl.Series(
        [
            "            bash-2201    [000] .....     0.000000: pin_user_pages_fast <-ib_umem_get",
            "            bash-2201    [000] .....     0.000001: schedule",
            " => try_grab_folio",
            " =>   padded+0x1/0x2  ",
            "            bash-2201    [000] .....     0.000002: <stack trace>",
            "            bash-2201    [000] .....     0.000003: two words",
            "            bash-2201    [000] .....     0.000004: bare_event:",
            "  => not_a_frame",
        ]
    )
    buf, starts, ends = arrow_cols.string_buffers(s)
    clean = ftrace_kernel.clean_spans(buf, starts, ends)
    out = ftrace_kernel.frame_lines(buf, ftrace_kernel.loads_of(buf), starts, ends, clean)
    text = buf.tobytes().decode()
    assert out[0].tolist() == [True, True] + [False] * 6
    assert [text[a:b] for a, b in zip(out[8], out[9], strict=True)] == ["", ""]
    assert [text[a:b] for a, b in zip(out[10], out[11], strict=True)] == [
        "pin_user_pages_fast <-ib_umem_get",
        "schedule",
    ]
    assert out[12].tolist() == [False, False, True, True, False, False, False, False]
    assert out[13].tolist() == [2, 3]
    assert [text[a:b] for a, b in zip(out[14], out[15], strict=True)] == [
        "try_grab_folio",
        "padded+0x1/0x2",
    ]
    # the `<stack trace>` marker: the kernel's too, with its header's values
    assert out[16].tolist() == [False] * 4 + [True] + [False] * 3
    (marker,) = out[17].tolist()
    assert marker[ftrace_kernel.MK_ROW] == 4 and marker[ftrace_kernel.MK_TS] == 2000
    assert text[marker[ftrace_kernel.MK_COMM_S] : marker[ftrace_kernel.MK_COMM_E]] == "bash"
    assert text[marker[ftrace_kernel.MK_BODY_S] : ends[4]] == "<stack trace>"
    framed = rf.frame_ftrace(s, 1, _ctx())
    assert framed["event"].to_list()[:2] == ["function", "function"]
    assert framed["cls"].to_list()[2:5] == ["stack", "stack", "stack"]


def test_markers_and_lost_lines_skip_the_general_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk of event lines, stack traces and lost-event markers (what a long trace's chunks
    hold) is framed without the general reader, whose set-up cost ~30 ms a chunk; the rows are
    still the general reader's, as the property above checks for every mix of lines."""
    from ingest import ftrace_fast

    s = pl.Series(
        [
            "            bash-2201    [000] .....     0.000001: page_ref_mod: pfn=0x1 val=3",
            "            bash-2201    [000] .....     0.000002: <stack trace>",
            " => try_grab_folio",
            "CPU:1 [LOST 187 EVENTS]",
            "          <...>-7   (    7) [001] d..1     0.000003: <user stack trace>",
            " => 0x7f0000001000",
            "CPU:3 [EVENTS DROPPED]",
        ]
    )
    want = rf.frame_ftrace_polars(s, 1, _ctx())

    def general_reader(*_: object) -> None:
        raise AssertionError("the general reader was called")

    monkeypatch.setattr(ftrace_fast, "frame_unattached", general_reader)
    got = rf.frame_ftrace(s, 1, _ctx())
    assert_frame_equal(got, want)
    assert got["cls"].to_list() == ["event", "stack", "stack", "lost", "stack", "stack", "lost"]
    assert got["lost_events"].to_list()[3] == 187 and got["tgid"].to_list()[4] == 7


def test_the_kernel_takes_a_comm_with_a_dash_and_digits() -> None:
    """`jbd2/sda1-8` (ext4's journal thread): the comm runs to the `-digit` after which the
    header parses, as the reader's lazy regex has it, not to the first one."""
    from ingest import arrow_cols, ftrace_kernel

    line = "     jbd2/sda1-8-581     [001] .....     0.001488: sched_wakeup: comm=dd pid=1"
    s = pl.Series([line])
    buf, starts, ends = arrow_cols.string_buffers(s)
    clean = ftrace_kernel.clean_spans(buf, starts, ends)
    out = ftrace_kernel.frame_lines(buf, ftrace_kernel.loads_of(buf), starts, ends, clean)
    assert out[0].tolist() == [True]
    assert line[out[6][0] : out[7][0]] == "jbd2/sda1-8" and out[4].tolist() == [581]
    framed = rf.frame_ftrace(s, 1, _ctx()).row(0, named=True)
    assert (framed["comm"], framed["pid"]) == ("jbd2/sda1-8", 581)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 9))
def test_line_hashes_depend_on_the_bytes_only(data: bytes, shift: int) -> None:
    """Duplicate lines are found by hash: the same bytes hash the same wherever they sit in a
    chunk, through 8-byte loads or byte by byte."""
    import numpy as np

    from ingest import ftrace_kernel as k

    alone = np.frombuffer(data, np.uint8)
    inside = np.frombuffer(b"x" * shift + data + b"yz", np.uint8)
    loads = k.loads_of(inside)
    assert all(
        int(loads[j]) == int.from_bytes(inside[j : j + 8].tobytes(), "little")
        for j in range(len(loads))
    )
    span = (np.array([shift]), np.array([shift + len(data)]))
    h = k.hash_spans(alone, k.loads_of(alone), np.array([0]), np.array([len(data)]))
    assert h[0] == k.hash_spans(inside, loads, *span)[0]
    assert h[0] == k.hash_spans(inside, np.zeros(0, np.uint64), *span)[0]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.booleans()), max_size=40), st.randoms())
def test_take_gathers_converts_and_nulls_in_one_pass(rows: list, rnd: random.Random) -> None:
    """arrow_cols.take: values[idx] in the narrower type, null where not valid (the validity
    bitmap built by the kernel), as pyarrow's own gather and cast give it."""
    import numpy as np
    import pyarrow as pa

    from ingest import arrow_cols, ftrace_kernel

    values = np.array([v for v, _ in rows], np.uint64)
    valid = np.array([ok for _, ok in rows], np.bool_)
    idx = np.array([rnd.randrange(len(rows)) for _ in range(len(rows) * 2)] if rows else [])
    idx = idx.astype(np.int64)
    got = arrow_cols.take(values, idx, valid, np.uint8)
    want = pa.array(values, mask=~valid).take(pa.array(idx)).cast(pa.uint8())
    assert got.type == pa.uint8()
    assert got.to_pylist() == want.to_pylist()
    assert arrow_cols.take(values, idx).to_pylist() == values[idx].tolist()
    buf = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz" * 2, np.uint8)
    starts = np.arange(len(rows), dtype=np.int64) % 20
    views = ftrace_kernel.view_spans(buf, ftrace_kernel.loads_of(buf), starts, starts + 20)
    assert np.array_equal(ftrace_kernel.take_views(views, idx), views[idx])


_NAMES = ["a", "ab", "sched_switch", "sched_switcH", "x" * 8, "x" * 9, "y" * 17,
          "mm_filemap_add_to_page_cache", "mm_filemap_adX_to_page_cache",
          "mm_filemap_add_to_page_cachE"]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_NAMES), max_size=30))
def test_name_ids_number_names_by_first_appearance(names: list[str]) -> None:
    """Names that differ in one byte anywhere (head, middle, tail) get different ids; the
    last name ends at the buffer's end, where no 8-byte load fits."""
    import numpy as np

    from ingest import arrow_cols, ftrace_kernel

    buf, starts, ends = arrow_cols.string_buffers(pl.Series(names, dtype=pl.String))
    rows = np.arange(len(names), dtype=np.int64)
    ids, first = ftrace_kernel.name_ids(buf, ftrace_kernel.loads_of(buf), rows, starts, ends)
    order = list(dict.fromkeys(names))
    assert ids.tolist() == [order.index(x) for x in names]
    assert first.tolist() == [names.index(x) for x in order]


# --------------------------------------------------------------------------- mapping

_VALUES = ["0x1f", "31", "0", "-5", "0X1F", "+5", "0x", "", "18446744073709551615",
           "18446744073709551616", "0xffffffffffffffff", "0x10000000000000000", "255", "256",
           '"ib_umem_get"', "ib_umem_get+0x1a/0x300", "+x", "-2147483648", "2147483648",
           "1024", "-1024", "1023", "8:1", "4096:0", "8:1048576", "1:2:3", ":5", "4294967296",
           "head|lru", "uptodate|lru", "ffffea0004d54000", "0xffffea0000000000",
           "0xffffea0004d54040", "-0x10", "0x-5", "1e3"]  # fmt: skip
_KEYS = ["pfn", "refs", "flags", "order", "new_pfn", "caller", "dev", "ino", "index", "count",
         "page", "vmemmap", "new_page", "val", "ofs", "mapcount", "nr", "gup_flags", "ip",
         "pg", "delta", "inode", "pos", "prev_comm", "x.y", "[a]", "_k", "9k"]  # fmt: skip
_MAPPED = ["pinscope_pin", "pinscope_unpin", "pinscope_get", "pinscope_put", "pinscope_replace",
           "pinscope_dirty", "probe:pinscope_pin", "pinscope_fork", "pinscope_nosuch",
           "mm_filemap_add_to_page_cache", "mm_filemap_delete_from_page_cache", "page_ref_mod",
           "page_ref_set", "writeback_dirty_folio", "mm_page_free", "mm_page_free_batched",
           "mm_page_alloc", "sched_process_fork", "sched_switch", "my_gup_probe", "ref_delta",
           "file_touch", "unknown_event"]  # fmt: skip


@st.composite
def _token(draw: st.DrawFn) -> str:
    key = draw(st.sampled_from(_KEYS))
    value = draw(st.sampled_from(_VALUES))
    form = draw(st.integers(0, 9))
    if form == 0:
        return f"{key} {value}"  # `dev 8:1`, `ino 3f85d`
    if form == 1:
        return draw(st.sampled_from(["bdi 8:0:", "==>", "[ns]", "(try_grab_folio+0x0/0x80)", "="]))
    if form == 2:
        return f"{key}={value}={value}"
    return f"{key}={value}"


@st.composite
def _event_line(draw: st.DrawFn) -> str:
    event = draw(st.sampled_from(_MAPPED))
    tokens = draw(st.lists(_token(), max_size=8))
    sep = draw(st.sampled_from([" ", " ", " ", "  "]))
    comm = draw(st.sampled_from(["dd", "kworker/1:2", "<...>"]))
    return f"{comm:>16}-4242    [002] ..... 1000.000006: {event}: {sep.join(tokens)}"


def _polars_path(lines: list[str], mapping: object) -> tuple[pl.DataFrame, ...]:
    s = pl.Series("line", lines, dtype=pl.String)
    framed = conform_framed(rf.frame_ftrace_polars(s, 1, _ctx()))
    m = map_events(framed.filter(pl.col("cls") == "event"), "t", mapping)  # type: ignore[arg-type]
    return (
        conform(m.events, "events").drop("trace_id"),
        conform(m.other, "other_events").drop("trace_id"),
        conform(m.rejects, "rejects"),
        framed.filter(pl.col("cls") != "event"),
    )


def _kernel_path(lines: list[str], mapping: object) -> tuple[pl.DataFrame, ...]:
    data = ("\n".join(lines) + "\n").encode()
    chunk = src.LineChunk(data, len(data), 1, len(data), data.count(b"\n"))
    t = frame_map_chunk(chunk, _ctx(), "t", mapping)  # type: ignore[arg-type]
    return (
        conform(t.events.with_columns(trace_id=pl.lit("t")), "events").drop("trace_id"),
        conform(t.other.with_columns(trace_id=pl.lit("t")), "other_events").drop("trace_id"),
        conform(t.rejects, "rejects"),
        t.framed,
    )


_BUILTIN = load_mapping()
_LINE = "              dd-4242    [002] ..... 1000.000006: {}"
_USER = load_mapping(GOLDEN_MAP)


@settings(max_examples=300, deadline=None)
@given(st.lists(_event_line(), min_size=1, max_size=25), st.booleans())
@example([_LINE.format("pinscope_pin: refs=-2147483648")], False)
@example(
    [
        _LINE.format(f"mm_filemap_add_to_page_cache: dev {dev} ino 3f pfn=0x1 ofs={ofs}")
        for dev in ("4095:1048575", "4096:0", "8:1048576", "0x8:1", "8:1:2", "4294967295")
        for ofs in ("4096", "0x1000", "18446744073709551615")
    ],
    False,
)
@example([_LINE.format(f"pinscope_pin: pfn=0x1 order={o} flags={o}") for o in _VALUES], False)
@example([_LINE.format(f"page_ref_mod: pfn=0x1 flags={f} val={v}") for f in ("head", "lru")
          for v in ("1024", "1023", "-1024", "1")], False)  # fmt: skip
def test_kernel_maps_what_the_polars_mapper_maps(lines: list[str], user: bool) -> None:
    mapping = _USER if user else _BUILTIN
    want = _polars_path(lines, mapping)
    got = _kernel_path(lines, mapping)
    for w, g in zip(want, got, strict=True):
        assert_frame_equal(g, w)  # both in line order


def test_kernel_maps_the_benchmark_lines_itself_in_line_order() -> None:
    """Plain lines: the kernel maps them all (none left to polars), in line order, as the
    polars mapper does: a trace printed in time order is stored in replay order."""
    lines = [
        "              dd-4242    [002] ..... 1000.000006: pinscope_pin: (try_grab_folio+0x0/0x80)"
        " pfn=0x100000 refs=1 flags=0x80001 order=0 caller=ib_umem_get",
        "              dd-4242    [002] ..... 1000.000007: mm_filemap_add_to_page_cache: dev 254:0"
        " ino 3f85d pfn=0x100000 ofs=4096 order=0",
        "              dd-4242    [002] ..... 1000.000008: sched_wakeup: comm=dd pid=1 prio=120",
        "              dd-4242    [002] ..... 1000.000009: page_ref_mod: pfn=0x1 flags=uptodate"
        " count=1026 mapcount=1 mapping=00000000a1b2c3d4 mt=1 val=1024",
        "              dd-4242    [002] ..... 1000.000010: pinscope_pin: pfn=0x2 refs=2",
    ]
    want = _polars_path(lines, _BUILTIN)
    got = _kernel_path(lines, _BUILTIN)
    for w, g in zip(want, got, strict=True):
        assert_frame_equal(g, w)
    assert got[0]["line"].to_list() == [1, 2, 4, 5]
    assert got[0]["kind"].to_list() == ["pin", "cache_add", "pin", "pin"]


# --------------------------------------------------------------------------- the whole pipeline


def _messy_trace(rnd: random.Random, n: int) -> bytes:
    plain = "          dd-{pid}    [00{cpu}] ..... {s}.{us:06d}: {ev}"
    events = [
        "pinscope_pin: pfn=0x{x:x} refs=1 flags=0x80001",
        "pinscope_unpin: pfn=0x{x:x} refs=1",
        "sched_wakeup: comm=dd pid=4242 prio=120",
        "page_ref_mod: pfn=0x{x:x} flags=lru count=1026 mapcount=1 mapping=0 mt=1 val=-1024",
        "writeback_dirty_folio: bdi 254:0: ino=12 index={x}",
        "pin_user_pages_fast <-ib_umem_get",  # the function tracer's
    ]
    odd = [
        b"  <stack trace>",
        b" => folio_mark_dirty",
        b"CPU:1 [LOST 37 EVENTS]",
        b"# comment",
        b"",
        b"\xff\xfe broken-1 [000] 1.0: x: y",
        b"nul\x00-1 [000] 1.0: x: y",
        "é-1     [000] ..... 5.000001: sched_switch: prev_comm=é".encode(),
        b"   app-3 [001] d..1 7.25: pinscope_get: pfn=0x5\r",
        b"   app-3 [001] 99999999999.5: pinscope_get: pfn=0x5",
        b"   app-3 [001] 3.5: pinscope_pin: pfn=0x5 refs=0x",
        b"   app-3 [001] 3.5: pinscope_pin: pfn=0x5 refs=1",  # a duplicate line
        b"   app-3 [001] 3.5: pinscope_pin: pfn=0x5 refs=1",
    ]
    out = [b"# tracer: nop", b" => orphan_frame"]  # no event before it: a reject, with its text
    for i in range(n):
        if i > 30 and rnd.random() < 0.15:  # (no NUL in the first KiB: not binary)
            out.append(rnd.choice(odd))
        else:
            # (plain events first: format detection reads the first chunk's lines)
            ev = rnd.choice(events if i > 5 else events[:-1]).format(x=rnd.randrange(1 << 20))
            line = plain.format(pid=rnd.randrange(1, 9999), cpu=i % 4, s=1000 + i, us=i, ev=ev)
            out.append(line.encode())
    return b"\n".join(out)  # no final newline: a cut-off last line


def _tables(ds: Path) -> dict[str, pl.DataFrame]:
    out = {}
    for table in ("events", "other_events", "lost", "stacks", "rejects"):
        df = pl.read_parquet(ds / table / "**" / "*.parquet", hive_partitioning=False)
        out[table] = df.sort("line", maintain_order=True)
    return out


@pytest.mark.parametrize("block", [97, 4096, 1 << 20])
def test_pipeline_tables_match_the_polars_path_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    trace = tmp_path / "messy.trace"
    trace.write_bytes(_messy_trace(random.Random(block), 1500))
    monkeypatch.setattr(src, "BLOCK_SIZE", block)
    fast = pipeline.ingest_files([trace], tmp_path / "fast")[0].entry
    with monkeypatch.context() as m:
        m.setattr(pipeline, "_COMPILED_FORMATS", ())
        m.setattr(rf, "frame_ftrace", rf.frame_ftrace_polars)
        slow = pipeline.ingest_files([trace], tmp_path / "slow")[0].entry
    for key in ("lines", "events_by_kind", "lost_events", "warnings", "first_ts_ns", "last_ts_ns"):
        assert fast[key] == slow[key], key
    assert fast["lines"]["rejected"] > 0 and fast["warnings"]["duplicate_lines"] > 0
    got, want = _tables(tmp_path / "fast"), _tables(tmp_path / "slow")
    for table in want:
        assert_frame_equal(got[table], want[table])
    orphan = got["rejects"].filter(pl.col("line") == 2).row(0, named=True)
    assert orphan["text"] == " => orphan_frame" and "no event line before it" in orphan["reason"]
    assert got["other_events"].filter(pl.col("event") == "function").height > 0
