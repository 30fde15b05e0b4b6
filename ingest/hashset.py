"""Distinct 64-bit line hashes and how many of them a previous set holds, compiled.

The duplicate-line warning (pipeline._duplicates) needs, per chunk, the distinct hashes of its
event lines and how many of them the previous chunk had. polars' unique and is_in took ~50 ms
per million lines (a sort, then a hash join); one open-addressing table does each in a pass.
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
def distinct(hashes: np.ndarray) -> np.ndarray:
    """Each value of hashes once, in order of first appearance."""
    table = np.zeros(_table_size(hashes.shape[0]), np.uint64)
    out = np.empty(hashes.shape[0], np.uint64)
    m = 0
    zero = False
    for i in range(hashes.shape[0]):
        h = hashes[i]
        if h == _EMPTY:
            if zero:
                continue
            zero = True
        elif not _insert(table, h):
            continue
        out[m] = h
        m += 1
    return out[:m].copy()


@nb.njit(cache=True, nogil=True)
def count_in(values: np.ndarray, known: np.ndarray) -> int:
    """How many entries of values (each distinct) are among known."""
    table = np.zeros(_table_size(known.shape[0]), np.uint64)
    zero = False
    for i in range(known.shape[0]):
        if known[i] == _EMPTY:
            zero = True
        else:
            _insert(table, known[i])
    n = 0
    for i in range(values.shape[0]):
        h = values[i]
        if (h == _EMPTY and zero) or (h != _EMPTY and _contains(table, h)):
            n += 1
    return n
