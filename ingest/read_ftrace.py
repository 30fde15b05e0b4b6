"""Frame ftrace text (`trace`, `trace_pipe`, latency format) and `trace-cmd report` output.

Regex captures cost about a microsecond a line in polars, too slow for a million lines a second,
and even literal searches and slices cost ~20-40 ns a line each. So the layout a chunk's lines
share (learned from one line: the same columns for comm, pid, cpu, flags and time) is read at
fixed positions and checked by one anchored regex; lines in another layout go through a fast
path of literal/DFA `find`s and slices; whatever that cannot place (latency format, odd
timestamps, garbage) falls to full regexes on that subset only. Each path takes a line only
where it reads the same values as the next one would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from ingest.framing import FRAMED_SCHEMA, ChunkContext, conform_framed

# Lines that are not events, by their start. A standalone `(repeats: …)` line (older kernels print
# the function-repeats record on its own) is bookkeeping, not an event.
_COMMENT_RE = (
    r"^(?:\s*$|\s*#|version = [0-9]+\s*$|cpus=[0-9]+\s*$|CPU [0-9]+ is empty\s*$"
    r"|\s*\(repeats: [0-9]+, delta)"
)
_LOST_RE = (
    r"^CPU:(?P<cpu>[0-9]+) \[(?:LOST (?P<n1>[0-9]+) EVENTS|LOST EVENTS"
    r"|(?P<n2>-?[0-9]+) EVENTS DROPPED|EVENTS DROPPED)\]\s*$"
)
_FRAME_PREFIX = " => "

# Fast path: where the task's `-pid` ends the comm (the leftmost place from which the rest of the
# header follows: so a comm with dashes or spaces keeps them), then the header up to `: `.
_HDR_FIND = r"-[0-9]+ +(?:\([ 0-9-]+\) +)?\[[0-9]+\] "
_HEAD_RE = (
    r"^-(?P<pid>[0-9]+) +(?:\( *(?P<tgid>[0-9]+|-+)\) +)?\[(?P<cpu>[0-9]+)\] +"
    r"(?:[.a-zA-Z][!-~]{3,5} +)?(?P<secs>[0-9]+)(?:\.(?P<frac>[0-9]+))?$"
)

# Slow path: the same layout with any timestamp text (so a broken one is named as such), and the
# latency format `comm-pid  3d..1. 276242022us : event: body` (cpu, flags, time in µs, delay mark).
_RAW_RE = (
    r"^\s*(?P<comm>.*?)-(?P<pid>[0-9]+)\s+(?:\(\s*(?P<tgid>[0-9]+|-+)\)\s+)?\[(?P<cpu>[0-9]+)\]\s+"
    r"(?:[^\s:]{4,6}\s+)?(?P<ts>[^\s:]+):(?:\s|$)(?P<rest>.*)$"
)
_LAT_RE = (
    r"^\s*(?P<comm>.*?)-(?P<pid>[0-9]+)\s+(?P<cpu>[0-9]+)[^\s:0-9][^\s:]{3,5}\s+"
    r"(?:(?P<us>[0-9]+)us[^\s:]?\s?|(?P<ts>[^\s:]+)):(?:\s|$)(?P<rest>.*)$"
)
_TS_RE = r"^(?P<secs>[0-9]+)(?:\.(?P<frac>[0-9]+))?$"
_FUNCTION_RE = r"^[^\s:]+(?: <-[^\s]+)?(?: \(repeats: .*\))?$"
_FUNCTION_GRAPH_RE = r"^\s*(?:[0-9]+\)|\|)\s.*\|"
_STACK_MARKERS = ("<stack trace>", "<user stack trace>")

EXPECTED = {
    "ftrace": "expected an ftrace event line 'comm-pid [cpu] secs.usecs: event: body'",
    "trace-cmd": "expected a trace-cmd report line 'comm-pid [cpu] secs.usecs: event: body'",
}


def start_frame(lines: pl.Series, first_line: int) -> pl.DataFrame:
    """Number the chunk's lines; `raw` is kept for rejects, lost markers and comments."""
    n = len(lines)
    return pl.DataFrame(
        {
            "line": pl.int_range(first_line, first_line + n, dtype=pl.Int64, eager=True),
            "raw": lines.cast(pl.String).fill_null("").rechunk(),  # (cheap: views)
        }
    )


def invalid_text_reason() -> pl.Expr:
    """Bytes the pipeline could not decode arrive as U+FFFD; NUL never belongs in a trace."""
    raw = pl.col("raw")
    return (
        pl.when(raw.str.contains("\x00", literal=True))
        .then(pl.lit("NUL byte"))
        .when(raw.str.contains("\ufffd", literal=True))
        .then(pl.lit("invalid UTF-8"))
    )


def lost_markers(raw: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """cpu and count of `CPU:N [LOST M EVENTS]`-style markers; null cpu when not one."""
    g = raw.str.extract_groups(_LOST_RE)
    count = pl.coalesce(g.struct.field("n1"), g.struct.field("n2")).cast(pl.Int64, strict=False)
    return g.struct.field("cpu").cast(pl.Int16, strict=False), count


def timestamp_ns(secs: pl.Expr, frac: pl.Expr, us: pl.Expr) -> pl.Expr:
    """`secs.frac` (µs or ns digits) or a latency-format µs count → ns; a bare integer (counter,
    x86-tsc clocks) is kept as is. Null when the text does not parse or has >9 fraction digits."""
    whole = secs.cast(pl.Int64, strict=False)
    return (
        pl.when(us.is_not_null())
        .then(us.cast(pl.Int64, strict=False) * 1000)
        .when(frac.str.len_bytes() > 9)
        .then(pl.lit(None, pl.Int64))
        .when(frac.is_not_null())
        .then(whole * 1_000_000_000 + frac.str.pad_end(9, "0").cast(pl.Int64, strict=False))
        .otherwise(whole)
    )


def attach_stacks(df: pl.DataFrame, ctx: ChunkContext) -> pl.DataFrame:
    """Point every stack line at the event line before it, across chunks via ctx.

    A stack line with no event anywhere before it cannot be placed: it becomes a reject.
    Updates ctx.last_event_line and ctx.stack_depth (stack lines since that event).
    """
    cls = pl.col("cls")
    ev = pl.when(cls == "event").then(pl.col("line")).forward_fill()
    if ctx.last_event_line is not None:
        ev = ev.fill_null(ctx.last_event_line)
    df = df.with_columns(event_line=pl.when(cls == "stack").then(ev), _ev=ev)
    orphan = (cls == "stack") & pl.col("event_line").is_null()
    df = df.with_columns(
        cls=pl.when(orphan).then(pl.lit("reject")).otherwise(cls),
        reason=pl.when(orphan)
        .then(pl.lit("stack frame with no event line before it"))
        .otherwise(pl.col("reason")),
    )
    last = df["_ev"].drop_nulls()
    if len(last):
        new_last = int(last[-1])
        if new_last != ctx.last_event_line:
            ctx.stack_depth = 0
        ctx.last_event_line = new_last
        tail = df.filter(pl.col("line") > new_last)
        ctx.stack_depth += int((tail["cls"] == "stack").sum())
    return df.drop("_ev")


def finish(df: pl.DataFrame) -> pl.DataFrame:
    """Keep the raw text only where the schema wants it, then conform to FRAMED_SCHEMA."""
    cls = pl.col("cls")
    df = df.with_columns(
        text=pl.when(cls.is_in(["reject", "lost", "comment"])).then(pl.col("raw")),
    )
    return conform_framed(df)


def _fast_header(df: pl.DataFrame) -> pl.DataFrame:
    """comm/pid/tgid/cpu/timestamp/rest for `comm-pid (tgid) [cpu] flags secs.frac: rest` lines."""
    raw = pl.col("raw")
    p = pl.col("_p")
    x = pl.col("_x")
    pt = pl.col("_pt")
    placed = pl.col("secs").is_not_null()
    lf = (
        df.lazy()
        .with_columns(_p=raw.str.find(_HDR_FIND))
        .with_columns(_x=raw.str.slice(p), comm=raw.str.head(p).str.strip_chars_start())
        .with_columns(_pt=x.str.find(": ", literal=True))
        .with_columns(_g=x.str.head(pt).str.extract_groups(_HEAD_RE), rest=x.str.slice(pt + 2))
        .unnest("_g")
        .with_columns(
            # what the fast path cannot place is left to the slow path
            comm=pl.when(placed).then(pl.col("comm")),
            rest=pl.when(placed).then(pl.col("rest")),
            us=pl.lit(None, pl.String),
            ts_bad=pl.lit(False),
            lost_cpu=pl.lit(None, pl.Int16),
            lost_events=pl.lit(None, pl.Int64),
        )
        .drop("_p", "_x", "_pt")
    )
    return lf.collect()


def _slow_header(df: pl.DataFrame) -> pl.DataFrame:
    """The same columns through full regexes: lost markers, raw layout with any timestamp text,
    then the latency format."""
    raw = pl.col("raw")
    lost_cpu, lost_n = lost_markers(raw)
    df = df.with_columns(
        _r=raw.str.extract_groups(_RAW_RE),
        _l=raw.str.extract_groups(_LAT_RE),
        lost_cpu=lost_cpu,
        lost_events=lost_n,
    )
    hit = pl.col("_r").struct.field("comm").is_not_null()

    def pick(name: str) -> pl.Expr:
        return (
            pl.when(hit)
            .then(pl.col("_r").struct.field(name))
            .otherwise(pl.col("_l").struct.field(name))
        )

    df = df.with_columns(
        comm=pick("comm"),
        pid=pick("pid"),
        cpu=pick("cpu"),
        rest=pick("rest"),
        _ts=pick("ts"),
        tgid=pl.when(hit).then(pl.col("_r").struct.field("tgid")),
        us=pl.when(~hit).then(pl.col("_l").struct.field("us")),
    )
    df = df.with_columns(_t=pl.col("_ts").str.extract_groups(_TS_RE))
    return df.with_columns(
        secs=pl.col("_t").struct.field("secs"),
        frac=pl.col("_t").struct.field("frac"),
        ts_bad=pl.col("_ts").is_not_null() & pl.col("_t").struct.field("secs").is_null(),
    ).drop("_r", "_l", "_ts", "_t")


def _events(df: pl.DataFrame, expected: str) -> pl.DataFrame:
    """From the header parts: ts_ns, typed ids, event/body, and cls for the parsed lines."""
    rest = pl.col("rest")
    pe = pl.col("_pe")
    name = pl.col("_name")
    frac = pl.col("frac")
    ts_ns = timestamp_ns(pl.col("secs"), frac, pl.col("us"))
    known = pl.col("cls").is_not_null()
    lost = pl.col("lost_cpu").is_not_null()
    parsed = ~known & pl.col("comm").is_not_null()
    bad_ts = parsed & (pl.col("ts_bad") | ts_ns.is_null())
    ok = parsed & ~bad_ts
    is_event = pe.is_not_null() & ~name.str.contains(" ", literal=True)
    no_space = ~rest.str.contains(" ", literal=True)
    bare_event = pe.is_null() & rest.str.ends_with(":") & no_space
    is_marker = rest.is_in(list(_STACK_MARKERS))
    is_function = (
        ~is_event & ~bare_event & ~is_marker & (rest.str.contains(" <-", literal=True) | no_space)
    )
    cls = (
        pl.when(known)
        .then(pl.col("cls"))
        .when(lost)
        .then(pl.lit("lost"))
        .when(ok & (is_event | bare_event | is_function))
        .then(pl.lit("event"))
        .when(ok & is_marker)
        .then(pl.lit("stack"))
        .otherwise(pl.lit("reject"))
    )
    reason = (
        pl.when(known)
        .then(pl.col("reason"))
        .when(bad_ts)
        .then(pl.lit("broken timestamp"))
        .when(parsed)
        .then(pl.lit("expected 'event: body' or 'func <-parent' after the timestamp"))
        .when(pl.col("raw").str.contains(_FUNCTION_GRAPH_RE))
        .then(pl.lit("function_graph output is not supported: record with the function tracer"))
        .otherwise(pl.lit(expected))
    )
    return (
        df.lazy()
        .with_columns(_pe=rest.str.find(": ", literal=True))
        .with_columns(_name=rest.str.head(pe))
        .with_columns(
            ts_ns=pl.when(ok).then(ts_ns),
            cpu=pl.when(lost)
            .then(pl.col("lost_cpu"))
            .when(ok)
            .then(pl.col("cpu").cast(pl.Int16, strict=False)),
            pid=pl.when(ok).then(pl.col("pid").cast(pl.Int32, strict=False)),
            tgid=pl.when(ok).then(pl.col("tgid").cast(pl.Int32, strict=False)),
            comm=pl.when(ok).then(pl.col("comm")),
            event=pl.when(ok & is_event)
            .then(name)
            .when(ok & bare_event)
            .then(rest.str.strip_suffix(":"))
            .when(ok & is_function)
            .then(pl.lit("function")),
            body=pl.when(known)
            .then(pl.col("body"))
            .when(ok & is_event)
            .then(rest.str.slice(pe + 2).str.strip_chars_start())
            .when(ok & bare_event)
            .then(pl.lit(""))
            .when(ok)
            .then(rest),
            cls=cls,
            reason=reason,
        )
        .with_columns(reason=pl.when(pl.col("cls") == "reject").then(pl.col("reason")))
        .drop("_pe", "_name")
        .collect()
    )


# The fast path's check of the header text it slices: _HEAD_RE without the captures.
_HEAD_OK = (
    r"^-[0-9]+ +(?:\( *(?:[0-9]+|-+)\) +)?\[[0-9]+\] +"
    r"(?:[.a-zA-Z][!-~]{3,5} +)?[0-9]+(?:\.[0-9]+)?$"
)
_NOT_TEXT = "[\x00\ufffd]"


def _fast_events(df: pl.DataFrame) -> pl.DataFrame:
    """Every FRAMED column for plain `comm-pid [cpu] flags secs.frac: event: body` lines, with
    `_fast` false on any other line (its values are then meaningless).

    One split at `: ` gives header, name and body; the header is checked by one capture-free
    regex and cut at literal positions. Anything unusual (a comm with `: ` or a leading `#`,
    a body starting with a space, odd timestamps) is left to the general path: it is only
    ever slower there, never different.
    """
    raw = pl.col("raw")
    parts = pl.col("_s").struct
    f0, name, body = parts.field("field_0"), parts.field("field_1"), parts.field("field_2")
    p = pl.col("_p")
    h = pl.col("_h")
    comm = pl.col("comm")
    sp, lb, rb, lp, rp = (pl.col(c) for c in ("_sp", "_lb", "_rb", "_lp", "_rp"))
    ts = pl.col("_ts")
    dot = pl.col("_dot")
    frac = ts.str.slice(dot + 1)
    scale = (
        frac.str.len_bytes()
        .replace_strict({n: 10 ** (9 - n) for n in range(1, 10)}, default=None)
        .cast(pl.Int64)
    )
    ts_ns = (
        pl.when(dot.is_null())
        .then(ts.cast(pl.Int64, strict=False))
        .otherwise(
            ts.str.head(dot).cast(pl.Int64, strict=False) * 1_000_000_000
            + frac.cast(pl.Int64, strict=False) * scale
        )
    )
    return (
        df.lazy()
        .with_columns(_s=raw.str.splitn(": ", 3))
        .with_columns(_p=f0.str.find(_HDR_FIND), event=name, body=body, _f0=f0)
        .with_columns(
            _h=pl.col("_f0").str.slice(p), comm=pl.col("_f0").str.head(p).str.strip_chars_start()
        )
        .with_columns(
            _sp=h.str.find(" ", literal=True),
            _lb=h.str.find("[", literal=True),
            _rb=h.str.find("]", literal=True),
            _lp=h.str.find("(", literal=True),
            _rp=h.str.find(")", literal=True),
            _ts=h.str.slice(h.str.find(r"[0-9]+(?:\.[0-9]+)?$")),
        )
        .with_columns(_dot=ts.str.find(".", literal=True))
        .with_columns(
            ts_ns=ts_ns,
            cpu=h.str.slice(lb + 1, rb - lb - 1).cast(pl.Int16, strict=False),
            pid=h.str.slice(1, sp - 1).cast(pl.Int32, strict=False),
            tgid=pl.when(lp < lb)
            .then(h.str.slice(lp + 1, rp - lp - 1).str.strip_chars_start())
            .cast(pl.Int32, strict=False),
            _fast=(
                ~raw.str.contains(_NOT_TEXT)
                & ~comm.str.starts_with("#")
                & ~comm.str.starts_with("=>")
                & h.str.contains(_HEAD_OK)
                & ~name.str.contains(" ", literal=True)
                & ~pl.col("body").str.starts_with(" ")
                & ts_ns.is_not_null()
            ).fill_null(False),
        )
        .select("line", "raw", "ts_ns", "cpu", "pid", "tgid", "comm", "event", "body", "_fast")
        .collect()
    )


# The layout most lines of a chunk share, learned from one line: `%16s-%-7d [%03d] flags secs.frac:`
# at fixed columns. Lines in it are read by position, with no search; the header's pieces are
# checked in one anchored regex.
_LAYOUT_RE = re.compile(
    r"^(?P<comm>[^\x00]*?)-(?P<pid>[0-9]+ +)\[(?P<cpu>[0-9]+)\] "
    r"(?:(?P<flags>[.a-zA-Z][!-~]{3,5}) )?(?P<secs> *[0-9]+)\.(?P<frac>[0-9]{1,9}): "
)
_LAYOUT_SAMPLE = 64  # lines looked at for a sample (a loop over a few lines per chunk)


@dataclass(frozen=True)
class _Layout:
    """Column positions of the header fields in a fixed-layout line (all ASCII)."""

    dash: int  # the `-` before the pid: the comm is everything before it
    pid_len: int  # digits and padding spaces after the dash
    cpu: int  # first cpu digit
    cpu_len: int
    flags_len: int  # 0: no flags column
    secs: int  # first char of the (space-padded) seconds
    secs_len: int
    frac_len: int
    colon: int  # the `: ` after the timestamp
    secs_padded: bool  # the sample's seconds have leading spaces (`%5lu`)

    def regex(self) -> str:
        flags = rf"[.a-zA-Z][!-~]{{{self.flags_len - 1}}} " if self.flags_len else ""
        # the pid: a digit, digits or padding, and a space before the `[`
        pid = rf"-[0-9][0-9 ]{{{self.pid_len - 2}}} "
        return (
            rf"^[^\x00]{{{self.dash}}}{pid}\[[0-9]{{{self.cpu_len}}}\] "
            rf"{flags}[ 0-9]{{{self.secs_len}}}\.[0-9]{{{self.frac_len}}}: "
        )


def _learn_layout(lines: pl.Series) -> _Layout | None:
    """The fixed layout of the first plain event line among the chunk's first lines, if any."""
    for text in lines.head(_LAYOUT_SAMPLE).drop_nulls().to_list():
        m = _LAYOUT_RE.match(text)
        if m is None or not text.isascii():
            continue
        return _Layout(
            dash=m.end("comm"),
            pid_len=m.end("pid") - m.start("pid"),
            cpu=m.start("cpu"),
            cpu_len=m.end("cpu") - m.start("cpu"),
            flags_len=(m.end("flags") - m.start("flags")) if m.group("flags") else 0,
            secs=m.start("secs"),
            secs_len=m.end("secs") - m.start("secs"),
            frac_len=m.end("frac") - m.start("frac"),
            colon=m.end("frac"),
            secs_padded=m.group("secs").startswith(" "),
        )
    return None


def _fixed_events(df: pl.DataFrame, lay: _Layout) -> pl.DataFrame:
    """`_fast_events` for the lines in the chunk's layout, read at fixed positions.

    A line is taken only where `_fast_events` would read the very same values: the first `: `
    sits at the layout's column, the anchored regex fixes every piece of the header (with the
    pid's digits-then-padding checked by its cast), the comm holds no `-digit` (so the leftmost
    `-pid [cpu] `, where `_fast_events` cuts the comm, is the layout's), and the line is ASCII
    (positions in bytes and in characters agree) with no NUL. Others get `_fast` false.
    """
    raw = pl.col("raw")
    rest = pl.col("_rest")
    pe = pl.col("_pe")
    comm = pl.col("comm")
    secs = raw.str.slice(lay.secs, lay.secs_len)
    if lay.secs_padded:
        secs = secs.str.strip_chars_start()
    frac = raw.str.slice(lay.colon - lay.frac_len, lay.frac_len)
    ts_ns = secs.cast(pl.Int64, strict=False) * 1_000_000_000 + frac.cast(
        pl.Int64, strict=False
    ) * (10 ** (9 - lay.frac_len))
    pid = raw.str.slice(lay.dash + 1, lay.pid_len).str.strip_chars_end()
    return (
        df.lazy()
        .with_columns(
            _rest=raw.str.slice(lay.colon + 2),
            comm=raw.str.head(lay.dash).str.strip_chars_start(),
            ts_ns=ts_ns,
            cpu=raw.str.slice(lay.cpu, lay.cpu_len).cast(pl.Int16, strict=False),
            pid=pid.cast(pl.Int32, strict=False),
            tgid=pl.lit(None, pl.Int32),
            _ok=(
                (raw.str.find(": ", literal=True) == lay.colon)
                & raw.str.contains(lay.regex())
                & (raw.str.len_chars() == raw.str.len_bytes())
                & ~raw.str.contains("\x00", literal=True)
            ),
        )
        .with_columns(_pe=rest.str.find(": ", literal=True))
        .with_columns(event=rest.str.head(pe), body=rest.str.slice(pe + 2))
        .with_columns(
            _fast=(
                pl.col("_ok")
                & pe.is_not_null()
                & ~comm.str.starts_with("#")
                & ~comm.str.starts_with("=>")
                & ~comm.str.contains("-[0-9]")
                & ~pl.col("event").str.contains(" ", literal=True)
                & ~pl.col("body").str.starts_with(" ")
                & pl.col("ts_ns").is_not_null()
                & pl.col("pid").is_not_null()
            ).fill_null(False),
        )
        .select("line", "raw", "ts_ns", "cpu", "pid", "tgid", "comm", "event", "body", "_fast")
        .collect()
    )


def _patch(out: pl.DataFrame, idx: pl.Series, part: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    """`out` with rows `idx` of the columns `cols` replaced by `part`'s (in the same order)."""
    return out.with_columns(out.get_column(c).scatter(idx, part.get_column(c)) for c in cols)


def _frame_general(df: pl.DataFrame, ctx: ChunkContext) -> pl.DataFrame:
    """Any line: comments, stack frames, lost markers, the latency format, rejects."""
    raw = pl.col("raw")
    frame = raw.str.starts_with(_FRAME_PREFIX)
    df = df.with_columns(reason=invalid_text_reason()).with_columns(
        cls=pl.when(pl.col("reason").is_not_null())
        .then(pl.lit("reject"))
        .when(raw.str.contains(_COMMENT_RE))
        .then(pl.lit("comment"))
        .when(frame)
        .then(pl.lit("stack")),
        body=pl.when(frame).then(raw.str.slice(len(_FRAME_PREFIX)).str.strip_chars()),
    )
    df = _fast_header(df)
    slow = pl.col("cls").is_null() & pl.col("comm").is_null()
    n_slow = int(df.select(slow.sum()).item())
    if n_slow:
        cols = df.columns
        done = df.filter(~slow)
        redo = _slow_header(df.filter(slow)).select(cols).cast(done.schema)
        df = pl.concat([done, redo]).sort("line")
    df = _events(df, EXPECTED.get(ctx.format, EXPECTED["ftrace"]))
    return df.with_columns(cls=pl.col("cls").cast(FRAMED_SCHEMA["cls"]))


_PATCHED = ("cls", "ts_ns", "cpu", "pid", "tgid", "comm", "event", "body", "lost_events", "reason")


def _frame_others(df: pl.DataFrame, ctx: ChunkContext, searched: bool) -> pl.DataFrame:
    """FRAMED columns for the few lines the first fast path did not take.

    After the fixed-layout path, the searching one still takes the plain lines of another
    layout; whatever remains goes to the general readers.
    """
    if searched:
        return conform_framed(_frame_general(df, ctx))
    fast = _fast_events(df)
    ok = fast.get_column("_fast")
    out = _as_events(fast.drop("_fast"))
    if ok.all():
        return out
    idx = (~ok).arg_true()
    return _patch(out, idx, conform_framed(_frame_general(df[idx], ctx)), list(_PATCHED))


def _as_events(fast: pl.DataFrame) -> pl.DataFrame:
    return fast.with_columns(
        cls=pl.lit("event", FRAMED_SCHEMA["cls"]),
        event_line=pl.lit(None, pl.Int64),
        lost_events=pl.lit(None, pl.Int64),
        reason=pl.lit(None, pl.String),
    )


def frame_unattached(df: pl.DataFrame, ctx: ChunkContext) -> pl.DataFrame:
    """Frame the lines of `df` (columns `line`, `raw`), leaving the stack frames unattached.

    The plain event lines (nearly all of a trace) go through `_fixed_events` when the lines have
    a fixed layout, else `_fast_events`; the few others through the slower paths, and their rows
    are put back in place by index (once: each column copy costs as much as a fast pass op).
    Lines need not be consecutive: each row's result depends on its own text only.
    """
    layout = _learn_layout(df.get_column("raw"))
    fast = _fast_events(df) if layout is None else _fixed_events(df, layout)
    ok = fast.get_column("_fast")
    out = _as_events(fast.drop("_fast"))
    if not ok.all():
        idx = (~ok).arg_true()
        out = _patch(out, idx, _frame_others(df[idx], ctx, layout is None), list(_PATCHED))
    return out


def frame_ftrace_polars(lines: pl.Series, first_line: int, ctx: ChunkContext) -> pl.DataFrame:
    """`frame_ftrace` with polars expressions only: the definition the compiled kernel
    (ingest/ftrace_fast.py) must match, and its fallback for the lines it does not take."""
    out = frame_unattached(start_frame(lines, first_line), ctx)
    out = attach_stacks(out, ctx)
    return finish(out)


def frame_ftrace(lines: pl.Series, first_line: int, ctx: ChunkContext) -> pl.DataFrame:
    """Frame one chunk of ftrace or trace-cmd report text: one FRAMED_SCHEMA row per line.

    The compiled kernel frames the plain event lines; `frame_ftrace_polars` the others.
    """
    from ingest.ftrace_fast import frame_series

    return frame_series(lines, first_line, ctx)
