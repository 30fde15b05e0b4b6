"""Page identity (docs/replay.md "Page identity"): replay order, and a trace's events resolved
to pages. Keys become dense ids (compiled hash passes), then replay/kernel.py `resolve_pass`
resolves folio heads and file-only events, cuts generations and gives each event a page slot,
and `infer_pass` collects what initial-state inference needs; `identify` returns that with the
page table (page_id formatted once per page).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl

from ingest.schema import EVENTS_SCHEMA
from replay import kernel as K

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


@dataclass
class Pages:
    """A trace's page identity: each event's page slot (-1: pageless) and, per slot, what the
    state pass needs (kernel PG_* columns) and the page table (page_id, pfn, generation)."""

    slot: np.ndarray
    pg_i: np.ndarray
    pg_u: np.ndarray
    table: pl.DataFrame


def identify(narrow: pl.DataFrame | pl.LazyFrame) -> Pages:
    """Resolve a trace's events (IDENTITY_COLUMNS, in replay order) to pages.

    A LazyFrame is read one column at a time; a DataFrame's columns are consumed in turn, so the
    caller may drop it as soon as this returns.
    """

    def col(name: str) -> pl.Series:
        if isinstance(narrow, pl.LazyFrame):
            return narrow.select(name).collect().to_series()
        return narrow.get_column(name)

    kind = kind_codes(col("kind"))
    order = col("folio_order").fill_null(0).cast(pl.Int8).to_numpy()
    ids = _dense_ids(col, kind, order)
    dev, dev_v = as_arrays(col("dev"), pl.Int64)
    slot, pg = K.resolve_pass(
        kind, order, ids.pid, ids.hid, ids.orders, ids.fid, ids.qid, dev, dev_v, ids.ino,
        ids.ino_v,
    )  # fmt: skip
    del order, ids.pid, ids.hid, ids.fid, ids.qid
    init = K.infer_pass(kind, slot, abs_refs(col("refs")), pg)
    del kind
    n_pages = pg.shape[0]
    is_pfn = pg[:, K.PGR_PFN] >= 0
    first = pg[:, K.PGR_ROW]
    pfns = np.append(ids.pfns, np.uint64(0))  # file pages (id -1) read the last entry
    ppfn = np.where(is_pfn, pfns[pg[:, K.PGR_PFN]], 0).astype(np.uint64)
    pg_i = np.zeros((n_pages, K.N_PG_I), np.int64)
    pg_u = np.zeros((n_pages, K.N_PG_U), np.uint8)
    pg_i[:, K.PG_GEN] = pg[:, K.PGR_GEN]
    pg_i[:, K.PG_DEV] = np.where(is_pfn, 0, dev[first])
    pg_i[:, K.PG_INIT_PINS] = init[:, 0]
    pg_i[:, K.PG_INIT_GETS] = init[:, 1]
    pg_u[:, K.PG_IS_PFN] = is_pfn
    pg_u[:, K.PG_DEV_V] = ~is_pfn & dev_v[first]
    pg_u[:, K.PG_INIT_WB] = init[:, 2]
    pg_u[:, K.PG_INIT_CACHED] = init[:, 3]
    pg_u[:, K.PG_INFER] = pg[:, K.PGR_INFER]
    del dev, dev_v
    pino = np.where(is_pfn, 0, ids.ino[first]).astype(np.uint64)
    del ids
    pindex = np.where(is_pfn, 0, as_arrays(col("index"), pl.UInt64)[0][first]).astype(np.uint64)
    return Pages(slot, pg_i, pg_u, _page_table(pg_i, pg_u, ppfn, pino, pindex))


def _page_table(
    pg_i: np.ndarray, pg_u: np.ndarray, ppfn: np.ndarray, pino: np.ndarray, pindex: np.ndarray
) -> pl.DataFrame:
    """One row per page slot: page_id (formatted once per page), pfn, generation; then one
    all-null row, where pageless events point."""

    is_pfn = pl.Series(pg_u[:, K.PG_IS_PFN] == 1)
    dev_v = pl.Series(pg_u[:, K.PG_DEV_V] == 1)
    df = pl.DataFrame(
        {
            "_is_pfn": is_pfn,
            "_pfn": ppfn,
            "generation": pg_i[:, K.PG_GEN].astype(np.int32),
            "_dev": pg_i[:, K.PG_DEV],
            "_dev_v": dev_v,
            "_ino": pino,
            "_index": pindex,
        }
    )
    df = df.select(
        pl.when("_is_pfn").then(pl.col("_pfn")).alias("pfn"),
        pl.when("_is_pfn").then(pl.col("generation")).otherwise(0).alias("generation"),
        page_id(
            pl.when("_is_pfn").then(pl.col("_pfn")),
            pl.col("generation"),
            pl.when("_dev_v").then(pl.col("_dev")),
            pl.col("_ino"),
            pl.col("_index"),
        ).alias("page_id"),
    )
    # a last, all-null row for pageless events
    return pl.concat([df, df.clear(1)])


def as_arrays(s: pl.Series, dtype: pl.DataType) -> tuple[np.ndarray, np.ndarray]:
    """(values with nulls as 0, validity) as numpy arrays for the kernels."""
    return s.fill_null(0).cast(dtype).to_numpy(), s.is_not_null().to_numpy()


@dataclass
class _Ids:
    """Dense ids of an identity frame's keys (-1 where absent), for the resolve kernel."""

    pfns: np.ndarray  # traced pfn of each pfn id
    pid: np.ndarray  # traced pfn (none for fork)
    orders: np.ndarray  # folio orders > 0 that name an extent
    hid: np.ndarray  # [order, row]: the row's pfn aligned down to that order, if traced
    fid: np.ndarray  # (ino, index)
    qid: np.ndarray  # (dev, ino, index), dev null counting as a value
    ino: np.ndarray  # the resolve kernel compares inos of cache_adds
    ino_v: np.ndarray


def _dense_ids(col: Callable[[str], pl.Series], kind: np.ndarray, order: np.ndarray) -> _Ids:
    """Key → dense id, one compiled pass per kind of key: they leave the resolve kernel plain
    array rows to read, which it can prefetch ahead of the event that needs them. A key is
    looked up only on the rows that use it; the pfn passes and the file passes run at once."""
    pfn_s = col("pfn")
    pfn, pfn_v = as_arrays(pfn_s, pl.UInt64)
    pfn_v &= kind != K.K_FORK  # a fork names no page
    pfn_cap = _capacity(pfn_s.approx_n_unique())
    del pfn_s
    ino, ino_v = as_arrays(col("ino"), pl.UInt64)
    index, index_v = as_arrays(col("index"), pl.UInt64)
    dev = col("dev").cast(pl.Int64).fill_null(-1).to_numpy().view(np.uint64)
    zeros = np.zeros(len(pfn), np.uint64)
    both = ino_v & index_v
    # (ino, index): cache events record their page, pfn-less events look it up
    cache = (kind == K.K_CACHE_ADD) | (kind == K.K_CACHE_DEL)
    f_rows = both & (cache | ~pfn_v)
    q_rows = both & ~pfn_v  # (dev, ino, index): pages of file-only events left unresolved
    file_cap = _capacity(
        pl.DataFrame({"i": ino[f_rows], "x": index[f_rows]})
        .select(pl.struct("i", "x").hash().approx_n_unique())
        .item()
    )
    orders = np.unique(order[pfn_v & (order > 0)]).astype(np.int64)

    def pfn_ids() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pid, table, pfns = K.dense_ids(pfn, zeros, zeros, pfn_v, pfn_cap)
        hid = np.full((len(orders), len(pfn)), -1, np.int32)
        for i, o in enumerate(orders):
            hid[i] = K.lookup_ids(table, pfn, ~np.uint64((1 << int(o)) - 1), pfn_v)
        return pid, hid, pfns

    def file_ids() -> tuple[np.ndarray, np.ndarray]:
        fid = K.dense_ids(ino, index, zeros, f_rows, file_cap)[0]
        qid = K.dense_ids(dev, ino, index, q_rows, file_cap)[0]
        return fid, qid

    with ThreadPoolExecutor(max_workers=2) as pool:
        files = pool.submit(file_ids)
        pid, hid, pfns = pfn_ids()
        fid, qid = files.result()
    return _Ids(pfns, pid, orders, hid, fid, qid, ino, ino_v)


def _capacity(distinct: int | None) -> int:
    """Hash table rows for about `distinct` keys: a power of two, under half full (the
    estimate is approximate; the table grows if it is exceeded)."""
    cap = 1024
    while cap < 3 * (distinct or 0):
        cap *= 2
    return cap


def abs_refs(s: pl.Series) -> np.ndarray:
    """|refs|, a null counting 1 (docs/replay.md)."""
    return s.cast(pl.Int64).abs().fill_null(1).cast(pl.Int32).to_numpy()


def kind_codes(s: pl.Series) -> np.ndarray:
    return s.cast(EVENTS_SCHEMA["kind"]).to_physical().cast(pl.Int8).fill_null(-1).to_numpy()
