"""State spans (docs/replay.md "Intervals"): rises and falls of each state per page.

Within a page a state's rises and falls alternate, so a span is its start row (a rise, or the
page's first row when the state is inferred to hold from the start) and the next transition row
of the page (its fall, if any). All states go into one long frame of transition rows; shifts,
not group-bys, pair starts with ends. Only holders need a group-by, over the few raise rows.
"""

from __future__ import annotations

import polars as pl

from replay.schema import HOLDER, INTERVALS_SCHEMA, STATES

P = "pkey"
STATE = pl.Enum(list(STATES))

# state -> (base name of its *_before / *_after columns, column of "raised" rows or None)
_STATE_DEFS: dict[str, tuple[str, str | None]] = {
    "pinned": ("pins", "_pin_raise"),
    "writable_pinned": ("writable_pins", "_w_raise"),
    "longterm_pinned": ("longterm_pins", "_l_raise"),
    "writeback": ("writeback", None),
    "dirty": ("dirty", None),
    "cached": ("cached", None),
}
_FLAGS = ("writeback", "dirty", "cached")

_MIN_TS = -(2**63)
_MAX_TS = 2**63 - 1


def _holds(col: str, base: str) -> pl.Expr:
    c = pl.col(col)
    return c if base in _FLAGS else c > 0


def build(
    pg: pl.DataFrame,
    ev: pl.DataFrame,
    lost: pl.DataFrame,
    page_ids: pl.Series,
    *,
    trace_start_ts: int | None,
    trace_end_ts: int | None,
) -> pl.DataFrame:
    """Intervals from the core's page-ordered state frame (replay.core._states).

    `pg` rows are sorted by (pkey, seq), pageless rows last; its `_row` indexes `ev`, which
    supplies trace_id and the holders' pid/comm/caller. `page_ids[pkey - 1]` is a page's id.
    """
    pg = pg.filter(~pl.col("_pageless"))  # a suffix: positions of the others are unchanged
    if pg.height == 0:
        return pl.DataFrame(schema=INTERVALS_SCHEMA)
    pos = pl.int_range(pl.len(), dtype=pl.Int64).alias("_pos")
    base_lf = (
        pg.lazy()
        .with_columns(pos)
        .with_columns(
            # next row (this one included) with a known file identity; the page's last row
            pl.when(pl.col("ino").is_not_null()).then(pl.col("_pos")).backward_fill().alias("_nk"),
            pl.when(pl.col("_last")).then(pl.col("_pos")).backward_fill().alias("_plast"),
        )
    )
    spans, raised = [], []
    for state, (base, raise_col) in _STATE_DEFS.items():
        a, b = _holds(f"{base}_after", base), _holds(f"{base}_before", base)
        rise, fall, init = a & ~b, b & ~a, pl.col("_first") & b
        lit = pl.lit(state, STATE).alias("state")
        t = base_lf.filter(rise | fall | init).select(
            lit, P, "_pos", "ts_ns", "line", "_nk", "_plast",
            rise.alias("_rise"), fall.alias("_fall"), init.alias("_init"),
        )  # fmt: skip
        same_next = pl.col(P).shift(-1) == pl.col(P)
        self_end = pl.col("_init") & pl.col("_fall")

        def end(c: str, self_end: pl.Expr = self_end, same_next: pl.Expr = same_next) -> pl.Expr:
            return pl.when(self_end).then(pl.col(c)).when(same_next).then(pl.col(c).shift(-1))

        spans.append(
            t.with_columns(
                end("_pos").alias("_end_pos"),
                end("ts_ns").alias("end_ts_ns"),
                end("line").alias("end_line"),
            )
            .filter(pl.col("_rise") | pl.col("_init"))
            .select(
                "state",
                "_pos",
                "_nk",
                "_plast",
                "_end_pos",
                "end_ts_ns",
                "end_line",
                pl.when(pl.col("_rise")).then(pl.col("ts_ns")).alias("start_ts_ns"),
                pl.when(pl.col("_rise")).then(pl.col("line")).alias("start_line"),
            )
        )
        if raise_col:
            start = pl.when(rise | init).then(pl.col("_pos")).forward_fill().alias("_pos")
            raised.append(
                base_lf.select(lit, start, "_row", (pl.col(raise_col) & a).alias("_h")).filter("_h")
            )
    sp, hr = pl.collect_all([pl.concat(spans), pl.concat(raised)], engine="in-memory")
    if sp.height == 0:
        return pl.DataFrame(schema=INTERVALS_SCHEMA)
    at = sp.get_column("_pos")
    bound = sp.select(pl.coalesce("_end_pos", "_plast")).to_series()
    nk = sp.get_column("_nk")
    known = pl.select(pl.when(nk <= bound).then(nk)).to_series()
    keys = pg.select(
        pl.col("_row").gather(at),
        (pl.col(P).gather(at) - 1).alias("_pk"),
        pl.col("pfn", "generation").gather(at),
        pl.col("dev", "ino", "index").gather(known),
    )
    trace = ev.get_column("trace_id").gather(keys.get_column("_row"))
    out = sp.hstack(keys).with_columns(
        trace.alias("trace_id"),
        page_ids.gather(keys.get_column("_pk")).alias("page_id"),
        pl.col("start_line").is_null().alias("open_at_start"),
        pl.col("end_line").is_null().alias("open_at_end"),
        pl.col("start_ts_ns").fill_null(trace_start_ts),
    )  # fmt: skip
    out = out.join(_holders(hr, ev), on=["state", "_pos"], how="left")
    pin_states = pl.col("state").is_in(["pinned", "writable_pinned", "longterm_pinned"])
    out = out.with_columns(
        pl.when(pin_states)
        .then(pl.col("holders").fill_null(pl.lit([], pl.List(HOLDER))))
        .alias("holders")
    )
    out = _uncertain(out, lost, trace_end_ts)
    return out.select([pl.col(c).cast(t) for c, t in INTERVALS_SCHEMA.items()])


def _holders(hr: pl.DataFrame, ev: pl.DataFrame) -> pl.DataFrame:
    """Distinct (pid, comm, caller) of each span's raise rows, in order of first appearance."""
    who = ev.select(
        pl.col("pid").cast(pl.Int32).gather(hr.get_column("_row")),
        pl.col("comm", "caller").gather(hr.get_column("_row")),
    )
    return (
        hr.select("state", "_pos")
        .hstack(who)
        .unique(maintain_order=True)
        .group_by(["state", "_pos"], maintain_order=True)
        .agg(pl.struct("pid", "comm", "caller").alias("holders"))
    )


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
