"""The replay driver: dataset in, derived/page_events and derived/intervals out.

Per trace: the identity pass reads the narrow columns once (replay order, page slots, what
initial-state inference needs), then the events stream through the state core in replay order,
BATCH_ROWS at a time: a trace already in (ts_ns, line) order, as most are, is read straight from
its Parquet parts; one that is not (trace_pipe interleaves CPUs) is first cut into replay-order
ranges in scratch files. Per-page state is all that crosses batches, so memory is bounded by the
trace's pages and one batch, not by its events. Each batch's page_events are written as one part
file grouped by (kind, seq), and the spans closed in it as one intervals part grouped by
state, in small row groups with statistics, so that a rule's `kind = …` scan reads only that
kind. The state pass of one batch overlaps the Parquet writing of the previous ones.
ReplaySummary.stages says where the time went.

derived/replay.json fingerprints what the output was built from; a matching fingerprint means
the output is reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import resource
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from ingest import dataset as ds
from ingest.errors import InputError
from ingest.schema import EVENTS_SCHEMA, FORMAT_VERSION
from replay import core, identity

# Bump when replay's output for the same events changes: it invalidates every derived/.
REPLAY_VERSION = "2"
STAMP = "replay.json"
# Events per batch: bounds what is in flight (≈ 300 bytes per event in page_events before it is
# written); WORKERS written parts at most wait behind the state pass.
WORKERS = 2
# Small row groups: a scan for one kind or state reads only the groups that hold it.
ROW_GROUP_ROWS = 65_536
BATCH_ROWS = 500_000


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


def fingerprint(traces: list[dict[str, Any]]) -> str:
    """What derived/ depends on: each trace's content hash, the dataset format, this code."""
    h = hashlib.sha256(f"replay {REPLAY_VERSION} format {FORMAT_VERSION}\0".encode())
    for t in traces:
        h.update(f"{t.get('trace_id')}\0{t.get('sha256')}\0{t.get('kernel')}\0".encode())
    return h.hexdigest()


def is_fresh(dataset: Path) -> bool:
    """derived/ was built from exactly the traces the manifest lists now."""
    stamp = Path(dataset) / ds.DERIVED / STAMP
    try:
        data = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return data.get("fingerprint") == fingerprint(ds.traces(dataset))


def replay_dataset(
    dataset: Path, *, force: bool = False, batch_rows: int = BATCH_ROWS
) -> ReplaySummary:
    """Build derived/ (page_events, intervals) unless it is fresh; drops stale findings."""
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
        totals = {"events": 0, "page_events": 0, "intervals": 0, "parts": 0}
        stages: dict[str, dict[str, float]] = {}
        with (
            ds.atomic_dir(dataset, f"{ds.DERIVED}/page_events") as pe_dir,
            ds.atomic_dir(dataset, f"{ds.DERIVED}/intervals") as iv_dir,
        ):
            for t in traces:
                counts = _replay_trace(dataset, t, pe_dir, iv_dir, batch_rows, stages)
                for k, v in counts.items():
                    totals[k] += v
        ds.write_json(derived / STAMP, {"fingerprint": fingerprint(traces), **totals})
    return ReplaySummary(
        dataset, True, len(traces), totals["events"], totals["page_events"],
        totals["intervals"], totals["parts"], time.perf_counter() - t0, stages,
    )  # fmt: skip


def _replay_trace(
    dataset: Path,
    trace: dict[str, Any],
    pe_dir: Path,
    iv_dir: Path,
    batch_rows: int,
    stages: dict[str, dict[str, float]],
) -> dict[str, int]:
    tid = trace["trace_id"]
    events = ds.scan(dataset, "events").filter(pl.col("trace_id") == tid)
    lost = ds.scan(dataset, "lost").filter(pl.col("trace_id") == tid).collect()
    with _stage(stages, "identity"):
        order = events.select("line", "ts_ns").collect()
        n = order.height
        if n == 0:
            return {"events": 0, "page_events": 0, "intervals": 0, "parts": 0}
        ts = order.get_column("ts_ns")
        if ts.null_count():
            bad = order.filter(pl.col("ts_ns").is_null()).get_column("line")[0]
            raise InputError(
                f"{dataset}: trace {tid} line {bad}: event without a timestamp; expected every "
                "event to have one (re-ingest the trace)"
            )
        in_order = bool(identity.order_of(order).is_sorted())
        start = trace.get("first_ts_ns")
        end = trace.get("last_ts_ns")
        start = ts.min() if start is None else start
        end = ts.max() if end is None else end
        del order, ts
        # the columns the identity pass reads, decoded at once (in parallel) and consumed
        # column by column
        narrow = events.select(identity.IDENTITY_COLUMNS)
        if not in_order:
            narrow = narrow.sort("ts_ns", "line")
        narrow = narrow.drop("ts_ns", "line").collect()
        replay = core.TraceReplay(
            tid, narrow, lost, kernel=trace.get("kernel"), trace_start_ts=start,
            trace_end_ts=end,
        )  # fmt: skip
        del narrow
        if replay.n != n:
            raise InputError("events changed while being replayed: run `pinscope replay` again")
    counts = {"events": n, "page_events": 0, "intervals": 0, "parts": 0}
    pending: list[Future[tuple[int, int]]] = []

    def write(
        part: int, batch: core.Batch | None, iv: pl.DataFrame | None = None
    ) -> tuple[int, int]:
        """Build and write one part; returns its (page_events, intervals) rows."""
        # built here, beside the Parquet writer, while the main thread replays the next batch
        pe = None
        if batch is not None:
            pe, iv = batch.tables()
        assert iv is not None
        # intervals by state (stable: spans stay in the order they closed), page_events by
        # kind: nearly every rule filters on one state or kind, and with small row groups and
        # their min/max statistics the Parquet reader skips all the others
        iv = iv.sort(pl.col("state").to_physical(), maintain_order=True)
        for root, df in ((pe_dir, pe), (iv_dir, iv)):
            if df is None or (df.height == 0 and root is iv_dir and part > 0):
                continue
            out = root / f"trace_id={tid}"
            out.mkdir(parents=True, exist_ok=True)
            write_part(df, out / f"part-{part:05d}.parquet", "kind" if root is pe_dir else "state")
        return (0 if pe is None else pe.height), iv.height

    def settle(f: Future[tuple[int, int]]) -> None:
        p, i = f.result()
        counts["page_events"] += p
        counts["intervals"] += i

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        part = 0
        for batch in _batches(dataset, events, in_order, n, batch_rows, stages):
            with _stage(stages, "state"):
                row = replay.row
                batch = batch.with_columns(
                    pl.int_range(row, row + batch.height, dtype=pl.Int64).alias("seq")
                )
                done = replay.batch(batch, grouped=True)
                del batch
            while len(pending) >= WORKERS:  # bounded: WORKERS parts in flight
                settle(pending.pop(0))
            pending.append(pool.submit(write, part, done))
            del done
            part += 1
        if replay.row != n:
            raise InputError("events changed while being replayed: run `pinscope replay` again")
        with _stage(stages, "state"):
            last = replay.finish()
        pending.append(pool.submit(write, part, None, last))
        with _stage(stages, "write"):
            for f in pending:
                settle(f)
    counts["parts"] = part
    return counts


# Dictionary-encoded: the enums and the few-valued strings. The rest (counters, ids, page_id)
# encode faster plain and compress as well under lz4.
_DICTIONARY = ("kind", "state", "buffers_before", "buffers_after", "trace_id", "comm", "caller",
               "source_event")  # fmt: skip


def write_part(df: pl.DataFrame, path: Path, grouped_by: str) -> None:
    """One derived part file, encoded for the rules' scans and cheaply.

    lz4, not zstd: a scan decompresses every page of the row groups it reads, and lz4 decodes
    several times faster. Min/max statistics only on the column the part is grouped by: they
    are what lets a `kind = …` / `state = …` scan skip the other row groups, and computing
    them for every column cost a quarter of the write. pyarrow rather than polars' writer for
    the per-column choices: about 40% less CPU per row, and replay's floor is this write.
    """
    table = df.to_arrow()
    pq.write_table(
        table,
        path,
        compression="lz4",
        row_group_size=ROW_GROUP_ROWS,
        use_dictionary=[c for c in _DICTIONARY if c in table.column_names],
        write_statistics=[grouped_by],
    )


def _batches(
    dataset: Path,
    events: pl.LazyFrame,
    in_order: bool,
    n: int,
    batch_rows: int,
    stages: dict[str, dict[str, float]],
) -> Iterator[pl.DataFrame]:
    """The trace's events in replay order, batch_rows at a time, canonical columns."""
    cols = [pl.col(c).cast(t) for c, t in EVENTS_SCHEMA.items()]
    if in_order:
        it = events.collect_batches(chunk_size=batch_rows)
        while True:
            with _stage(stages, "read"):
                batch = next(it, None)
            if batch is None:
                return
            yield batch.select(cols)
        return
    # out of order: cut into replay-order ranges (scratch Arrow IPC), then each range sorted
    scratch = ds.new_tmp_dir(dataset)
    try:
        with _stage(stages, "read"):
            offset = 0
            order = events.select("ts_ns", "line").collect()
            seq = identity.order_of(order)
            del order
            for i, batch in enumerate(events.collect_batches(chunk_size=batch_rows)):
                part = batch.select(cols).with_columns(
                    (seq.slice(offset, batch.height) // batch_rows).cast(pl.UInt32).alias("_r"),
                    seq.slice(offset, batch.height).alias("_seq"),
                )
                offset += batch.height
                for (r,), piece in part.partition_by("_r", as_dict=True).items():
                    d = scratch / f"{r:06d}"
                    d.mkdir(exist_ok=True)
                    piece.drop("_r").write_ipc(d / f"{i:06d}.arrow", compression="uncompressed")
            del seq
            if offset != n:
                raise InputError("events changed while being replayed: run `pinscope replay` again")
        for d in sorted(scratch.iterdir()):
            with _stage(stages, "read"):
                batch = pl.read_ipc(sorted(d.glob("*.arrow"))).sort("_seq").drop("_seq")
                shutil.rmtree(d)
            yield batch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
