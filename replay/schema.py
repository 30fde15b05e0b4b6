"""The replay stage's output tables (DESIGN.md "Replay"): what the rules and users' SQL read.

The state model behind these columns is specified in docs/replay.md; the compiled core and
the reference oracle both implement exactly that text.
"""

from __future__ import annotations

from typing import TypeVar

import polars as pl

from ingest.schema import EVENTS_SCHEMA

# Per-page counters and flags, each present as <name>_before and <name>_after in page_events.
COUNTERS: tuple[str, ...] = ("pins", "writable_pins", "longterm_pins", "gets")
FLAGS: tuple[str, ...] = ("dirty", "writeback", "cached")
BUFFERS = pl.Enum(["unknown", "no", "yes"])

STATE_COLUMNS: dict[str, pl.DataType] = {}
for _name in COUNTERS:
    STATE_COLUMNS[f"{_name}_before"] = pl.Int32()
    STATE_COLUMNS[f"{_name}_after"] = pl.Int32()
STATE_COLUMNS["refcount_before"] = pl.Int32()
STATE_COLUMNS["refcount_after"] = pl.Int32()
for _name in FLAGS:
    STATE_COLUMNS[f"{_name}_before"] = pl.Boolean()
    STATE_COLUMNS[f"{_name}_after"] = pl.Boolean()
STATE_COLUMNS["buffers_before"] = BUFFERS
STATE_COLUMNS["buffers_after"] = BUFFERS

# Every event, resolved to its page, with the page's state before and after it.
# `pfn`, `dev`, `ino`, `index` are the *resolved* identity (head pfn of a folio; file identity
# filled from page-cache membership); the values as traced stay in `event_pfn` / `event_index`.
PAGE_EVENTS_SCHEMA: dict[str, pl.DataType] = {
    **EVENTS_SCHEMA,
    "event_pfn": pl.UInt64(),
    "page_id": pl.String(),
    "generation": pl.Int32(),
    "seq": pl.Int64(),
    **STATE_COLUMNS,
    "inferred_initial": pl.Boolean(),
    "mismatch": pl.Boolean(),
}

STATES: tuple[str, ...] = (
    "pinned",
    "writable_pinned",
    "longterm_pinned",
    "writeback",
    "dirty",
    "cached",
)

HOLDER = pl.Struct({"pid": pl.Int32(), "comm": pl.String(), "caller": pl.String()})

# The state system: one row per span in which a state held on a page.
INTERVALS_SCHEMA: dict[str, pl.DataType] = {
    "trace_id": pl.String(),
    "page_id": pl.String(),
    "pfn": pl.UInt64(),
    "generation": pl.Int32(),
    "dev": pl.UInt32(),
    "ino": pl.UInt64(),
    "index": pl.UInt64(),
    "state": pl.Enum(list(STATES)),
    "start_ts_ns": pl.Int64(),
    "end_ts_ns": pl.Int64(),
    "start_line": pl.Int64(),
    "end_line": pl.Int64(),
    "open_at_start": pl.Boolean(),
    "open_at_end": pl.Boolean(),
    "uncertain": pl.Boolean(),
    "holders": pl.List(HOLDER),
}

DERIVED_TABLES: dict[str, dict[str, pl.DataType]] = {
    "page_events": PAGE_EVENTS_SCHEMA,
    "intervals": INTERVALS_SCHEMA,
}

# page_id is computed where the tables are read, not stored: it is the row's own page identity
# printed (docs/replay.md, "page_id"), `pfn:<pfn>/<generation>` or `file:<dev>:<ino>/<index>`,
# null on pageless events (whose generation is null). Stored, this one string a row was most
# of a page_events part's bytes (3.4 of 3.7 MB a 500k-row part, on the replay benchmark) and
# ~9% of a replay's CPU to build and write. The views (`pinscope sql`, the rules) compute it
# with PAGE_ID_SQL, polars readers with `page_id_expr`: the same text from the same columns.
PAGE_ID_SQL = (
    "CASE WHEN generation IS NULL THEN NULL"
    " WHEN pfn IS NOT NULL THEN 'pfn:' || pfn || '/' || generation"
    " ELSE 'file:' || coalesce(CAST(dev AS VARCHAR), '-') || ':' || ino || '/' || \"index\" END"
)
COMPUTED_SQL: dict[str, dict[str, str]] = {
    "page_events": {"page_id": PAGE_ID_SQL},
    "intervals": {"page_id": PAGE_ID_SQL},
}
# What the part files under derived/ hold: the tables without their computed columns.
STORED_TABLES: dict[str, dict[str, pl.DataType]] = {
    name: {c: t for c, t in schema.items() if c not in COMPUTED_SQL.get(name, {})}
    for name, schema in DERIVED_TABLES.items()
}


def page_id_expr() -> pl.Expr:
    """page_id from a row's pfn, generation, dev, ino and index (PAGE_ID_SQL in polars)."""
    pfn, generation = pl.col("pfn"), pl.col("generation")
    dev = pl.col("dev").cast(pl.String).fill_null("-")
    return (
        pl.when(generation.is_null())
        .then(pl.lit(None, pl.String))
        .when(pfn.is_not_null())
        .then(pl.format("pfn:{}/{}", pfn, generation))
        .otherwise(pl.format("file:{}:{}/{}", dev, pl.col("ino"), pl.col("index")))
        .alias("page_id")
    )


Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def with_computed(frame: Frame, table: str) -> Frame:
    """A derived table as stored (or as read from older parts that stored page_id) with its
    computed columns, in the table's column order."""
    computed = {"page_id": page_id_expr()} if table in COMPUTED_SQL else {}
    return frame.select([computed.get(c, pl.col(c)) for c in DERIVED_TABLES[table]])
