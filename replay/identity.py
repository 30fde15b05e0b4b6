"""Page identity (docs/replay.md "Page identity"): replay order, and a trace's events resolved
to pages. Keys become dense ids (compiled hash passes), then replay/kernel.py `resolve_pass`
resolves folio heads and file-only events, cuts generations and gives each event a page slot,
and `infer_pass` collects what initial-state inference needs, batch by batch (IdentityPass);
`pages()` returns that with the page table (each page's pfn and generation).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from ingest.schema import EVENTS_SCHEMA
from replay import kernel as K

# Columns the identity pass reads.
IDENTITY_COLUMNS: tuple[str, ...] = (
    "kind",
    "pfn",
    "folio_order",
    "dev",
    "ino",
    "index",
    "refs",  # releases before a page's first raise: its inferred initial count
)


# Rows the hash tables and per-page arrays start with (they double as needed): tests shrink it
# to reach every growth path.
_TABLE_ROWS = 1024
# pfns get a direct map (PfnIds) while the values they span are at most this many: 4 bytes a
# value, 128 MiB at most; a trace's pfns span the RAM it ran on (16M values, 64 MiB, for 64 GiB),
# where the hash table takes 64-128 bytes a pfn. Tests shrink it.
MAP_SPAN = 1 << 25


class PfnIds:
    """Dense ids of pfns, in order of first appearance, carried from batch to batch.

    A direct map from pfn to id while the pfns seen span at most MAP_SPAN values, and a hash
    table (as for the other keys) once they span more. pfns are the one key every page event
    has, and a trace's span the RAM it ran on, so the map is usually the case: on the 20M-event
    benchmark (833k pfns over 1.7M values) the pfn ids took 0.2 s instead of 0.7 s, and the
    identity pass, whose critical path they were, a fifth less wall time. The map grows (at
    least doubling, up to MAP_SPAN) when a batch's pfns fall outside it."""

    def __init__(self, max_span: int | None = None) -> None:
        self.max_span = MAP_SPAN if max_span is None else max_span
        self.span_map: np.ndarray | None = None  # id + 1 at [pfn - lo], 0: not seen
        self.lo = 0
        self.seen = (0, 0)  # smallest and largest pfn seen (with a map)
        self.table: np.ndarray | None = None  # the hash table, once the span outgrew the map
        self.first = np.zeros(max(_TABLE_ROWS // 2, 1), np.uint64)  # each id's pfn
        self.given = 0

    def ids(self, pfn: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Each valid row's id (new pfns get the next ones), -1 elsewhere."""
        if self.table is None:
            lo, hi, n = K.valid_bounds(pfn, valid)
            if n:
                self._cover(int(lo), int(hi))
        if self.table is not None:
            zeros = np.zeros(len(pfn), np.uint64)
            ids, self.table, self.first, self.given = K.dense_ids(
                pfn, zeros, zeros, valid, self.table, self.first, self.given
            )
        elif self.span_map is not None:
            ids, self.first, self.given = K.map_ids(
                pfn, valid, np.uint64(self.lo), self.span_map, self.first, self.given
            )
        else:  # no pfn yet
            ids = np.full(len(pfn), -1, np.int32)
        return ids

    def lookup(self, pfn: np.ndarray, keep: np.uint64, valid: np.ndarray) -> np.ndarray:
        """The id of each valid row's pfn with only the bits `keep` (a folio head), or -1."""
        if self.table is not None:
            return K.lookup_ids(self.table, pfn, keep, valid)
        if self.span_map is not None:
            return K.map_lookup_ids(self.span_map, np.uint64(self.lo), pfn, keep, valid)
        return np.full(len(pfn), -1, np.int32)

    def pfns(self) -> np.ndarray:
        """Each id's pfn."""
        return self.first[: self.given]

    def _cover(self, lo: int, hi: int) -> None:
        """A map over every pfn seen and [lo, hi], or the hash table once those span too many
        values (headroom a map was given does not count)."""
        if self.span_map is None:
            seen_lo, seen_hi = lo, hi
        else:
            seen_lo, seen_hi = min(lo, self.seen[0]), max(hi, self.seen[1])
        old, old_seen = self.span_map, self.seen
        self.seen = (seen_lo, seen_hi)
        if old is not None and seen_lo >= self.lo and seen_hi < self.lo + len(old):
            return
        span = seen_hi - seen_lo + 1
        if span > self.max_span:
            self.table = (
                K.new_table(_TABLE_ROWS)[0]
                if old is None
                else K.table_of_map(old, np.uint64(self.lo), self.given)
            )
            self.span_map = None
            return
        size = span if old is None else min(self.max_span, max(span, 2 * len(old)))
        # the headroom goes the way the span grew
        new_lo = max(0, seen_hi + 1 - size) if old is not None and lo < self.lo else seen_lo
        grown = np.zeros(size, np.int32)
        if old is not None:  # every id lies within the pfns seen before
            a, b = old_seen[0] - self.lo, old_seen[1] - self.lo + 1
            grown[old_seen[0] - new_lo : old_seen[1] - new_lo + 1] = old[a:b]
        self.span_map, self.lo = grown, new_lo


@dataclass
class Pages:
    """A trace's page identity: each event's page slot (-1: pageless) and, per slot, what the
    state pass needs (kernel PG_* columns) and the page table (pfn, generation)."""

    slot: np.ndarray
    pg_i: np.ndarray
    pg_u: np.ndarray
    table: pl.DataFrame


def identify(
    narrow: pl.DataFrame, batch_rows: int | None = None, lookup: np.ndarray | None = None
) -> Pages:
    """Resolve a trace's events (IDENTITY_COLUMNS, in replay order) to pages, batch_rows at a
    time (default: at once); `lookup` as KeyColumns.lookup, for all these events."""
    ident = IdentityPass(narrow.height)
    rows = batch_rows or max(narrow.height, 1)
    for i, batch in enumerate(narrow.iter_slices(rows)):
        ident.feed(batch, None if lookup is None else lookup[i * rows : i * rows + batch.height])
    return ident.pages()


@dataclass
class KeyColumns:
    """A batch's identity columns as arrays (values and validity), for `IdentityPass.keys`."""

    kind: np.ndarray
    order: np.ndarray
    pfn: np.ndarray
    pfn_v: np.ndarray
    ino: np.ndarray
    ino_v: np.ndarray
    index: np.ndarray
    index_v: np.ndarray
    dev: np.ndarray
    dev_v: np.ndarray
    refs: np.ndarray
    # rows that may resolve by file key (None: all); a bucket's pass of a trace in page buckets
    # must not look up the file-only events that the whole trace's pass leaves unresolved
    lookup: np.ndarray | None = None


@dataclass
class BatchKeys:
    """A batch between the two halves of IdentityPass.feed: its columns and dense key ids."""

    kind: np.ndarray
    order: np.ndarray
    pid: np.ndarray
    hid: np.ndarray  # per folio order in `orders`: the id of the row's folio head, or -1
    orders: np.ndarray  # folio orders > 0 seen up to this batch
    fid: np.ndarray
    qid: np.ndarray
    dev: np.ndarray
    dev_v: np.ndarray
    ino: np.ndarray
    ino_v: np.ndarray
    index: np.ndarray
    refs: np.ndarray
    ids_given: tuple[int, int, int]  # pfn, file and (dev, ino, index) ids after this batch


class IdentityPass:
    """Page identity over a trace's events fed in replay order, a batch at a time.

    What crosses batches is keyed by page or by key (hash tables, per-id and per-page rows),
    plus a 4-byte page slot per event: a trace of any length is resolved in memory bounded by
    its pages and one batch.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.row = 0  # events resolved
        self.keyed = 0  # events whose keys were taken (ahead of `row` when pipelined)
        self.slot = np.full(n, -1, np.int32)
        self.pfn_ids = PfnIds()
        self.file_table = K.new_table(_TABLE_ROWS)
        self.q_table = K.new_table(_TABLE_ROWS)
        self.orders = np.zeros(0, np.int64)  # folio orders > 0 seen so far
        self.resolve = K.new_resolve_state(_TABLE_ROWS)
        self.n_pages = 0
        self.acc = np.zeros((_TABLE_ROWS, K.N_ACC), np.int64)

    def feed(self, narrow: pl.DataFrame, lookup: np.ndarray | None = None) -> None:
        """The next events (IDENTITY_COLUMNS) in replay order."""
        self.resolve_keys(self.keys(columns(narrow, lookup)))

    def keys(self, c: KeyColumns) -> BatchKeys:
        """The first half of `feed`: a batch's keys as dense ids.

        It touches only the key tables, `resolve_keys` only the per-id and per-page rows, so
        a driver may take the next batch's keys on another thread while this batch resolves;
        batches must still go through each half in replay order."""
        m = c.kind.shape[0]
        if self.keyed + m > self.n:
            raise ValueError("more events than the trace was said to hold")
        self.orders = np.union1d(self.orders, c.order[c.pfn_v & (c.order > 0)]).astype(np.int64)
        pid, hid, fid, qid = self._dense_ids(
            c.pfn, c.pfn_v, c.ino, c.index, c.ino_v & c.index_v, c.dev, c.dev_v, c.kind,
            c.lookup,
        )  # fmt: skip
        self.keyed += m
        return BatchKeys(
            c.kind, c.order, pid, hid, self.orders, fid, qid, c.dev, c.dev_v, c.ino, c.ino_v,
            c.index, c.refs, (self.pfn_ids.given, self.file_table[2], self.q_table[2]),
        )  # fmt: skip

    def resolve_keys(self, b: BatchKeys) -> None:
        """The second half of `feed`: the batch's events resolved to pages and page slots."""
        m = b.kind.shape[0]
        self.resolve = K.grow_resolve_state(self.resolve, *b.ids_given)
        ext, cache, life, qpage, pg = self.resolve
        slot = self.slot[self.row : self.row + m]
        pg, self.n_pages = K.resolve_pass(
            self.row, b.kind, b.order, b.pid, b.hid, b.orders, b.fid, b.qid, b.dev, b.dev_v,
            b.ino, b.ino_v, b.index, slot, ext, cache, life, qpage, pg, self.n_pages,
        )  # fmt: skip
        self.resolve = (ext, cache, life, qpage, pg)
        if self.n_pages > self.acc.shape[0]:
            grown = np.zeros((max(self.n_pages, 2 * self.acc.shape[0]), K.N_ACC), np.int64)
            grown[: self.acc.shape[0]] = self.acc
            self.acc = grown
        K.infer_pass(b.kind, slot, b.refs, pg, self.acc)
        self.row += m

    def _dense_ids(
        self,
        pfn: np.ndarray,
        pfn_v: np.ndarray,
        ino: np.ndarray,
        index: np.ndarray,
        file_v: np.ndarray,
        dev: np.ndarray,
        dev_v: np.ndarray,
        kind: np.ndarray,
        lookup: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Key → dense id, one compiled pass per kind of key: they leave the resolve kernel
        plain array rows to read, which it can prefetch ahead of the event that needs them.
        A key is looked up only on the rows that use it; the pfn passes and the file passes
        run at once (the kernels release the GIL)."""
        zeros = np.zeros(len(pfn), np.uint64)
        # (ino, index): cache events record their page, pfn-less events look it up
        cache = (kind == K.K_CACHE_ADD) | (kind == K.K_CACHE_DEL)
        f_rows = file_v & (cache | ~pfn_v)
        if lookup is not None:
            f_rows &= lookup
        q_rows = file_v & ~pfn_v  # (dev, ino, index): pages of file-only events unresolved
        qdev = np.where(dev_v, dev, -1).view(np.uint64)  # a null dev counts as a value

        def pfn_ids() -> tuple[np.ndarray, np.ndarray]:
            pid = self.pfn_ids.ids(pfn, pfn_v)
            hid = np.full((len(self.orders), len(pfn)), -1, np.int32)
            for i, o in enumerate(self.orders):
                hid[i] = self.pfn_ids.lookup(pfn, ~np.uint64((1 << int(o)) - 1), pfn_v)
            return pid, hid

        def file_ids() -> tuple[np.ndarray, np.ndarray]:
            fid, *self.file_table = K.dense_ids(ino, index, zeros, f_rows, *self.file_table)
            qid, *self.q_table = K.dense_ids(qdev, ino, index, q_rows, *self.q_table)
            return fid, qid

        with ThreadPoolExecutor(max_workers=1) as pool:
            files = pool.submit(file_ids)
            pid, hid = pfn_ids()
            fid, qid = files.result()
        return pid, hid, fid, qid

    def pages(self) -> Pages:
        """The trace's pages, once every event has been fed; this ends the pass."""
        if self.row != self.n:
            raise ValueError(f"identity saw {self.row} of {self.n} events")
        n_pages = self.n_pages
        pg_i, pg_u, ppfn = K.page_rows(
            self.resolve[4][:n_pages], self.acc[:n_pages], self.pfn_ids.pfns()
        )
        # the pass is over: its key tables and per-id and per-page rows (~200 bytes a page)
        # go now, not when the driver drops the pass, before the state pass allocates its own
        del self.acc, self.resolve, self.pfn_ids, self.file_table, self.q_table
        return Pages(self.slot, pg_i, pg_u, _page_table(pg_i, pg_u, ppfn))


def _page_table(pg_i: np.ndarray, pg_u: np.ndarray, ppfn: np.ndarray) -> pl.DataFrame:
    """One row per page slot: pfn (null for file pages) and generation; then one all-null
    row, where pageless events point."""
    df = pl.DataFrame(
        {
            "_is_pfn": pl.Series(pg_u[:, K.PG_IS_PFN] == 1),
            "_pfn": ppfn,
            "generation": pg_i[:, K.PG_GEN].astype(np.int32),
        }
    )
    df = df.select(
        pl.when("_is_pfn").then(pl.col("_pfn")).alias("pfn"),
        pl.when("_is_pfn").then(pl.col("generation")).otherwise(0).alias("generation"),
    )
    # a last, all-null row for pageless events
    return pl.concat([df, df.clear(1)])


def columns(narrow: pl.DataFrame, lookup: np.ndarray | None = None) -> KeyColumns:
    """A batch's IDENTITY_COLUMNS as the arrays `IdentityPass.keys` reads (`lookup` as
    KeyColumns.lookup)."""
    kind = kind_codes(narrow.get_column("kind"))
    pfn, pfn_v = as_arrays(narrow.get_column("pfn"), pl.UInt64)
    pfn_v &= kind != K.K_FORK  # a fork names no page
    return KeyColumns(
        kind,
        as_arrays(narrow.get_column("folio_order"), pl.Int8)[0],
        pfn,
        pfn_v,
        *as_arrays(narrow.get_column("ino"), pl.UInt64),
        *as_arrays(narrow.get_column("index"), pl.UInt64),
        *as_arrays(narrow.get_column("dev"), pl.Int64),
        abs_refs(narrow.get_column("refs")),
        lookup,
    )


def warm_up() -> None:
    """Numba sets itself up on a process's first compiled call (~0.14 s, once per process,
    with the kernels loaded from its cache): a driver makes that call on a thread while it
    reads its first events, so that the identity pass does not wait for it."""
    with contextlib.suppress(Exception):  # the real first call reports any error
        as_arrays(pl.Series([0, None], dtype=pl.UInt64), pl.UInt64)


def as_arrays(s: pl.Series, dtype: pl.DataType) -> tuple[np.ndarray, np.ndarray]:
    """(values with nulls as 0, validity) as numpy arrays for the kernels."""
    return _unpacked(s, _NUMPY[dtype], 0)


def abs_refs(s: pl.Series) -> np.ndarray:
    """|refs|, a null counting 1 (docs/replay.md); |-2^31| saturates at 2^31 - 1."""
    return K.abs_clipped(_unpacked(s, np.int64, 1)[0])


def kind_codes(s: pl.Series) -> np.ndarray:
    """The kind enum's codes as int8, -1 for null."""
    return _unpacked(s.cast(EVENTS_SCHEMA["kind"]), np.int8, -1)[0]


_NUMPY = {pl.Int8: np.int8, pl.Int64: np.int64, pl.UInt64: np.uint64}


def _unpacked(s: pl.Series, dtype: type, fill: int) -> tuple[np.ndarray, np.ndarray]:
    """(values as dtype with `fill` where null, validity), straight from the Arrow buffers:
    polars' fill_null, cast, to_numpy and is_not_null each made a fresh array, a fifth of
    the state pass's own time. Enums give their codes. Chunk by chunk into the one output:
    the identity pass's batches come in a chunk per Parquet part read, and joining them
    first copied every value once more."""
    out = np.empty(len(s), dtype)
    valid = np.empty(len(s), np.bool_)
    at = 0
    for chunk in s.get_chunks():
        n = len(chunk)
        _unpack_into(chunk.to_arrow(), fill, out[at : at + n], valid[at : at + n])
        at += n
    return out, valid


def _unpack_into(a: pa.Array, fill: int, out: np.ndarray, valid: np.ndarray) -> None:
    if isinstance(a, pa.DictionaryArray):
        a = a.indices
    bits, data = a.buffers()[:2]
    n = len(a)
    values = np.frombuffer(data, a.type.to_pandas_dtype(), count=a.offset + n)[a.offset :]
    if bits is None or a.null_count == 0:
        out[:] = values
        valid[:] = True
    else:
        packed = np.frombuffer(bits, np.uint8)
        bools = np.unpackbits(packed, count=a.offset + n, bitorder="little").view(np.bool_)
        valid[:] = bools[a.offset :]
        K.fill_nulls(values, valid, fill, out)
