"""Distinct 64-bit line hashes and which of them the sets before hold, compiled.

The duplicate-line warning (pipeline._duplicates) needs, per chunk, the distinct hashes of its
event lines and how many of them the chunks before had. polars' unique and is_in took ~50 ms
per million lines (a sort, then a hash join); one open-addressing table does each in a pass,
and the table a chunk's distinct hashes were found with is kept for the chunks after it
to probe.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_EMPTY = np.uint64(0)  # an empty slot; the hash 0 itself is tracked apart
_MIX = np.uint64(0x9E3779B97F4A7C15)
_S32 = np.uint64(32)


@nb.njit(cache=True, nogil=True)
def _table_size(n: int) -> int:
    size = 16
    while size < 2 * n:
        size *= 2
    return size


@nb.njit(cache=True, nogil=True)
def _insert(table: np.ndarray, h: np.uint64) -> bool:
    """Put h (not 0) in the table; False if it was there already."""
    mask = np.uint64(table.shape[0] - 1)
    slot = ((h * _MIX) >> _S32) & mask
    while True:
        cur = table[slot]
        if cur == _EMPTY:
            table[slot] = h
            return True
        if cur == h:
            return False
        slot = (slot + np.uint64(1)) & mask


@nb.njit(cache=True, nogil=True)
def _contains(table: np.ndarray, h: np.uint64) -> bool:
    mask = np.uint64(table.shape[0] - 1)
    slot = ((h * _MIX) >> _S32) & mask
    while True:
        cur = table[slot]
        if cur == _EMPTY:
            return False
        if cur == h:
            return True
        slot = (slot + np.uint64(1)) & mask


@nb.njit(cache=True, nogil=True)
def distinct_set(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each value of hashes once, in order of first appearance, and the table that holds them
    (for `mark_in_table`: its last slot says whether 0 is among them)."""
    size = _table_size(hashes.shape[0])
    table = np.zeros(size + 1, np.uint64)
    slots = table[:size]
    out = np.empty(hashes.shape[0], np.uint64)
    m = 0
    for i in range(hashes.shape[0]):
        h = hashes[i]
        if h == _EMPTY:
            if table[size]:
                continue
            table[size] = 1
        elif not _insert(slots, h):
            continue
        out[m] = h
        m += 1
    return out[:m].copy(), table


@nb.njit(cache=True, nogil=True)
def mark_in_table(values: np.ndarray, table: np.ndarray, seen: np.ndarray) -> None:
    """Set seen[i] where a `distinct_set` table holds values[i] (several tables: `seen` is
    their union, each value counted once however many hold it)."""
    slots = table[: table.shape[0] - 1]
    zero = table[table.shape[0] - 1] != 0
    for i in range(values.shape[0]):
        h = values[i]
        if (h == _EMPTY and zero) or (h != _EMPTY and _contains(slots, h)):
            seen[i] = True
