"""numpy arrays ↔ Arrow/polars columns without a Python loop over rows.

The compiled kernels return numbers and byte spans; these helpers turn them into columns
(zero-copy for numbers, one compiled copy for strings) and back.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from ingest import ftrace_kernel as K


def strings(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """The byte spans buf[starts[i]:ends[i]] (valid UTF-8 by the caller's word) as strings."""
    offsets, data = K.gather_spans(buf, starts, ends, False)
    return pa.Array.from_buffers(
        pa.large_string(), len(starts), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def numbers(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A numeric column, null where `valid` is False."""
    if valid is None:
        return pa.array(values)
    return pa.array(values, mask=~valid)


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
