"""The replay driver: dataset in, derived/page_events and derived/intervals out.

Per trace: one pass over the narrow identity columns (replay order, head pfns, file-only
resolution: they map keys to other keys, so they need the whole trace), then every event is
sent to a bucket of resolved page keys and each bucket is replayed on its own. A bucket holds
whole pages, so its result does not depend on the others: memory stays bounded by the bucket
size, and buckets could run anywhere. Here WORKERS of them run at once (polars releases the
GIL), each writing its page_events sorted by (kind, page_id, seq) and its intervals by state,
in small row groups with statistics, so that a rule's `kind = …` scan reads only that kind.
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
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
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
# Events per bucket: bounds the state core's memory (≈ 300 bytes per event in flight); WORKERS
# buckets are replayed at once, one per core.
BUCKET_ROWS = 1_500_000
WORKERS = 2
# Small row groups: a scan for one kind or state reads only the groups that hold it.
ROW_GROUP_ROWS = 65_536
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
        stages: dict[str, dict[str, float]] = {}
        with (
            ds.atomic_dir(dataset, f"{ds.DERIVED}/page_events") as pe_dir,
            ds.atomic_dir(dataset, f"{ds.DERIVED}/intervals") as iv_dir,
        ):
            for t in traces:
                counts = _replay_trace(dataset, t, pe_dir, iv_dir, bucket_rows, stages)
                for k, v in counts.items():
                    totals[k] += v
        ds.write_json(derived / STAMP, {"fingerprint": fingerprint(traces), **totals})
    return ReplaySummary(
        dataset, True, len(traces), totals["events"], totals["page_events"],
        totals["intervals"], totals["buckets"], time.perf_counter() - t0, stages,
    )  # fmt: skip


def _replay_trace(
    dataset: Path,
    trace: dict[str, Any],
    pe_dir: Path,
    iv_dir: Path,
    bucket_rows: int,
    stages: dict[str, dict[str, float]],
) -> dict[str, int]:
    tid = trace["trace_id"]
    events = ds.scan(dataset, "events").filter(pl.col("trace_id") == tid)
    lost = ds.scan(dataset, "lost").filter(pl.col("trace_id") == tid).collect()
    with _stage(stages, "identity"):
        # replay order first, then the key columns: ts_ns is not held through the resolution
        order = events.select("line", "ts_ns").collect()
        n = order.height
        if n == 0:
            return {"events": 0, "page_events": 0, "intervals": 0, "buckets": 0}
        if order.get_column("ts_ns").null_count():
            bad = order.filter(pl.col("ts_ns").is_null()).get_column("line")[0]
            raise InputError(
                f"{dataset}: trace {tid} line {bad}: event without a timestamp; expected every "
                "event to have one (re-ingest the trace)"
            )
        seq = identity.order_of(order)
        start = trace.get("first_ts_ns")
        end = trace.get("last_ts_ns")
        start = order.get_column("ts_ns").min() if start is None else start
        end = order.get_column("ts_ns").max() if end is None else end
        line = order.get_column("line")
        del order
        keys = events.select(c for c in identity.IDENTITY_COLUMNS if c not in ("line", "ts_ns"))
        narrow = keys.collect().with_columns(seq)
        if narrow.height != n:
            raise InputError("events changed while being replayed: run `pinscope replay` again")
        rpfn = identity.resolve_pfns(narrow)
        nb = max(1, -(-n // bucket_rows))
        ident = pl.DataFrame({"line": line, "seq": seq, "_rpfn": rpfn})
        ident = ident.with_columns(_bucket(narrow, rpfn, nb))
        del narrow, line, seq, rpfn
    kernel = trace.get("kernel")

    def write(bucket: int, res: core.ReplayResult) -> None:
        # intervals by state (stable: a state's spans stay in page order), as page_events come
        # by kind: nearly every rule filters on one state or kind, and with small row groups
        # and their min/max statistics the Parquet reader skips all the others
        ivs = res.intervals.sort(pl.col("state").to_physical(), maintain_order=True)
        for root, df in ((pe_dir, res.page_events), (iv_dir, ivs)):
            out = root / f"trace_id={tid}" / f"bucket={bucket:03d}"
            out.mkdir(parents=True, exist_ok=True)
            # lz4, not zstd: a scan decompresses every page of the row groups it reads, and
            # lz4 decodes several times faster
            df.write_parquet(
                out / "part.parquet",
                compression="lz4",
                statistics=True,
                row_group_size=ROW_GROUP_ROWS,
            )

    def job(bucket: int, load: Callable[[], pl.DataFrame]) -> tuple[int, int]:
        res = core.replay_resolved(
            load(), lost, kernel=kernel, trace_start_ts=start, trace_end_ts=end, page_order=True
        )
        write(bucket, res)
        return res.page_events.height, res.intervals.height

    if nb == 1:
        with _stage(stages, "replay+write"):
            whole = [_attach(events.collect(), ident)]
            del ident
            done = [job(0, whole.pop)]
    else:
        box = [ident]  # the shuffle drops the last reference once the buckets are cut
        del ident
        done = _shuffle(dataset, events, box, job, stages)
    return {
        "events": n,
        "page_events": sum(p for p, _ in done),
        "intervals": sum(i for _, i in done),
        "buckets": nb,
    }


def _shuffle(
    dataset: Path,
    events: pl.LazyFrame,
    box: list[pl.DataFrame],
    job: Callable[[int, Callable[[], pl.DataFrame]], tuple[int, int]],
    stages: dict[str, dict[str, float]],
) -> list[tuple[int, int]]:
    """Split the trace's events into bucket files (Arrow IPC scratch), then replay each.

    Both phases keep WORKERS threads busy (polars releases the GIL): batches are cut while the
    next one is read, and WORKERS buckets are replayed and written at once, each loading its
    own rows when it starts, so at most WORKERS buckets are in memory.
    """
    ident = box.pop()
    scratch = ds.new_tmp_dir(dataset)
    try:
        for b in ident.get_column("_bucket").unique().to_list():
            (scratch / f"{b:03d}").mkdir()

        def cut(i: int, part: pl.DataFrame) -> None:
            for (b,), piece in part.partition_by("_bucket", as_dict=True).items():
                piece.drop("_bucket").write_ipc(
                    scratch / f"{b:03d}" / f"{i:06d}.arrow", compression="uncompressed"
                )

        with _stage(stages, "shuffle"), ThreadPoolExecutor(max_workers=WORKERS) as pool:
            pending: list[Future[None]] = []
            offset = 0
            for i, batch in enumerate(events.collect_batches(chunk_size=BATCH_ROWS)):
                part = _attach(batch, ident.slice(offset, batch.height))
                offset += batch.height
                del batch
                while len(pending) >= WORKERS:  # bounded: WORKERS batches in flight
                    pending.pop(0).result()
                pending.append(pool.submit(cut, i, part))
                del part
            for f in pending:
                f.result()
        if offset != ident.height:
            raise InputError("events changed while being replayed: run `pinscope replay` again")
        del ident

        def load(d: Path) -> pl.DataFrame:
            ev = pl.read_ipc(sorted(d.glob("*.arrow")))  # one scan: cheaper than a concat
            shutil.rmtree(d)
            return ev

        with _stage(stages, "replay+write"), ThreadPoolExecutor(max_workers=WORKERS) as pool:
            futures = [
                pool.submit(job, int(d.name), partial(load, d)) for d in sorted(scratch.iterdir())
            ]
            try:
                return [f.result() for f in futures]
            finally:
                for f in futures:
                    f.cancel()
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
