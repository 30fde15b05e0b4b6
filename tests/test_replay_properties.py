"""Property tests: the compiled core and the reference state machine give identical tables."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from ingest.schema import KINDS
from replay import core, identity
from replay.core import replay_events
from replay.reference import replay_events_reference

# Pin/get-heavy kinds with every other kind present: nested, unbalanced, releases first.
_KIND_WEIGHTS = ["pin", "unpin", "get", "put"] * 3 + list(KINDS)

_event = st.fixed_dictionaries(
    {
        "ts_ns": st.integers(0, 40),  # collisions: `line` breaks ties
        "kind": st.sampled_from(_KIND_WEIGHTS),
        # small pfns around two 8-aligned heads so folios, subpages and reuse all occur
        "pfn": st.one_of(st.none(), st.integers(0, 19)),
        "folio_order": st.sampled_from([None, 0, 0, 0, 1, 2, 3]),
        "dev": st.sampled_from([None, 1, 2]),
        "ino": st.sampled_from([None, 5, 6]),
        "index": st.sampled_from([None, 0, 1]),
        "refs": st.sampled_from([None, 1, 1, 1, 2, -1, 0]),
        "count": st.sampled_from([None, 3, 1025]),
        "gup_flags": st.sampled_from([None, 0, 0x1, 0x100, 0x101, 0x80000, 0x10001]),
        "pid": st.sampled_from([10, 11]),
        "comm": st.sampled_from(["fio", "ib_send"]),
        "caller": st.sampled_from([None, "ib_umem_get", "iov_iter_extract_pages"]),
    }
)

_gap = st.tuples(st.one_of(st.none(), st.integers(0, 40)), st.one_of(st.none(), st.integers(0, 40)))


def _frames(events: list[dict], gaps: list[tuple]) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = [{**e, "trace_id": "t", "line": i + 1} for i, e in enumerate(events)]
    ev = pl.DataFrame(rows, infer_schema_length=None)
    lost = pl.DataFrame(
        {
            "trace_id": ["t"] * len(gaps),
            "gap_start_ts_ns": [g[0] for g in gaps],
            "gap_end_ts_ns": [g[1] for g in gaps],
        },
        schema={"trace_id": pl.String, "gap_start_ts_ns": pl.Int64, "gap_end_ts_ns": pl.Int64},
    )
    return ev, lost


_IV_KEY = ["page_id", "state", "start_ts_ns", "start_line"]


def check_same(ev: pl.DataFrame, lost: pl.DataFrame, kernel: str | None, **kw) -> None:
    fast = replay_events(ev, lost, kernel=kernel, **kw)
    slow = replay_events_reference(ev, lost, kernel=kernel, **kw)
    assert_same_tables(fast, slow)


def assert_same_tables(fast, slow) -> None:
    """page_events row for row; intervals as a set (they close in a different order)."""
    assert_frame_equal(fast.page_events, slow.page_events)
    assert_frame_equal(
        fast.intervals.sort(_IV_KEY, nulls_last=True),
        slow.intervals.sort(_IV_KEY, nulls_last=True),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(_event, min_size=1, max_size=40),
    gaps=st.lists(_gap, max_size=2),
    kernel=st.sampled_from([None, "6.8.0", "5.15.0"]),
)
def test_core_equals_reference(events, gaps, kernel):
    ev, lost = _frames(events, gaps)
    check_same(ev, lost, kernel)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    # few pages, long histories: pfn reuse across generations, folios, writeback orders
    events=st.lists(
        _event.map(lambda e: {**e, "pfn": None if e["pfn"] is None else e["pfn"] % 4 + 8}),
        min_size=5,
        max_size=80,
    ),
    gaps=st.lists(_gap, max_size=3),
)
def test_core_equals_reference_dense_pages(events, gaps):
    ev, lost = _frames(events, gaps)
    check_same(ev, lost, "6.8.0", trace_start_ts=-5, trace_end_ts=100)


# Correlated identities: cache events name a pfn *and* a file key, file-only events name the
# same keys, so resolution, generations (alloc/free/cache_add under another file) and
# mismatches after a known history occur often.
_lifecycle_kinds = ["alloc", "free", "cache_add", "cache_del", "truncate", "pin", "unpin",
                    "pin", "unpin", "get", "put", "dirty", "wb_start", "wb_end", "mkclean",
                    "free_buffers", "mkwrite", "replace"]  # fmt: skip


@st.composite
def _lifecycle_event(draw):
    kind = draw(st.sampled_from(_lifecycle_kinds))
    file_only = kind in ("dirty", "wb_start", "wb_end") and draw(st.booleans())
    pfn = None if file_only else draw(st.sampled_from([8, 9, 10, 11, 12, 16]))
    order = draw(st.sampled_from([0, 2])) if kind in ("alloc", "cache_add", "free") else 0
    with_file = file_only or kind in ("cache_add", "cache_del")
    return {
        "ts_ns": draw(st.integers(0, 60)),
        "kind": kind,
        "pfn": pfn,
        "folio_order": order,
        "dev": draw(st.sampled_from([None, 1])) if with_file else None,
        "ino": draw(st.sampled_from([5, 7])) if with_file else None,
        "index": draw(st.sampled_from([0, 1])) if with_file else None,
        "refs": 1,
        "count": None,
        "gup_flags": draw(st.sampled_from([0, 0x1, 0x101])),
        "pid": draw(st.sampled_from([10, 11])),
        "comm": "fio",
        "caller": draw(st.sampled_from(["a", "b"])),
    }


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(_lifecycle_event(), min_size=3, max_size=60), gaps=st.lists(_gap, max_size=2)
)
def test_core_equals_reference_lifecycles(events, gaps):
    ev, lost = _frames(events, gaps)
    check_same(ev, lost, "6.8.0")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(_lifecycle_event(), min_size=3, max_size=80), gaps=st.lists(_gap, max_size=2)
)
def test_core_equals_reference_when_every_buffer_overflows(events, gaps):
    """The kernels' capacities set to a few rows: the open-span pool grows on the first span,
    a state-pass call stops and resumes every couple of spans or holders, the hash tables and
    per-page arrays grow from two rows, identity is fed three events at a time and the state
    pass four, and the holders of spans still open are deduplicated once more than two; the pfn
    ids' map grows from its first batch's span and hands over to the hash table past a span of
    five. Growth and batching must not change a single value."""
    ev, lost = _frames(events, gaps)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(identity, "MAP_SPAN", 5)
        mp.setattr(core, "_POOL_ROWS", 6)
        mp.setattr(core, "_POOL_ROWS_PER_PAGE", 0)
        mp.setattr(core, "_OUT_ROWS", 7)
        mp.setattr(identity, "_TABLE_ROWS", 2)
        mp.setattr(core, "_IDENTITY_ROWS", 3)
        mp.setattr(core, "_STATE_ROWS", 4)
        mp.setattr(core, "_HOLDERS_CARRIED", 2)
        check_same(ev, lost, "6.8.0")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    # lifecycles, and events of every kind with pageless ones (forks, no pfn nor file key)
    events=st.lists(st.one_of(_lifecycle_event(), _event), min_size=3, max_size=60),
    gaps=st.lists(_gap, max_size=2),
    buckets=st.integers(2, 5),
)
def test_page_buckets_replayed_apart_equal_the_reference(events, gaps, buckets):
    """Pages split into buckets, each bucket's identity and state passes over its own events
    only (pageless ones in the first): the tables are the reference's, row for row
    (page_events back in seq order)."""
    ev, lost = _frames(events, gaps)
    fast = replay_events(ev, lost, kernel="6.8.0", buckets=buckets)
    assert_same_tables(fast, replay_events_reference(ev, lost, kernel="6.8.0"))


# Pages spread over many pfn blocks (so over every bucket) sharing two file pages: a file-only
# event's file page was last cached by a pfn of another bucket than its own file identity's,
# cache_dels and pfn-less cache events in between, devs that clash, subpages of folios.
_SPREAD_KINDS = ["cache_add", "cache_add", "cache_del", "alloc", "free", "pin", "unpin", "dirty",
                 "wb_start", "wb_end", "truncate"]  # fmt: skip
_spread_event = st.fixed_dictionaries(
    {
        "ts_ns": st.integers(0, 60),
        "kind": st.sampled_from(_SPREAD_KINDS),
        "pfn": st.sampled_from([None, None, None, 8, 9, 13, 64, 65, 1000, 1001, 4096, 7000]),
        "folio_order": st.sampled_from([0, 0, 0, 1, 2]),
        "dev": st.sampled_from([None, 1, 1, 2]),
        "ino": st.sampled_from([None, 5, 5, 5, 6]),
        "index": st.sampled_from([0, 0, 1]),
        "refs": st.just(1),
        "pid": st.just(10),
        "comm": st.just("fio"),
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(_spread_event, min_size=4, max_size=50),
    buckets=st.integers(2, 6),
    rows=st.sampled_from([None, 3]),
)
def test_file_only_events_resolve_in_buckets_as_in_the_whole_trace(events, buckets, rows):
    """The routing pass sends each file-only event to the bucket of the pfn that held its
    file page, or to its file identity's where it stays unresolved, and that bucket's pass
    resolves it as a pass over the whole trace would (fed 3 events at a time, too)."""
    ev, lost = _frames(events, [])
    with pytest.MonkeyPatch.context() as mp:
        if rows:
            mp.setattr(identity, "_TABLE_ROWS", 2)
            mp.setattr(core, "_IDENTITY_ROWS", rows)
            mp.setattr(identity, "MAP_SPAN", 100)
        fast = replay_events(ev, lost, kernel="6.8.0", buckets=buckets)
    assert_same_tables(fast, replay_events_reference(ev, lost, kernel="6.8.0"))
