"""Framing the output of the shipped bpftrace script (`pinscope probes bpftrace`), plain or -f json.

The script prints one line per event, `<ts_ns> <cpu> <tid> <pid> pinscope_<kind>: k=v … comm=<comm>`
(bpftrace's `tid` is the kernel's pid, its `pid` the tgid), so framing is a split, not a regex.
Plain output reports drops as `Lost N events`.
With `-f json` each line is wrapped as `{"type": "printf", "data": "<line>\\n"}`; the wrapper is
peeled with `json_path_match` and the same split runs on what is inside. bpftrace's bookkeeping
(`Attaching N probes...`, attached_probes, time, map dumps) are comments, `lost_events` are lost
markers, and anything else is a reject that says what was expected.
"""

from __future__ import annotations

import polars as pl

from ingest.framing import ChunkContext, conform_framed

EXPECTED = "expected '<ts_ns> <cpu> <tid> <pid> pinscope_<kind>: key=value … comm=<comm>'"
# bpftrace -f json message types that carry no event.
BOOKKEEPING = ["attached_probes", "time", "map", "hist", "stats", "join", "value", "syscall", "cat"]
HEADER = "# pinscope "


def _payload(line: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(json type or null for plain lines, the text to frame, lost count)."""
    is_json = line.str.starts_with("{")
    jtype = pl.when(is_json).then(line.str.json_path_match("$.type"))
    data = line.str.json_path_match("$.data")
    payload = (
        pl.when(~is_json)
        .then(line)
        .when(jtype == "printf")
        .then(data.str.strip_suffix("\n"))
        .otherwise(None)
    )
    # Plain bpftrace reports drops as `Lost N events`.
    plain_lost = line.str.extract(r"^Lost (\d+) events$").str.to_integer(strict=False)
    lost = (
        pl.when(jtype == "lost_events")
        .then(line.str.json_path_match("$.data.events").str.to_integer(strict=False))
        .when(~is_json)
        .then(plain_lost)
    )
    return jtype, payload, lost


def _record_header(lines: pl.Series, ctx: ChunkContext) -> None:
    """Keep `kernel=` / `host=` from the script's first line for the manifest."""
    if "kernel" in ctx.extra:
        return
    hits = lines.filter(lines.str.contains(HEADER + "kernel=", literal=True)).head(1)
    if hits.len():
        for word in hits[0].split(HEADER, 1)[1].split():
            if "=" in word:
                key, value = word.split("=", 1)
                ctx.extra.setdefault(key, value)


def frame_bpftrace(lines: pl.Series, first_line: int, ctx: ChunkContext) -> pl.DataFrame:
    """One FRAMED_SCHEMA row per line of bpftrace output (formats bpftrace, bpftrace-json)."""
    df = pl.DataFrame({"raw": lines.cast(pl.String)}).with_row_index("line", offset=first_line)
    jtype, payload, lost = _payload(pl.col("raw"))
    df = df.with_columns(jtype.alias("jtype"), payload.alias("p"), lost.alias("lost_events"))
    _record_header(df.get_column("p").drop_nulls(), ctx)

    p = pl.col("p")
    head = p.str.splitn(" ", 5)
    rest = head.struct.field("field_4").str.splitn(": ", 2)
    df = df.with_columns(
        head.struct.field("field_0").str.to_integer(strict=False).alias("ts_ns"),
        head.struct.field("field_1").str.to_integer(strict=False).alias("cpu"),
        head.struct.field("field_2").str.to_integer(strict=False).alias("pid"),
        head.struct.field("field_3").str.to_integer(strict=False).alias("tgid"),
        rest.struct.field("field_0").alias("event"),
        rest.struct.field("field_1").alias("tail"),
    )
    # `… comm=<comm>` ends the line: comm may contain spaces and `=`.
    tail = pl.col("tail")
    at = tail.str.find(" comm=", literal=True)
    starts = tail.str.starts_with("comm=")
    df = df.with_columns(
        pl.when(starts)
        .then(pl.lit(""))
        .when(at.is_not_null())
        .then(tail.str.slice(0, at))
        .otherwise(tail)
        .alias("body"),
        pl.when(starts)
        .then(tail.str.slice(5))
        .when(at.is_not_null())
        .then(tail.str.slice(at + 6))
        .alias("comm"),
    )
    blank = p.is_not_null() & (p.str.strip_chars() == "")
    comment = (
        (pl.col("jtype").is_in(BOOKKEEPING).fill_null(False))
        | blank
        | p.str.starts_with("#")
        | p.str.starts_with("Attaching ")
        | p.str.starts_with("@")
    )
    is_event = (
        pl.all_horizontal(pl.col("ts_ns", "cpu", "pid", "tgid").is_not_null())
        & pl.col("tail").is_not_null()
        & ~pl.col("event").str.contains(" ", literal=True)
        & (pl.col("event") != "")
    ).fill_null(False)
    is_lost = ((pl.col("jtype") == "lost_events") | pl.col("lost_events").is_not_null()).fill_null(
        False
    )
    cls = (
        pl.when(is_lost)
        .then(pl.lit("lost"))
        .when(comment.fill_null(False))
        .then(pl.lit("comment"))
        .when(is_event)
        .then(pl.lit("event"))
        .otherwise(pl.lit("reject"))
    )
    reason = (
        pl.when(pl.col("jtype").is_not_null() & (pl.col("jtype") != "printf"))
        .then(
            pl.format(
                "{}: line {}: bpftrace message of type '{}' not understood",
                pl.lit(ctx.path),
                pl.col("line"),
                pl.col("jtype"),
            )
        )
        .when(pl.col("raw").str.starts_with("{") & pl.col("jtype").is_null())
        .then(
            pl.format(
                '{}: line {}: not valid bpftrace JSON; expected {{"type": …, "data": …}}',
                pl.lit(ctx.path),
                pl.col("line"),
            )
        )
        .otherwise(pl.format("{}: line {}: {}", pl.lit(ctx.path), pl.col("line"), pl.lit(EXPECTED)))
    )
    df = df.with_columns(cls.alias("cls"))
    ev = pl.col("cls") == "event"
    out = df.select(
        pl.col("line"),
        pl.col("cls"),
        pl.when(ev).then(pl.col("ts_ns")).alias("ts_ns"),
        pl.when(ev).then(pl.col("cpu")).alias("cpu"),
        pl.when(ev).then(pl.col("pid")).alias("pid"),
        pl.when(ev).then(pl.col("tgid")).alias("tgid"),
        pl.when(ev).then(pl.col("comm")).alias("comm"),
        pl.when(ev).then(pl.col("event")).alias("event"),
        pl.when(ev).then(pl.col("body")).alias("body"),
        pl.when(pl.col("cls") == "lost").then(pl.col("lost_events")).alias("lost_events"),
        pl.when(pl.col("cls") == "reject").then(reason).alias("reason"),
        pl.when(~ev).then(pl.col("raw")).alias("text"),
    )
    return conform_framed(out)
