"""The vectorized page-state core (docs/replay.md "State per page").

The state is computed on a narrow frame (the columns the state machine reads) sorted once by
(page, seq); every state is a cumulative expression that restarts at each page's first row, so
no group-by and no Python code runs per event. The wide event columns are never sorted, only
gathered once: into (page_id, seq) order for the driver's files, or left in replay order with
the state columns put back into it. `replay_events` is the
in-memory entry point; the driver (replay/run.py) calls `replay_resolved` per bucket after the
cross-key identity pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ingest.schema import EVENTS_SCHEMA, LOST_SCHEMA, conform, foll_flags_for
from replay import identity, intervals
from replay.schema import BUFFERS, PAGE_EVENTS_SCHEMA, STATE_COLUMNS

P = "pkey"
_NO_COUNT = -(2**40)
_BUFFER_NAMES = ["unknown", "no", "yes"]


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


# Columns the state machine reads; everything else rides along unsorted.
_NARROW = ("ts_ns", "line", "kind", "pfn", "dev", "ino", "index", "refs", "gup_flags", "count")
_OUT_STATE = (*STATE_COLUMNS, "inferred_initial", "mismatch")
_FILE_COLS = ("dev", "ino", "index")


def replay_resolved(
    ev: pl.DataFrame,
    lost: pl.DataFrame,
    *,
    kernel: str | None,
    trace_start_ts: int | None,
    trace_end_ts: int | None,
    page_order: bool = False,
) -> ReplayResult:
    """State and intervals of one trace's (or one bucket's) events.

    `ev` has the canonical columns with `pfn` already resolved (identity pass), the traced pfn
    in `event_pfn`, and `seq`. Every page's rows must be present: a bucket holds whole pages.
    page_events rows come in replay (seq) order, or with `page_order` sorted by
    (kind, page_id, seq), pageless rows last within their kind: the order the driver writes,
    so that the row groups' min/max statistics let a rule's `kind = …` scan skip the rest.
    """
    seq = ev.get_column("seq")
    if not seq.is_sorted():
        ev = ev.sort("seq")
    pg = _states(ev.select(_NARROW), kernel)
    ids = _page_ids(pg)
    ivs = intervals.build(
        pg, ev, lost, ids, trace_start_ts=trace_start_ts, trace_end_ts=trace_end_ts
    )
    st_cols = pg.select("generation", "dev", "ino", "index", *_OUT_STATE)
    # index into `ids` of each row's page; null for pageless rows (they get a null page_id)
    page_key = pg.select(pl.when(~pl.col("_pageless")).then(pl.col(P) - 1)).to_series()
    if page_order:
        # (kind, page_id, seq): pages ranked by their id string, rows of a page already in seq
        # order (the sort is stable)
        rank = ids.rank("ordinal").cast(pl.UInt32)
        key = rank.gather(page_key)
        kind = ev.get_column("kind").to_physical().gather(pg["_row"])
        # one u64 key, kind above the page rank (pageless: past every rank): a stable sort on
        # one integer column is ~4x cheaper than on two
        at = (
            pl.DataFrame({"kind": kind, "k": key})
            .select(
                pl.arg_sort_by(
                    pl.col("kind").cast(pl.UInt64) * (1 << 33)
                    + pl.col("k").cast(pl.UInt64).fill_null((1 << 33) - 1),
                    maintain_order=True,
                )
            )
            .to_series()
        )
        rows = pg.get_column("_row").gather(at)
        wide = ev.drop("dev", "ino", "index").gather(rows)
        st = st_cols.gather(at)
        pid = ids.gather(page_key.gather(at))
    else:
        # back to replay order: `_row` is the row's position in `ev`; inverting that
        # permutation and gathering is cheaper than sorting ~20 columns by it
        inv = _inverse(pg.get_column("_row"))
        wide = ev.drop("dev", "ino", "index")
        st = st_cols.gather(inv)
        pid = ids.gather(page_key.gather(inv))
    pe = wide.hstack(st).with_columns(pid.alias("page_id"))
    page_events = pe.select([pl.col(c).cast(t) for c, t in PAGE_EVENTS_SCHEMA.items()])
    return ReplayResult(page_events, ivs)


def _page_ids(pg: pl.DataFrame) -> pl.Series:
    """page_id of each live page, indexed by pkey - 1: formatted once per page, not per row."""
    firsts = pg.filter(pl.col("_first") & ~pl.col("_pageless"))
    return firsts.select(
        identity.page_id(
            pl.col("pfn"), pl.col("generation"), pl.col("_fdev"), pl.col("_fino"),
            pl.col("_findex"),
        ).alias("page_id")
    ).to_series()  # fmt: skip


def _inverse(perm: pl.Series) -> pl.Series:
    """The inverse of a permutation of 0..n-1: where each position went."""
    n = perm.len()
    out = pl.zeros(n, dtype=pl.UInt32, eager=True)
    return out.scatter(perm, pl.int_range(n, dtype=pl.UInt32, eager=True))


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


def _seg_cummin(x: pl.Expr, big: int | None) -> pl.Expr:
    """cum_min restarting at each page; nulls stay null.

    With `big` (every |x| < big / 2, pkey * big fits an Int64) a per-page offset makes one
    global cum_max do it; otherwise a group-by.
    """
    if big is None:
        return x.cum_min().over(P)
    off = pl.col(P) * big
    return -((off - x).cum_max() - off)


def _before(after: str, init: pl.Expr | None) -> pl.Expr:
    """The value before each row: the previous row's after, or the page's initial value."""
    first_val = init if init is not None else pl.lit(None)
    return pl.when(F).then(first_val).otherwise(pl.col(after).shift(1))


def _counter(lf: pl.LazyFrame, name: str, big: int | None) -> pl.LazyFrame:
    """A lower-bounded counter with inferred initial value and mismatch (docs/replay.md)."""
    d, k, t, init = f"_d_{name}", f"_k_{name}", f"_T_{name}", f"_init_{name}"
    D, K = pl.col(d), pl.col(k)
    # Before the first raise only releases occur (d <= 0): the lowest prefix sum is their total.
    unknown_total = seg_total(pl.when(K).then(0).otherwise(D))
    lf = lf.with_columns((-unknown_total).clip(lower_bound=0).alias(init)).with_columns(
        (pl.col(init) + seg_cumsum(D)).alias(t)
    )
    floor = pl.min_horizontal(pl.lit(0, pl.Int64), _seg_cummin(pl.when(K).then(pl.col(t)), big))
    after = f"{name}_after"
    return lf.with_columns(
        pl.when(K).then(pl.col(t) - floor).otherwise(pl.col(t)).alias(after)
    ).with_columns(_before(after, pl.col(init)).alias(f"{name}_before"))


def _min_rule(name: str, a: str, big: int | None) -> pl.Expr:
    """x_t = min(x_{t-1} + raised_t, pins_after + gets_after), in closed form per page."""
    hold = pl.col("pins_after") + pl.col("gets_after")
    A = pl.col(a)
    return (A + pl.min_horizontal(pl.lit(0, pl.Int64), _seg_cummin(hold - A, big))).alias(
        f"{name}_after"
    )


def seg_seen(c: pl.Expr) -> pl.Expr:
    """True from the page's first row where `c` holds onwards (one forward fill)."""
    return pl.when(c).then(True).when(F).then(False).forward_fill()


def _flag_init(v: str) -> pl.Expr:
    """True where the page's first set/clear of the flag is a clear (history unknown)."""
    V = pl.col(v)
    # at the page's first row: the next set/clear is in this page, and it is a clear
    in_page = pl.when(V.is_not_null()).then(pl.col(P)).backward_fill() == pl.col(P)
    first_clear = in_page & ~V.backward_fill()
    return pl.col("_infer") & pl.when(F).then(first_clear.fill_null(False)).forward_fill()


def _offset_big(n: int, bound: int) -> int | None:
    """Offset step for `_seg_cummin`, or None when values could collide."""
    big = 1 << (62 - (n + 1).bit_length())
    return big if 4 * bound + 4 < big // 2 else None


def _states(narrow: pl.DataFrame, kernel: str | None) -> pl.DataFrame:
    """State columns of every row, sorted by (page, seq); pageless rows last with null state.

    Adds `_row` (the row's position in `narrow`), `_first`/`_last` (page edges), `pkey`,
    `generation`, the resolved `dev`/`ino`/`index`, the file key `_fdev`/`_fino`/`_findex`
    and the raise flags the intervals need.
    """
    flags = foll_flags_for(kernel)
    write, longterm = flags["FOLL_WRITE"], flags["FOLL_LONGTERM"]
    n = narrow.height
    refs = pl.col("refs").cast(pl.Int64).abs().fill_null(1)
    bound = narrow.select(refs.sum()).item() or 0
    big = _offset_big(n, int(bound))
    kind = pl.col("kind")
    pageless = identity.is_pageless(kind, pl.col("pfn"), pl.col("ino"), pl.col("index"))
    is_file = pl.col("pfn").is_null() & ~pl.col("_pageless")
    base = narrow.lazy().with_columns(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"), pageless.alias("_pageless")
    )
    base = base.with_columns(
        pl.when(is_file).then(pl.col(c)).alias(f"_f{c}") for c in ("dev", "ino", "index")
    )
    # pfn pages, then file pages; stable sorts keep seq order in a page. Pageless rows carry no
    # state: they are appended after the live ones at the end.
    live = ~pl.col("_pageless")
    lf = pl.concat(
        [
            base.filter(live & pl.col("pfn").is_not_null()).sort("pfn", maintain_order=True),
            base.filter(is_file).sort(
                ["_fdev", "_fino", "_findex"], maintain_order=True, nulls_last=True
            ),
        ]
    )
    lf = identity.with_generation(lf, "_gen")
    lf = lf.with_columns(
        pl.when(pl.col("pfn").is_null()).then(pl.lit(0, pl.Int32)).otherwise(pl.col("_gen"))
        .cast(pl.Int32).alias("generation")
    ).drop("_gen")  # fmt: skip
    keys = ["_pageless", "pfn", "generation", "_fdev", "_fino", "_findex"]
    changed = pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(1)) for c in keys])
    first = changed | (pl.int_range(pl.len()) == 0)
    lf = lf.with_columns(first.alias("_first")).with_columns(
        pl.col("_first").cast(pl.Int64).cum_sum().alias(P),
        pl.col("_first").shift(-1, fill_value=True).alias("_last"),
    )
    gup = pl.col("gup_flags").cast(pl.Int64).fill_null(0)
    acquire = kind.is_in(["pin", "get"])
    r = pl.col("_r")
    infer = (pl.col("generation") == 0) & (pl.when(F).then(kind).forward_fill() != "alloc")
    lf = lf.with_columns(
        infer.alias("_infer"),
        (acquire & ((gup & write) != 0)).alias("_w_raise"),
        (acquire & ((gup & longterm) != 0)).alias("_l_raise"),
        (kind == "pin").alias("_pin_raise"),
        refs.alias("_r"),
    )
    lf = lf.with_columns(
        pl.when(kind == "pin").then(r).when(kind == "unpin").then(-r).otherwise(0).alias("_d_pins"),
        pl.when(kind == "get").then(r).when(kind == "put").then(-r).otherwise(0).alias("_d_gets"),
        seg_cumsum(pl.when(pl.col("_w_raise")).then(r).otherwise(0)).alias("_A_w"),
        seg_cumsum(pl.when(pl.col("_l_raise")).then(r).otherwise(0)).alias("_A_l"),
        (~pl.col("_infer") | seg_seen(kind == "pin")).alias("_k_pins"),
        (~pl.col("_infer") | seg_seen(kind == "get")).alias("_k_gets"),
        pl.when(kind == "wb_start").then(True).when(kind == "wb_end").then(False).alias("_v_wb"),
        pl.when(kind == "cache_add")
        .then(True)
        .when(kind.is_in(["cache_del", "truncate"]))
        .then(False)
        .alias("_v_cached"),
    )
    lf = _counter(lf, "pins", big)
    lf = _counter(lf, "gets", big)
    lf = lf.with_columns(
        _min_rule("writable_pins", "_A_w", big), _min_rule("longterm_pins", "_A_l", big)
    ).with_columns(
        _before("writable_pins_after", pl.lit(0, pl.Int64)).alias("writable_pins_before"),
        _before("longterm_pins_after", pl.lit(0, pl.Int64)).alias("longterm_pins_before"),
    )
    count = pl.when((kind == "ref") & pl.col("count").is_not_null()).then(pl.col("count"))
    rc = seg_ffill(count.cast(pl.Int64), pl.lit(_NO_COUNT, pl.Int64))
    dirty = (
        pl.when(kind == "dirty")
        .then(True)
        .when(kind.is_in(["mkclean", "wb_start", "cache_del", "truncate"]))
        .then(False)
    )
    buf = pl.when(kind == "mkwrite").then(2).when(kind == "free_buffers").then(1).cast(pl.UInt8)
    src = kind.is_in(["cache_add", "cache_del"]) & pl.col("ino").is_not_null()
    pos = pl.int_range(pl.len(), dtype=pl.Int64)
    lf = lf.with_columns(
        pl.when(rc != _NO_COUNT).then(rc).alias("refcount_after"),
        seg_ffill(dirty, pl.lit(False)).alias("dirty_after"),
        _flag_init("_v_wb").alias("_init_wb"),
        _flag_init("_v_cached").alias("_init_cached"),
        seg_ffill(buf, pl.lit(0, pl.UInt8)).alias("_buf_after"),
        seg_ffill(pl.when(src).then(pos), pl.lit(-1)).alias("_src"),
    ).with_columns(
        seg_ffill(pl.col("_v_wb"), pl.col("_init_wb")).alias("writeback_after"),
        seg_ffill(pl.col("_v_cached"), pl.col("_init_cached")).alias("cached_after"),
    )
    # buffers codes 0/1/2 index the enum's categories: a gather from them, not a hash lookup
    names = pl.lit(pl.Series(_BUFFER_NAMES, dtype=BUFFERS))
    file_id = [
        pl.when(pl.col("pfn").is_null())
        .then(pl.col(c))
        .when(pl.col("_src") >= 0)
        .then(pl.col(c).gather(pl.col("_src").clip(lower_bound=0)))
        .alias(c)
        for c in ("dev", "ino", "index")
    ]
    lf = lf.with_columns(
        _before("refcount_after", None).alias("refcount_before"),
        _before("dirty_after", pl.lit(False)).alias("dirty_before"),
        _before("writeback_after", pl.col("_init_wb")).alias("writeback_before"),
        _before("cached_after", pl.col("_init_cached")).alias("cached_before"),
        names.gather(pl.col("_buf_after")).alias("buffers_after"),
        names.gather(_before("_buf_after", pl.lit(0, pl.UInt8))).alias("buffers_before"),
        (
            (pl.col("_init_pins") > 0)
            | (pl.col("_init_gets") > 0)
            | pl.col("_init_wb")
            | pl.col("_init_cached")
        ).alias("inferred_initial"),
        (
            (pl.col("_k_pins") & (pl.col("pins_before") + pl.col("_d_pins") < 0))
            | (pl.col("_k_gets") & (pl.col("gets_before") + pl.col("_d_gets") < 0))
        ).alias("mismatch"),
        *file_id,
    )
    lf = lf.with_columns(
        *[pl.col(c).cast(STATE_COLUMNS.get(c, pl.Boolean)) for c in _OUT_STATE],
    )
    out = [
        "_row", P, "_first", "_last", "_pageless", "ts_ns", "line", "pfn", "generation",
        "dev", "ino", "index", "_fdev", "_fino", "_findex", "_pin_raise", "_w_raise",
        "_l_raise", *_OUT_STATE,
    ]  # fmt: skip
    # pageless rows: null state; their own file columns where they name no pfn
    pageless = base.filter(pl.col("_pageless")).select(
        "_row", "_pageless", "ts_ns", "line", "pfn", "_fdev", "_fino", "_findex",
        *[pl.when(pl.col("pfn").is_null()).then(pl.col(c)).alias(c) for c in _FILE_COLS],
    )  # fmt: skip
    return pl.concat([lf.select(out), pageless], how="diagonal_relaxed").collect(engine="in-memory")


__all__ = ["EVENTS_SCHEMA", "ReplayResult", "replay_events", "replay_resolved"]
