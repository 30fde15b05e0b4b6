"""Replay throughput and memory: the driver on an N-event dataset, and the core vs the oracle.

Builds a synthetic dataset (pins/gets on folio subpages, writeback, truncate, file-only
writeback events, pfn reuse) straight as Parquet, runs `replay_dataset` on it (events/s, peak
RSS), then runs the vectorized core and the reference state machine on the same sample and
prints the ratio. The last line is BENCH_JSON for benchmarks/run_all.py.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest import dataset as ds
from ingest.schema import FORMAT_VERSION, conform
from replay.core import replay_events
from replay.reference import replay_events_reference
from replay.run import replay_dataset

# One page's life: (kind, uses a subpage pfn, file-only)
_LIFE = [
    ("alloc", False, False),
    ("cache_add", False, False),
    ("pin", True, False),
    ("get", True, False),
    ("dirty", False, True),
    ("mkclean", False, False),
    ("wb_start", False, False),
    ("wb_end", False, True),
    ("put", True, False),
    ("ref", False, False),
    ("unpin", True, False),
    ("dirty", False, False),
    ("cache_del", False, False),
    ("truncate", False, False),
    ("unpin", False, False),  # a mismatch now and then: history known since alloc
    ("free", False, False),
]


def synth(n: int, trace_id: str = "bench", seed: int = 1) -> pl.DataFrame:
    """n events: lives of order-2 folios, interleaved in time, pfns reused across lives."""
    L = len(_LIFE)
    i = pl.int_range(n, dtype=pl.Int64, eager=True)
    life = i // L
    step = i % L
    n_pages = max(1, n // (L * 3))  # each pfn lives ~3 times
    kinds = pl.Series([k for k, _, _ in _LIFE], dtype=pl.String)
    sub = pl.Series([s for _, s, _ in _LIFE])
    fonly = pl.Series([f for _, _, f in _LIFE])
    df = pl.DataFrame({"life": life, "step": step}).with_columns(
        ((pl.col("life") % n_pages) * 4 + 4096).cast(pl.UInt64).alias("head"),
        (pl.col("life") // n_pages).alias("round"),
        pl.col("step").map_batches(lambda s: kinds.gather(s)).alias("kind"),
        pl.col("step").map_batches(lambda s: sub.gather(s)).alias("sub"),
        pl.col("step").map_batches(lambda s: fonly.gather(s)).alias("fonly"),
    )
    # lives of the same round overlap in time; a pfn's next life comes a round later
    df = df.with_columns(
        (
            pl.col("round") * 10_000_000_000 + pl.col("step") * 1_000_000 + (pl.col("life") % 997)
        ).alias("ts_ns"),
        (pl.col("life") * 7 + pl.col("round")).alias("ino"),
    )
    df = df.sort("ts_ns", "life").with_columns(
        pl.lit(trace_id).alias("trace_id"),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("line"),
        pl.when(pl.col("fonly")).then(None).when(pl.col("sub")).then(pl.col("head") + 1)
        .otherwise(pl.col("head")).alias("pfn"),
        pl.when(pl.col("kind").is_in(["alloc", "cache_add", "free"])).then(2).otherwise(0)
        .cast(pl.UInt8).alias("folio_order"),
        pl.when(pl.col("kind").is_in(["cache_add", "cache_del"]) | pl.col("fonly"))
        .then(pl.col("ino")).alias("ino"),
        pl.when(pl.col("kind").is_in(["cache_add", "cache_del"]) | pl.col("fonly"))
        .then(0).alias("index"),
        pl.lit(1).alias("refs"),
        pl.when(pl.col("kind") == "pin").then(1).otherwise(0).alias("gup_flags"),
        (pl.col("life") % 64 + 100).alias("pid"),
        pl.lit("ib_write_bw").alias("comm"),
        pl.when(pl.col("kind") == "pin").then(pl.lit("ib_umem_get")).alias("caller"),
        pl.when(pl.col("kind") == "ref").then(pl.lit(1025)).alias("count"),
        pl.lit(3).alias("cpu"),
        pl.col("kind").alias("source_event"),
    )  # fmt: skip
    return conform(df, "events")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """User + system CPU of this process (all threads): fair on a loaded machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_dataset(root: Path, n: int) -> Path:
    root.mkdir(parents=True)
    d = ds.trace_dir(root, "events", "bench")
    d.mkdir(parents=True)
    chunk = 2_000_000
    ev = synth(n)
    for k in range(0, n, chunk):
        ev.slice(k, chunk).write_parquet(d / f"part-{k // chunk:05d}.parquet")
    first, last = ev["ts_ns"].min(), ev["ts_ns"].max()
    del ev
    ds.write_manifest(
        root,
        {
            "format_version": FORMAT_VERSION,
            "traces": [{"trace_id": "bench", "sha256": f"synthetic-{n}", "kernel": "6.8.0",
                        "first_ts_ns": first, "last_ts_ns": last}],
        },
    )  # fmt: skip
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000_000, help="dataset size (events)")
    ap.add_argument("--sample", type=int, default=200_000, help="events for core vs reference")
    ap.add_argument("--dir", type=Path, default=None, help="scratch dir (default: a temp dir)")
    args = ap.parse_args()

    # core vs oracle on the same in-memory sample (before the big run, so RSS stays the
    # driver's); wall and CPU ratios both, since other work may share the machine
    sample = synth(args.sample, seed=2)
    t, c = time.perf_counter(), cpu_s()
    fast = replay_events(sample, None, kernel="6.8.0")
    t_core, c_core = time.perf_counter() - t, cpu_s() - c
    t, c = time.perf_counter(), cpu_s()
    slow = replay_events_reference(sample, None, kernel="6.8.0")
    t_ref, c_ref = time.perf_counter() - t, cpu_s() - c
    same = fast.page_events.equals(slow.page_events)
    del fast, slow, sample

    scratch = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        t = time.perf_counter()
        # built in a child process: the synthetic frame must not count in the driver's peak RSS
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(target=make_dataset, args=(scratch / "ds", args.events))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"building the dataset failed (exit {child.exitcode})")
        root = scratch / "ds"
        t_make = time.perf_counter() - t
        base_rss = rss_mb()
        t, c = time.perf_counter(), cpu_s()
        s = replay_dataset(root, force=True)
        t_run, c_run = time.perf_counter() - t, cpu_s() - c
        peak = rss_mb()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    eps = s.events / t_run
    ratio = t_ref / t_core
    cpu_ratio = c_ref / max(c_core, 1e-9)
    print(f"{'stage':<28}{'events':>12}{'seconds':>10}{'events/s':>14}")
    print(f"{'build dataset':<28}{args.events:>12,}{t_make:>10.2f}{args.events / t_make:>14,.0f}")
    print(f"{'replay_dataset (driver)':<28}{s.events:>12,}{t_run:>10.2f}{eps:>14,.0f}"
          f"   cpu {c_run:.2f}s")  # fmt: skip
    print(f"{'core (in memory, sample)':<28}{args.sample:>12,}{t_core:>10.2f}"
          f"{args.sample / t_core:>14,.0f}")  # fmt: skip
    print(
        f"{'reference (sample)':<28}{args.sample:>12,}{t_ref:>10.2f}{args.sample / t_ref:>14,.0f}"
    )
    print(f"core / reference speed ratio: {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU"
          f"  (page_events identical: {same})")  # fmt: skip
    print(f"buckets: {s.buckets}, page_events {s.page_events:,}, intervals {s.intervals:,}")
    print(f"peak RSS: {peak:,.0f} MiB (before replay: {base_rss:,.0f} MiB)")
    out = {
        "stage": "replay",
        "events": s.events,
        "seconds": round(t_run, 3),
        "events_per_s": round(eps),
        "peak_rss_mb": round(peak),
        "cpu_seconds": round(c_run, 3),
        "core_vs_reference": round(ratio, 1),
        "core_vs_reference_cpu": round(cpu_ratio, 1),
        "reference_events_per_s": round(args.sample / t_ref),
        "buckets": s.buckets,
        "identical_to_reference": same,
    }
    print("BENCH_JSON " + json.dumps(out))


if __name__ == "__main__":
    main()
