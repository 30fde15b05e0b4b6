"""The canonical tables every later stage reads (DESIGN.md "Canonical events").

Column names and types here are the contract that users' ad hoc SQL relies on: change them only
together with DESIGN.md and the format version in the manifest.
"""

from __future__ import annotations

import polars as pl

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
    """An empty frame of one canonical table, with its exact types."""
    return pl.DataFrame(schema=TABLES[table])


def conform(df: pl.DataFrame, table: str) -> pl.DataFrame:
    """Select and cast a frame to one canonical table's columns, adding missing ones as nulls."""
    schema = TABLES[table]
    return df.select(
        [
            (pl.col(c) if c in df.columns else pl.lit(None)).cast(t, strict=False).alias(c)
            for c, t in schema.items()
        ]
    )
