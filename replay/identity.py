"""Page identity (docs/replay.md "Page identity"): replay order, the columns the compiled
identity pass reads (replay/kernel.py `identity_pass` resolves heads, file-only events,
generations and page slots), and the page_id format.
"""

from __future__ import annotations

import polars as pl

# Columns the identity pass reads: narrow, so a whole trace's fit in memory.
IDENTITY_COLUMNS: tuple[str, ...] = (
    "line",
    "ts_ns",
    "kind",
    "pfn",
    "folio_order",
    "dev",
    "ino",
    "index",
    "refs",  # releases before a page's first raise: its inferred initial count
)


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


def page_id(
    pfn: pl.Expr, generation: pl.Expr, dev: pl.Expr, ino: pl.Expr, index: pl.Expr
) -> pl.Expr:
    """`pfn:<pfn>/<generation>` or `file:<dev>:<ino>/<index>` (dev `-` when null)."""
    return (
        pl.when(pfn.is_not_null())
        .then(pl.format("pfn:{}/{}", pfn, generation))
        .otherwise(pl.format("file:{}:{}/{}", dev.cast(pl.String).fill_null("-"), ino, index))
    )
