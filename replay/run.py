"""The replay driver: dataset in, derived/page_events and derived/intervals out.

Per trace: one pass over the narrow identity columns (replay order, head pfns, file-only
resolution: they map keys to other keys, so they need the whole trace), then every event is
sent to a bucket of resolved page keys and each bucket is replayed on its own. A bucket holds
whole pages, so its result does not depend on the others: memory stays bounded by the bucket
size, and buckets could run anywhere.

derived/replay.json fingerprints what the output was built from; a matching fingerprint means
the output is reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from ingest import dataset as ds
from ingest.errors import InputError
from ingest.schema import EVENTS_SCHEMA, FORMAT_VERSION
from replay import core, identity

# Bump when replay's output for the same events changes: it invalidates every derived/.
REPLAY_VERSION = "1"
STAMP = "replay.json"
# Events per bucket: bounds the state core's memory (≈ 300 bytes per event in flight).
BUCKET_ROWS = 3_000_000
BATCH_ROWS = 1_000_000


@dataclass(frozen=True)
class ReplaySummary:
    dataset: Path
    rebuilt: bool
    traces: int
    events: int
    page_events: int
    intervals: int
    buckets: int
    seconds: float


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
    dataset: Path, *, force: bool = False, bucket_rows: int = BUCKET_ROWS
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
                stamp.get("buckets", 0), time.perf_counter() - t0,
            )  # fmt: skip
        # Nothing derived survives a rebuild half-done: the stamp goes first, findings too.
        (derived / STAMP).unlink(missing_ok=True)
        shutil.rmtree(derived / "findings", ignore_errors=True)
        totals = {"events": 0, "page_events": 0, "intervals": 0, "buckets": 0}
        with (
            ds.atomic_dir(dataset, f"{ds.DERIVED}/page_events") as pe_dir,
            ds.atomic_dir(dataset, f"{ds.DERIVED}/intervals") as iv_dir,
        ):
            for t in traces:
                counts = _replay_trace(dataset, t, pe_dir, iv_dir, bucket_rows)
                for k, v in counts.items():
                    totals[k] += v
        ds.write_json(derived / STAMP, {"fingerprint": fingerprint(traces), **totals})
    return ReplaySummary(
        dataset, True, len(traces), totals["events"], totals["page_events"],
        totals["intervals"], totals["buckets"], time.perf_counter() - t0,
    )  # fmt: skip


def _replay_trace(
    dataset: Path, trace: dict[str, Any], pe_dir: Path, iv_dir: Path, bucket_rows: int
) -> dict[str, int]:
    tid = trace["trace_id"]
    events = ds.scan(dataset, "events").filter(pl.col("trace_id") == tid)
    lost = ds.scan(dataset, "lost").filter(pl.col("trace_id") == tid).collect()
    narrow = events.select(identity.IDENTITY_COLUMNS).collect()
    n = narrow.height
    if n == 0:
        return {"events": 0, "page_events": 0, "intervals": 0, "buckets": 0}
    if narrow.get_column("ts_ns").null_count():
        bad = narrow.filter(pl.col("ts_ns").is_null()).get_column("line")[0]
        raise InputError(
            f"{dataset}: trace {tid} line {bad}: event without a timestamp; expected every "
            "event to have one (re-ingest the trace)"
        )
    seq = identity.order_of(narrow)
    rpfn = identity.resolve_pfns(narrow.with_columns(seq))
    nb = max(1, -(-n // bucket_rows))
    ident = pl.DataFrame({"line": narrow.get_column("line"), "seq": seq, "_rpfn": rpfn})
    ident = ident.with_columns(_bucket(narrow, rpfn, nb))
    start = trace.get("first_ts_ns")
    end = trace.get("last_ts_ns")
    start = narrow.get_column("ts_ns").min() if start is None else start
    end = narrow.get_column("ts_ns").max() if end is None else end
    del narrow
    kernel = trace.get("kernel")
    counts = {"events": n, "page_events": 0, "intervals": 0, "buckets": nb}

    # Parquet encoding of bucket i overlaps the state core of bucket i + 1 (both release the GIL).
    writer = ThreadPoolExecutor(max_workers=1)
    pending: list[Future[None]] = []

    def write(bucket: int, res: core.ReplayResult) -> None:
        for root, df in ((pe_dir, res.page_events), (iv_dir, res.intervals)):
            out = root / f"trace_id={tid}" / f"bucket={bucket:03d}"
            out.mkdir(parents=True, exist_ok=True)
            df.write_parquet(
                out / "part.parquet", compression="zstd", compression_level=1, statistics=False
            )

    def run(bucket: int, ev: pl.DataFrame) -> None:
        res = core.replay_resolved(ev, lost, kernel=kernel, trace_start_ts=start, trace_end_ts=end)
        counts["page_events"] += res.page_events.height
        counts["intervals"] += res.intervals.height
        while pending:  # at most one bucket's output waits in memory
            pending.pop().result()
        pending.append(writer.submit(write, bucket, res))

    try:
        if nb == 1:
            run(0, _attach(events.collect(), ident))
        else:
            box = [ident]  # the shuffle drops the last reference once the buckets are cut
            del ident
            _shuffle(dataset, events, box, run)
        while pending:
            pending.pop().result()
    finally:
        writer.shutdown(wait=True)
    return counts


def _shuffle(
    dataset: Path,
    events: pl.LazyFrame,
    box: list[pl.DataFrame],
    run: Callable[[int, pl.DataFrame], None],
) -> None:
    """Split the trace's events into bucket files (Arrow IPC scratch), then replay each."""
    ident = box.pop()
    scratch = ds.new_tmp_dir(dataset)
    try:
        offset = 0
        for i, batch in enumerate(events.collect_batches(chunk_size=BATCH_ROWS)):
            part = _attach(batch, ident.slice(offset, batch.height))
            offset += batch.height
            for (b,), piece in part.partition_by("_bucket", as_dict=True).items():
                d = scratch / f"{b:03d}"
                d.mkdir(exist_ok=True)
                piece.drop("_bucket").write_ipc(d / f"{i:06d}.arrow", compression="uncompressed")
        del ident
        for d in sorted(scratch.iterdir()):
            ev = pl.read_ipc(sorted(d.glob("*.arrow")))  # one scan: cheaper than a concat
            run(int(d.name), ev)
            del ev
            shutil.rmtree(d)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _bucket(narrow: pl.DataFrame, rpfn: pl.Series, nb: int) -> pl.Series:
    """Bucket of each row's resolved page key: the pfn, else the file key; pageless → 0."""
    keys = narrow.select(
        pl.when(rpfn.is_not_null())
        .then(pl.lit(rpfn).hash(1))
        .otherwise(pl.struct("dev", "ino", "index").hash(2))
        .alias("h")
    ).get_column("h")
    return (keys % nb).cast(pl.UInt32).alias("_bucket")


def _attach(ev: pl.DataFrame, ident: pl.DataFrame) -> pl.DataFrame:
    """Canonical event columns plus seq, traced and resolved pfn (rows in the same order)."""
    if ev.height != ident.height or not ev.get_column("line").equals(ident.get_column("line")):
        raise InputError("events changed while being replayed: run `pinscope replay` again")
    ev = ev.select([pl.col(c).cast(t) for c, t in EVENTS_SCHEMA.items()])
    return ev.with_columns(
        ident.get_column("seq"),
        pl.col("pfn").alias("event_pfn"),
        ident.get_column("_rpfn").alias("pfn"),
        *([ident.get_column("_bucket")] if "_bucket" in ident.columns else []),
    )
