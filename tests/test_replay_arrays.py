"""The kernels' input arrays, taken straight from Arrow buffers, and the driver's compiled or
shortcut checks equal polars' own answers."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.schema import EVENTS_SCHEMA
from replay import identity
from replay.core import _distinct_per_span
from replay.run import _follows

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


_ts = st.integers(-3, 3)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_ts, _ts), max_size=40),
    st.one_of(st.none(), st.tuples(_ts, _ts)),
    st.integers(0, 40),
)
def test_follows_is_replay_order(rows, last, cut):
    """The compiled order check says what a sort of (ts_ns, line) says, across chunks."""
    if not rows:
        return
    cut = min(cut, len(rows))
    ts = pl.concat([pl.Series([r[0] for r in rows[:cut]], dtype=pl.Int64),
                    pl.Series([r[0] for r in rows[cut:]], dtype=pl.Int64)])  # fmt: skip
    line = pl.Series([r[1] for r in rows], dtype=pl.Int64)
    whole = ([last] if last is not None else []) + rows
    assert _follows(ts, line, *(last or (None, None))) == (whole == sorted(whole))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(1, 2), st.sampled_from(["a", "b", None])),
        max_size=40,
    )
)
def test_holders_distinct_per_span_as_unique(rows):
    """Only spans of several rows are hashed: the rows kept are unique()'s, in its order."""
    df = pl.DataFrame(
        {"span": [r[0] for r in rows], "pid": [r[1] for r in rows],
         "comm": [r[2] for r in rows], "caller": ["c"] * len(rows)},
        schema={"span": pl.Int64, "pid": pl.Int32, "comm": pl.String, "caller": pl.String},
    ).sort("span", maintain_order=True)  # fmt: skip
    assert _distinct_per_span(df).equals(df.unique(maintain_order=True))
