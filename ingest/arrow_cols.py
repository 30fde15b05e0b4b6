"""numpy arrays ↔ Arrow/polars columns without a Python loop over rows.

The compiled kernels return numbers and byte spans; these helpers turn them into columns
(zero-copy for numbers, one compiled copy for strings) and back.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from ingest import ftrace_kernel as K

_VIEW_LIMIT = 1 << 31  # string views address their buffer with int32 offsets


def strings(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, valid: np.ndarray | None = None
) -> pa.Array:
    """The byte spans buf[starts[i]:ends[i]] (valid UTF-8 by the caller's word) as strings,
    null where `valid` is False.

    As string views into buf: no byte is copied, and polars takes them as they are (they
    keep buf alive as long as they live).
    """
    if views_fit(buf):
        return from_views(buf, K.view_spans(buf, K.loads_of(buf), starts, ends), valid)
    bitmap = None if valid is None or valid.all() else pa.array(valid).buffers()[1]
    offsets, data = K.gather_spans(buf, starts, ends, False)
    return pa.Array.from_buffers(
        pa.large_string(), len(starts), [bitmap, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def views_fit(buf: np.ndarray) -> bool:
    """Whether string views can point into buf (their offsets are int32)."""
    return bool(buf.size < _VIEW_LIMIT)


def from_views(buf: np.ndarray, views: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A string-view column from the (n, 2) uint64 views into buf that the kernels build
    (`ftrace_kernel.view_spans`), null where `valid` is False."""
    bitmap = None if valid is None or valid.all() else pa.array(valid).buffers()[1]
    return pa.Array.from_buffers(
        pa.string_view(), len(views), [bitmap, pa.py_buffer(views), pa.py_buffer(buf)]
    )


def numbers(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A numeric column, null where `valid` is False."""
    if valid is None or valid.all():
        return pa.array(values)
    if not valid.any():
        return pa.nulls(len(values), pa.from_numpy_dtype(values.dtype))
    return pa.array(values, mask=~valid)


def take(
    values: np.ndarray, idx: np.ndarray, valid: np.ndarray | None = None, dtype: object = None
) -> pa.Array:
    """values[idx] as a column of `dtype` (which must hold every valid value: no check), null
    where valid[idx] is False; gathered, converted and its validity bitmap built in one pass."""
    dt = np.dtype(dtype) if dtype is not None else values.dtype
    if valid is None:
        return pa.array(values[idx].astype(dt, copy=False))
    out = np.empty(len(idx), dt)
    bitmap = np.empty((len(idx) + 7) // 8, np.uint8)
    nulls = K.take_valid(values, valid, idx, out, bitmap)
    if nulls == 0:
        return pa.array(out)
    return pa.Array.from_buffers(
        pa.from_numpy_dtype(out.dtype),
        len(idx),
        [pa.py_buffer(bitmap), pa.py_buffer(out)],
        null_count=nulls,
    )


def string_buffers(s: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, starts, ends) of a String series (nulls read as empty), for the kernels."""
    arr = s.fill_null("").rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    n = len(arr)
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, np.int64, count=n + 1, offset=arr.offset * 8)
    data = np.zeros(0, np.uint8) if data_buf is None else np.frombuffer(data_buf, np.uint8)
    return data, offsets[:-1], offsets[1:]
