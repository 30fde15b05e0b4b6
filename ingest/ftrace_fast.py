"""Frame ftrace / trace-cmd text with the compiled kernel, falling back to polars per line.

`ftrace_kernel.frame_lines` takes the plain event lines (nearly all of a trace) straight from
the bytes; every line it does not take — comments, stack frames, lost markers, the latency
format, odd numbers, non-ASCII, damage — goes through `read_ftrace.frame_unattached` (the polars
readers, whose result per line depends on that line only). Stack frames are then attached to
the event before them across both kinds of line, exactly as `read_ftrace.attach_stacks` does.
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
from ingest.read_ftrace import attach_stacks, finish, frame_unattached

# the text of the lines at these indexes of the chunk, decoded as the pipeline decodes them
FallbackText = Callable[[np.ndarray], pl.Series]

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
    ok, rows, ts, cpu, pid, tgid, comm_s, comm_e, name_s, name_e, body_s, body_e = K.frame_lines(
        buf, K.loads_of(buf), starts, ends, clean
    )
    fb_idx = np.flatnonzero(~ok)
    if len(fb_idx):
        df = pl.DataFrame(
            {
                "line": pl.Series(fb_idx + first_line, dtype=pl.Int64),
                "raw": fallback_text(fb_idx),
            }
        )
        others = frame_unattached(df, ctx)
    else:
        others = pl.DataFrame(schema=_UNATTACHED)
    others = _attach(others, ok, rows, fb_idx, first_line, ctx)
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
    return df.with_columns(cls=pl.lit("event", FRAMED_SCHEMA["cls"]))


def frame_series(lines: pl.Series, first_line: int, ctx: ChunkContext) -> pl.DataFrame:
    """`read_ftrace.frame_ftrace` for a String series: every line, in order."""
    raw = lines.cast(pl.String).fill_null("")
    buf, starts, ends = ac.string_buffers(raw)
    f = frame_block(buf, starts, ends, first_line, ctx, lambda idx: raw.gather(idx))
    parts = [finish(f.others)]
    if len(f.rows):
        parts.append(conform_framed(event_frame(f)))
    return pl.concat(parts).sort("line") if len(parts) > 1 else parts[0]
