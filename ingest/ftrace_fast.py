"""Frame ftrace / trace-cmd text with the compiled kernel, falling back to polars per line.

`ftrace_kernel.frame_lines` takes the plain event lines, the function tracer's lines and the
stack frames (nearly all of a trace) straight from the bytes; every line it does not take —
comments, the latency format, odd numbers, non-ASCII, damage — goes through
`read_ftrace.frame_unattached` (the polars readers, whose result per line depends on that
line only), but for two kinds of line that need none of their set-up: stack-trace markers
(`<stack trace>`, framed by the kernel too) and lost-event markers
(`read_ftrace.lost_markers`). Stack frames are then attached to the event before them across
both kinds of line, exactly as `read_ftrace.attach_stacks` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from ingest import arrow_cols as ac
from ingest import ftrace_kernel as K
from ingest.framing import FRAMED_SCHEMA, ChunkContext, conform_framed
from ingest.read_ftrace import attach_stacks, finish, frame_unattached, lost_markers

# the text of the lines at these indexes of the chunk, decoded as the pipeline decodes them
FallbackText = Callable[[np.ndarray], pl.Series]

# The event of a function-tracer line (`func <-parent`), which the kernel frames with an empty
# name span: no event name is empty otherwise.
FUNCTION = "function"

_UNATTACHED = {
    **{c: t for c, t in FRAMED_SCHEMA.items() if c != "text"},
    "raw": pl.String(),
}


@dataclass
class FastFramed:
    """A chunk framed: the kernel's event lines as arrays, the other lines as a frame."""

    first_line: int
    buf: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    rows: np.ndarray  # chunk indexes of the lines the kernel framed (all events)
    ts: np.ndarray  # per row of `rows` from here on
    cpu: np.ndarray
    pid: np.ndarray
    tgid: np.ndarray  # -1: none
    comm_s: np.ndarray
    comm_e: np.ndarray
    name_s: np.ndarray
    name_e: np.ndarray
    body_s: np.ndarray
    body_e: np.ndarray
    others: pl.DataFrame  # the other lines: FRAMED columns plus `raw`, stacks attached

    def line_numbers(self) -> np.ndarray:
        return self.rows + self.first_line


def frame_block(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    first_line: int,
    ctx: ChunkContext,
    fallback_text: FallbackText,
    clean: np.ndarray | None = None,
) -> FastFramed:
    """Frame the lines buf[starts[i]:ends[i]] (line first_line + i); updates ctx like
    `attach_stacks` (the last event line and the stack depth after it).

    `clean` says which lines are printable ASCII (from `ftrace_kernel.scan_lines`); without it
    the lines are checked here.
    """
    if clean is None:
        clean = K.clean_spans(buf, starts, ends)
    out = K.frame_lines(buf, K.loads_of(buf), starts, ends, clean)
    ok, rows, ts, cpu, pid, tgid, comm_s, comm_e, name_s, name_e, body_s, body_e = out[:12]
    stk, stk_rows, stk_s, stk_e, mark, mark_i = out[12:]
    fb_idx = np.flatnonzero(~(ok | stk | mark))
    parts = []
    if len(fb_idx):
        df = pl.DataFrame(
            {
                "line": pl.Series(fb_idx + first_line, dtype=pl.Int64),
                "raw": fallback_text(fb_idx),
            }
        )
        lost, odd = _lost_lines(df)
        if lost.height:
            parts.append(lost)
        if odd.height:
            parts.append(frame_unattached(odd, ctx))
    if len(mark_i):
        parts.append(_stack_markers(buf, ends, mark_i, first_line))
    if len(stk_rows):
        parts.append(_stack_frames(buf, stk_rows, stk_s, stk_e, first_line))
    if not parts:
        others = pl.DataFrame(schema=_UNATTACHED)
    elif len(parts) == 1:
        others = parts[0]
    else:
        others = pl.concat(parts, how="diagonal_relaxed").sort("line")
    others = _attach(others, ok, rows, np.flatnonzero(~ok), first_line, ctx)
    if len(stk_rows) or len(mark_i):
        others = _orphans_text(others, first_line, fallback_text)
    return FastFramed(
        first_line=first_line,
        buf=buf,
        starts=starts,
        ends=ends,
        rows=rows,
        ts=ts,
        cpu=cpu,
        pid=pid,
        tgid=tgid,
        comm_s=comm_s,
        comm_e=comm_e,
        name_s=name_s,
        name_e=name_e,
        body_s=body_s,
        body_e=body_e,
        others=others,
    )


def _stack_frames(
    buf: np.ndarray, idx: np.ndarray, s: np.ndarray, e: np.ndarray, first_line: int
) -> pl.DataFrame:
    """The kernel's stack-frame lines as the general reader frames them (its `raw` left null:
    only an orphan frame, made a reject by attach_stacks, keeps its text; see _orphans_text)."""
    table = pa.table({"line": pa.array(idx + first_line), "body": ac.strings(buf, s, e)})
    return _unattached_rows(table, "stack")


def _unattached_rows(columns: pa.Table | pl.DataFrame, cls: str) -> pl.DataFrame:
    """Rows of class `cls` in the general reader's unattached layout (_UNATTACHED): the
    columns given, cast to its types, and every other one null."""
    df = pl.from_arrow(columns) if isinstance(columns, pa.Table) else columns
    assert isinstance(df, pl.DataFrame)
    cols = [
        pl.col(c).cast(t) if c in df.columns else pl.lit(None, t).alias(c)
        for c, t in _UNATTACHED.items()
    ]
    return df.select(cols).with_columns(cls=pl.lit(cls, FRAMED_SCHEMA["cls"]))


def _lost_lines(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the lost-event markers among these lines, framed; the other lines, as they came).

    A line that `read_ftrace.lost_markers` reads as a marker is framed by the general reader
    as nothing else (it cannot be a comment, an event or damaged text), so its row is made
    here from that same function: the general reader's set-up for a chunk's odd lines cost
    ~30 ms a call, whatever their number, and a long trace's chunks often hold no others."""
    lost_cpu, lost_events = lost_markers(pl.col("raw"))
    df = df.with_columns(_cpu=lost_cpu, _n=lost_events)
    is_lost = pl.col("_cpu").is_not_null()
    lost = df.filter(is_lost).select(
        "line", "raw", pl.col("_cpu").alias("cpu"), pl.col("_n").alias("lost_events")
    )
    return _unattached_rows(lost, "lost"), df.filter(~is_lost).select("line", "raw")


def _stack_markers(
    buf: np.ndarray, ends: np.ndarray, mark_i: np.ndarray, first_line: int
) -> pl.DataFrame:
    """The kernel's stack-trace marker lines as the general reader frames them: the header's
    values, no event, the marker as the body (its `raw` left null, as _stack_frames')."""
    at = mark_i[:, K.MK_ROW]
    tgid = mark_i[:, K.MK_TGID]
    columns = pa.table(
        {
            "line": pa.array(at + first_line),
            "ts_ns": pa.array(mark_i[:, K.MK_TS]),
            "cpu": pa.array(mark_i[:, K.MK_CPU].astype(np.int16)),
            "pid": pa.array(mark_i[:, K.MK_PID].astype(np.int32)),
            "tgid": ac.numbers(tgid.astype(np.int32), tgid >= 0),
            "comm": ac.strings(buf, mark_i[:, K.MK_COMM_S], mark_i[:, K.MK_COMM_E]),
            "body": ac.strings(buf, mark_i[:, K.MK_BODY_S], ends[at]),
        }
    )
    return _unattached_rows(columns, "stack")


def _orphans_text(
    others: pl.DataFrame, first_line: int, fallback_text: FallbackText
) -> pl.DataFrame:
    """The raw text of kernel-framed stack frames that attach_stacks made rejects (no event
    before them in the trace): a reject keeps its line's text."""
    orphan = (pl.col("cls") == "reject") & pl.col("raw").is_null()
    at = others.select(orphan.arg_true()).to_series()
    if at.len() == 0:
        return others
    idx = others.get_column("line").gather(at).to_numpy() - first_line
    raw = others.get_column("raw").scatter(at, fallback_text(idx))
    return others.with_columns(raw)


def _attach(
    others: pl.DataFrame,
    ok: np.ndarray,
    rows: np.ndarray,
    fb_idx: np.ndarray,
    first_line: int,
    ctx: ChunkContext,
) -> pl.DataFrame:
    """`attach_stacks` over the whole chunk, given only the other lines in full.

    What attach_stacks reads of the kernel's event lines is where they are: the last one
    before each other line, and the chunk's last. Those few go in as bare event rows.
    """
    if len(rows) == 0:
        return attach_stacks(others, ctx)
    prev = np.maximum.accumulate(np.where(ok, np.arange(len(ok)), -1))
    marks = prev[fb_idx]
    marks = np.union1d(marks[marks >= 0], rows[-1:])
    markers = pl.DataFrame({"line": pl.Series(marks + first_line, dtype=pl.Int64)}).with_columns(
        cls=pl.lit("event", FRAMED_SCHEMA["cls"]), _marker=pl.lit(True)
    )
    merged = pl.concat(
        [others.with_columns(_marker=pl.lit(False)), markers], how="diagonal_relaxed"
    ).sort("line")
    out = attach_stacks(merged, ctx)
    return out.filter(~pl.col("_marker")).drop("_marker").select(others.columns)


def event_frame(f: FastFramed, idx: np.ndarray | None = None) -> pl.DataFrame:
    """The kernel's event lines (or those at `idx` of f.rows) as FRAMED event rows."""
    sel = slice(None) if idx is None else idx
    tgid = f.tgid[sel]
    names = ac.strings(f.buf, f.name_s[sel], f.name_e[sel])
    table = pa.table(
        {
            "line": pa.array(f.line_numbers()[sel]),
            "ts_ns": pa.array(f.ts[sel]),
            "cpu": pa.array(f.cpu[sel]),
            "pid": pa.array(f.pid[sel]),
            "tgid": ac.numbers(tgid, tgid >= 0),
            "comm": ac.strings(f.buf, f.comm_s[sel], f.comm_e[sel]),
            "event": names,
            "body": ac.strings(f.buf, f.body_s[sel], f.body_e[sel]),
        }
    )
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    event = pl.col("event")
    return df.with_columns(
        cls=pl.lit("event", FRAMED_SCHEMA["cls"]),
        event=pl.when(event == "").then(pl.lit(FUNCTION)).otherwise(event),
    )


def frame_series(lines: pl.Series, first_line: int, ctx: ChunkContext) -> pl.DataFrame:
    """`read_ftrace.frame_ftrace` for a String series: every line, in order."""
    raw = lines.cast(pl.String).fill_null("")
    buf, starts, ends = ac.string_buffers(raw)
    f = frame_block(buf, starts, ends, first_line, ctx, lambda idx: raw.gather(idx))
    parts = [finish(f.others)]
    if len(f.rows):
        parts.append(conform_framed(event_frame(f)))
    return pl.concat(parts).sort("line") if len(parts) > 1 else parts[0]
