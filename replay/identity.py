"""Page identity (docs/replay.md "Page identity"): replay order, head pfns, file-only events,
generations and page ids.

Head and file-only resolution map one key to another, so they run over a whole trace before
the events are split into buckets; generations only look at one resolved pfn, so they run
inside a bucket with the state core.
"""

from __future__ import annotations

import polars as pl

# Columns the cross-key pass needs: narrow, so a whole trace fits in memory.
IDENTITY_COLUMNS: tuple[str, ...] = (
    "line",
    "ts_ns",
    "kind",
    "pfn",
    "folio_order",
    "dev",
    "ino",
    "index",
)

_CACHE_KINDS = ["cache_add", "cache_del"]


def order_of(ev: pl.DataFrame) -> pl.Series:
    """`seq` for each row of one trace's events, in their given row order (rank by ts, line)."""
    ts, line = ev.get_column("ts_ns"), ev.get_column("line")
    if not (ts.null_count() or line.null_count()) and ts.is_sorted() and line.is_sorted():
        return pl.int_range(ev.height, dtype=pl.Int64, eager=True).alias("seq")  # already in order
    order = ev.select(pl.arg_sort_by(["ts_ns", "line"])).to_series()
    seq = pl.Series("seq", [0], dtype=pl.Int64).clear()
    if ev.height:
        seq = pl.zeros(ev.height, dtype=pl.Int64, eager=True).alias("seq")
        seq = seq.scatter(order, pl.int_range(ev.height, dtype=pl.Int64, eager=True))
    return seq


def is_pageless(kind: pl.Expr, pfn: pl.Expr, ino: pl.Expr, index: pl.Expr) -> pl.Expr:
    """`fork`, or no pfn and no complete file key: kept in page_events without a page."""
    return (kind == "fork") | (pfn.is_null() & (ino.is_null() | index.is_null()))


def resolve_pfns(ev: pl.DataFrame) -> pl.Series:
    """The resolved pfn of each row (same row order); null for pageless and unresolved file rows.

    `ev` holds one trace's IDENTITY_COLUMNS plus `seq` (`ts_ns` and `line` are not read: the
    driver drops them first, the largest columns of a whole-trace pass).
    """
    base = ev.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"),
        "seq",
        "kind",
        pl.when(pl.col("kind") == "fork").then(None).otherwise(pl.col("pfn")).alias("pfn"),
        pl.col("folio_order").fill_null(0).alias("order"),
        "dev",
        "ino",
        "index",
    )
    head = _resolve_heads(base)
    base = base.with_columns(head.alias("rpfn"))
    return _resolve_files(base).alias("pfn")


def _resolve_heads(base: pl.DataFrame) -> pl.Series:
    """Head pfn for subpage events of a known, still-allocated folio; the traced pfn otherwise."""
    # Extent rows: a folio of order > 0 named by its head; a `free` of a pfn ends its extent.
    ext = base.filter(
        pl.col("pfn").is_not_null() & ((pl.col("order") > 0) | (pl.col("kind") == "free"))
    ).select(
        pl.col("pfn").alias("h"),
        pl.col("seq").alias("ext_seq"),
        pl.when(pl.col("kind") == "free")
        .then(None)
        .otherwise(pl.col("order"))
        .cast(pl.UInt8)
        .alias("ext_order"),
    )
    pfn = base.get_column("pfn")
    orders = ext.get_column("ext_order").drop_nulls().unique().sort().to_list()
    if not orders:
        return pfn
    ext = ext.sort("ext_seq")
    heads = ext.get_column("h").unique()
    cand_all = base.filter(pl.col("pfn").is_not_null() & (pl.col("order") == 0)).select(
        "_row", "seq", "pfn"
    )
    found = []
    for o in orders:
        mask = (1 << int(o)) - 1
        cand = (
            cand_all.with_columns((pl.col("pfn") - (pl.col("pfn") & mask)).alias("h"))
            .filter((pl.col("h") != pl.col("pfn")) & pl.col("h").is_in(heads.implode()))
            .sort("seq")
        )
        if cand.height == 0:
            continue
        hit = cand.join_asof(
            ext,
            left_on="seq",
            right_on="ext_seq",
            by="h",
            strategy="backward",
            check_sortedness=False,
        )
        found.append(hit.filter(pl.col("ext_order") == o).select("_row", "h", "ext_seq"))
    if not found:
        return pfn
    best = pl.concat(found).sort("ext_seq", descending=True).unique("_row", keep="first")
    return pfn.scatter(best.get_column("_row"), best.get_column("h"))


def _resolve_files(base: pl.DataFrame) -> pl.Series:
    """Pfn for events naming only (ino, index): the latest cache_add strictly before them."""
    rpfn = base.get_column("rpfn")
    files = base.filter(
        pl.col("rpfn").is_null()
        & (pl.col("kind") != "fork")
        & pl.col("ino").is_not_null()
        & pl.col("index").is_not_null()
    ).select("_row", "seq", "dev", "ino", "index")
    if files.height == 0:
        return rpfn
    cache = (
        base.filter(
            pl.col("kind").is_in(_CACHE_KINDS)
            & pl.col("ino").is_not_null()
            & pl.col("index").is_not_null()
        )
        .select(
            pl.col("seq").alias("c_seq"),
            "ino",
            "index",
            pl.col("kind").alias("c_kind"),
            pl.col("rpfn").alias("c_pfn"),
            pl.col("dev").alias("c_dev"),
        )
        .sort("c_seq")
    )
    if cache.height == 0:
        return rpfn
    hit = files.sort("seq").join_asof(
        cache,
        left_on="seq",
        right_on="c_seq",
        by=["ino", "index"],
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    ok = hit.filter(
        (pl.col("c_kind") == "cache_add")
        & pl.col("c_pfn").is_not_null()
        & ~(
            pl.col("dev").is_not_null()
            & pl.col("c_dev").is_not_null()
            & (pl.col("dev") != pl.col("c_dev"))
        )
    )
    return rpfn.scatter(ok.get_column("_row"), ok.get_column("c_pfn"))


def with_generation(lf: pl.LazyFrame, name: str = "generation") -> pl.LazyFrame:
    """Add the lifetime number per resolved pfn; rows must be sorted by (pfn, seq).

    Built in stages of materialized columns: the query optimizer does not share repeated
    order-dependent subexpressions (forward fills, gathers, cumulative sums), so one nested
    expression would recompute them several times over.
    """
    kind, pfn, dev, ino = pl.col("kind"), pl.col("pfn"), pl.col("dev"), pl.col("ino")
    row = pl.int_range(pl.len(), dtype=pl.Int64)
    first, is_ca, prev = pl.col("_g_first"), pl.col("_g_ca"), pl.col("_g_prev")
    lf = lf.with_columns(
        (pfn.ne_missing(pfn.shift(1)) | (row == 0)).alias("_g_first"),
        (kind == "cache_add").alias("_g_ca"),
    )
    # the pfn's latest cache_add before this row (-1: none), without a group-by
    lf = lf.with_columns(
        pl.when(is_ca).then(row).when(first).then(-1).forward_fill().shift(1).alias("_g_prev")
    )
    at = prev.clip(lower_bound=0)
    lf = lf.with_columns(ino.gather(at).alias("_g_ino"), dev.gather(at).alias("_g_dev"))
    ca_ino, ca_dev = pl.col("_g_ino"), pl.col("_g_dev")
    differs = ca_ino.ne_missing(ino) | (ca_dev.is_not_null() & dev.is_not_null() & (ca_dev != dev))
    had_ca = prev >= 0
    boundary = ~first & ((kind == "alloc") | (kind.shift(1) == "free") | (is_ca & had_ca & differs))
    b = pl.col("_g_b")
    lf = lf.with_columns(boundary.fill_null(False).cast(pl.Int32).alias("_g_b"))
    lf = lf.with_columns(b.cum_sum().alias("_g_cs"))
    cs = pl.col("_g_cs")
    gen = cs - pl.when(first).then(cs - b).forward_fill()
    return lf.with_columns(gen.alias(name)).drop(
        "_g_first", "_g_ca", "_g_prev", "_g_ino", "_g_dev", "_g_b", "_g_cs"
    )


def page_id(
    pfn: pl.Expr, generation: pl.Expr, dev: pl.Expr, ino: pl.Expr, index: pl.Expr
) -> pl.Expr:
    """`pfn:<pfn>/<generation>` or `file:<dev>:<ino>/<index>` (dev `-` when null)."""
    return (
        pl.when(pfn.is_not_null())
        .then(pl.format("pfn:{}/{}", pfn, generation))
        .otherwise(pl.format("file:{}:{}/{}", dev.cast(pl.String).fill_null("-"), ino, index))
    )
