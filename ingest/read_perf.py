"""Frame `perf script` output: `comm tid [cpu] secs.usecs: group:event: fields`.

Also `comm pid/tid …` (`-F comm,pid,tid,…`), a sample period before the event name (non-tracepoint
events), and the tab-indented call-chain lines of `-g`, which belong to the event before them.
The event name keeps its group (`probe:pinscope_pin`): the mapper strips it.
"""

from __future__ import annotations

import polars as pl

from ingest.framing import FRAMED_SCHEMA, ChunkContext
from ingest.read_ftrace import (
    attach_stacks,
    finish,
    invalid_text_reason,
    lost_markers,
    start_frame,
    timestamp_ns,
)

# comm may hold spaces: it is everything before the last `tid [cpu]` pair that the rest follows.
_EVENT_RE = (
    r"^\s*(?P<comm>.*?)\s+(?:(?P<tgid>-?[0-9]+)/)?(?P<pid>-?[0-9]+)\s+\[(?P<cpu>[0-9]+)\]\s+"
    r"(?P<ts>[^\s:]+):\s+(?:[0-9]+\s+)?(?P<event>\S+?):(?:\s+|$)(?P<body>.*)$"
)
_TS_RE = r"^(?P<secs>[0-9]+)(?:\.(?P<frac>[0-9]{1,9}))?$"
_COMMENT_RE = r"^(?:\s*$|\s*#)"
_EXPECTED = "expected a perf script line 'comm tid [cpu] secs.usecs: group:event: fields'"


def frame_perf(lines: pl.Series, first_line: int, ctx: ChunkContext) -> pl.DataFrame:
    """Frame one chunk of `perf script` text: one FRAMED_SCHEMA row per line."""
    df = start_frame(lines, first_line)
    raw = pl.col("raw")
    frame = raw.str.starts_with("\t")
    lost_cpu, lost_n = lost_markers(raw)
    g = pl.col("_g").struct
    t = pl.col("_t").struct
    df = (
        df.lazy()
        .with_columns(
            _bad=invalid_text_reason(),
            _comment=raw.str.contains(_COMMENT_RE),
            _frame=frame,
            _g=raw.str.extract_groups(_EVENT_RE),
            lost_cpu=pl.when(raw.str.starts_with("CPU:")).then(lost_cpu),
            lost_events=pl.when(raw.str.starts_with("CPU:")).then(lost_n),
        )
        .with_columns(_t=g.field("ts").str.extract_groups(_TS_RE))
        .with_columns(
            _ts=timestamp_ns(t.field("secs"), t.field("frac"), pl.lit(None, pl.String)),
            _hit=g.field("comm").is_not_null(),
        )
        .with_columns(
            cls=pl.when(pl.col("_bad").is_not_null())
            .then(pl.lit("reject"))
            .when(pl.col("_comment"))
            .then(pl.lit("comment"))
            .when(pl.col("_frame"))
            .then(pl.lit("stack"))
            .when(pl.col("lost_cpu").is_not_null())
            .then(pl.lit("lost"))
            .when(pl.col("_hit") & pl.col("_ts").is_not_null())
            .then(pl.lit("event"))
            .otherwise(pl.lit("reject")),
        )
        .with_columns(
            reason=pl.when(pl.col("cls") == "reject").then(
                pl.when(pl.col("_bad").is_not_null())
                .then(pl.col("_bad"))
                .when(pl.col("_hit"))
                .then(pl.lit("broken timestamp"))
                .otherwise(pl.lit(_EXPECTED))
            ),
        )
    )
    ev = pl.col("cls") == "event"
    df = df.with_columns(
        ts_ns=pl.when(ev).then(pl.col("_ts")),
        cpu=pl.when(ev)
        .then(g.field("cpu").cast(pl.Int16, strict=False))
        .when(pl.col("cls") == "lost")
        .then(pl.col("lost_cpu")),
        pid=pl.when(ev).then(g.field("pid").cast(pl.Int32, strict=False)),
        tgid=pl.when(ev).then(g.field("tgid").cast(pl.Int32, strict=False)),
        comm=pl.when(ev).then(g.field("comm")),
        event=pl.when(ev).then(g.field("event")),
        body=pl.when(ev)
        .then(g.field("body").str.strip_chars_end())
        .when(pl.col("cls") == "stack")
        .then(raw.str.strip_chars()),
    ).collect()
    df = df.with_columns(cls=pl.col("cls").cast(FRAMED_SCHEMA["cls"]))
    return finish(attach_stacks(df, ctx))
