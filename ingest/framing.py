"""The hand-off between the format readers and the event mapper: one row per input line.

Each reader (`read_ftrace`, `read_perf`, `read_bpftrace`) turns a chunk of lines into a frame of
FRAMED_SCHEMA — what the line *is* (an event, a comment, a lost marker, a stack frame, a reject)
and, for events, the common header (time, cpu, task) with the event's name and its raw body.
`mapping.map_events` then reads the bodies. Keeping framing apart from mapping means every
format shares one mapper, and a new format is one reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

LINE_CLASSES: tuple[str, ...] = ("event", "comment", "lost", "stack", "reject")
LINE_CLASS = pl.Enum(list(LINE_CLASSES))

FORMATS: tuple[str, ...] = ("ftrace", "trace-cmd", "perf", "bpftrace", "bpftrace-json")

FRAMED_SCHEMA: dict[str, pl.DataType] = {
    "line": pl.Int64(),  # 1-based line number in the source file
    "cls": LINE_CLASS,
    "ts_ns": pl.Int64(),  # events only
    "cpu": pl.Int16(),  # events and lost markers
    "pid": pl.Int32(),
    "tgid": pl.Int32(),
    "comm": pl.String(),
    "event": pl.String(),  # events: the name as it appeared (`probe:pinscope_pin`, `sched_switch`)
    "body": pl.String(),  # events: text after `event: `; stack: the frame text
    "event_line": pl.Int64(),  # stack frames: the event line they belong to
    "lost_events": pl.Int64(),  # lost markers: how many, null when the source does not say
    "reason": pl.String(),  # rejects: what was expected
    "text": pl.String(),  # the raw line for rejects, lost markers and comments
}


@dataclass
class ChunkContext:
    """What a reader carries from one chunk of a file to the next."""

    path: str
    format: str
    last_event_line: int | None = None  # stack frames at the top of a chunk attach here
    stack_depth: int = 0
    extra: dict[str, object] = field(default_factory=dict)  # reader-specific carry-over


def conform_framed(df: pl.DataFrame) -> pl.DataFrame:
    """Select and cast to FRAMED_SCHEMA, adding missing columns as nulls."""
    return df.select(
        [
            (pl.col(c) if c in df.columns else pl.lit(None)).cast(t, strict=False).alias(c)
            for c, t in FRAMED_SCHEMA.items()
        ]
    )
