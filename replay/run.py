"""The replay driver: dataset in, derived/page_events and derived/intervals out.

Per trace, two passes over its events in replay order, a batch at a time: the identity pass
reads the narrow key columns (page slots, and what initial-state inference needs), then the
state pass streams every column through the state core, BATCH_ROWS at a time. A trace already in
(ts_ns, line) order, as traces printed in time order are, is read straight from its Parquet parts
both times; one that is not is first sorted into a scratch file by DuckDB, in bounded memory.
What crosses batches is per page or per key (and a 4-byte page slot per event), so memory is
bounded by the trace's pages and a batch, not by its events. Each batch's page_events are
written as one part file grouped by (kind, seq), and the spans closed in it as one intervals
part grouped by state, in small row groups with statistics on that column, so that a rule's
`kind = …` scan reads only that kind. The state pass of one batch overlaps the building of
the previous one's tables and the Parquet writing of those before. ReplaySummary.stages says
where the time went.

derived/replay.json fingerprints what the output was built from; a matching fingerprint means
the output is reused.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import polars as pl

from ingest import dataset as ds
from ingest import parquet_parts
from ingest.errors import InputError
from ingest.schema import EVENTS_SCHEMA
from replay import core, identity, kernel, partition
from replay.stamp import STAMP, fingerprint, is_fresh

# Events per batch: bounds what is in flight (≈ 300 bytes per event in page_events before it is
# written); WORKERS parts at most (being built or written) wait behind the state pass. 2: with
# the tables built on a thread of their own, a third part in flight was within 1% (medians of
# 8 alternating pairs, 9.51 against 9.56 s) for ~70 MiB more at the peak.
WORKERS = 2
# Small row groups: a scan for one kind or state reads only the groups that hold it.
ROW_GROUP_ROWS = 65_536
BATCH_ROWS = 500_000
# The identity pass reads a few columns: it takes this many state batches' events at a time
# (with the next batch's keys taken ahead, two such batches are in flight). 4 rather than 2:
# 12% less wall for the pass (fewer per-batch table and thread set-ups), ~100 MiB more.
IDENTITY_BATCHES = 4
# Sorting a trace stored out of replay order: DuckDB's memory for it (beyond, it spills to the
# scratch directory), and the scratch file's codec (lz4: read twice, decoded fast).
CUT_MEMORY = "1GB"
CUT_THREADS: int | None = None  # DuckDB's default: every core
CUT_COMPRESSION = "lz4"


@dataclass(frozen=True)
class ReplaySummary:
    dataset: Path
    rebuilt: bool
    traces: int
    events: int
    page_events: int
    intervals: int
    parts: int
    seconds: float
    # per stage: wall and process CPU seconds, and the process's peak RSS (MiB) at its end
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    buckets: int = 1  # page buckets per trace (the most any trace took)


@contextlib.contextmanager
def _stage(stages: dict[str, dict[str, float]], name: str) -> Iterator[None]:
    """Accumulate a stage's wall and CPU time: where a replay spends its time, for benchmarks."""
    t, c = time.perf_counter(), _cpu()
    try:
        yield
    finally:
        st = stages.setdefault(name, {"seconds": 0.0, "cpu_seconds": 0.0, "peak_rss_mb": 0.0})
        st["seconds"] += time.perf_counter() - t
        st["cpu_seconds"] += _cpu() - c
        st["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def replay_dataset(
    dataset: Path,
    *,
    force: bool = False,
    batch_rows: int = BATCH_ROWS,
    buckets: int | None = None,
) -> ReplaySummary:
    """Build derived/ (page_events, intervals) unless it is fresh; drops stale findings.

    `buckets` splits each trace's pages into that many buckets, each replayed in a state pass
    of its own (less memory, one more read of the events each); None: `state_buckets`."""
    t0 = time.perf_counter()
    dataset = ds.require_dataset(Path(dataset))
    with ds.lock(dataset):
        traces = ds.traces(dataset)
        derived = dataset / ds.DERIVED
        if not force and is_fresh(dataset):
            stamp = json.loads((derived / STAMP).read_text())
            return ReplaySummary(
                dataset, False, len(traces), stamp.get("events", 0),
                stamp.get("page_events", 0), stamp.get("intervals", 0),
                stamp.get("parts", 0), time.perf_counter() - t0,
            )  # fmt: skip
        # Nothing derived survives a rebuild half-done: the stamp goes first, findings too.
        (derived / STAMP).unlink(missing_ok=True)
        shutil.rmtree(derived / "findings", ignore_errors=True)
        totals = {"events": 0, "page_events": 0, "intervals": 0, "parts": 0, "buckets": 0}
        stages: dict[str, dict[str, float]] = {}
        warming = threading.Thread(target=identity.warm_up, name="pinscope-warm-up", daemon=True)
        warming.start()
        with (
            ds.atomic_dir(dataset, f"{ds.DERIVED}/page_events") as pe_dir,
            ds.atomic_dir(dataset, f"{ds.DERIVED}/intervals") as iv_dir,
        ):
            for t in traces:
                counts = _replay_trace(dataset, t, pe_dir, iv_dir, batch_rows, buckets, stages)
                for k, v in counts.items():
                    totals[k] = max(totals[k], v) if k == "buckets" else totals[k] + v
        ds.write_json(derived / STAMP, {"fingerprint": fingerprint(traces), **totals})
        warming.join()
    return ReplaySummary(
        dataset, True, len(traces), totals["events"], totals["page_events"],
        totals["intervals"], totals["parts"], time.perf_counter() - t0, stages,
        totals["buckets"],
    )  # fmt: skip


def _replay_trace(
    dataset: Path,
    trace: dict[str, Any],
    pe_dir: Path,
    iv_dir: Path,
    batch_rows: int,
    buckets: int | None,
    stages: dict[str, dict[str, float]],
) -> dict[str, int]:
    tid = trace["trace_id"]
    events = ds.scan_trace(dataset, "events", tid)
    lost = ds.scan(dataset, "lost").filter(pl.col("trace_id") == tid).collect()
    n = events.select(pl.len()).collect().item()
    counts = {"events": n, "page_events": 0, "intervals": 0, "parts": 0, "buckets": 0}
    if n == 0:
        return counts
    source = _ReplayOrder(dataset, tid, events, n, batch_rows, stages)
    start, end = trace.get("first_ts_ns"), trace.get("last_ts_ns")

    def state_pass(pages: identity.Pages, part: int, keep: _Keep | None) -> int:
        with _stage(stages, "state"):
            replay = core.TraceReplay(
                tid, pages, lost,
                kernel=trace.get("kernel"),
                trace_start_ts=source.first_ts if start is None else start,
                trace_end_ts=source.last_ts if end is None else end,
            )  # fmt: skip
        return _replay_state(tid, replay, source, pe_dir, iv_dir, stages, counts, part, keep)

    try:
        k = buckets or 1
        if k == 1:
            budget = None if buckets else memory_budget()
            try:
                with _stage(stages, "identity"):
                    pages = _identity(source, n, batch_rows, budget)
            except _OutgrowsMemory as over:
                k = min(over.buckets, partition.MAX_BUCKETS)
            else:
                counts["buckets"] = 1
                state_pass(pages, 0, None)
                return counts
        counts["buckets"] = k
        with _stage(stages, "route"):
            routing = _route(source, k, batch_rows)
        part = 0
        for b in range(k):
            with _stage(stages, "identity"):
                pages = _bucket_identity(source, routing, b, batch_rows)
            part = state_pass(pages, part, _Keep(routing, b))
            del pages  # before the next bucket's pass
        return counts
    finally:
        source.close()


# Memory a replay needs, at its peak: ~400 bytes per page lifetime (the identity pass's key
# tables and per-page rows, ~200, are gone by the state pass's peak: its state row, open-span
# pool row, page rows and table; 100M events on 12M page lifetimes peaked at 5.1 GiB) and the
# identity pass's 4-byte page slot per event. Where that would pass this share of the memory
# this process may use, the trace is split into page buckets (replay/partition.py), each
# replayed in passes of its own over the trace's events (one more read of them each, and a
# routing pass first): memory, not speed, then bounds a replay.
PAGE_BYTES = 400
EVENT_BYTES = 4
MEMORY_SHARE = 0.5


def memory_budget(memory: int | None = None) -> int:
    """Bytes one trace's replay may hold for its pages and page slots."""
    return int((usable_memory() if memory is None else memory) * MEMORY_SHARE)


def buckets_for(pages: int, events: int, budget: int) -> int:
    """How many page buckets a trace of this many page lifetimes and events needs."""
    need = pages * PAGE_BYTES + events * EVENT_BYTES
    return max(1, math.ceil(need / max(budget, 1)))


class _OutgrowsMemory(Exception):
    """The whole trace's identity pass would pass the memory budget: replay it in buckets."""

    def __init__(self, buckets: int) -> None:
        super().__init__(buckets)
        self.buckets = buckets


# cgroup v2, then v1: a container's limit, where it is below the machine's memory
_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)


def usable_memory(limits: tuple[Path, ...] = _CGROUP_LIMITS) -> int:
    """Bytes this process may use: the machine's memory, or its cgroup's limit if lower."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 8 << 30
    for path in limits:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # v2 says "max" when there is no limit
            memory = min(memory, int(text))
    return memory


_IDENTITY_READ = (*identity.IDENTITY_COLUMNS, "ts_ns", "line")
# The state pass reads every column but the trace's id, which it sets on its rows itself.
_STATE_READ = tuple(c for c in EVENTS_SCHEMA if c != "trace_id")
T = TypeVar("T")
_Tables = tuple[pl.DataFrame, pl.DataFrame]  # a batch's (page_events, intervals)


def _first_pass(
    source: _ReplayOrder, batch_rows: int, run: Callable[[Iterator[pl.DataFrame]], T]
) -> T:
    """`run` over the trace's identity columns (with ts_ns and line) in replay order, checked
    as they come: where the stored parts turn out not to be in it, the trace is sorted into
    it and `run` starts over on that."""
    while True:
        try:
            return run(source.checked_batches(_IDENTITY_READ, IDENTITY_BATCHES * batch_rows))
        except _OutOfOrder:
            source.cut_into_replay_order()


def _identity(source: _ReplayOrder, n: int, batch_rows: int, budget: int | None) -> identity.Pages:
    """The trace's pages, from its identity columns streamed in replay order. With a `budget`,
    gives up as soon as its pages would outgrow it (_OutgrowsMemory, with the buckets they
    need by then)."""
    if budget is not None and buckets_for(0, n, budget) > 1:
        raise _OutgrowsMemory(buckets_for(0, n, budget))

    def run(batches: Iterator[pl.DataFrame]) -> identity.Pages:
        ident = identity.IdentityPass(n)
        with _KeysAhead(ident) as ahead:
            for batch in batches:
                ahead.feed(batch)
                if budget is not None and buckets_for(ident.n_pages, n, budget) > 1:
                    seen = max(ident.row, 1)
                    raise _OutgrowsMemory(buckets_for(ident.n_pages * n // seen, n, budget))
        if ident.row != n:
            raise _changed()
        return ident.pages()

    return _first_pass(source, batch_rows, run)


def _route(source: _ReplayOrder, buckets: int, batch_rows: int) -> partition.Routing:
    """The routing pass (replay/partition.py) over the trace in replay order; its routes go
    to a scratch file, read back memory-mapped."""
    largest = source.events.select(pl.col("folio_order").max()).collect().item()
    shift = partition.shift_for(largest)

    def run(batches: Iterator[pl.DataFrame]) -> partition.Routing:
        keys = (identity.columns(batch) for batch in batches)
        routing = partition.route(keys, buckets, shift, source.scratch_file("routes.bin"))
        if int(routing.counts.sum()) != source.n:
            raise _changed()
        return routing

    return _first_pass(source, batch_rows, run)


def _bucket_identity(
    source: _ReplayOrder, routing: partition.Routing, b: int, batch_rows: int
) -> identity.Pages:
    """Bucket b's pages: the identity pass over its events only, which hold every event that
    decides its pages' identity (replay/partition.py)."""
    ident = identity.IdentityPass(int(routing.counts[b]))
    row = 0
    with _KeysAhead(ident) as ahead:
        for batch in source.batches(identity.IDENTITY_COLUMNS, IDENTITY_BATCHES * batch_rows):
            of_event, lookup = routing.rows(row, row + batch.height)
            row += batch.height
            mine = of_event == b
            ahead.feed_columns(identity.columns(batch.filter(pl.Series(mine)), lookup[mine]))
    if ident.row != ident.n:
        raise _changed()
    return ident.pages()


@dataclass
class _Keep:
    """A state pass over page bucket b only."""

    routing: partition.Routing
    b: int


class _KeysAhead:
    """Feeds an IdentityPass with each batch's keys taken on a worker thread while the batch
    before resolves on this one: the two halves' kernels release the GIL, and the identity
    pass was otherwise one core's work for a third of a replay. One batch ahead at most."""

    def __init__(self, ident: identity.IdentityPass) -> None:
        self.ident = ident
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: Future[identity.BatchKeys] | None = None

    def __enter__(self) -> _KeysAhead:
        return self

    def feed(self, batch: pl.DataFrame) -> None:
        # unpacked here, not on the worker: its half (the dense ids) was the longer one
        self.feed_columns(identity.columns(batch))

    def feed_columns(self, cols: identity.KeyColumns) -> None:
        keys = self.pool.submit(self.ident.keys, cols)  # after the previous batch's keys
        self._resolve_pending()
        self.pending = keys

    def _resolve_pending(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self.ident.resolve_keys(pending.result())

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                self._resolve_pending()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _follows(ts: pl.Series, line: pl.Series, last_ts: int | None, last_line: int | None) -> bool:
    """Whether a batch (no null ts_ns) is in (ts_ns, line) order and comes after the row
    (last_ts, last_line). One compiled pass: polars' diffs and masks took 3% of a replay."""
    lo = np.iinfo(np.int64).min
    return bool(
        kernel.in_replay_order(
            ts.cast(pl.Int64).to_numpy(),
            line.cast(pl.Int64).to_numpy(),
            lo if last_ts is None else last_ts,
            lo if last_line is None else last_line,
        )
    )


def _replay_state(
    tid: str,
    replay: core.TraceReplay,
    source: _ReplayOrder,
    pe_dir: Path,
    iv_dir: Path,
    stages: dict[str, dict[str, float]],
    counts: dict[str, int],
    part: int,
    keep: _Keep | None = None,
) -> int:
    """The state pass over the trace's events in replay order (with `keep`, those of one
    page bucket only), in a pipeline: this thread replays a batch while a thread of its own
    builds the previous batch's tables and writer threads write the ones before. Parts are
    numbered from `part`; returns the next free number, and adds the rows and parts written
    to `counts`.

    This thread (reading, the kernel) was the pass's critical path, with a core idle a third
    of the time; building the tables on another thread took 5% off a 20M-event replay's wall
    (median of 8 alternating pairs) for ~250 MiB more at the peak. WORKERS bounds the parts
    in flight, replayed or built, so memory stays bounded."""
    pending: list[Future[tuple[int, int]]] = []

    def write(part: int, pe: pl.DataFrame | None, iv: pl.DataFrame) -> tuple[int, int]:
        """Write one part; returns its (page_events, intervals) rows."""
        # page_events come grouped by kind, intervals by state (TraceReplay.batch): nearly
        # every rule filters on one kind or state, and with small row groups and their
        # min/max statistics the Parquet reader skips all the others
        for root, df in ((pe_dir, pe), (iv_dir, iv)):
            if df is None or (df.height == 0 and root is iv_dir and part > 0):
                continue
            out = root / f"trace_id={tid}"
            out.mkdir(parents=True, exist_ok=True)
            write_part(df, out / f"part-{part:05d}.parquet", "kind" if root is pe_dir else "state")
        return (0 if pe is None else pe.height), iv.height

    def write_built(part: int, tables: Future[_Tables]) -> tuple[int, int]:
        return write(part, *tables.result())

    def settle(f: Future[tuple[int, int]]) -> None:
        p, i = f.result()
        counts["page_events"] += p
        counts["intervals"] += i

    with (
        ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="pinscope-write") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="pinscope-tables") as build,
    ):
        row = 0  # in the trace's replay order: each event's seq
        for batch in source.batches(_STATE_READ, source.batch_rows):
            with _stage(stages, "state"):
                batch = batch.with_columns(
                    pl.int_range(row, row + batch.height, dtype=pl.Int64).alias("seq")
                )
                row += batch.height
                if keep is not None:
                    # a bucket's parts are its rows of each batch: gathered up to a batch's
                    # worth, as many parts in flight held ~470 MiB more (4 buckets, 20M events)
                    # for the same time
                    of_event, _ = keep.routing.rows(row - batch.height, row)
                    batch = batch.filter(pl.Series(of_event == keep.b))
                    if batch.height == 0:
                        continue
                replayed = replay.batch(batch, grouped=True)
                del batch
            while len(pending) >= WORKERS:  # bounded: WORKERS parts in flight
                settle(pending.pop(0))
            # built in batch order on one thread; a writer waits for its part's tables
            pending.append(pool.submit(write_built, part, build.submit(replayed.tables)))
            del replayed
            part += 1
            counts["parts"] += 1
        if replay.row != replay.n or row != source.n:
            raise _changed()
        with _stage(stages, "state"):
            last = replay.finish(grouped=True)
        pending.append(pool.submit(write, part, None, last))  # intervals only
        with _stage(stages, "write"):
            for f in pending:
                settle(f)
    return part + 1


# Dictionary-encoded: the enums and the few-valued strings. The rest (counters, ids, page_id)
# encode faster plain and compress as well under lz4.
_DICTIONARY = ("kind", "state", "buffers_before", "buffers_after", "trace_id", "comm", "caller",
               "source_event")  # fmt: skip
# Delta-encoded: rising within a part's kind (page_events) or state (intervals) group, so their
# deltas pack in a few bits (seq, line, ts_ns; end_ts_ns, end_line), or integers whose deltas are
# no wider than their values (pfns, inodes, page indexes, span starts). The second group, on a
# `simulate mixed` trace: page_events parts half and intervals parts 60% smaller than with
# those columns plain + lz4, and 5-12% less CPU to write (lz4 spent more on the plain values
# than the delta encoder does).
_DELTA = ("seq", "line", "ts_ns", "end_ts_ns", "end_line", "start_ts_ns", "start_line", "pfn",
          "event_pfn", "new_pfn", "ino", "index")  # fmt: skip


def write_part(df: pl.DataFrame, path: Path, grouped_by: str) -> None:
    """One derived part file, encoded for the rules' scans and cheaply.

    lz4, not zstd: a scan decompresses every page of the row groups it reads, and lz4 decodes
    several times faster. Min/max statistics only on the column the part is grouped by: they
    are what lets a `kind = …` / `state = …` scan skip the other row groups, and computing
    them for every column cost a quarter of the write. Version 2 data pages and values handed
    to the encoders a row group at a time (`parquet_parts`): 20% less CPU for the same bytes;
    DuckDB scans them as fast, and polars reads them 10% faster.
    """
    parquet_parts.write_part(
        df,
        path,
        compression="lz4",
        row_group_rows=ROW_GROUP_ROWS,
        dictionary=_DICTIONARY,
        delta=_DELTA,
        statistics=(grouped_by,),
        constant=("trace_id",),
    )


class _OutOfOrder(Exception):
    """A trace's stored parts are not in replay order (_ReplayOrder.checked_batches)."""


def _changed() -> InputError:
    """The events' count moved under a pass: another process rewrote them meanwhile."""
    return InputError("events changed while being replayed: run `pinscope replay` again")


class _ReplayOrder:
    """A trace's events in replay order, as many times as asked.

    Straight from its Parquet parts while they are in (ts_ns, line) order, as traces printed in
    time order are (ingest keeps line order). One that is not (bpftrace's per-CPU buffers, a
    merged or hand-edited file) is sorted once into a scratch Parquet file by DuckDB, whose
    sort spills to disk past CUT_MEMORY: memory stays bounded however long the trace.
    """

    def __init__(
        self,
        dataset: Path,
        trace_id: str,
        events: pl.LazyFrame,
        n: int,
        batch_rows: int,
        stages: dict[str, dict[str, float]],
    ) -> None:
        self.dataset, self.trace_id, self.events, self.n = dataset, trace_id, events, n
        self.batch_rows, self.stages = batch_rows, stages
        self.scratch: Path | None = None
        self.in_order = False  # known to be in replay order: checked once, or sorted into it
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    def batches(self, columns: tuple[str, ...], rows: int) -> Iterator[pl.DataFrame]:
        """Batches of `rows` events with these columns."""
        cols = [pl.col(c).cast(EVENTS_SCHEMA[c]) for c in columns]
        it = self.events.select(cols).collect_batches(chunk_size=rows)
        while True:
            with _stage(self.stages, "read"):
                batch = next(it, None)
            if batch is None:
                return
            yield batch

    def checked_batches(self, columns: tuple[str, ...], rows: int) -> Iterator[pl.DataFrame]:
        """`batches` (columns with ts_ns and line), checking as they come that they are in
        replay order until one pass has seen them all: raises _OutOfOrder where they are not
        (then `cut_into_replay_order` and start over). An event without a timestamp is an
        error (ingest rejects them)."""
        last_ts = last_line = first_ts = None
        for batch in self.batches(columns, rows):
            ts, line = batch.get_column("ts_ns"), batch.get_column("line")
            if ts.null_count():
                bad = batch.filter(pl.col("ts_ns").is_null()).get_column("line")[0]
                raise InputError(
                    f"{self.dataset}: trace {self.trace_id} line {bad}: event without "
                    "a timestamp; expected every event to have one (re-ingest the trace)"
                )
            if not self.in_order and not _follows(ts, line, last_ts, last_line):
                raise _OutOfOrder()
            first_ts = ts[0] if first_ts is None else first_ts
            last_ts, last_line = ts[-1], line[-1]
            yield batch
        self.in_order, self.first_ts, self.last_ts = True, first_ts, last_ts

    def scratch_file(self, name: str) -> Path:
        """A file in this replay's scratch directory (in the dataset, removed by `close`)."""
        if self.scratch is None:
            self.scratch = ds.new_tmp_dir(self.dataset)
        return self.scratch / name

    def cut_into_replay_order(self) -> None:
        """Sort the trace's events into replay order, once; `batches` reads them from there.

        DuckDB rather than polars: its ORDER BY spills sorted runs to the scratch directory when
        they outgrow CUT_MEMORY, where a polars sort holds the whole trace. Types survive the
        round trip (the kind enum comes back as strings; `batches` casts it back)."""
        with _stage(self.stages, "read"):
            out = self.scratch_file("replay_order.parquet")
            spill = self.scratch_file("spill")
            parts = ds.parts_glob(ds.trace_dir(self.dataset, "events", self.trace_id))
            config: dict[str, Any] = {
                "memory_limit": CUT_MEMORY,
                "temp_directory": str(spill),  # made only if it spills
                "preserve_insertion_order": True,
            }
            if CUT_THREADS is not None:
                config["threads"] = CUT_THREADS
            con = duckdb.connect(":memory:", config=config)
            try:
                rel = con.read_parquet(str(parts), hive_partitioning=False)
                rel.order("ts_ns, line").write_parquet(
                    str(out), compression=CUT_COMPRESSION, row_group_size=ROW_GROUP_ROWS
                )
            except duckdb.Error as exc:
                raise InputError(
                    f"{self.dataset}: trace {self.trace_id} is stored out of time order and "
                    f"sorting it into replay order failed ({exc}); the sort spills to "
                    f"{self.dataset}: check the free space there"
                ) from exc
            finally:
                con.close()
            shutil.rmtree(spill, ignore_errors=True)
            self.events = pl.scan_parquet(out, glob=False)
            self.in_order = True
            if self.events.select(pl.len()).collect().item() != self.n:
                raise _changed()

    def close(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None
