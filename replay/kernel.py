"""The compiled per-event state machine: docs/replay.md, walked over events in replay order.

numba-compiled loops over plain arrays (no Python runs per event):

- `dense_ids` / `lookup_ids`: keys (pfn, folio head, (ino, index), (dev, ino, index)) to dense
  ids through open-addressing hash tables, prefetched a few rows ahead; `map_ids` /
  `map_lookup_ids` the same for pfns through a direct map while their span is small enough;
- `resolve_pass` (narrow columns, batch by batch): head and file-only resolution, generations
  and a page slot per event, with state in arrays indexed by those ids, so nothing is sorted;
- `infer_pass` (batch by batch): per page, what initial-state inference needs before its first
  event is replayed (the releases before its first raise, its first writeback and cache
  events);
- `route_pass` (batch by batch, for a trace replayed in page buckets): the bucket whose
  identity pass resolves each file-only event as the whole trace's would (replay/partition.py);

Each pass carries its state from one batch to the next in arrays the caller keeps (hash
tables, per-id and per-page rows), so a trace of any length is walked in bounded memory.
- `state_pass` (batch by batch): per-page counters and flags in one 128-byte row per page slot,
  so memory is O(pages), not O(events). It writes each event's state before and after, closes
  spans as they fall (their start kept in a pool of open spans) and lists the rows that raise a
  pin span, for its holders.

The reference oracle (replay/reference.py) executes the same spec in plain Python; the property
tests hold the two to identical tables.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ingest.schema import KINDS

_K = {k: i for i, k in enumerate(KINDS)}
K_PIN, K_UNPIN, K_GET, K_PUT, K_REF = _K["pin"], _K["unpin"], _K["get"], _K["put"], _K["ref"]
K_DIRTY, K_MKCLEAN, K_WB_START, K_WB_END = _K["dirty"], _K["mkclean"], _K["wb_start"], _K["wb_end"]
K_CACHE_ADD, K_CACHE_DEL, K_TRUNCATE = _K["cache_add"], _K["cache_del"], _K["truncate"]
K_FREE_BUFFERS, K_MKWRITE, K_ALLOC, K_FREE = (
    _K["free_buffers"],
    _K["mkwrite"],
    _K["alloc"],
    _K["free"],
)
K_FORK = _K["fork"]

# resolve_pass page rows (PGR_*) and the page table the state pass reads (PG_*).
PGR_PFN, PGR_GEN, PGR_INFER = range(3)
N_PGR = 3
PG_GEN, PG_INIT_PINS, PG_INIT_GETS = range(3)
N_PG_I = 3
PG_IS_PFN, PG_INIT_WB, PG_INIT_CACHED, PG_INFER = range(4)
N_PG_U = 4
# Per-page state (state_pass `st`): one 128-byte row per page, carried from one batch to the
# next, so that an event touches two cache lines of its page, not one per array.
S_PINS, S_GETS, S_WR, S_LT, S_REFC, S_IDEV, S_IINO, S_IINDEX, S_FLAGS = range(9)
S_OPEN = 9  # S_OPEN + s: 1 + pool row of the page's open span of state s; 0: none
N_ST = 16
# S_FLAGS bits
B_STARTED, B_PKNOWN, B_GKNOWN, B_REFC_V, B_DIRTY, B_WB, B_CACHED = 1, 2, 4, 8, 16, 32, 64
B_BUF_SHIFT = 7  # two bits: 0 unknown, 1 no, 2 yes
B_IDENT, B_IDEV_V, B_IINDEX_V, B_IS_PFN, B_INFERRED = 512, 1024, 2048, 4096, 8192
B_SPAN_IDENT = 1 << 14  # << s: the open span of state s has its file identity
# Open spans (pool rows) and emitted spans (out columns: one row per field, so that each
# field is a contiguous array for the intervals table).
SP_ID, SP_START_ROW, SP_START_TS, SP_START_LINE, SP_DEV, SP_INO, SP_INDEX, SP_PAGE = range(8)
SP_IDENT, SP_DEV_V, SP_INDEX_V, SP_OPEN_START = range(4)
N_SP_I64, N_SP_U8 = 8, 4
# Emitted span columns beyond the pool's: end row/ts/line and state.
OUT_END_ROW, OUT_END_TS, OUT_END_LINE, OUT_STATE = 8, 9, 10, 11
N_OUT_I64 = 12
# Per-event outputs (`ev_i` int32 rows: before/after of the five counters, in page_events order).
E_PINS_B, E_PINS_A, E_WR_B, E_WR_A, E_LT_B, E_LT_A, E_GETS_B, E_GETS_A = range(8)
E_REFC_B, E_REFC_A = 8, 9
N_EV_I32 = 10
# `ev_u8` columns.
(
    F_REFC_B_V, F_REFC_A_V, F_DIRTY_B, F_DIRTY_A, F_WB_B, F_WB_A, F_CACHED_B, F_CACHED_A,
    F_BUF_B, F_BUF_A, F_INFERRED, F_MISMATCH, F_DEV_V, F_INO_V, F_INDEX_V,
) = range(15)  # fmt: skip
N_EV_U8 = 15
N_STATES = 6  # pinned, writable_pinned, longterm_pinned, writeback, dirty, cached


@njit(cache=True, nogil=True, inline="always")
def _hash(a: np.uint64, b: np.uint64, c: np.uint64) -> np.uint64:
    # splitmix64's finalizer over a combination of the three words
    h = a ^ (b * np.uint64(0x9E3779B97F4A7C15)) ^ (c * np.uint64(0xC2B2AE3D27D4EB4F))
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


@njit(cache=True, nogil=True)
def _find(t, a, b, c):
    """Row of key (a, b, c) in table t (rows: a, b, c, id + 1; 0 = empty): where it is, or
    the empty row where it goes."""
    mask = np.uint64(t.shape[0] - 1)
    i = _hash(a, b, c) & mask
    while True:
        j = np.int64(i)
        if t[j, 3] == 0 or (t[j, 0] == a and t[j, 1] == b and t[j, 2] == c):
            return j
        i = (i + np.uint64(1)) & mask


@njit(cache=True, nogil=True)
def _id(t, j):
    """The id stored at row j, or -1 for an empty row."""
    return np.int64(t[j, 3]) - 1


@njit(cache=True, nogil=True)
def _put(t, j, a, b, c, v):
    t[j, 0], t[j, 1], t[j, 2], t[j, 3] = a, b, c, np.uint64(v + 1)


@njit(cache=True, nogil=True)
def _grow_table(t):
    new = np.zeros((t.shape[0] * 2, 4), np.uint64)
    for j in range(t.shape[0]):
        if t[j, 3] != 0:
            p = _find(new, t[j, 0], t[j, 1], t[j, 2])
            new[p, 0], new[p, 1], new[p, 2], new[p, 3] = t[j, 0], t[j, 1], t[j, 2], t[j, 3]
    return new


@njit(cache=True, nogil=True)
def _grow_rows(a, n):
    """`a` with room for at least n rows (doubling), rows beyond its old size zeroed."""
    if n <= a.shape[0]:
        return a
    size = max(a.shape[0] * 2, n, 16)
    out = np.zeros((size, a.shape[1]), a.dtype)
    out[: a.shape[0]] = a
    return out


@njit(cache=True, nogil=True)
def _lookup(t, a, b, c):
    """Id of key (a, b, c), or -1."""
    return _id(t, _find(t, a, b, c))


@intrinsic
def prefetch_row(typingctx, arr, row):
    """Ask the CPU to bring arr[row] into cache: rows the loop reaches a few events later.

    The per-page arrays are far larger than the caches and an event's page is unknown until
    its row is read, so without this every event waits on memory in turn.
    """
    sig = types.void(arr, row)

    def codegen(context, builder, signature, args):
        ary, r = args
        aryty = signature.args[0]
        r = context.cast(builder, r, signature.args[1], types.intp)
        a = context.make_array(aryty)(context, builder, ary)
        zero = context.get_constant(types.intp, 0)
        idx = [r] + [zero] * (aryty.ndim - 1)
        ptr = cgutils.get_item_pointer(context, builder, aryty, a, idx, wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # read, high locality, data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


AHEAD = 12  # events ahead to prefetch


def new_table(cap: int = 1024) -> tuple[np.ndarray, np.ndarray, int]:
    """An empty key table for `dense_ids`: (table, first key word per id, ids given)."""
    return np.zeros((cap, 4), np.uint64), np.zeros(cap // 2, np.uint64), 0


@njit(cache=True, nogil=True)
def dense_ids(a, b, c, valid, t, first, m):
    """Dense id (0, 1, … in order of first appearance) of each row's key (a, b, c); -1 where
    not valid. (t, first, m) come from `new_table` or the previous batch's call: ids carry
    over. The table doubles when half full; the rows a few ahead are prefetched. Returns
    (ids, table, the first key word of each id, ids given)."""
    n = a.shape[0]
    ids = np.full(n, -1, np.int32)
    r = 0
    while True:
        r, m = _dense_run(a, b, c, valid, t, first, m, ids, r)
        if r >= n:
            return ids, t, first, m
        if 2 * m >= t.shape[0]:
            t = _grow_table(t)
        if m >= first.shape[0]:
            first = np.concatenate((first, np.zeros(first.shape[0], np.uint64)))


@njit(cache=True, nogil=True)
def _dense_run(a, b, c, valid, t, first, m, ids, r):
    """dense_ids from row r until done or until a new key needs the table or `first` grown:
    returns (next row, ids given). Growing happens in the caller so that no array here is
    reassigned inside the loop, which made numba count references on every row (2x slower)."""
    n = a.shape[0]
    mask = np.uint64(t.shape[0] - 1)
    limit = t.shape[0] // 2
    while r < n:
        if r + AHEAD < n and valid[r + AHEAD]:
            prefetch_row(t, np.int64(_hash(a[r + AHEAD], b[r + AHEAD], c[r + AHEAD]) & mask))
        if valid[r]:
            j = _find(t, a[r], b[r], c[r])
            v = _id(t, j)
            if v < 0:
                if m >= limit or m >= first.shape[0]:
                    return r, m
                v = m
                _put(t, j, a[r], b[r], c[r], v)
                first[m] = a[r]
                m += 1
            ids[r] = v
        r += 1
    return r, m


@njit(cache=True, nogil=True)
def lookup_ids(t, a, keep, valid):
    """Id in table t (from dense_ids over one key column) of each valid row's key with only
    the bits `keep` (a folio head: the pfn aligned down), or -1."""
    n = a.shape[0]
    ids = np.full(n, -1, np.int32)
    zero = np.uint64(0)
    mask = np.uint64(t.shape[0] - 1)
    for r in range(n):
        if r + AHEAD < n and valid[r + AHEAD]:
            prefetch_row(t, np.int64(_hash(a[r + AHEAD] & keep, zero, zero) & mask))
        if valid[r]:
            ids[r] = _lookup(t, a[r] & keep, zero, zero)
    return ids


@njit(cache=True, nogil=True)
def valid_bounds(a, valid):
    """(smallest, largest, how many) of the valid rows' values; (0, 0, 0) if none."""
    lo, hi, n = np.uint64(0), np.uint64(0), 0
    for r in range(a.shape[0]):
        if valid[r]:
            if n == 0 or a[r] < lo:
                lo = a[r]
            if n == 0 or a[r] > hi:
                hi = a[r]
            n += 1
    return lo, hi, n


@njit(cache=True, nogil=True)
def map_ids(a, valid, lo, span_map, first, m):
    """`dense_ids` of one integer key column whose valid values all lie in
    [lo, lo + len(span_map)): id + 1 kept at span_map[key - lo] (0: not seen), one array read
    per row where a hash table takes a probe into a table 16x as large. Same ids, same `first`.
    Returns (ids, first, ids given)."""
    n = a.shape[0]
    ids = np.full(n, -1, np.int32)
    r = 0
    while True:
        r, m = _map_run(a, valid, lo, span_map, first, m, ids, r)
        if r >= n:
            return ids, first, m
        first = np.concatenate((first, np.zeros(first.shape[0], np.uint64)))


@njit(cache=True, nogil=True)
def _map_run(a, valid, lo, span_map, first, m, ids, r):
    """map_ids from row r until done or until `first` is full (grown by the caller, as in
    `_dense_run`): returns (next row, ids given)."""
    n = a.shape[0]
    while r < n:
        if r + AHEAD < n and valid[r + AHEAD]:
            prefetch_row(span_map, np.int64(a[r + AHEAD] - lo))
        if valid[r]:
            k = np.int64(a[r] - lo)
            v = np.int64(span_map[k]) - 1
            if v < 0:
                if m >= first.shape[0]:
                    return r, m
                v = m
                span_map[k] = m + 1
                first[m] = a[r]
                m += 1
            ids[r] = v
        r += 1
    return r, m


@njit(cache=True, nogil=True)
def map_lookup_ids(span_map, lo, a, keep, valid):
    """`lookup_ids` against a span map (`map_ids`): the id of each valid row's value with only
    the bits `keep`, or -1 (also where it falls outside the map)."""
    n = a.shape[0]
    ids = np.full(n, -1, np.int32)
    size = np.uint64(span_map.shape[0])
    for r in range(n):
        if valid[r]:
            k = a[r] & keep
            if k >= lo and k - lo < size:
                ids[r] = span_map[np.int64(k - lo)] - 1
    return ids


@njit(cache=True, nogil=True)
def table_of_map(span_map, lo, m):
    """The hash table (`dense_ids`'s) holding a span map's m ids, for the keys still to come
    once their span outgrows a map."""
    cap = 1024
    while 2 * m >= cap:
        cap *= 2
    t = np.zeros((cap, 4), np.uint64)
    zero = np.uint64(0)
    for k in range(span_map.shape[0]):
        if span_map[k] != 0:
            key = lo + np.uint64(k)
            _put(t, _find(t, key, zero, zero), key, zero, zero, np.int64(span_map[k]) - 1)
    return t


def new_resolve_state(pg_rows: int = 1024) -> tuple[np.ndarray, ...]:
    """resolve_pass's state before a trace's first batch: (ext, cache, life, qpage, pg), each
    grown with `grow_resolve_state` as ids are given."""
    return (
        np.zeros((0, 2), np.int64),  # per pfn id: (order, seq) of an extent on it; 0 freed
        np.full((0, 4), -1, np.int64),  # per (ino, index) id: (1 add / 2 del, pfn id, dev, dev?)
        # per pfn id: (gen, last kind, had cache_add, ino, ino?, dev, dev?, page -1: none yet)
        np.zeros((0, 8), np.int64),
        np.full(0, -1, np.int64),  # per (dev, ino, index) id: its page
        np.zeros((pg_rows, N_PGR), np.int64),
    )


def _grow(a: np.ndarray, rows: int, fill: np.ndarray | int) -> np.ndarray:
    if rows <= a.shape[0]:
        return a
    out = np.empty((max(rows, 2 * a.shape[0]), *a.shape[1:]), a.dtype)
    out[: a.shape[0]] = a
    out[a.shape[0] :] = fill
    return out


def grow_resolve_state(
    state: tuple[np.ndarray, ...], n_pfn: int, n_fid: int, n_qid: int
) -> tuple[np.ndarray, ...]:
    """Room in resolve_pass's state for this many pfn, (ino, index) and (dev, ino, index) ids;
    new rows hold the state of an id not seen yet."""
    ext, cache, life, qpage, pg = state
    fresh_life = np.zeros(8, np.int64)
    fresh_life[7] = -1
    return (
        _grow(ext, n_pfn, 0),
        _grow(cache, n_fid, np.array([0, -1, 0, 0], np.int64)),
        _grow(life, n_pfn, fresh_life),
        _grow(qpage, n_qid, -1),
        pg,
    )


@njit(cache=True, nogil=True)
def resolve_pass(
    row0, kind, order, pid, hid, ext_orders, fid, qid, dev, dev_v, ino, ino_v, index, slot, ext,
    cache, life, qpage, pg, n_pages,
):  # fmt: skip
    """Resolve a batch of events (rows in replay order, the first being seq row0) to page
    slots (written to `slot`, -1 for pageless); describe each new page.

    Keys come as dense ids computed beforehand (pid: traced pfn, hid[o]: the aligned head of
    each folio order o when that head is a traced pfn, fid: (ino, index), qid: (dev, ino,
    index); -1 where absent), so state is plain arrays indexed by id (ext, cache, life, qpage:
    sized for every id by grow_resolve_state), prefetched ahead. Clause by clause as
    docs/replay.md "Page identity" and reference._resolve / _pages. Returns (page rows: PGR_*
    columns, grown as needed; pages so far).
    """
    n = kind.shape[0]
    for r in range(n):
        if r + AHEAD < n:
            a = pid[r + AHEAD]
            if a >= 0:
                prefetch_row(life, a)
                prefetch_row(ext, a)
            for oi in range(ext_orders.shape[0]):
                h = hid[oi, r + AHEAD]
                if h >= 0:
                    prefetch_row(ext, h)
            f = fid[r + AHEAD]
            if f >= 0:
                prefetch_row(cache, f)
        k = kind[r]
        traced = pid[r] >= 0 and k != K_FORK
        rp = pid[r] if traced else np.int64(-1)
        o = order[r]
        # 1. head pfn: the most recent extent of a matching order on an aligned head
        if traced and o == 0:
            best_seq = np.int64(-1)
            for oi in range(ext_orders.shape[0]):
                h = hid[oi, r]
                if h >= 0 and h != pid[r] and ext[h, 0] == ext_orders[oi] and ext[h, 1] > best_seq:
                    best_seq = ext[h, 1]
                    rp = h
        # 2. file-only events: the latest cache event of (ino, index) before this one
        f = fid[r]
        if rp < 0 and k != K_FORK and f >= 0 and cache[f, 0] == 1 and cache[f, 1] >= 0:
            clash = dev_v[r] and cache[f, 3] == 1 and dev[r] != cache[f, 2]
            if not clash:
                rp = cache[f, 1]
        if traced:
            if k == K_FREE:
                ext[pid[r], 0] = 0
            elif o > 0:
                ext[pid[r], 0] = o
                ext[pid[r], 1] = row0 + r
        if k in (K_CACHE_ADD, K_CACHE_DEL) and f >= 0:
            cache[f, 0] = 1 if k == K_CACHE_ADD else 2
            cache[f, 1] = rp if traced else -1
            cache[f, 2] = dev[r]
            cache[f, 3] = 1 if dev_v[r] else 0
        # 3. pages and generations
        if k == K_FORK or (rp < 0 and qid[r] < 0):
            continue
        gen = np.int64(0)
        if rp < 0:
            page = qpage[qid[r]]
            new_page = page < 0
        else:
            new_page = life[rp, 7] < 0
            if not new_page:
                ino_differs = (life[rp, 4] == 1) != ino_v[r] or (
                    ino_v[r] and life[rp, 4] == 1 and life[rp, 3] != np.int64(ino[r])
                )
                dev_differs = life[rp, 6] == 1 and dev_v[r] and life[rp, 5] != dev[r]
                if (
                    k == K_ALLOC
                    or life[rp, 1] == K_FREE
                    or (k == K_CACHE_ADD and life[rp, 2] == 1 and (ino_differs or dev_differs))
                ):
                    life[rp, 0] += 1
                    new_page = True
            life[rp, 1] = k
            if k == K_CACHE_ADD:
                life[rp, 2] = 1
                life[rp, 3] = np.int64(ino[r])
                life[rp, 4] = 1 if ino_v[r] else 0
                life[rp, 5] = dev[r]
                life[rp, 6] = 1 if dev_v[r] else 0
            gen = life[rp, 0]
            page = life[rp, 7]
        if new_page:
            page = n_pages
            n_pages += 1
            pg = _grow_rows(pg, n_pages)
            pg[page, PGR_PFN] = rp
            pg[page, PGR_GEN] = gen
            pg[page, PGR_INFER] = 1 if (gen == 0 and k != K_ALLOC) else 0
            if rp < 0:
                qpage[qid[r]] = page
            else:
                life[rp, 7] = page
        slot[r] = page
    return pg, n_pages


@njit(cache=True, nogil=True, inline="always")
def _releases_before_raise(acc, page, c, k, raise_kind, release_kind, n):
    """Until the page's first raise (flag acc[c]), the running total of its releases (c + 1)
    and the lowest it reached (c + 2): minus that is the count held before the trace."""
    if acc[page, c] == 0:
        if k == raise_kind:
            acc[page, c] = 1
        elif k == release_kind:
            acc[page, c + 1] -= n
            acc[page, c + 2] = min(acc[page, c + 2], acc[page, c + 1])


@njit(cache=True, nogil=True, inline="always")
def pfn_bucket(pfn, shift, buckets):
    """The page bucket of a pfn's block (pfn >> shift: a folio head and its subpages)."""
    return np.int64(_hash(pfn >> np.uint64(shift), np.uint64(0), np.uint64(0)) % np.uint64(buckets))


# route_pass's map of the file pages cached at a pfn: (ino, index) keys, and per row its
# state (0 empty, 1 live, 2 deleted), the pfn's bucket, dev and dev?
FM_STATE, FM_BUCKET, FM_DEV, FM_DEV_V = range(4)


def new_file_map(cap: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """An empty map for `route_pass` (cap: a power of two)."""
    return np.zeros((cap, 2), np.uint64), np.zeros((cap, 4), np.int64)


@njit(cache=True, nogil=True, inline="always")
def _fm_find(keys, vals, ino, index):
    """(row of (ino, index) or -1, the row where it would go: a deleted one on its probe path,
    else the empty one that ends it)."""
    mask = np.uint64(keys.shape[0] - 1)
    i = np.int64(_hash(ino, index, np.uint64(0)) & mask)
    free = np.int64(-1)
    while True:
        st = vals[i, FM_STATE]
        if st == 0:
            return np.int64(-1), (free if free >= 0 else i)
        if st == 2:
            if free < 0:
                free = i
        elif keys[i, 0] == ino and keys[i, 1] == index:
            return i, free
        i = np.int64((np.uint64(i) + np.uint64(1)) & mask)


@njit(cache=True, nogil=True)
def file_map_rebuilt(keys, vals, live):
    """The map without its deleted rows, twice as large where live rows pass a quarter."""
    cap = keys.shape[0] * 2 if 4 * (live + 1) > keys.shape[0] else keys.shape[0]
    new_keys = np.zeros((cap, 2), np.uint64)
    new_vals = np.zeros((cap, 4), np.int64)
    for j in range(keys.shape[0]):
        if vals[j, FM_STATE] == 1:
            _, at = _fm_find(new_keys, new_vals, keys[j, 0], keys[j, 1])
            new_keys[at, 0], new_keys[at, 1] = keys[j, 0], keys[j, 1]
            new_vals[at] = vals[j]
    return new_keys, new_vals


@njit(cache=True, nogil=True)
def route_pass(
    kind, pfn, pfn_v, file_v, dev, dev_v, ino, index, shift, buckets, keys, vals, used, live,
    r, codes, counts,
):  # fmt: skip
    """Each event's page bucket (replay/partition.py) into `codes` (bucket << 1, | 1 where
    its bucket's identity pass must not look it up by file key), counted into `counts`.

    A pfn's bucket is its block's. A file-only event (a file key, no pfn, not a fork) goes
    where clause 2 of "Page identity" puts it in the whole trace: to the bucket of the pfn of
    the latest cache event of its (ino, index) when that is a cache_add with a pfn and the
    devs don't clash, else to its file identity's bucket, not looked up. Pageless events go
    to bucket 0.

    The map (`new_file_map`) holds only the file pages whose latest cache event is a
    cache_add with a pfn: any other cache event deletes its page, since a page in no map
    resolves no event, the same as one uncached. So it holds the pages cached at a moment,
    not every page the trace names. Runs from row r until done, or until a new page needs a
    row of a map half full (`used` rows, `live` of them live): returns (next row, used, live),
    and the caller rebuilds the map (`file_map_rebuilt`) and calls again."""
    n = kind.shape[0]
    mask = np.uint64(keys.shape[0] - 1)
    while r < n:
        a = r + AHEAD
        if a < n and file_v[a]:
            ahead = np.int64(_hash(ino[a], index[a], np.uint64(0)) & mask)
            prefetch_row(keys, ahead)
            prefetch_row(vals, ahead)
        k = kind[r]
        is_cache = file_v[r] and k in (K_CACHE_ADD, K_CACHE_DEL)
        at = np.int64(-1)
        free = np.int64(-1)
        if file_v[r] and (is_cache or (not pfn_v[r] and k != K_FORK)):
            at, free = _fm_find(keys, vals, ino[r], index[r])
        adds = is_cache and k == K_CACHE_ADD and pfn_v[r]
        if adds and at < 0 and vals[free, FM_STATE] == 0 and 2 * (used + 1) > keys.shape[0]:
            return r, used, live
        code = 0
        if pfn_v[r]:
            code = pfn_bucket(pfn[r], shift, buckets) << 1
        elif file_v[r] and k != K_FORK:
            clash = at >= 0 and dev_v[r] and vals[at, FM_DEV_V] == 1 and dev[r] != vals[at, FM_DEV]
            if at >= 0 and not clash:
                code = vals[at, FM_BUCKET] << 1
            else:
                qdev = np.uint64(dev[r]) if dev_v[r] else np.uint64(0xFFFFFFFFFFFFFFFF)
                code = (np.int64(_hash(qdev, ino[r], index[r]) % np.uint64(buckets)) << 1) | 1
        codes[r] = code
        counts[code >> 1] += 1
        if adds:
            if at < 0:
                at = free
                if vals[at, FM_STATE] == 0:
                    used += 1
                live += 1
                keys[at, 0], keys[at, 1] = ino[r], index[r]
                vals[at, FM_STATE] = 1
            vals[at, FM_BUCKET] = pfn_bucket(pfn[r], shift, buckets)
            vals[at, FM_DEV] = dev[r]
            vals[at, FM_DEV_V] = 1 if dev_v[r] else 0
        elif is_cache and at >= 0:
            vals[at, FM_STATE] = 2
            live -= 1
        r += 1
    return r, used, live


# infer_pass accumulators per page: pin seen, pins total, lowest; get seen, gets total, lowest;
# first wb event (1 set / 2 clear); first cache event (1 set / 2 clear)
N_ACC = 8


@njit(cache=True, nogil=True)
def infer_pass(kind, slot, refs, pg, acc):
    """Per page, what initial-state inference needs (docs/replay.md "Initial-state inference"),
    accumulated batch by batch into `acc` (N_ACC zeroed columns per page, rows for every page
    of `slot`): the lowest running total of releases before the first raise, for pins and for
    gets, and whether the first writeback and cache events clear their flag."""
    n = kind.shape[0]
    for r in range(n):
        if r + AHEAD < n and slot[r + AHEAD] >= 0:
            prefetch_row(acc, slot[r + AHEAD])
            prefetch_row(pg, slot[r + AHEAD])
        page = slot[r]
        if page < 0 or pg[page, PGR_INFER] == 0:
            continue
        k = kind[r]
        _releases_before_raise(acc, page, 0, k, K_PIN, K_UNPIN, refs[r])
        _releases_before_raise(acc, page, 3, k, K_GET, K_PUT, refs[r])
        if acc[page, 6] == 0:
            if k == K_WB_START:
                acc[page, 6] = 1
            elif k == K_WB_END:
                acc[page, 6] = 2
        if acc[page, 7] == 0:
            if k == K_CACHE_ADD:
                acc[page, 7] = 1
            elif k in (K_CACHE_DEL, K_TRUNCATE):
                acc[page, 7] = 2


@njit(cache=True, nogil=True)
def fill_nulls(values, valid, fill, out):
    """`out` = values where valid, else fill (cast to out's type): a select LLVM vectorizes.
    The validity comes unpacked by numpy (np.unpackbits): extracting each row's bit here was
    three times slower."""
    for i in range(out.shape[0]):
        out[i] = values[i] if valid[i] else fill


@njit(cache=True, nogil=True)
def abs_clipped(values):
    """|values| as int32, saturating at 2^31 - 1 (|-2^31| among them): one pass, not four."""
    out = np.empty(values.shape[0], np.int32)
    top = np.int64(2**31 - 1)
    for i in range(values.shape[0]):
        v = np.int64(values[i])
        out[i] = min(-v if v < 0 else v, top)
    return out


@njit(cache=True, nogil=True)
def in_replay_order(ts, line, last_ts, last_line):
    """Whether rows are in (ts, line) order and come after the row (last_ts, last_line)."""
    for i in range(ts.shape[0]):
        t, ln = ts[i], line[i]
        if t < last_ts or (t == last_ts and ln < last_line):
            return False
        last_ts, last_line = t, ln
    return True


@njit(cache=True, nogil=True)
def page_rows(pg, acc, pfns):
    """The state pass's per-page rows from resolve_pass's (PGR_*) and infer_pass's (acc), in
    one pass: (pg_i, pg_u, then each page's pfn for the page table, 0 for file pages). pfns:
    the pfn of each pfn id."""
    n = pg.shape[0]
    pg_i = np.zeros((n, N_PG_I), np.int64)
    pg_u = np.zeros((n, N_PG_U), np.uint8)
    ppfn = np.zeros(n, np.uint64)
    for p in range(n):
        is_pfn = pg[p, PGR_PFN] >= 0
        pg_i[p, PG_GEN] = pg[p, PGR_GEN]
        pg_i[p, PG_INIT_PINS] = -acc[p, 2]  # the lowest running totals of releases
        pg_i[p, PG_INIT_GETS] = -acc[p, 5]
        pg_u[p, PG_INIT_WB] = 1 if acc[p, 6] == 2 else 0  # first writeback event ends one
        pg_u[p, PG_INIT_CACHED] = 1 if acc[p, 7] == 2 else 0  # first cache event removes
        pg_u[p, PG_INFER] = pg[p, PGR_INFER]
        if is_pfn:
            pg_u[p, PG_IS_PFN] = 1
            ppfn[p] = pfns[pg[p, PGR_PFN]]
    return pg_i, pg_u, ppfn


def new_state(n_pages: int, pool_rows: int) -> tuple[np.ndarray, ...]:
    """Per-page state and an empty open-span pool, before a trace's first batch."""
    st = np.zeros((n_pages, N_ST), np.int64)  # left to the OS to zero, page by page
    pool_i = np.zeros((pool_rows, N_SP_I64), np.int64)
    pool_u = np.zeros((pool_rows, N_SP_U8), np.uint8)
    free = np.arange(pool_rows - 1, -1, -1, dtype=np.int64)
    # counters: [free-list top, next span id]
    counters = np.array([pool_rows, 0], np.int64)
    return st, pool_i, pool_u, free, counters


@njit(cache=True, nogil=True)
def _open(pool_i, pool_u, free, counters, page, row, ts, line, start):
    """A pool row for a new span on page: start row (or inferred: open at start)."""
    top = counters[0] - 1
    q = free[top]
    counters[0] = top
    pool_i[q, SP_ID] = counters[1]
    counters[1] += 1
    pool_i[q, SP_PAGE] = page
    pool_u[q, SP_OPEN_START] = 1 if start else 0
    pool_i[q, SP_START_ROW] = row
    pool_i[q, SP_START_TS] = ts
    pool_i[q, SP_START_LINE] = line
    pool_u[q, SP_IDENT] = 0
    return q


@njit(cache=True, nogil=True)
def _emit(pool_i, pool_u, free, counters, q, s, end_row, end_ts, end_line, out_i, out_u, n_out):
    for c in range(N_SP_I64):
        out_i[c, n_out] = pool_i[q, c]
    for c in range(N_SP_U8):
        out_u[c, n_out] = pool_u[q, c]
    out_i[OUT_END_ROW, n_out] = end_row
    out_i[OUT_END_TS, n_out] = end_ts
    out_i[OUT_END_LINE, n_out] = end_line
    out_i[OUT_STATE, n_out] = s
    free[counters[0]] = q
    counters[0] += 1


@njit(cache=True, nogil=True)
def state_pass(
    row0, kind, slot, refs, gup, count, count_v, dev, dev_v, ino, ino_v, index, index_v, ts, line,
    pg_i, pg_u, write_bit, longterm_bit, st, pool_i, pool_u, free, counters,
    dest, ev_i, ev_u, ev_x, out_i, out_u, hold, start,
):  # fmt: skip
    """Replay rows start.. of a batch (in replay order; `row0` is the batch's first global row).

    Writes row r's state at column dest[r] of ev_i (int32 counters, E_*), ev_u (0/1 flags and
    buffer codes, F_*) and ev_x (its file identity: dev, ino, index), closed spans into the
    columns of out_i / out_u, and (span id, batch row) of each row that raises a held pin
    state into `hold`.
    Stops early, returning the row it reached, when the pool or an output is about to fill:
    the caller grows it and calls again from there. Returns (row reached, spans, holders).
    """
    n = kind.shape[0]
    n_out = 0
    n_hold = 0
    r = start
    while r < n:
        if r + AHEAD < n and slot[r + AHEAD] >= 0:
            prefetch_row(st, slot[r + AHEAD])
        if counters[0] < N_STATES or n_out + N_STATES > out_i.shape[1]:
            break
        if n_hold + 3 > hold.shape[0]:
            break
        page = slot[r]
        if page < 0:
            r += 1
            continue
        k = kind[r]
        g = row0 + r
        d = dest[r]
        fl = st[page, S_FLAGS]
        if fl & B_STARTED == 0:
            # a page's first event: its initial state, inferred by the identity pass
            fl = B_STARTED
            st[page, S_PINS] = pg_i[page, PG_INIT_PINS]
            st[page, S_GETS] = pg_i[page, PG_INIT_GETS]
            if pg_u[page, PG_INFER] == 0:
                fl |= B_PKNOWN | B_GKNOWN
            if pg_u[page, PG_INIT_WB] == 1:
                fl |= B_WB
            if pg_u[page, PG_INIT_CACHED] == 1:
                fl |= B_CACHED
            if pg_u[page, PG_IS_PFN] == 1:
                fl |= B_IS_PFN
            if (
                pg_i[page, PG_INIT_PINS] > 0
                or pg_i[page, PG_INIT_GETS] > 0
                or pg_u[page, PG_INIT_WB] == 1
                or pg_u[page, PG_INIT_CACHED] == 1
            ):
                fl |= B_INFERRED
            if st[page, S_PINS] > 0:
                st[page, S_OPEN + 0] = 1 + _open(
                    pool_i, pool_u, free, counters, page, g, 0, 0, True
                )
            if fl & B_WB:
                st[page, S_OPEN + 3] = 1 + _open(
                    pool_i, pool_u, free, counters, page, g, 0, 0, True
                )
            if fl & B_CACHED:
                st[page, S_OPEN + 5] = 1 + _open(
                    pool_i, pool_u, free, counters, page, g, 0, 0, True
                )
        nr = refs[r]
        acquire = k in (K_PIN, K_GET)
        w_raise = acquire and (gup[r] & write_bit) != 0
        l_raise = acquire and (gup[r] & longterm_bit) != 0
        pins_b = st[page, S_PINS]
        gets_b = st[page, S_GETS]
        wr_b = st[page, S_WR]
        lt_b = st[page, S_LT]
        refc_b = st[page, S_REFC]
        fl_b = fl
        pins, gets = pins_b, gets_b
        mismatch = False
        if k == K_PIN:
            fl |= B_PKNOWN
            pins += nr
        elif k == K_UNPIN:
            if pins - nr < 0:
                mismatch = (fl & B_PKNOWN) != 0
                pins = 0
            else:
                pins -= nr
        if k == K_GET:
            fl |= B_GKNOWN
            gets += nr
        elif k == K_PUT:
            if gets - nr < 0:
                mismatch = mismatch or (fl & B_GKNOWN) != 0
                gets = 0
            else:
                gets -= nr
        held = pins + gets
        wr = min(wr_b + (nr if w_raise else 0), held)
        lt = min(lt_b + (nr if l_raise else 0), held)
        refc = refc_b
        if k == K_REF and count_v[r]:
            refc = count[r]
            fl |= B_REFC_V
        if k == K_DIRTY:
            fl |= B_DIRTY
        elif k in (K_MKCLEAN, K_WB_START, K_CACHE_DEL, K_TRUNCATE):
            fl &= ~B_DIRTY
        if k == K_WB_START:
            fl |= B_WB
        elif k == K_WB_END:
            fl &= ~B_WB
        if k == K_CACHE_ADD:
            fl |= B_CACHED
        elif k in (K_CACHE_DEL, K_TRUNCATE):
            fl &= ~B_CACHED
        if k == K_MKWRITE:
            fl = (fl & ~(3 << B_BUF_SHIFT)) | (2 << B_BUF_SHIFT)
        elif k == K_FREE_BUFFERS:
            fl = (fl & ~(3 << B_BUF_SHIFT)) | (1 << B_BUF_SHIFT)
        if fl & B_IS_PFN:
            if k in (K_CACHE_ADD, K_CACHE_DEL) and ino_v[r]:
                fl |= B_IDENT
                st[page, S_IDEV] = dev[r]
                st[page, S_IINO] = np.int64(ino[r])
                st[page, S_IINDEX] = np.int64(index[r])
                fl = (fl | B_IDEV_V) if dev_v[r] else (fl & ~B_IDEV_V)
                fl = (fl | B_IINDEX_V) if index_v[r] else (fl & ~B_IINDEX_V)
        else:
            # an unresolved file page: its rows keep their own identity (the page key)
            fl |= B_IDENT | B_IINDEX_V
            st[page, S_IDEV] = dev[r]
            st[page, S_IINO] = np.int64(ino[r])
            st[page, S_IINDEX] = np.int64(index[r])
            fl = (fl | B_IDEV_V) if dev_v[r] else (fl & ~B_IDEV_V)
        st[page, S_PINS] = pins
        st[page, S_GETS] = gets
        st[page, S_WR] = wr
        st[page, S_LT] = lt
        st[page, S_REFC] = refc
        st[page, S_FLAGS] = fl
        known = (fl & B_IDENT) != 0
        ev_x[0, d] = st[page, S_IDEV]
        ev_x[1, d] = st[page, S_IINO]
        ev_x[2, d] = st[page, S_IINDEX]
        ev_u[F_DEV_V, d] = 1 if known and (fl & B_IDEV_V) else 0
        ev_u[F_INO_V, d] = 1 if known else 0
        ev_u[F_INDEX_V, d] = 1 if known and (fl & B_IINDEX_V) else 0
        ev_i[E_PINS_B, d], ev_i[E_PINS_A, d] = pins_b, pins
        ev_i[E_GETS_B, d], ev_i[E_GETS_A, d] = gets_b, gets
        ev_i[E_WR_B, d], ev_i[E_WR_A, d] = wr_b, wr
        ev_i[E_LT_B, d], ev_i[E_LT_A, d] = lt_b, lt
        ev_i[E_REFC_B, d], ev_i[E_REFC_A, d] = refc_b, refc
        ev_u[F_REFC_B_V, d] = 1 if fl_b & B_REFC_V else 0
        ev_u[F_REFC_A_V, d] = 1 if fl & B_REFC_V else 0
        ev_u[F_DIRTY_B, d] = 1 if fl_b & B_DIRTY else 0
        ev_u[F_DIRTY_A, d] = 1 if fl & B_DIRTY else 0
        ev_u[F_WB_B, d] = 1 if fl_b & B_WB else 0
        ev_u[F_WB_A, d] = 1 if fl & B_WB else 0
        ev_u[F_CACHED_B, d] = 1 if fl_b & B_CACHED else 0
        ev_u[F_CACHED_A, d] = 1 if fl & B_CACHED else 0
        ev_u[F_BUF_B, d] = (fl_b >> B_BUF_SHIFT) & 3
        ev_u[F_BUF_A, d] = (fl >> B_BUF_SHIFT) & 3
        ev_u[F_INFERRED, d] = 1 if fl & B_INFERRED else 0
        ev_u[F_MISMATCH, d] = 1 if mismatch else 0
        # spans: each state's rise opens one, its fall closes it (this row included in both)
        for s in range(N_STATES):
            if s == 0:
                hb, ha, raised = pins_b > 0, pins > 0, k == K_PIN
            elif s == 1:
                hb, ha, raised = wr_b > 0, wr > 0, w_raise
            elif s == 2:
                hb, ha, raised = lt_b > 0, lt > 0, l_raise
            elif s == 3:
                hb, ha, raised = (fl_b & B_WB) != 0, (fl & B_WB) != 0, False
            elif s == 4:
                hb, ha, raised = (fl_b & B_DIRTY) != 0, (fl & B_DIRTY) != 0, False
            else:
                hb, ha, raised = (fl_b & B_CACHED) != 0, (fl & B_CACHED) != 0, False
            if not hb and ha:
                q = _open(pool_i, pool_u, free, counters, page, g, ts[r], line[r], False)
                st[page, S_OPEN + s] = q + 1
                fl &= ~(B_SPAN_IDENT << s)
            else:
                q = st[page, S_OPEN + s] - 1
            if q < 0:
                continue
            if known and fl & (B_SPAN_IDENT << s) == 0:
                # the span's identity: its first row where the page's file is known
                fl |= B_SPAN_IDENT << s
                pool_u[q, SP_IDENT] = 1
                pool_i[q, SP_DEV] = st[page, S_IDEV]
                pool_i[q, SP_INO] = st[page, S_IINO]
                pool_i[q, SP_INDEX] = st[page, S_IINDEX]
                pool_u[q, SP_DEV_V] = 1 if fl & B_IDEV_V else 0
                pool_u[q, SP_INDEX_V] = 1 if fl & B_IINDEX_V else 0
            if ha and raised:
                hold[n_hold, 0] = pool_i[q, SP_ID]
                hold[n_hold, 1] = r
                n_hold += 1
            if hb and not ha:
                _emit(pool_i, pool_u, free, counters, q, s, g, ts[r], line[r], out_i, out_u, n_out)
                n_out += 1
                st[page, S_OPEN + s] = 0
        st[page, S_FLAGS] = fl
        r += 1
    return r, n_out, n_hold


@njit(cache=True, nogil=True)
def open_spans(st, pool_i, pool_u, free, counters):
    """Every span still open at the trace's end, as emitted spans with no end."""
    n = 0
    for page in range(st.shape[0]):
        for s in range(N_STATES):
            if st[page, S_OPEN + s] > 0:
                n += 1
    out_i = np.zeros((N_OUT_I64, n), np.int64)
    out_u = np.zeros((N_SP_U8, n), np.uint8)
    m = 0
    for page in range(st.shape[0]):
        for s in range(N_STATES):
            q = st[page, S_OPEN + s] - 1
            if q >= 0:
                _emit(pool_i, pool_u, free, counters, q, s, -1, 0, 0, out_i, out_u, m)
                m += 1
                st[page, S_OPEN + s] = 0
    return out_i, out_u
