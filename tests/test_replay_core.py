"""One readable sequence per clause of docs/replay.md, checked on BOTH the core and the oracle."""

from __future__ import annotations

import polars as pl
import pytest

from replay.core import replay_events
from replay.reference import replay_events_reference

IMPLS = pytest.mark.parametrize(
    "impl", [replay_events, replay_events_reference], ids=["core", "ref"]
)


def run(impl, rows, lost=None, kernel="6.8.0", **kw):
    full = [{"trace_id": "t", "line": i + 1, "ts_ns": (i + 1) * 100, "refs": 1, **r}
            for i, r in enumerate(rows)]  # fmt: skip
    ev = pl.DataFrame(full, infer_schema_length=None)
    lost_df = None
    if lost:
        lost_df = pl.DataFrame(
            {"trace_id": ["t"] * len(lost), "gap_start_ts_ns": [g[0] for g in lost],
             "gap_end_ts_ns": [g[1] for g in lost]},
            schema={"trace_id": pl.String, "gap_start_ts_ns": pl.Int64, "gap_end_ts_ns": pl.Int64},
        )  # fmt: skip
    return impl(ev, lost_df, kernel=kernel, **kw)


def col(res, name):
    return res.page_events.get_column(name).to_list()


def spans(res, state):
    return (
        res.intervals.filter(pl.col("state") == state)
        .sort("page_id", "start_ts_ns")
        .select("page_id", "start_line", "end_line", "open_at_start", "open_at_end")
        .rows()
    )


@IMPLS
def test_release_first_infers_a_pin_held_from_trace_start(impl):
    r = run(
        impl, [{"kind": "unpin", "pfn": 5}, {"kind": "pin", "pfn": 5}, {"kind": "unpin", "pfn": 5}]
    )
    assert col(r, "pins_before") == [1, 0, 1]
    assert col(r, "pins_after") == [0, 1, 0]
    assert col(r, "inferred_initial") == [True] * 3
    assert col(r, "mismatch") == [False] * 3
    assert spans(r, "pinned") == [
        ("pfn:5/0", None, 1, True, False),
        ("pfn:5/0", 2, 3, False, False),
    ]
    iv = r.intervals.filter(pl.col("open_at_start"))
    assert iv["start_ts_ns"].to_list() == [100] and iv["holders"].to_list() == [[]]


@IMPLS
def test_release_below_zero_after_history_known_is_a_mismatch(impl):
    seq = [{"kind": k, "pfn": 5} for k in ("pin", "unpin", "unpin", "put")]
    r = run(impl, seq)
    assert col(r, "pins_after") == [1, 0, 0, 0]
    # gets: history unknown until a get, so the put is inferred, not a mismatch
    assert col(r, "mismatch") == [False, False, True, False]
    assert col(r, "gets_before") == [1, 1, 1, 1]
    # after alloc everything is known: the first release is already a mismatch
    r2 = run(impl, [{"kind": "alloc", "pfn": 5}, {"kind": "put", "pfn": 5}])
    assert col(r2, "mismatch") == [False, True] and col(r2, "inferred_initial") == [False, False]


@IMPLS
def test_writable_pins_follow_the_min_rule(impl):
    r = run(impl, [
        {"kind": "pin", "pfn": 5, "gup_flags": 0x1},     # writable
        {"kind": "pin", "pfn": 5, "gup_flags": 0x0},     # read-only
        {"kind": "unpin", "pfn": 5},                     # read-only assumed to go first
        {"kind": "get", "pfn": 5, "gup_flags": 0x101},   # FOLL_GET|FOLL_WRITE|FOLL_LONGTERM
        {"kind": "unpin", "pfn": 5},
        {"kind": "put", "pfn": 5},
    ])  # fmt: skip
    assert col(r, "writable_pins_after") == [1, 1, 1, 2, 1, 0]
    assert col(r, "longterm_pins_after") == [0, 0, 0, 1, 1, 0]
    assert spans(r, "writable_pinned") == [("pfn:5/0", 1, 6, False, False)]
    # 0x10000 is FOLL_LONGTERM only up to 6.2
    old = run(impl, [{"kind": "pin", "pfn": 5, "gup_flags": 0x10001}], kernel="5.15.0")
    assert col(old, "longterm_pins_after") == [1] and col(old, "writable_pins_after") == [1]


@IMPLS
def test_generations_cut_a_pfn_into_lifetimes(impl):
    r = run(impl, [
        {"kind": "pin", "pfn": 7},
        {"kind": "free", "pfn": 7},                                    # freed while pinned
        {"kind": "get", "pfn": 7},                                     # after free: new life
        {"kind": "cache_add", "pfn": 7, "dev": 1, "ino": 3, "index": 0},
        {"kind": "cache_add", "pfn": 7, "dev": 1, "ino": 4, "index": 0},  # another file
        {"kind": "alloc", "pfn": 7},
    ])  # fmt: skip
    assert col(r, "generation") == [0, 0, 1, 1, 2, 3]
    assert col(r, "page_id")[-1] == "pfn:7/3"
    # the pin span of life 0 stays open: a free does not close it
    assert spans(r, "pinned") == [("pfn:7/0", 1, None, False, True)]
    assert col(r, "ino") == [None, None, None, 3, 4, None]


@IMPLS
def test_subpage_events_count_on_the_folio_head(impl):
    r = run(impl, [
        {"kind": "alloc", "pfn": 64, "folio_order": 2},
        {"kind": "pin", "pfn": 66},           # subpage of 64..67
        {"kind": "unpin", "pfn": 67},
        {"kind": "pin", "pfn": 68},           # outside the folio
        {"kind": "free", "pfn": 64, "folio_order": 2},
        {"kind": "pin", "pfn": 65},           # folio gone: its own pfn
    ])  # fmt: skip
    assert col(r, "pfn") == [64, 64, 64, 68, 64, 65]
    assert col(r, "event_pfn") == [64, 66, 67, 68, 64, 65]
    assert col(r, "pins_after")[:3] == [0, 1, 0]


@IMPLS
def test_file_only_events_resolve_through_the_page_cache(impl):
    r = run(impl, [
        {"kind": "dirty", "ino": 9, "index": 2},                           # before any cache_add
        {"kind": "cache_add", "pfn": 40, "dev": 1, "ino": 9, "index": 2},
        {"kind": "wb_start", "ino": 9, "index": 2},
        {"kind": "wb_end", "ino": 9, "index": 2, "dev": 2},                # other device: no
        {"kind": "cache_del", "pfn": 40, "dev": 1, "ino": 9, "index": 2},
        {"kind": "dirty", "ino": 9, "index": 2},                           # after removal
        {"kind": "fork", "pid": 3},
    ])  # fmt: skip
    assert col(r, "page_id") == ["file:-:9/2", "pfn:40/0", "pfn:40/0", "file:2:9/2", "pfn:40/0",
                                 "file:-:9/2", None]  # fmt: skip
    assert col(r, "writeback_after")[2] is True
    assert col(r, "pins_after")[-1] is None  # pageless: no state


@IMPLS
def test_pin_spans_carry_their_holders(impl):
    r = run(impl, [
        {"kind": "pin", "pfn": 5, "pid": 1, "comm": "fio", "caller": "iov_iter_extract_pages"},
        {"kind": "pin", "pfn": 5, "pid": 2, "comm": "ib", "caller": "ib_umem_get"},
        {"kind": "pin", "pfn": 5, "pid": 1, "comm": "fio", "caller": "iov_iter_extract_pages"},
        {"kind": "unpin", "pfn": 5, "refs": -3},          # sign comes from the kind
    ])  # fmt: skip
    iv = r.intervals.filter(pl.col("state") == "pinned")
    assert iv["holders"].to_list() == [[
        {"pid": 1, "comm": "fio", "caller": "iov_iter_extract_pages"},
        {"pid": 2, "comm": "ib", "caller": "ib_umem_get"},
    ]]  # fmt: skip
    assert iv["end_line"].to_list() == [4]
    assert r.intervals.filter(pl.col("state") == "cached")["holders"].to_list() == []


@IMPLS
def test_lost_gap_inside_a_span_makes_it_uncertain(impl):
    rows = [{"kind": "pin", "pfn": 5}, {"kind": "unpin", "pfn": 5},    # ts 100..200
            {"kind": "pin", "pfn": 6}, {"kind": "unpin", "pfn": 6},    # ts 300..400
            {"kind": "pin", "pfn": 7}]  # ts 500.. open  # fmt: skip
    r = run(impl, rows, lost=[(250, 260), (900, None)], trace_end_ts=1000)
    unc = dict(
        r.intervals.filter(pl.col("state") == "pinned").select("page_id", "uncertain").rows()
    )
    assert unc == {"pfn:5/0": False, "pfn:6/0": False, "pfn:7/0": True}
    r2 = run(impl, rows, lost=[(None, 150)])  # null start: from the trace's start
    unc2 = dict(
        r2.intervals.filter(pl.col("state") == "pinned").select("page_id", "uncertain").rows()
    )
    assert unc2 == {"pfn:5/0": True, "pfn:6/0": False, "pfn:7/0": False}


@IMPLS
def test_flags_inferred_and_open_at_end(impl):
    r = run(impl, [
        {"kind": "wb_end", "pfn": 5},                        # was under writeback at start
        {"kind": "cache_del", "pfn": 5, "ino": 1, "index": 0},  # was cached at start
        {"kind": "dirty", "pfn": 5},
        {"kind": "free_buffers", "pfn": 5},
    ])  # fmt: skip
    assert spans(r, "writeback") == [("pfn:5/0", None, 1, True, False)]
    assert spans(r, "cached") == [("pfn:5/0", None, 2, True, False)]
    assert spans(r, "dirty") == [("pfn:5/0", 3, None, False, True)]
    assert col(r, "buffers_after") == ["unknown", "unknown", "unknown", "no"]
    cached = r.intervals.filter(pl.col("state") == "cached")
    assert cached["ino"].to_list() == [1]  # identity from the span's cache_del


def test_equal_timestamps_keep_file_order():
    rows = [{"kind": "unpin", "pfn": 5, "ts_ns": 50}, {"kind": "pin", "pfn": 5, "ts_ns": 50},
            {"kind": "pin", "pfn": 5, "ts_ns": 10}]  # fmt: skip
    for impl in (replay_events, replay_events_reference):
        r = run(impl, rows)
        assert col(r, "line") == [3, 1, 2] and col(r, "seq") == [0, 1, 2]
        assert col(r, "mismatch") == [False, False, False]
        assert col(r, "pins_after") == [1, 0, 1]
