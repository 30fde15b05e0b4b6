"""Synthetic event datasets for the replay and rules benchmarks, built with polars at any size.

A dataset is many page lives laid out from templates: order-2 folios, lives of one round
overlapping in time, each pfn reused about three times. The replay benchmark uses the hazardous
life throughout (the densest case); the rules benchmark mixes in one hazardous life per
`hazard_every`, as a real trace holds few hazards among millions of events.
"""

from __future__ import annotations

import resource
from pathlib import Path

import polars as pl

from ingest import dataset as ds
from ingest.pipeline import write_dataset_part
from ingest.schema import FORMAT_VERSION, conform

W = 1  # FOLL_WRITE on 6.x
# Events in a part of `events`: what a 48 MiB chunk of `simulate mixed` text holds (~190k).
PART_EVENTS = 190_000

# (kind, on a subpage pfn, file-only (no pfn), gup_flags)
Step = tuple[str, bool, bool, int]

# A correct driver: read-only get/put, a writable pin dirtied before unpin, writeback after,
# truncate, free.
BENIGN_LIFE: list[Step] = [
    ("alloc", False, False, 0),
    ("cache_add", False, False, 0),
    ("ref", False, False, 0),
    ("get", True, False, 0),
    ("put", True, False, 0),
    ("pin", True, False, W),
    ("dirty", False, False, 0),
    ("unpin", True, False, 0),
    ("mkclean", False, False, 0),
    ("wb_start", False, False, 0),
    ("wb_end", False, True, 0),
    ("ref", False, False, 0),
    ("mkwrite", False, False, 0),
    ("free_buffers", False, False, 0),
    ("cache_del", False, False, 0),
    ("free", False, False, 0),
]
# A pin across writeback, a dirty after truncate, and a release mismatch (history known since
# alloc): most rules fire on every such life.
HAZARD_LIFE: list[Step] = [
    ("alloc", False, False, 0),
    ("cache_add", False, False, 0),
    ("pin", True, False, W),
    ("get", True, False, 0),
    ("dirty", False, True, 0),
    ("mkclean", False, False, 0),
    ("wb_start", False, False, 0),
    ("wb_end", False, True, 0),
    ("put", True, False, 0),
    ("ref", False, False, 0),
    ("unpin", True, False, 0),
    ("dirty", False, False, 0),
    ("cache_del", False, False, 0),
    ("truncate", False, False, 0),
    ("unpin", False, False, 0),
    ("free", False, False, 0),
]
assert len(BENIGN_LIFE) == len(HAZARD_LIFE)


def synth(n: int, hazard_every: int = 1, trace_id: str = "bench") -> pl.DataFrame:
    """n events; every `hazard_every`-th life is HAZARD_LIFE (1: all of them), else BENIGN_LIFE."""
    L = len(BENIGN_LIFE)
    i = pl.int_range(n, dtype=pl.Int64, eager=True)
    n_pages = max(1, n // (L * 3))
    lives = BENIGN_LIFE + HAZARD_LIFE
    tpl = pl.DataFrame(
        {
            "_t": [t for t in range(2) for _ in range(L)],
            "step": list(range(L)) * 2,
            "kind": [k for k, *_ in lives],
            "sub": [s for _, s, _, _ in lives],
            "fonly": [f for _, _, f, _ in lives],
            "gup_flags": [g for *_, g in lives],
        },
        schema_overrides={"step": pl.Int64, "_t": pl.Int64},
    )
    df = (
        pl.DataFrame({"life": i // L, "step": i % L})
        .with_columns((pl.col("life") % hazard_every == 0).cast(pl.Int64).alias("_t"))
        .join(tpl, on=["_t", "step"], how="left", maintain_order="left")
        .with_columns(
            ((pl.col("life") % n_pages) * 4 + 4096).cast(pl.UInt64).alias("head"),
            (pl.col("life") // n_pages).alias("round"),
        )
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
        (pl.col("life") % 64 + 100).alias("pid"),
        pl.lit("ib_write_bw").alias("comm"),
        pl.when(pl.col("kind").is_in(["pin", "get"])).then(pl.lit("ib_umem_get")).alias("caller"),
        pl.when(pl.col("kind") == "ref").then(pl.lit(1025)).alias("count"),
        pl.lit(3).alias("cpu"),
        pl.col("kind").alias("source_event"),
    )  # fmt: skip
    return conform(df, "events")


def make_dataset(root: Path, n: int, hazard_every: int = 1) -> Path:
    """A dataset of one synthetic trace written straight as `events` Parquet (no text ingest),
    in parts as an ingest writes them: its encodings, and about a chunk's events a part."""
    root.mkdir(parents=True)
    d = ds.trace_dir(root, "events", "bench")
    d.mkdir(parents=True)
    chunk = PART_EVENTS
    ev = synth(n, hazard_every)
    for k in range(0, n, chunk):
        write_dataset_part(ev.slice(k, chunk), d / f"part-{k // chunk:06d}.parquet")
    first, last = ev["ts_ns"].min(), ev["ts_ns"].max()
    del ev
    ds.write_manifest(
        root,
        {
            "format_version": FORMAT_VERSION,
            "traces": [{"trace_id": "bench", "sha256": f"synthetic-{n}-{hazard_every}",
                        "kernel": "6.8.0", "first_ts_ns": first, "last_ts_ns": last}],
        },
    )  # fmt: skip
    return root


def rss_mb() -> float:
    """Peak RSS of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """User + system CPU of this process (all threads): fair on a loaded machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
