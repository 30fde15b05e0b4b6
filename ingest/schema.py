"""The canonical tables every later stage reads (DESIGN.md "Canonical events").

Column names and types here are the contract that users' ad hoc SQL relies on: change them only
together with DESIGN.md and the format version in the manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import polars as pl

from ingest.fields import KEY_RE, kv_list

FORMAT_VERSION = 1

# The kinds of DESIGN.md, in a fixed order: the order of an Enum is part of the Parquet schema.
KINDS: tuple[str, ...] = (
    "pin",
    "unpin",
    "get",
    "put",
    "ref",
    "dirty",
    "mkclean",
    "wb_start",
    "wb_end",
    "wb_wait",
    "cache_add",
    "cache_del",
    "truncate",
    "free_buffers",
    "mkwrite",
    "alloc",
    "free",
    "replace",
    "fork",
)
KIND = pl.Enum(list(KINDS))

# The kinds the shipped probes emit as kprobe events named `pinscope_<kind>` (DESIGN.md "The
# shipped probes"); the other kinds come from kernel tracepoints.
PROBE_KINDS: tuple[str, ...] = (
    "pin",
    "unpin",
    "get",
    "put",
    "dirty",
    "mkclean",
    "wb_start",
    "wb_end",
    "truncate",
    "free_buffers",
    "mkwrite",
    "replace",
)

# dev is the kernel's internal dev_t encoding: MKDEV(major, minor) = major << 20 | minor.
MINORBITS = 20

EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "trace_id": pl.String(),
    "line": pl.Int64(),
    "ts_ns": pl.Int64(),
    "cpu": pl.Int16(),
    "pid": pl.Int32(),
    "tgid": pl.Int32(),
    "comm": pl.String(),
    "kind": KIND,
    "source_event": pl.String(),
    "pfn": pl.UInt64(),
    "folio_order": pl.UInt8(),
    "dev": pl.UInt32(),
    "ino": pl.UInt64(),
    "index": pl.UInt64(),
    "refs": pl.Int32(),
    "count": pl.Int32(),
    "gup_flags": pl.UInt32(),
    "caller": pl.String(),
    "new_pfn": pl.UInt64(),
}

# Every event line not mapped to a kind: still reachable with SQL.
OTHER_EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "trace_id": pl.String(),
    "line": pl.Int64(),
    "ts_ns": pl.Int64(),
    "cpu": pl.Int16(),
    "pid": pl.Int32(),
    "tgid": pl.Int32(),
    "comm": pl.String(),
    "event": pl.String(),
    "body": pl.String(),
    "fields": pl.List(pl.Struct({"key": pl.String(), "value": pl.String()})),
}

# Lost-event markers. A marker has no timestamp of its own: the gap it stands for runs from the
# previous timestamped line of the file (gap_start_ts_ns) to the next one (gap_end_ts_ns); either
# is null at the file's edges. lost_events is null where the source does not say how many.
LOST_SCHEMA: dict[str, pl.DataType] = {
    "trace_id": pl.String(),
    "line": pl.Int64(),
    "cpu": pl.Int16(),
    "lost_events": pl.Int64(),
    "gap_start_ts_ns": pl.Int64(),
    "gap_end_ts_ns": pl.Int64(),
    "text": pl.String(),
}

# Stack frames (`<stack trace>` / ` => fn` blocks, perf -g call chains, kernel stacks in
# bpftrace output) belong to the event line before them: event_line links them.
STACKS_SCHEMA: dict[str, pl.DataType] = {
    "trace_id": pl.String(),
    "event_line": pl.Int64(),
    "line": pl.Int64(),
    "depth": pl.Int32(),
    "frame": pl.String(),
}

# Lines that could not be parsed: nothing is dropped silently.
REJECTS_SCHEMA: dict[str, pl.DataType] = {
    "trace_id": pl.String(),
    "line": pl.Int64(),
    "reason": pl.String(),
    "text": pl.String(),
}

TABLES: dict[str, dict[str, pl.DataType]] = {
    "events": EVENTS_SCHEMA,
    "other_events": OTHER_EVENTS_SCHEMA,
    "lost": LOST_SCHEMA,
    "stacks": STACKS_SCHEMA,
    "rejects": REJECTS_SCHEMA,
}

# Columns computed where the tables are read, not stored in their part files. `fields` is
# `kv_list(body)`: every `key=value` token of the body (split on single spaces, the key matching
# KEY_RE), its value up to a second `=`. Stored, it cost an ingest more than anything else it
# wrote (list<struct> levels for ~5 pairs a row: most of an `other_events` part's write, ~3/4
# of its bytes) and, with the pass that split it, ~19% of a 10M-line `simulate mixed`
# ingest's CPU; it is derived from `body` exactly, as DuckDB (FIELDS_SQL, in every view of
# other_events) and polars (`kv_list`, in `with_computed`) both compute it. Parts written
# before, which stored it, are read the same way: the stored column is ignored.
_KEY_PATTERN = "^" + KEY_RE + "="
FIELDS_SQL = (
    "list_transform(list_filter(string_split(body, ' '), "
    f"lambda t: regexp_matches(t, '{_KEY_PATTERN}')), "
    "lambda t: {'key': split_part(t, '=', 1), 'value': split_part(t, '=', 2)})"
)
COMPUTED_SQL: dict[str, dict[str, str]] = {"other_events": {"fields": FIELDS_SQL}}
_COMPUTED_POLARS: dict[str, dict[str, Callable[[], pl.Expr]]] = {
    "other_events": {"fields": lambda: kv_list(pl.col("body"))}
}
# What the part files hold: the tables without their computed columns.
STORED_TABLES: dict[str, dict[str, pl.DataType]] = {
    name: {c: t for c, t in schema.items() if c not in COMPUTED_SQL.get(name, {})}
    for name, schema in TABLES.items()
}

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def with_computed(frame: Frame, table: str) -> Frame:
    """A canonical table as stored (or as older parts stored it) with its computed columns,
    in the table's column order."""
    computed = _COMPUTED_POLARS.get(table, {})
    return frame.select(
        [computed[c]().alias(c) if c in computed else pl.col(c) for c in TABLES[table]]
    )


# Line accounting in the manifest: these categories partition the file's lines exactly.
LINE_CATEGORIES: tuple[str, ...] = (
    "events",  # rows of `events`
    "other",  # rows of `other_events`
    "stack",  # rows of `stacks`
    "lost",  # rows of `lost`
    "comments",  # headers, comments, blank lines, bpftrace bookkeeping lines
    "rejected",  # rows of `rejects`
)

# Raw gup flags by kernel era (KERNEL.md "Pin accounting"). From 6.3 the public flags are an enum
# in mm_types.h; FOLL_PIN is internal (mm/internal.h: FOLL_TOUCH = 1 << 16 … FOLL_PIN = 1 << 19).
FOLL_FLAGS_UP_TO_6_2: dict[str, int] = {
    "FOLL_WRITE": 0x01,
    "FOLL_GET": 0x04,
    "FOLL_LONGTERM": 0x10000,
    "FOLL_PIN": 0x40000,
}
FOLL_FLAGS_FROM_6_3: dict[str, int] = {
    "FOLL_WRITE": 1 << 0,
    "FOLL_GET": 1 << 1,
    "FOLL_LONGTERM": 1 << 8,
    "FOLL_PIN": 1 << 19,
}


def foll_flags_for(kernel: str | None) -> dict[str, int]:
    """The FOLL_* bit values of the traced kernel; the newest era when the release is unknown."""
    if kernel:
        parts = kernel.split(".")
        try:
            major, minor = int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
        except (IndexError, ValueError):
            return FOLL_FLAGS_FROM_6_3
        if (major, minor) <= (6, 2):
            return FOLL_FLAGS_UP_TO_6_2
    return FOLL_FLAGS_FROM_6_3


def empty(table: str) -> pl.DataFrame:
    """An empty frame of one canonical table as stored, with its exact types."""
    return pl.DataFrame(schema=STORED_TABLES[table])


def conform(df: pl.DataFrame, table: str) -> pl.DataFrame:
    """Select and cast a frame to the columns one canonical table stores, adding missing ones
    as nulls (computed columns are left out: see `with_computed`)."""
    schema = STORED_TABLES[table]
    return df.select(
        [
            (pl.col(c) if c in df.columns else pl.lit(None)).cast(t, strict=False).alias(c)
            for c, t in schema.items()
        ]
    )
