"""State spans (docs/replay.md "Intervals") from the rows the compiled state pass emits.

The kernel (replay/kernel.py) opens a span when a state rises on a page and emits it when the
state falls, or at the trace's end; each emitted row carries its start and end events, the
page slot and the first file identity seen inside it. This module turns those rows into the
`intervals` table: page ids, the holders of pin spans, and `uncertain` from the lost-events gaps.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from replay import kernel as K
from replay.schema import STATES, STORED_TABLES

STORED_INTERVALS = STORED_TABLES["intervals"]  # as written: no page_id (replay/schema.py)

STATE = pl.Enum(list(STATES))
_PIN_STATES = ["pinned", "writable_pinned", "longterm_pinned"]

_MIN_TS = -(2**63)
_MAX_TS = 2**63 - 1


def build(
    out_i: np.ndarray,
    out_u: np.ndarray,
    pages: pl.DataFrame,
    holders: pl.DataFrame,
    trace_id: str | None,
    lost: pl.DataFrame,
    *,
    trace_start_ts: int | None,
    trace_end_ts: int | None,
) -> pl.DataFrame:
    """The intervals rows of emitted spans (kernel OUT_* / SP_* fields, one array row each);
    `holders` has the holder rows of their pin spans (TraceReplay.take_holders)."""

    def i(c: int) -> np.ndarray:
        return out_i[c]

    def u(c: int) -> pl.Series:
        return pl.Series(out_u[c] == 1)

    at = pl.Series(i(K.SP_PAGE).astype(np.uint32))
    spans = pl.DataFrame(
        {
            "span": i(K.SP_ID),
            "_state": i(K.OUT_STATE).astype(np.uint8),
            "_start_ts": i(K.SP_START_TS),
            "_start_line": i(K.SP_START_LINE),
            "_end_row": i(K.OUT_END_ROW),
            "_end_ts": i(K.OUT_END_TS),
            "_end_line": i(K.OUT_END_LINE),
            "_dev": i(K.SP_DEV),
            "_ino": i(K.SP_INO),
            "_index": i(K.SP_INDEX),
            "_ident": u(K.SP_IDENT),
            "_dev_v": u(K.SP_DEV_V),
            "_index_v": u(K.SP_INDEX_V),
            "open_at_start": u(K.SP_OPEN_START),
        }
    )
    page = pages.select(pl.col("pfn", "generation").gather(at))
    open_end = pl.col("_end_row") < 0
    ident = pl.col("_ident")
    out = pl.concat([spans, page], how="horizontal").select(
        "span",
        pl.lit(trace_id, pl.String).alias("trace_id"),
        "pfn",
        "generation",
        pl.when(ident & pl.col("_dev_v")).then(pl.col("_dev")).alias("dev"),
        pl.when(ident).then(pl.col("_ino").reinterpret(signed=False)).alias("ino"),
        pl.when(ident & pl.col("_index_v"))
        .then(pl.col("_index").reinterpret(signed=False))
        .alias("index"),
        pl.lit(pl.Series(list(STATES), dtype=STATE)).gather(pl.col("_state")).alias("state"),
        pl.when("open_at_start")
        .then(pl.lit(trace_start_ts, pl.Int64))
        .otherwise(pl.col("_start_ts"))
        .alias("start_ts_ns"),
        pl.when(~open_end).then(pl.col("_end_ts")).alias("end_ts_ns"),
        pl.when(~pl.col("open_at_start")).then(pl.col("_start_line")).alias("start_line"),
        pl.when(~open_end).then(pl.col("_end_line")).alias("end_line"),
        "open_at_start",
        open_end.alias("open_at_end"),
    )
    pin = i(K.OUT_STATE) < len(_PIN_STATES)
    out = out.with_columns(holders_column(i(K.SP_ID), pin, holders))
    out = _uncertain(out, lost, trace_end_ts)
    return out.select([pl.col(c).cast(t) for c, t in STORED_INTERVALS.items()])


def holders_column(span: np.ndarray, pin: np.ndarray, rows: pl.DataFrame) -> pl.Series:
    """`holders` for spans in this order: a list of each pin span's holder rows (empty when
    it has none), null for the other states. `rows` (span, pid, comm, caller) holds each
    span's rows together, in their order.

    Laid out as a list column straight from offsets: a join of the spans with lists
    grouped per span moved the nested values twice, and cost twice as much."""
    n, m = len(span), rows.height
    offsets = np.zeros(n + 1, np.int64)
    values = rows.select("pid", "comm", "caller")
    if m:
        at = (
            rows.select("span")
            .join(
                pl.DataFrame({"span": span, "_row": np.arange(n, dtype=np.int64)}),
                on="span",
                how="left",
                maintain_order="left",
            )
            .get_column("_row")
        )
        if at.null_count():
            raise ValueError("holder rows of a span that is not among these spans")
        row = at.to_numpy()
        np.cumsum(np.bincount(row, minlength=n), out=offsets[1:])
        # each span's rows go, in their order, where its list starts
        run = np.flatnonzero(np.concatenate(([True], row[1:] != row[:-1])))
        rank = np.arange(m) - np.repeat(run, np.diff(np.append(run, m)))
        order = np.empty(m, np.int64)
        order[offsets[row] + rank] = np.arange(m)
        values = values[order]
    struct = values.to_struct("holders").to_arrow(compat_level=pl.CompatLevel.newest())
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), struct, mask=pa.array(~pin))
    return pl.Series("holders", lists)


def _uncertain(spans: pl.DataFrame, lost: pl.DataFrame, trace_end_ts: int | None) -> pl.DataFrame:
    """A gap overlaps [start, coalesce(end, trace end)]: asof on the gaps' running max end."""
    gaps = (
        lost.select(
            pl.col("gap_start_ts_ns").fill_null(_MIN_TS).alias("gs"),
            pl.col("gap_end_ts_ns").fill_null(_MAX_TS).alias("ge"),
        )
        .sort("gs")
        .with_columns(pl.col("ge").cum_max())
    )
    end = pl.col("end_ts_ns").fill_null(trace_end_ts if trace_end_ts is not None else _MAX_TS)
    if gaps.height == 0:
        return spans.with_columns(pl.lit(False).alias("uncertain"))
    spans = spans.with_columns(
        pl.int_range(pl.len()).alias("_i"), end.fill_null(_MAX_TS).alias("_end")
    )
    hit = (
        spans.select("_i", "_end", "start_ts_ns")
        .sort("_end")
        .join_asof(gaps, left_on="_end", right_on="gs", strategy="backward")
    )
    hit = hit.select(
        "_i",
        (pl.col("ge").is_not_null() & (pl.col("ge") >= pl.col("start_ts_ns"))).alias("uncertain"),
    )
    return spans.join(hit, on="_i", how="left", maintain_order="left").drop("_i", "_end")
