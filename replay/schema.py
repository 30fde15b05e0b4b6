"""The replay stage's output tables (DESIGN.md "Replay"): what the rules and users' SQL read.

The state model behind these columns is specified in docs/replay.md; the compiled core and
the reference oracle both implement exactly that text.
"""

from __future__ import annotations

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
