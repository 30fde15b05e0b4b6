"""The page-state core (docs/replay.md): one trace at a time, events in replay order.

`TraceReplay` resolves a trace's pages once (replay/identity.py), then takes
its events batch by batch (in replay order), returning each batch's `page_events` rows and the
spans that closed in it; `finish` gives the spans still open at the end. Per-page state lives in
arrays indexed by page slot (replay/kernel.py), so a batch needs nothing of the ones before it
but that state: the driver (replay/run.py) streams a trace of any length through it, and
`replay_events` is the same thing on a frame held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from ingest.schema import EVENTS_SCHEMA, LOST_SCHEMA, conform, foll_flags_for
from replay import identity, intervals, partition
from replay import kernel as K
from replay.schema import (
    BUFFERS,
    INTERVALS_SCHEMA,
    PAGE_EVENTS_SCHEMA,
    STORED_TABLES,
    with_computed,
)

STORED_PAGE_EVENTS = STORED_TABLES["page_events"]
_BUFFER_NAMES = pl.Series(["unknown", "no", "yes"], dtype=BUFFERS)
# Rows of the open-span pool to start with (it doubles as needed), and spans and holder rows
# one kernel call may emit (it stops and is called again), and events per identity batch: tests
# shrink them, and the hash tables (identity._TABLE_ROWS), to reach every growth path.
_POOL_ROWS = 1 << 14
_POOL_ROWS_PER_PAGE = 1  # most pages hold a span (cached, at least): start the pool that big
_OUT_ROWS = 1 << 18
_IDENTITY_ROWS = 1 << 22
# Events per state batch of an in-memory replay (None: all at once); tests shrink it so that
# spans and their holders cross batches as they do in the driver's.
_STATE_ROWS: int | None = None
# Holder rows of still-open spans carried from batch to batch before they are deduplicated
# (then again once they have doubled): what bounds them for a span pinned over and over.
_HOLDERS_CARRIED = 1 << 20


@dataclass
class ReplayResult:
    page_events: pl.DataFrame
    intervals: pl.DataFrame


def prepare(events: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Canonical columns, replayable rows only (ingest rejects events without a timestamp)."""
    if isinstance(events, pl.LazyFrame):
        events = events.collect()
    return conform(events, "events").filter(pl.col("ts_ns").is_not_null())


def replay_events(
    events: pl.DataFrame | pl.LazyFrame,
    lost: pl.DataFrame | pl.LazyFrame | None,
    *,
    kernel: str | None,
    trace_start_ts: int | None = None,
    trace_end_ts: int | None = None,
    buckets: int = 1,
) -> ReplayResult:
    """Replay events (one or more traces, all of the same kernel) held in memory; with
    `buckets`, each trace's pages in that many buckets (replay/partition.py), with an
    identity pass and a state pass each.

    page_events come in (trace, seq) order. Both tables have their computed columns
    (page_id); `TraceReplay`'s batches give them as stored, without.
    """
    ev = prepare(events)
    lost_df = _lost_frame(lost)
    pes, ivs = [], []
    for tid in ev.get_column("trace_id").unique(maintain_order=True).to_list():
        one = ev.filter(pl.col("trace_id").eq_missing(tid)).sort("ts_ns", "line")
        one = one.with_columns(pl.int_range(one.height, dtype=pl.Int64).alias("seq"))
        start = trace_start_ts if trace_start_ts is not None else one["ts_ns"].min()
        end = trace_end_ts if trace_end_ts is not None else one["ts_ns"].max()
        narrow = one.select(identity.IDENTITY_COLUMNS)
        lost_one = lost_df.filter(pl.col("trace_id").eq_missing(tid))
        if buckets > 1:
            of_event, lookup = _route(narrow, buckets)
        trace_pes = []
        for b in range(buckets):
            if buckets > 1:
                own = of_event == b
                pages = identity.identify(narrow.filter(own), _IDENTITY_ROWS, lookup[own])
                mine = one.filter(own)
            else:
                pages, mine = identity.identify(narrow, _IDENTITY_ROWS), one
            tr = TraceReplay(
                tid,
                pages,
                lost_one,
                kernel=kernel,
                trace_start_ts=start,
                trace_end_ts=end,
            )
            for part in mine.iter_slices(_STATE_ROWS or max(mine.height, 1)):
                pe, iv = tr.batch(part).tables()
                trace_pes.append(pe)
                ivs.append(iv)
            ivs.append(tr.finish())
        pes.append(pl.concat(trace_pes).sort("seq") if buckets > 1 else pl.concat(trace_pes))
    if not pes:
        return ReplayResult(
            pl.DataFrame(schema=PAGE_EVENTS_SCHEMA),
            pl.DataFrame(schema=INTERVALS_SCHEMA),
        )
    # the tables as readers see them: with page_id (computed where read, not stored)
    return ReplayResult(
        with_computed(pl.concat(pes), "page_events"), with_computed(pl.concat(ivs), "intervals")
    )


def _route(narrow: pl.DataFrame, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Each event's page bucket, and whether its bucket's identity pass looks it up by file
    (replay/partition.py), from a routing pass fed _IDENTITY_ROWS at a time."""
    keys = (identity.columns(batch) for batch in narrow.iter_slices(_IDENTITY_ROWS))
    shift = partition.shift_for(narrow["folio_order"].max())
    return partition.route(keys, buckets, shift).rows(0, narrow.height)


def _lost_frame(lost: pl.DataFrame | pl.LazyFrame | None) -> pl.DataFrame:
    if lost is None:
        return conform(pl.DataFrame(), "lost").clear()
    if isinstance(lost, pl.LazyFrame):
        lost = lost.collect()
    return lost.select(
        [
            (pl.col(c) if c in lost.columns else pl.lit(None)).cast(t).alias(c)
            for c, t in LOST_SCHEMA.items()
        ]
    )


class TraceReplay:
    """One trace's replay: the identity pass at construction, then state batch by batch.

    `pages` is the trace's page identity (identity.IdentityPass over its events in replay
    order); `batch` must then be given every event of the trace, in the same order, with `seq`.
    """

    def __init__(
        self,
        trace_id: str | None,
        pages: identity.Pages,
        lost: pl.DataFrame,
        *,
        kernel: str | None,
        trace_start_ts: int | None,
        trace_end_ts: int | None,
    ) -> None:
        self.trace_id = trace_id
        self.lost = lost
        self.start_ts = trace_start_ts
        self.end_ts = trace_end_ts
        flags = foll_flags_for(kernel)
        self.write_bit = int(flags["FOLL_WRITE"])
        self.longterm_bit = int(flags["FOLL_LONGTERM"])
        self.row = 0

        self.n = pages.slot.shape[0]
        self.slot, self.pg_i, self.pg_u, self.pages = (
            pages.slot,
            pages.pg_i,
            pages.pg_u,
            pages.table,
        )
        n_pages = self.pg_i.shape[0]
        self.st, self.pool_i, self.pool_u, self.free, self.counters = K.new_state(
            n_pages, max(_POOL_ROWS, _POOL_ROWS_PER_PAGE * n_pages)
        )
        self.out_i = np.zeros((K.N_OUT_I64, _OUT_ROWS), np.int64)
        self.out_u = np.zeros((K.N_SP_U8, _OUT_ROWS), np.uint8)
        self.hold = np.zeros((_OUT_ROWS, 2), np.int64)
        self.holders: list[pl.DataFrame] = []
        self.holders_bound = _HOLDERS_CARRIED

    def _grow_pool(self) -> None:
        old = self.pool_i.shape[0]
        top = int(self.counters[0])
        self.pool_i = np.concatenate((self.pool_i, np.zeros_like(self.pool_i)))
        self.pool_u = np.concatenate((self.pool_u, np.zeros_like(self.pool_u)))
        free = np.empty(2 * old, np.int64)
        free[:top] = self.free[:top]
        free[top : top + old] = np.arange(2 * old - 1, old - 1, -1, dtype=np.int64)
        self.free = free
        self.counters[0] = top + old

    def batch(self, ev: pl.DataFrame, *, grouped: bool = False) -> Batch:
        """The next rows of the trace replayed; `.tables()` turns them into (page_events, the
        spans closed in this batch). That part needs nothing of later batches: it may run after
        them, or on another thread.

        page_events come in replay order, or with `grouped` in (kind, seq) order, the order the
        driver writes: the row groups' min/max statistics then let a rule's `kind = …` scan
        skip the other kinds. Likewise the closed spans: in the order they closed, or with
        `grouped` by state first.
        """
        n = ev.height
        row0 = self.row
        if row0 + n > self.n:
            raise ValueError("more events than the identity pass saw")
        # one chunk per column: gathers on chunked columns look up each row's chunk (3x
        # slower), and the numpy views below need it anyway
        ev = ev.rechunk()
        slot = self.slot[row0 : row0 + n]
        kind = identity.kind_codes(ev.get_column("kind"))
        gup = identity.as_arrays(ev.get_column("gup_flags"), pl.Int64)[0]
        count, count_v = identity.as_arrays(ev.get_column("count"), pl.Int64)
        dev, dev_v = identity.as_arrays(ev.get_column("dev"), pl.Int64)
        ino, ino_v = identity.as_arrays(ev.get_column("ino"), pl.UInt64)
        index, index_v = identity.as_arrays(ev.get_column("index"), pl.UInt64)
        ts = ev.get_column("ts_ns").cast(pl.Int64).to_numpy()
        line = ev.get_column("line").cast(pl.Int64).to_numpy()
        refs = identity.abs_refs(ev.get_column("refs"))
        if grouped:
            # (kind, seq): a stable radix sort of one byte; the kernel writes each row's state
            # where it lands, about one sequential stream per kind
            at = np.argsort(kind, kind="stable")
            dest = np.empty(n, np.int64)
            dest[at] = np.arange(n, dtype=np.int64)
        else:
            at = None
            dest = np.arange(n, dtype=np.int64)
        ev_i = np.zeros((K.N_EV_I32, n), np.int32)
        ev_u = np.zeros((K.N_EV_U8, n), np.uint8)
        ev_x = np.zeros((3, n), np.int64)
        spans_i, spans_u, holds = [], [], []
        r = 0
        while True:
            r, n_out, n_hold = K.state_pass(
                row0, kind, slot, refs, gup, count, count_v, dev, dev_v, ino, ino_v, index,
                index_v, ts, line, self.pg_i, self.pg_u, self.write_bit, self.longterm_bit,
                self.st, self.pool_i, self.pool_u, self.free, self.counters, dest, ev_i, ev_u,
                ev_x, self.out_i, self.out_u, self.hold, r,
            )  # fmt: skip
            spans_i.append(self.out_i[:, :n_out].copy())
            spans_u.append(self.out_u[:, :n_out].copy())
            holds.append(self.hold[:n_hold].copy())
            if r >= n:
                break
            if self.counters[0] < K.N_STATES:
                self._grow_pool()
        self.row += n
        hold = _joined(holds)
        who = ev.select(
            pl.col("pid").cast(pl.Int32).gather(hold[:, 1]),
            pl.col("comm", "caller").cast(pl.String).gather(hold[:, 1]),
        ).with_columns(pl.Series("span", hold[:, 0]))
        # deduplicated when their span closes, and those of open spans when they pile up
        # (take_holders): most spans close within a few batches, and hashing each batch's rows
        # as they came cost a twentieth of the state pass
        self.holders.append(who.select(_HOLDER_ROWS.keys()))
        out_i, out_u = _joined(spans_i, axis=1), _joined(spans_u, axis=1)
        return Batch(self, ev, slot, at, ev_i, ev_u, ev_x, out_i, out_u, self._holders_of(out_i))

    def finish(self, *, grouped: bool = False) -> pl.DataFrame:
        """The spans still open after the trace's last event (with `grouped`, by state, as
        `Batch.tables` gives them)."""
        if self.row != self.n:
            raise ValueError(f"replayed {self.row} of {self.n} events")
        out_i, out_u = K.open_spans(self.st, self.pool_i, self.pool_u, self.free, self.counters)
        return self._intervals(out_i, out_u, self._holders_of(out_i), grouped)

    def _holders_of(self, out_i: np.ndarray) -> pl.DataFrame:
        """Holders of the pin spans among these emitted spans (taken in emission order)."""
        pin = out_i[K.SP_ID, out_i[K.OUT_STATE] < 3]
        return self.take_holders(pl.Series("span", pin))

    def _page_events(
        self,
        ev: pl.DataFrame,
        slot: np.ndarray,
        ev_i: np.ndarray,
        ev_u: np.ndarray,
        ev_x: np.ndarray,
    ) -> pl.DataFrame:
        """page_events rows: the kernel's arrays handed to Arrow as buffers (no copy), with one
        validity bitmap for the rows that have a page."""
        n = ev.height
        live = slot >= 0
        at = pl.Series("_at", np.where(live, slot, self.pages.height - 1).astype(np.uint32))
        page = self.pages.select(pl.col("pfn", "generation").gather(at))
        flags = ev_u.view(np.bool_)

        def arrow(values: np.ndarray, valid: np.ndarray, typ: pa.DataType) -> pa.Array:
            if typ == pa.bool_():
                values = np.packbits(values, bitorder="little")
            bits = pa.py_buffer(np.packbits(valid, bitorder="little"))
            return pa.Array.from_buffers(typ, n, [bits, pa.py_buffer(values)])

        cols: dict[str, pa.Array] = {}
        for c, name in enumerate(_COUNTERS):
            valid = live
            if name == "refcount_before":
                valid = live & flags[K.F_REFC_B_V]
            elif name == "refcount_after":
                valid = live & flags[K.F_REFC_A_V]
            cols[name] = arrow(ev_i[c], valid, pa.int32())
        for f, name in _FLAGS:
            cols[name] = arrow(flags[f], live, pa.bool_())
        cols["_dev"] = arrow(ev_x[0].astype(np.uint32), flags[K.F_DEV_V], pa.uint32())
        cols["_ino"] = arrow(ev_x[1].view(np.uint64), flags[K.F_INO_V], pa.uint64())
        cols["_index"] = arrow(ev_x[2].view(np.uint64), flags[K.F_INDEX_V], pa.uint64())
        state = pl.from_arrow(pa.table(cols))
        assert isinstance(state, pl.DataFrame)
        buffers = [
            pl.Series(name, ev_u[f]).to_frame() for f, name in _BUFFERS
        ]  # codes 0/1/2 index the enum's categories: a gather, not a lookup
        L = pl.lit(pl.Series("_live", live))
        pe = pl.concat(
            [ev, state, page.select(pl.all().name.prefix("_pg_")), *buffers], how="horizontal"
        )
        return pe.select(
            pl.lit(self.trace_id, pl.String).alias("trace_id"),
            *[c for c in EVENTS_SCHEMA if c not in ("trace_id", "pfn", "dev", "ino", "index")],
            pl.col("pfn").alias("event_pfn"),
            pl.col("_pg_pfn").alias("pfn"),
            *[
                pl.when(L).then(pl.col(f"_{c}")).otherwise(pl.col(c)).alias(c)
                for c in ("dev", "ino", "index")
            ],
            pl.col("_pg_generation").alias("generation"),
            "seq",
            *_COUNTERS[:10],
            *[name for _, name in _FLAGS[:6]],
            *[
                pl.when(L).then(pl.lit(_BUFFER_NAMES).gather(pl.col(name))).alias(name)
                for _, name in _BUFFERS
            ],
            *[name for _, name in _FLAGS[6:]],
        ).select([pl.col(c).cast(t) for c, t in STORED_PAGE_EVENTS.items()])

    def _intervals(
        self, out_i: np.ndarray, out_u: np.ndarray, holders: pl.DataFrame, grouped: bool
    ) -> pl.DataFrame:
        if out_i.shape[1] == 0:
            return pl.DataFrame(schema=intervals.STORED_INTERVALS)
        if grouped:
            # by state, each state's spans in the order they closed: the kernel's rows are
            # permuted here (a few integers each), not the finished table (a fifth of an
            # intervals part's write, with its nested holders). `take` keeps each field's row
            # contiguous, where `out_i[:, at]` gave a Fortran-ordered array whose strided rows
            # made building the tables slow: 1.7-2.1 s on the main thread for a 20M-event
            # replay's 7.5M spans, 1.0 s with `take` (three alternating pairs)
            at = np.argsort(out_i[K.OUT_STATE], kind="stable")
            out_i, out_u = out_i.take(at, axis=1), out_u.take(at, axis=1)
        return intervals.build(
            out_i, out_u, self.pages, holders, self.trace_id, self.lost,
            trace_start_ts=self.start_ts, trace_end_ts=self.end_ts,
        )  # fmt: skip

    def take_holders(self, spans: pl.Series) -> pl.DataFrame:
        """The holder rows (span, pid, comm, caller) of these closed spans, each span's rows
        together and distinct, in the order they came; dropped from the pending ones."""
        pending = pl.concat(self.holders) if self.holders else pl.DataFrame(schema=_HOLDER_ROWS)
        closed = pending.get_column("span").is_in(spans.implode())
        mine = pending.filter(closed)
        carried = pending.filter(~closed)
        if carried.height > self.holders_bound:
            carried = _first_distinct(carried)
            self.holders_bound = max(2 * carried.height, _HOLDERS_CARRIED)
        self.holders = [carried]
        # by span, stably (each span's holders stay in the order they came): the intervals
        # table lays each span's run out as its list (intervals.holders_column)
        return _distinct_per_span(mine.sort("span", maintain_order=True))


def _joined(chunks: list[np.ndarray], axis: int = 0) -> np.ndarray:
    """The chunks (copies already) as one array, without a second copy of the usual one."""
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=axis)


def _distinct_per_span(rows: pl.DataFrame) -> pl.DataFrame:
    """Holder rows (sorted by span, stably) without the repeats within a span, in the order
    they came. Only the spans of more than one row are hashed: hashing every row as a struct
    took three quarters of taking a batch's holders, and most spans have one holder row."""
    span = rows.get_column("span")
    repeated = ((span == span.shift(1)) | (span == span.shift(-1))).fill_null(False)
    if not repeated.any():
        return rows
    once, many = rows.filter(~repeated), _first_distinct(rows.filter(repeated))
    # a span's rows all come from one of the two: the stable sort keeps their order
    return pl.concat([once, many]).sort("span", maintain_order=True)


def _first_distinct(df: pl.DataFrame) -> pl.DataFrame:
    """`df.unique(maintain_order=True)`, in half its time: one hash of each row as a struct."""
    return df.filter(pl.struct(pl.all()).is_first_distinct())


@dataclass
class Batch:
    """One replayed batch, before its tables are built (see TraceReplay.batch)."""

    trace: TraceReplay
    ev: pl.DataFrame
    slot: np.ndarray
    at: np.ndarray | None  # the grouping permutation of ev's rows, if any
    ev_i: np.ndarray
    ev_u: np.ndarray
    ev_x: np.ndarray
    out_i: np.ndarray
    out_u: np.ndarray
    holders: pl.DataFrame

    def tables(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(page_events, intervals of the spans that closed in this batch)."""
        # trace_id is the trace's own on every row: set, not gathered (a string column); the
        # driver does not even read it
        ev, slot = self.ev.drop("trace_id", strict=False), self.slot
        if self.at is not None:
            ev, slot = ev.gather(self.at), slot[self.at]
        pe = self.trace._page_events(ev, slot, self.ev_i, self.ev_u, self.ev_x)
        grouped = self.at is not None
        return pe, self.trace._intervals(self.out_i, self.out_u, self.holders, grouped)


# The kernel's output rows, named (ev_i rows in order; ev_u rows by F_*).
_COUNTERS = (
    "pins_before", "pins_after", "writable_pins_before", "writable_pins_after",
    "longterm_pins_before", "longterm_pins_after", "gets_before", "gets_after",
    "refcount_before", "refcount_after",
)  # fmt: skip
_FLAGS = (
    (K.F_DIRTY_B, "dirty_before"), (K.F_DIRTY_A, "dirty_after"),
    (K.F_WB_B, "writeback_before"), (K.F_WB_A, "writeback_after"),
    (K.F_CACHED_B, "cached_before"), (K.F_CACHED_A, "cached_after"),
    (K.F_INFERRED, "inferred_initial"), (K.F_MISMATCH, "mismatch"),
)  # fmt: skip
_BUFFERS = ((K.F_BUF_B, "buffers_before"), (K.F_BUF_A, "buffers_after"))
_HOLDER_ROWS = {"span": pl.Int64(), "pid": pl.Int32(), "comm": pl.String(), "caller": pl.String()}


__all__ = ["EVENTS_SCHEMA", "ReplayResult", "TraceReplay", "replay_events"]
