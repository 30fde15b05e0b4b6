"""Page buckets (replay/partition.py): each event routed to the bucket whose passes resolve it
exactly as a pass over the whole trace would."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from replay import identity, partition
from replay import kernel as K
from replay.core import prepare, replay_events
from replay.reference import replay_events_reference

_NO_DEV = np.uint64(0xFFFFFFFFFFFFFFFF)


def _frame(rows: list[dict]) -> pl.DataFrame:
    return prepare(
        pl.DataFrame(
            [
                {"trace_id": "t", "line": i + 1, "ts_ns": i, "refs": 1, "pid": 1, "comm": "fio"}
                | {"pfn": None, "folio_order": 0, "dev": None, "ino": None, "index": None}
                | r
                for i, r in enumerate(rows)
            ],
            infer_schema_length=None,
        )
    )


def _routing(ev: pl.DataFrame, buckets: int, tmp_path=None) -> partition.Routing:
    shift = partition.shift_for(ev["folio_order"].max())
    sink = None if tmp_path is None else tmp_path / "codes.bin"
    router = partition.Router(buckets, shift, sink)
    router.feed(identity.columns(ev.select(identity.IDENTITY_COLUMNS)))
    return router.finish()


def _file_bucket(ino: int, index: int, buckets: int) -> int:
    return int(K._hash(_NO_DEV, np.uint64(ino), np.uint64(index)) % np.uint64(buckets))


def test_a_file_page_uncached_elsewhere_is_not_resolved_by_a_stale_cache_add():
    """cache_add of (5, 0) at pfn A, then its cache_del at pfn B of another bucket: a later
    writeback naming only (5, 0) is unresolved in the whole trace. It goes to its file
    identity's bucket, chosen here to be A's, where the stale cache_add must not resolve it."""
    buckets = 2
    target = _file_bucket(5, 0, buckets)
    a = next(p for p in range(64, 1 << 20) if K.pfn_bucket(np.uint64(p), 0, buckets) == target)
    b = next(p for p in range(64, 1 << 20) if K.pfn_bucket(np.uint64(p), 0, buckets) != target)
    ev = _frame(
        [
            {"kind": "cache_add", "pfn": a, "ino": 5, "index": 0},
            {"kind": "cache_del", "pfn": b, "ino": 5, "index": 0},
            {"kind": "wb_start", "ino": 5, "index": 0},
            {"kind": "wb_end", "ino": 5, "index": 0},
        ]
    )
    of_event, lookup = _routing(ev, buckets).rows(0, ev.height)
    assert of_event.tolist() == [target, 1 - target, target, target]
    assert lookup.tolist() == [True, True, False, False]
    fast = replay_events(ev, None, kernel="6.8.0", buckets=buckets).page_events
    assert fast["page_id"].to_list() == [f"pfn:{a}/0", f"pfn:{b}/0", "file:-:5/0", "file:-:5/0"]
    assert_frame_equal(fast, replay_events_reference(ev, None, kernel="6.8.0").page_events)


def test_file_only_events_follow_their_file_page_to_the_pfn_that_holds_it(tmp_path):
    """A file page cached at pfn A, then (after its cache_del) at pfn B: file-only events go
    to A's bucket, then B's, and are looked up there; a folio's subpages go with its head;
    pageless events to bucket 0. The codes come back memory-mapped from the scratch file."""
    buckets = 7
    heads = [p << 9 for p in range(1, 4000)]
    a = heads[0]
    b = next(
        h
        for h in heads
        if K.pfn_bucket(np.uint64(h), 9, buckets) != K.pfn_bucket(np.uint64(a), 9, buckets)
    )
    ev = _frame(
        [
            {"kind": "cache_add", "pfn": a, "folio_order": 9, "ino": 5, "index": 0},
            {"kind": "dirty", "ino": 5, "index": 0},
            {"kind": "pin", "pfn": a + 511},
            {"kind": "cache_del", "pfn": a, "ino": 5, "index": 0},
            {"kind": "cache_add", "pfn": b, "ino": 5, "index": 0},
            {"kind": "dirty", "ino": 5, "index": 0},
            {"kind": "fork"},
        ]
    )
    routing = _routing(ev, buckets, tmp_path)
    assert isinstance(routing.codes, np.memmap)
    of_event, lookup = routing.rows(0, ev.height)
    ba, bb = (int(K.pfn_bucket(np.uint64(p), 9, buckets)) for p in (a, b))
    assert of_event.tolist() == [ba, ba, ba, ba, bb, bb, 0]
    assert lookup.all()
    assert routing.counts.sum() == ev.height and routing.counts[ba] == 4
    with pytest.raises(ValueError, match="more events"):
        routing.rows(0, ev.height + 1)
    fast = replay_events(ev, None, kernel="6.8.0", buckets=buckets)
    slow = replay_events_reference(ev, None, kernel="6.8.0")
    assert_frame_equal(fast.page_events, slow.page_events)
    assert fast.page_events["page_id"][1] == f"pfn:{a}/0"
    assert fast.page_events["page_id"][5] == f"pfn:{b}/0"


def test_bucket_counts_are_checked():
    with pytest.raises(ValueError, match="page buckets"):
        partition.Router(0, 0)
    with pytest.raises(ValueError, match="page buckets"):
        partition.Router(partition.MAX_BUCKETS + 1, 0)
    assert partition.shift_for(None) == 0 and partition.shift_for(18) == 18


def test_the_routing_map_keeps_every_cached_page_as_it_grows_and_forgets(monkeypatch):
    """From two rows, the routing pass's map of cached file pages grows, reuses the rows of
    pages whose cache_del came, and is rebuilt without them, many times over: every file-only
    event still goes to the bucket of the pfn that holds its page, or, once uncached, to its
    file identity's bucket, unlooked-up."""
    monkeypatch.setattr(identity, "_TABLE_ROWS", 2)
    buckets, keys = 5, range(300)
    rows = [{"kind": "cache_add", "pfn": 1000 + i, "ino": 9, "index": i} for i in keys]
    rows += [{"kind": "cache_del", "pfn": 1000 + i, "ino": 9, "index": i} for i in keys if i % 3]
    rows += [
        {"kind": "cache_add", "pfn": 5000 + i, "ino": 9, "index": i} for i in keys if i % 3 == 1
    ]
    rows += [{"kind": "wb_start", "ino": 9, "index": i} for i in keys]
    ev = _frame(rows)
    routing = partition.Router(buckets, 0)
    for batch in ev.select(identity.IDENTITY_COLUMNS).iter_slices(7):
        routing.feed(identity.columns(batch))
    of_event, lookup = routing.finish().rows(0, ev.height)
    wb = slice(ev.height - len(keys), ev.height)

    def pfn_bucket(p: int) -> int:
        return int(K.pfn_bucket(np.uint64(p), 0, buckets))

    want = [
        pfn_bucket(1000 + i) if i % 3 == 0 else pfn_bucket(5000 + i) if i % 3 == 1
        else int(K._hash(_NO_DEV, np.uint64(9), np.uint64(i)) % np.uint64(buckets))
        for i in keys
    ]  # fmt: skip
    assert of_event[wb].tolist() == want
    assert lookup[wb].tolist() == [i % 3 != 2 for i in keys]
