"""pfn → dense id (replay.identity.PfnIds): the direct map, its growth and its hand-over to the
hash table give the ids a dictionary gives, batch after batch, and the folio-head lookups."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from replay import identity

# pfns in clusters far apart (so that spans grow by a little or by a lot, downward or up),
# nulls among them
_BASES = [0, 5, 4096, 1 << 20, 1 << 40, (1 << 64) - 64]
_pfn = st.one_of(
    st.none(),
    st.builds(lambda base, off: base + off, st.sampled_from(_BASES), st.integers(0, 40)),
)
_batch = st.lists(_pfn, max_size=30)


class _Reference:
    def __init__(self) -> None:
        self.ids: dict[int, int] = {}

    def ids_of(self, batch: list[int | None]) -> list[int]:
        return [-1 if p is None else self.ids.setdefault(p, len(self.ids)) for p in batch]

    def lookup(self, batch: list[int | None], keep: int) -> list[int]:
        return [-1 if p is None else self.ids.get(p & keep, -1) for p in batch]


def _arrays(batch: list[int | None]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([p or 0 for p in batch], np.uint64),
        np.array([p is not None for p in batch], np.bool_),
    )


@settings(max_examples=300, deadline=None)
@given(
    batches=st.lists(_batch, min_size=1, max_size=6),
    max_span=st.sampled_from([1, 8, 100, 5000, 1 << 25]),
    first_rows=st.sampled_from([1, 2, 1024]),
)
def test_pfn_ids_equal_a_dictionary(batches, max_span, first_rows):
    """Ids in order of first appearance whatever the batches' spans, each id's pfn, and the
    folio-head lookups (pfn & ~(2^o - 1)) of the ids given so far; the map is used exactly
    while every pfn seen fits in max_span values."""
    identity_rows = identity._TABLE_ROWS
    identity._TABLE_ROWS = first_rows * 2  # `first` starts this small and must grow
    try:
        got = identity.PfnIds(max_span)
    finally:
        identity._TABLE_ROWS = identity_rows
    want = _Reference()
    seen: list[int] = []
    for batch in batches:
        pfn, valid = _arrays(batch)
        assert got.ids(pfn, valid).tolist() == want.ids_of(batch)
        for order in (0, 1, 3, 9):
            keep = ~np.uint64((1 << order) - 1)
            assert got.lookup(pfn, keep, valid).tolist() == want.lookup(batch, int(keep))
        seen += [p for p in batch if p is not None]
        fits = not seen or max(seen) - min(seen) + 1 <= max_span
        assert (got.table is None) == fits
        assert (got.span_map is not None) == (bool(seen) and fits)
    assert got.pfns().tolist() == list(want.ids)


def test_pfn_ids_map_grows_down_and_up_keeping_its_ids():
    got = identity.PfnIds(1 << 10)
    for batch in ([100, 101], [50], [400, 100], [0, 1023]):
        pfn, valid = _arrays(batch)
        got.ids(pfn, valid)
        assert got.table is None and got.span_map is not None
        assert got.lo <= min(batch) and max(batch) < got.lo + len(got.span_map)
    assert got.pfns().tolist() == [100, 101, 50, 400, 0, 1023]
    pfn, valid = _arrays([1024])  # one past the span: the ids move to the hash table
    assert got.ids(pfn, valid).tolist() == [6]
    assert got.table is not None and got.span_map is None
    pfn, valid = _arrays([50, 1023, 7])
    assert got.ids(pfn, valid).tolist() == [2, 5, 7]
