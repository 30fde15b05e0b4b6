"""The kernels' input arrays, taken straight from Arrow buffers, equal polars' own answers."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.schema import EVENTS_SCHEMA
from replay import identity

KIND = EVENTS_SCHEMA["kind"]
_value = st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1))
_kind = st.one_of(st.none(), st.sampled_from(list(KIND.categories)))


def _series(values: list, dtype: pl.DataType, cut: int, skip: int) -> pl.Series:
    """Two chunks, sliced: the buffers start at a bit offset that is not a byte's."""
    s = pl.concat([pl.Series(values[:cut], dtype=dtype), pl.Series(values[cut:], dtype=dtype)])
    return s.slice(skip)


@settings(max_examples=200, deadline=None)
@given(st.lists(_value, max_size=60), st.integers(0, 60), st.integers(0, 11))
def test_as_arrays_equals_polars(values, cut, skip):
    for dtype, want in ((pl.Int32, pl.Int64), (pl.UInt32, pl.Int64), (pl.UInt64, pl.UInt64)):
        vals = [v if v is None or dtype == pl.Int32 else abs(v) for v in values]
        s = _series(vals, dtype, cut, skip)
        got, valid = identity.as_arrays(s, want)
        expect = s.fill_null(0).cast(want).to_numpy()
        assert got.dtype == expect.dtype and np.array_equal(got, expect)
        assert np.array_equal(valid, s.is_not_null().to_numpy())


@settings(max_examples=200, deadline=None)
@given(st.lists(_value, max_size=60), st.integers(0, 60), st.integers(0, 11))
def test_abs_refs_equals_polars(values, cut, skip):
    values = [v if v != -(2**31) else 5 for v in values]  # polars: |-2^31| is no i32
    s = _series(values, pl.Int32, cut, skip)
    got = identity.abs_refs(s)
    expect = s.cast(pl.Int64).abs().fill_null(1).cast(pl.Int32).to_numpy()
    assert got.dtype == expect.dtype and np.array_equal(got, expect)


@settings(max_examples=200, deadline=None)
@given(st.lists(_kind, max_size=60), st.integers(0, 60), st.integers(0, 11))
def test_kind_codes_equal_the_enum_codes(kinds, cut, skip):
    for dtype in (KIND, pl.String):
        s = _series(kinds, dtype, cut, skip)
        got = identity.kind_codes(s)
        expect = s.cast(KIND).to_physical().cast(pl.Int8).fill_null(-1).to_numpy()
        assert got.dtype == expect.dtype and np.array_equal(got, expect)


def test_abs_refs_saturates():
    s = pl.Series([-(2**31), None, -3], dtype=pl.Int32)
    assert identity.abs_refs(s).tolist() == [2**31 - 1, 1, 3]
