"""The vectorized page-state core (docs/replay.md "State per page").

Rows are sorted by (page, seq) once; every state is a cumulative expression over each page
(`.over("pkey")`), so no Python code runs per event. `replay_events` is the in-memory entry
point; the driver (replay/run.py) calls `replay_resolved` per bucket after the cross-key
identity pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ingest.schema import EVENTS_SCHEMA, LOST_SCHEMA, conform, foll_flags_for
from replay import identity, intervals
from replay.schema import BUFFERS, PAGE_EVENTS_SCHEMA, STATE_COLUMNS

P = "pkey"
_NO_COUNT = -(2**40)


@dataclass
class ReplayResult:
    page_events: pl.DataFrame
    intervals: pl.DataFrame


def prepare(events: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Canonical columns, replayable rows only (ingest rejects events without a timestamp)."""
    if isinstance(events, pl.LazyFrame):
        events = events.collect()
    return conform(events, "events").filter(pl.col("ts_ns").is_not_null())


def replay_events(
    events: pl.DataFrame | pl.LazyFrame,
    lost: pl.DataFrame | pl.LazyFrame | None,
    *,
    kernel: str | None,
    trace_start_ts: int | None = None,
    trace_end_ts: int | None = None,
) -> ReplayResult:
    """Replay events (one or more traces, all of the same kernel) held in memory."""
    ev = prepare(events)
    lost_df = _lost_frame(lost)
    pes, ivs = [], []
    for tid in ev.get_column("trace_id").unique(maintain_order=True).to_list():
        one = ev.filter(pl.col("trace_id").eq_missing(tid))
        one = one.with_columns(identity.order_of(one))
        rpfn = identity.resolve_pfns(one.select(*identity.IDENTITY_COLUMNS, "seq"))
        one = one.with_columns(pl.col("pfn").alias("event_pfn"), rpfn.alias("pfn"))
        start = trace_start_ts if trace_start_ts is not None else one["ts_ns"].min()
        end = trace_end_ts if trace_end_ts is not None else one["ts_ns"].max()
        res = replay_resolved(
            one,
            lost_df.filter(pl.col("trace_id").eq_missing(tid)),
            kernel=kernel,
            trace_start_ts=start,
            trace_end_ts=end,
        )
        pes.append(res.page_events)
        ivs.append(res.intervals)
    if not pes:
        return ReplayResult(
            pl.DataFrame(schema=PAGE_EVENTS_SCHEMA),
            pl.DataFrame(schema=intervals.INTERVALS_SCHEMA),
        )
    return ReplayResult(pl.concat(pes), pl.concat(ivs))


def _lost_frame(lost: pl.DataFrame | pl.LazyFrame | None) -> pl.DataFrame:
    if lost is None:
        return conform(pl.DataFrame(), "lost").clear()
    if isinstance(lost, pl.LazyFrame):
        lost = lost.collect()
    return lost.select(
        [
            (pl.col(c) if c in lost.columns else pl.lit(None)).cast(t).alias(c)
            for c, t in LOST_SCHEMA.items()
        ]
    )


def replay_resolved(
    ev: pl.DataFrame,
    lost: pl.DataFrame,
    *,
    kernel: str | None,
    trace_start_ts: int | None,
    trace_end_ts: int | None,
) -> ReplayResult:
    """State and intervals of one trace's (or one bucket's) events.

    `ev` has the canonical columns with `pfn` already resolved (identity pass), the traced pfn
    in `event_pfn`, and `seq`. Every page's rows must be present: a bucket holds whole pages.
    """
    pageless = identity.is_pageless(pl.col("kind"), pl.col("pfn"), pl.col("ino"), pl.col("index"))
    loose = ev.filter(pageless).with_columns(
        pl.lit(None, pl.String).alias("page_id"),
        pl.lit(None, pl.Int32).alias("generation"),
        *[pl.lit(None, t).alias(c) for c, t in STATE_COLUMNS.items()],
        pl.lit(None, pl.Boolean).alias("inferred_initial"),
        pl.lit(None, pl.Boolean).alias("mismatch"),
    )
    pg = _states(ev.filter(~pageless), kernel)
    ivs = intervals.build(pg, lost, trace_start_ts=trace_start_ts, trace_end_ts=trace_end_ts)
    cast = [pl.col(c).cast(t) for c, t in PAGE_EVENTS_SCHEMA.items()]
    page_events = pl.concat([pg.select(cast), loose.select(cast)]).sort("seq")
    return ReplayResult(page_events, ivs)


def _page_keys(pg: pl.DataFrame) -> pl.DataFrame:
    """Generations per pfn, then one integer key per page, rows sorted by (page, seq)."""
    is_file = pl.col("pfn").is_null()
    pg = pg.with_columns(
        pl.when(is_file).then(pl.col(c)).alias(f"_f{c}") for c in ("dev", "ino", "index")
    ).sort(["pfn", "seq"], nulls_last=True)
    gen = identity.generations(pl.col("kind"), pl.col("pfn"), pl.col("dev"), pl.col("ino"))
    pg = pg.with_columns(
        pl.when(is_file).then(pl.lit(0, pl.Int32)).otherwise(gen).cast(pl.Int32).alias("generation")
    )
    keys = ["pfn", "generation", "_fdev", "_fino", "_findex"]
    pg = pg.sort([*keys, "seq"], nulls_last=True)
    changed = pl.any_horizontal([pl.col(k).ne_missing(pl.col(k).shift(1)) for k in keys])
    changed = changed | (pl.int_range(pl.len()) == 0)
    return pg.with_columns(changed.alias("_first")).with_columns(
        pl.col("_first").cast(pl.Int64).cum_sum().alias(P),
        pl.col("_first").shift(-1, fill_value=True).alias("_last"),
    )


F = pl.col("_first")
L = pl.col("_last")


def seg_cumsum(x: pl.Expr) -> pl.Expr:
    """cum_sum restarting at each page (rows sorted by page): no group-by needed."""
    cs = x.cum_sum()
    return cs - pl.when(F).then(cs - x).forward_fill()


def seg_total(x: pl.Expr) -> pl.Expr:
    """The page's sum of x, on every row of the page."""
    return pl.when(L).then(seg_cumsum(x)).backward_fill()


def seg_ffill(v: pl.Expr, init: pl.Expr) -> pl.Expr:
    """Forward fill within a page, starting from `init` (never null) at its first row."""
    return pl.when(F & v.is_null()).then(init).otherwise(v).forward_fill()


def _before(after: str, init: pl.Expr | None) -> pl.Expr:
    """The value before each row: the previous row's after, or the page's initial value."""
    first_val = init if init is not None else pl.lit(None)
    return pl.when(pl.col("_first")).then(first_val).otherwise(pl.col(after).shift(1))


def _counter(pg: pl.DataFrame, name: str, delta: pl.Expr, raises: pl.Expr) -> pl.DataFrame:
    """A lower-bounded counter with inferred initial value and mismatch (docs/replay.md)."""
    d, s, k, t = f"_d_{name}", f"_S_{name}", f"_k_{name}", f"_T_{name}"
    init = f"_init_{name}"
    pg = pg.with_columns(
        delta.cast(pl.Int64).alias(d),
        (~pl.col("_infer") | (seg_cumsum(raises.cast(pl.Int64)) >= 1)).alias(k),
    ).with_columns(seg_cumsum(pl.col(d)).alias(s))
    # Before the first raise only releases occur (d <= 0): the lowest prefix sum is their total.
    unknown_total = seg_total(pl.when(pl.col(k)).then(0).otherwise(pl.col(d)))
    pg = pg.with_columns((-unknown_total).clip(lower_bound=0).alias(init)).with_columns(
        (pl.col(init) + pl.col(s)).alias(t)
    )
    floor = pl.min_horizontal(
        pl.lit(0, pl.Int64), pl.when(pl.col(k)).then(pl.col(t)).cum_min().over(P)
    )
    after = f"{name}_after"
    pg = pg.with_columns(
        pl.when(pl.col(k)).then(pl.col(t) - floor).otherwise(pl.col(t)).alias(after)
    ).with_columns(_before(after, pl.col(init)).alias(f"{name}_before"))
    return pg.with_columns(
        (pl.col(k) & (pl.col(f"{name}_before") + pl.col(d) < 0)).alias(f"_mm_{name}")
    )


def _min_rule(pg: pl.DataFrame, name: str, raised: pl.Expr) -> pl.DataFrame:
    """x_t = min(x_{t-1} + raised_t, pins_after + gets_after), in closed form per page."""
    a = f"_A_{name}"
    pg = pg.with_columns(seg_cumsum(raised.cast(pl.Int64)).alias(a))
    hold = pl.col("pins_after") + pl.col("gets_after")
    after = f"{name}_after"
    pg = pg.with_columns(
        (
            pl.col(a) + pl.min_horizontal(pl.lit(0, pl.Int64), (hold - pl.col(a)).cum_min().over(P))
        ).alias(after)
    )
    return pg.with_columns(_before(after, pl.lit(0, pl.Int64)).alias(f"{name}_before"))


def _flag(pg: pl.DataFrame, name: str, value: pl.Expr, inferable: bool) -> pl.DataFrame:
    """A set/clear flag forward-filled per page; initially true only where inferred."""
    v, init = f"_v_{name}", f"_init_{name}"
    pg = pg.with_columns(value.alias(v))
    if inferable:
        seen = pl.col(v).is_not_null()
        first_clear = seen & (seg_cumsum(seen.cast(pl.Int64)) == 1) & ~pl.col(v).fill_null(True)
        pg = pg.with_columns(
            (pl.col("_infer") & (seg_total(first_clear.cast(pl.Int64)) > 0)).alias(init)
        )
    else:
        pg = pg.with_columns(pl.lit(False).alias(init))
    after = f"{name}_after"
    pg = pg.with_columns(seg_ffill(pl.col(v), pl.col(init)).alias(after))
    return pg.with_columns(_before(after, pl.col(init)).alias(f"{name}_before"))


def _states(pg: pl.DataFrame, kernel: str | None) -> pl.DataFrame:
    """Every state column of PAGE_EVENTS_SCHEMA for rows that have a page."""
    flags = foll_flags_for(kernel)
    write, longterm = flags["FOLL_WRITE"], flags["FOLL_LONGTERM"]
    pg = _page_keys(pg)
    kind = pl.col("kind")
    refs = pl.col("refs").cast(pl.Int64).abs().fill_null(1)
    gup = pl.col("gup_flags").cast(pl.Int64).fill_null(0)
    acquire = kind.is_in(["pin", "get"])
    pg = pg.with_columns(
        ((pl.col("generation") == 0) & (pl.when(F).then(kind).forward_fill() != "alloc")).alias(
            "_infer"
        ),
        (acquire & ((gup & write) != 0)).alias("_w_raise"),
        (acquire & ((gup & longterm) != 0)).alias("_l_raise"),
        refs.alias("_r"),
    )
    r = pl.col("_r")
    pg = _counter(
        pg,
        "pins",
        pl.when(kind == "pin").then(r).when(kind == "unpin").then(-r).otherwise(0),
        kind == "pin",
    )
    pg = _counter(
        pg,
        "gets",
        pl.when(kind == "get").then(r).when(kind == "put").then(-r).otherwise(0),
        kind == "get",
    )
    pg = _min_rule(pg, "writable_pins", pl.when(pl.col("_w_raise")).then(r).otherwise(0))
    pg = _min_rule(pg, "longterm_pins", pl.when(pl.col("_l_raise")).then(r).otherwise(0))
    count = pl.when((kind == "ref") & pl.col("count").is_not_null()).then(pl.col("count"))
    none = pl.lit(_NO_COUNT, pl.Int64)
    pg = pg.with_columns(
        seg_ffill(count.cast(pl.Int64), none).replace(_NO_COUNT, None).alias("refcount_after")
    ).with_columns(_before("refcount_after", None).alias("refcount_before"))
    pg = _flag(
        pg,
        "dirty",
        pl.when(kind == "dirty")
        .then(True)
        .when(kind.is_in(["mkclean", "wb_start", "cache_del", "truncate"]))
        .then(False),
        inferable=False,
    )
    pg = _flag(
        pg,
        "writeback",
        pl.when(kind == "wb_start").then(True).when(kind == "wb_end").then(False),
        inferable=True,
    )
    pg = _flag(
        pg,
        "cached",
        pl.when(kind == "cache_add")
        .then(True)
        .when(kind.is_in(["cache_del", "truncate"]))
        .then(False),
        inferable=True,
    )
    buf = (
        pl.when(kind == "mkwrite")
        .then(pl.lit("yes"))
        .when(kind == "free_buffers")
        .then(pl.lit("no"))
    )
    pg = pg.with_columns(
        seg_ffill(buf, pl.lit("unknown")).cast(BUFFERS).alias("buffers_after")
    ).with_columns(
        _before("buffers_after", pl.lit("unknown").cast(BUFFERS)).alias("buffers_before")
    )
    pg = pg.with_columns(
        (
            (pl.col("_init_pins") > 0)
            | (pl.col("_init_gets") > 0)
            | pl.col("_init_writeback")
            | pl.col("_init_cached")
        ).alias("inferred_initial"),
        (pl.col("_mm_pins") | pl.col("_mm_gets")).alias("mismatch"),
    )
    pg = _file_identity(pg)
    return pg.with_columns(
        identity.page_id(
            pl.col("pfn"), pl.col("generation"), pl.col("dev"), pl.col("ino"), pl.col("index")
        ).alias("page_id")
    )


def _file_identity(pg: pl.DataFrame) -> pl.DataFrame:
    """dev/ino/index of pfn pages from their latest cache_add/cache_del in the generation."""
    src = pl.col("kind").is_in(["cache_add", "cache_del"]) & pl.col("ino").is_not_null()
    pg = pg.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"))
    pg = pg.with_columns(seg_ffill(pl.when(src).then(pl.col("_row")), pl.lit(-1)).alias("_src"))
    is_file = pl.col("pfn").is_null()
    return pg.with_columns(
        pl.when(is_file)
        .then(pl.col(c))
        .when(pl.col("_src") >= 0)
        .then(pl.col(c).gather(pl.col("_src").clip(lower_bound=0)))
        .alias(c)
        for c in ("dev", "ino", "index")
    )


__all__ = ["EVENTS_SCHEMA", "ReplayResult", "replay_events", "replay_resolved"]
