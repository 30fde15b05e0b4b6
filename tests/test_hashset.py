"""The compiled distinct / membership counts behind the duplicate-line warning."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.hashset import count_in, count_in_table, distinct, distinct_set, mark_in_table

# small values collide often; 0 (the table's empty slot) and the top value are edge cases
_HASH = st.one_of(st.integers(0, 20), st.just(2**64 - 1), st.integers(0, 2**64 - 1))


@settings(max_examples=300, deadline=None)
@given(st.lists(_HASH, max_size=200), st.lists(_HASH, max_size=200))
def test_distinct_and_count_in_are_set_operations(a: list[int], b: list[int]) -> None:
    got = distinct(np.array(a, np.uint64))
    assert got.tolist() == list(dict.fromkeys(a))  # each once, in order of first appearance
    known = distinct(np.array(b, np.uint64))
    assert count_in(got, known) == len(set(a) & set(b))


@settings(max_examples=300, deadline=None)
@given(st.lists(_HASH, max_size=200), st.lists(_HASH, max_size=200))
def test_a_distinct_sets_table_answers_membership(a: list[int], b: list[int]) -> None:
    """The table `distinct_set` builds is what the next chunk probes (`count_in_table`)."""
    values, table = distinct_set(np.array(b, np.uint64))
    assert values.tolist() == list(dict.fromkeys(b))
    probe = distinct(np.array(a, np.uint64))
    assert count_in_table(probe, table) == len(set(a) & set(b))


@settings(max_examples=200, deadline=None)
@given(st.lists(_HASH, max_size=100), st.lists(_HASH, max_size=100), st.lists(_HASH, max_size=100))
def test_marks_over_several_tables_count_each_value_once(
    a: list[int], b: list[int], c: list[int]
) -> None:
    """The duplicate window spans several chunks' tables: a value in two of them is one."""
    probe = distinct(np.array(a, np.uint64))
    seen = np.zeros(len(probe), np.bool_)
    for known in (b, c):
        mark_in_table(probe, distinct_set(np.array(known, np.uint64))[1], seen)
    assert int(seen.sum()) == len(set(a) & (set(b) | set(c)))
