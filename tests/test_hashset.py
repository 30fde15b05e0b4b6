"""The compiled distinct / membership marks behind the duplicate-line warning."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.hashset import distinct_set, mark_in_table

# small values collide often; 0 (the table's empty slot) and the top value are edge cases
_HASH = st.one_of(st.integers(0, 20), st.just(2**64 - 1), st.integers(0, 2**64 - 1))


def _distinct(values: list[int]) -> np.ndarray:
    return distinct_set(np.array(values, np.uint64))[0]


def _table(values: list[int]) -> np.ndarray:
    return distinct_set(np.array(values, np.uint64))[1]


@settings(max_examples=300, deadline=None)
@given(st.lists(_HASH, max_size=200), st.lists(_HASH, max_size=200))
def test_a_distinct_sets_values_and_table_are_set_operations(a: list[int], b: list[int]) -> None:
    """Each value once, in order of first appearance; the table `distinct_set` builds is what
    the next chunks probe (`mark_in_table`)."""
    got = _distinct(a)
    assert got.tolist() == list(dict.fromkeys(a))
    assert _distinct(b).tolist() == list(dict.fromkeys(b))
    seen = np.zeros(len(got), np.bool_)
    mark_in_table(got, _table(b), seen)
    assert int(seen.sum()) == len(set(a) & set(b))


@settings(max_examples=200, deadline=None)
@given(st.lists(_HASH, max_size=100), st.lists(_HASH, max_size=100), st.lists(_HASH, max_size=100))
def test_marks_over_several_tables_count_each_value_once(
    a: list[int], b: list[int], c: list[int]
) -> None:
    """The duplicate window spans several chunks' tables: a value in two of them is one."""
    probe = _distinct(a)
    seen = np.zeros(len(probe), np.bool_)
    for known in (b, c):
        mark_in_table(probe, _table(known), seen)
    assert int(seen.sum()) == len(set(a) & (set(b) | set(c)))
