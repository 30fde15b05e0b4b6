"""State spans (docs/replay.md "Intervals"): rises and falls of each state per page.

A span is numbered by the rises before it on its page (plus one when the page starts in the
state); its member rows are those after which the state holds, plus the row that ends it. One
group-by per state then yields start, end, identity and holders.
"""

from __future__ import annotations

import polars as pl

from replay.schema import HOLDER, INTERVALS_SCHEMA, STATES

P = "pkey"

# state -> (predicate on a state's *_before / *_after suffix, column of "raised" rows or None)
_STATE_DEFS: dict[str, tuple[str, str | None]] = {
    "pinned": ("pins", "_pin_raise"),
    "writable_pinned": ("writable_pins", "_w_raise"),
    "longterm_pinned": ("longterm_pins", "_l_raise"),
    "writeback": ("writeback", None),
    "dirty": ("dirty", None),
    "cached": ("cached", None),
}

_MIN_TS = -(2**63)
_MAX_TS = 2**63 - 1


def seg_cumsum(x: pl.Expr) -> pl.Expr:
    """cum_sum restarting at each page's first row (rows sorted by page)."""
    cs = x.cum_sum()
    return cs - pl.when(pl.col("_first")).then(cs - x).forward_fill()


def _holds(col: str) -> pl.Expr:
    c = pl.col(col)
    return (
        c
        if col
        in (
            "writeback_after",
            "writeback_before",
            "dirty_after",
            "dirty_before",
            "cached_after",
            "cached_before",
        )
        else c > 0
    )


def build(
    pg: pl.DataFrame,
    lost: pl.DataFrame,
    *,
    trace_start_ts: int | None,
    trace_end_ts: int | None,
) -> pl.DataFrame:
    """Intervals of rows carrying state columns, sorted by (pkey, seq), with `_first` and pkey."""
    if pg.height == 0:
        return pl.DataFrame(schema=INTERVALS_SCHEMA)
    pg = pg.with_columns((pl.col("kind") == "pin").alias("_pin_raise"))
    out = []
    for state, (base, raise_col) in _STATE_DEFS.items():
        a = _holds(f"{base}_after")
        b = _holds(f"{base}_before")
        rise, fall = a & ~b, b & ~a
        init_true = pl.when(pl.col("_first")).then(b).otherwise(None).forward_fill()
        span = (seg_cumsum(rise.cast(pl.Int64)) - 1 + init_true.cast(pl.Int64)).alias("_span")
        rows = pg.select(
            P,
            "trace_id",
            "page_id",
            "pfn",
            "generation",
            "ts_ns",
            "line",
            "dev",
            "ino",
            "index",
            "pid",
            "comm",
            "caller",
            rise.alias("_rise"),
            fall.alias("_fall"),
            a.alias("_a"),
            span,
            (pl.col(raise_col) if raise_col else pl.lit(False)).alias("_raise"),
        ).filter(pl.col("_a") | pl.col("_fall"))
        has_id = pl.col("ino").is_not_null()
        aggs = [
            pl.col("trace_id").first(),
            pl.col("page_id").first(),
            pl.col("pfn").first(),
            pl.col("generation").first(),
            pl.col("dev").filter(has_id).first(),
            pl.col("ino").filter(has_id).first(),
            pl.col("index").filter(has_id).first(),
            pl.col("ts_ns").filter(pl.col("_rise")).first().alias("start_ts_ns"),
            pl.col("line").filter(pl.col("_rise")).first().alias("start_line"),
            pl.col("ts_ns").filter(pl.col("_fall")).first().alias("end_ts_ns"),
            pl.col("line").filter(pl.col("_fall")).first().alias("end_line"),
        ]
        if raise_col:
            aggs.append(
                pl.struct(pl.col("pid").cast(pl.Int32), pl.col("comm"), pl.col("caller"))
                .filter(pl.col("_raise") & pl.col("_a"))
                .unique(maintain_order=True)
                .alias("holders")
            )
        else:
            aggs.append(pl.lit(None, pl.List(HOLDER)).alias("holders"))
        spans = rows.group_by([P, "_span"], maintain_order=True).agg(aggs)
        out.append(spans.with_columns(pl.lit(state).cast(pl.Enum(list(STATES))).alias("state")))
    spans = pl.concat(out, how="diagonal_relaxed")
    spans = spans.with_columns(
        pl.col("start_line").is_null().alias("open_at_start"),
        pl.col("end_line").is_null().alias("open_at_end"),
        pl.col("start_ts_ns").fill_null(trace_start_ts),
    )
    spans = _uncertain(spans, lost, trace_end_ts)
    return spans.select([pl.col(c).cast(t) for c, t in INTERVALS_SCHEMA.items()])


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
    return spans.join(hit, on="_i", how="left").drop("_i", "_end")
