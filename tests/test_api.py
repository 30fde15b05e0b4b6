"""The Python API (pinscope/api.py): what a notebook does with a dataset, on real traces."""

from __future__ import annotations

import warnings
from pathlib import Path

import polars as pl
import pytest

from ingest.errors import InputError
from pinscope import api
from replay.schema import DERIVED_TABLES

REAL = Path(__file__).parent / "golden" / "real"


def test_ingest_replay_scan_and_sql_agree(tmp_path: Path) -> None:
    d = tmp_path / "ds"
    summaries = api.ingest([REAL / "real-default.trace"], d)
    assert [s.trace_id for s in summaries] == ["real-default"]
    ds = api.open_dataset(d)
    assert [t["trace_id"] for t in ds.traces] == ["real-default"]
    assert not ds.derived_fresh
    s = api.replay(d)
    assert s.rebuilt and ds.derived_fresh
    assert not api.replay(d).rebuilt  # fresh: reused

    events = ds.scan("events").collect()
    pe = ds.scan("derived/page_events").collect()
    assert pe.height == events.height == s.events
    assert pe.schema == pl.Schema(DERIVED_TABLES["page_events"])  # page_id computed back
    iv = ds.scan("derived/intervals").collect()
    assert iv.schema == pl.Schema(DERIVED_TABLES["intervals"])
    con = ds.connect()
    try:
        by_sql = con.execute("SELECT count(*), count(DISTINCT page_id) FROM page_events").fetchone()
        spans = con.execute("SELECT count(*) FROM intervals").fetchone()
    finally:
        con.close()
    assert by_sql == (pe.height, pe.get_column("page_id").n_unique() - pe["page_id"].has_nulls())
    assert spans == (iv.height,)


def test_derived_tables_older_than_the_traces_warn(tmp_path: Path) -> None:
    d = tmp_path / "ds"
    api.ingest([REAL / "real-default.trace"], d)
    ds = api.open_dataset(d)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # never replayed: nothing stale to warn of
        ds.scan("derived/page_events").collect()
    api.replay(d)
    api.ingest([REAL / "real-stack.trace"], d)
    with pytest.warns(api.StaleDerivedWarning, match="pinscope.api.replay"):
        old = ds.scan("derived/page_events").collect()
    assert old.get_column("trace_id").unique().to_list() == ["real-default"]
    with pytest.warns(api.StaleDerivedWarning, match="derived views"):
        ds.connect().close()
    with pytest.warns(api.StaleDerivedWarning, match="derived views"):
        api.connect(d).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a caller that says so itself (pinscope sql)
        api.connect(d, stale_warning=False).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # canonical tables are never stale
        ds.scan("events").collect()
    api.replay(d)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = ds.scan("derived/page_events").collect()
    assert sorted(new.get_column("trace_id").unique()) == ["real-default", "real-stack"]


def test_a_directory_without_a_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a pinscope dataset"):
        api.open_dataset(tmp_path)
    with pytest.raises(InputError, match="not a pinscope dataset"):
        api.replay(tmp_path)
