"""The replay driver over a real on-disk dataset: batches, freshness, DuckDB views, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from ingest import dataset as ds
from ingest.errors import InputError
from ingest.schema import FORMAT_VERSION, conform
from replay import run
from replay.core import replay_events
from replay.run import replay_dataset
from replay.schema import COMPUTED_SQL, DERIVED_TABLES, with_computed

_IV_KEY = ["trace_id", "page_id", "state", "start_ts_ns", "start_line"]


def _events(tid: str, n_pages: int = 40) -> pl.DataFrame:
    """Pins, writeback and truncates on many pages, file-only events and a pageless fork."""
    rows = []
    line = 0
    for p in range(n_pages):
        pfn = 1000 + 4 * p
        for kind, extra in (
            ("cache_add", {"dev": 1, "ino": 7, "index": p, "folio_order": 2}),
            ("pin", {"pfn": pfn + 1, "gup_flags": 1, "caller": "ib_umem_get"}),  # subpage
            ("wb_start", {"pfn": None, "ino": 7, "index": p}),  # file-only
            ("wb_end", {}),
            ("unpin" if p % 3 else "fork", {}),
            ("cache_del", {"dev": 1, "ino": 7, "index": p}),
        ):
            line += 1
            rows.append(
                {
                    "trace_id": tid,
                    "line": line,
                    "ts_ns": 1000 * line + (p % 5),
                    "pid": 7,
                    "comm": "ib",
                    "kind": kind,
                    "pfn": pfn,
                    "refs": 1,
                    **extra,
                }
            )
    return conform(pl.DataFrame(rows, infer_schema_length=None), "events")


def _make_dataset(root: Path, traces: dict[str, pl.DataFrame], kernel: str = "6.8.0") -> Path:
    root.mkdir()
    entries = []
    for tid, ev in traces.items():
        d = ds.trace_dir(root, "events", tid)
        d.mkdir(parents=True)
        ev.write_parquet(d / "part-000.parquet")
        lost = conform(
            pl.DataFrame(
                {"trace_id": [tid], "line": [0], "gap_start_ts_ns": [5000], "gap_end_ts_ns": [6000]}
            ),
            "lost",
        )
        ld = ds.trace_dir(root, "lost", tid)
        ld.mkdir(parents=True)
        lost.write_parquet(ld / "part-000.parquet")
        entries.append({"trace_id": tid, "sha256": f"sha-{tid}-{ev.height}", "kernel": kernel})
    ds.write_manifest(root, {"format_version": FORMAT_VERSION, "traces": entries})
    return root


def _derived(root: Path, table: str) -> pl.DataFrame:
    """A derived table as readers see it: with page_id computed (it is not stored)."""
    return with_computed(ds.scan(root, f"derived/{table}"), table).collect()


@pytest.mark.parametrize("stored", ["in_order", "shuffled"])
def test_batches_give_the_same_tables_as_one_in_memory_replay(tmp_path, monkeypatch, stored):
    """Identity and state streamed 37 (identity: 2 × 37) events at a time, from parts stored
    in replay order or not (then sorted into replay order first), equal the in-memory
    replay of the whole trace."""
    ev = _events("t1")
    cuts = []
    cut = run._ReplayOrder.cut_into_replay_order
    monkeypatch.setattr(
        run._ReplayOrder, "cut_into_replay_order", lambda self: (cuts.append(1), cut(self))
    )
    # several row groups per part file: the writer slices every column, nested ones included
    monkeypatch.setattr(run, "ROW_GROUP_ROWS", 16)
    stored_ev = ev.sample(fraction=1.0, shuffle=True, seed=7) if stored == "shuffled" else ev
    root = _make_dataset(tmp_path / "ds", {"t1": stored_ev})
    s = replay_dataset(root, batch_rows=37)
    assert len(cuts) == (stored == "shuffled")
    assert s.rebuilt and s.parts > 1 and s.events == ev.height
    lost = ds.scan(root, "lost").collect()
    want = replay_events(ev, lost, kernel="6.8.0")
    got_pe = _derived(root, "page_events").sort("seq")
    assert_frame_equal(got_pe, want.page_events)
    assert_frame_equal(
        _derived(root, "intervals").sort(_IV_KEY, nulls_last=True),
        want.intervals.sort(_IV_KEY, nulls_last=True),
    )
    # the subpage pin and the file-only writeback resolved onto the folio head
    pins = got_pe.filter(pl.col("kind") == "pin")
    assert (pins["pfn"] == pins["event_pfn"] - 1).all()
    wb = got_pe.filter(pl.col("kind") == "wb_start")
    assert wb["pfn"].null_count() == 0 and wb["event_pfn"].null_count() == wb.height
    # the lost gap (5000..6000 ns) makes the spans around it uncertain, and only those
    iv = _derived(root, "intervals")
    unc = iv.filter(pl.col("uncertain"))
    assert unc.height > 0
    assert (unc["start_ts_ns"] <= 6000).all()


@pytest.mark.parametrize("stored", ["in_order", "shuffled"])
def test_page_buckets_give_the_same_tables(tmp_path, monkeypatch, stored):
    """Pages in 3 buckets, each replayed in an identity pass and a state pass of its own over
    the events (37 at a time), after a routing pass (the first to read the shuffled trace, so
    the one that sorts it): the same derived tables as one in-memory replay, and every part
    file distinct."""
    ev = pl.concat([_events("t1"), _events("t2", 9)])
    monkeypatch.setattr(run, "ROW_GROUP_ROWS", 16)
    stored_ev = ev.sample(fraction=1.0, shuffle=True, seed=3) if stored == "shuffled" else ev
    root = _make_dataset(
        tmp_path / "ds", {t: stored_ev.filter(pl.col("trace_id") == t) for t in ("t1", "t2")}
    )
    s = replay_dataset(root, batch_rows=37, buckets=3)
    assert s.buckets == 3 and s.events == ev.height and s.page_events == ev.height
    want = replay_events(ev, ds.scan(root, "lost").collect(), kernel="6.8.0")
    assert_frame_equal(_derived(root, "page_events").sort("trace_id", "seq"), want.page_events)
    assert_frame_equal(
        _derived(root, "intervals").sort(_IV_KEY, nulls_last=True),
        want.intervals.sort(_IV_KEY, nulls_last=True),
    )
    assert s.intervals == want.intervals.height  # no bucket's part overwrote another's


@pytest.mark.parametrize("stored", ["in_order", "shuffled"])
def test_a_trace_outgrowing_memory_is_replayed_in_buckets(tmp_path, monkeypatch, stored):
    """With memory for a few pages only, the whole trace's identity pass gives up as its pages
    pass the budget, and the trace is replayed in as many buckets as its pages then projected:
    the same tables."""
    ev = _events("t1")
    stored_ev = ev.sample(fraction=1.0, shuffle=True, seed=5) if stored == "shuffled" else ev
    root = _make_dataset(tmp_path / "ds", {"t1": stored_ev})
    want = replay_events(ev, ds.scan(root, "lost").collect(), kernel="6.8.0")
    n_pages = want.page_events.get_column("page_id").n_unique()
    budget = 4 * ev.height + 3 * run.PAGE_BYTES  # the page slots and three pages
    monkeypatch.setattr(run, "usable_memory", lambda: int(budget / run.MEMORY_SHARE) + 1)
    s = replay_dataset(root, batch_rows=2)
    assert n_pages > 3 and 1 < s.buckets <= run.buckets_for(n_pages * ev.height, ev.height, budget)
    assert_frame_equal(_derived(root, "page_events").sort("seq"), want.page_events)
    assert_frame_equal(
        _derived(root, "intervals").sort(_IV_KEY, nulls_last=True),
        want.intervals.sort(_IV_KEY, nulls_last=True),
    )
    assert "route" in s.stages


def test_buckets_for_memory():
    gib = 1 << 30
    budget = run.memory_budget(16 * gib)
    assert budget == 8 * gib
    assert run.buckets_for(1_000_000, 20_000_000, budget) == 1
    assert run.buckets_for(0, 0, budget) == 1
    # 400 bytes a page lifetime, 4 an event: 30M page lifetimes and 1G events need ~15 GiB
    assert run.buckets_for(30_000_000, 1_000_000_000, budget) == 2
    assert run.buckets_for(0, 4 * gib, budget) == 2  # page slots alone
    assert run.memory_budget() > 0


def test_usable_memory_is_the_cgroup_limit_where_lower(tmp_path):
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    v2.write_text("max\n")
    v1.write_text(f"{1 << 62}\n")  # v1's "no limit"
    machine = run.usable_memory(())
    assert machine > 0
    assert run.usable_memory((v2, v1, tmp_path / "absent")) == machine
    v2.write_text(f"{2 << 30}\n")
    assert run.usable_memory((v2, v1)) == min(machine, 2 << 30)


def test_reused_when_fresh_rebuilt_when_events_change(tmp_path):
    root = _make_dataset(tmp_path / "ds", {"t1": _events("t1", 5)})
    first = replay_dataset(root)
    assert first.rebuilt
    (root / "derived" / "findings").mkdir()
    (root / "derived" / "findings" / "x.parquet").write_bytes(b"stale")
    again = replay_dataset(root)
    assert not again.rebuilt and again.events == first.events
    assert (root / "derived" / "findings").exists()  # fresh: nothing touched
    # a new trace changes the fingerprint: rebuild, and findings built on the old replay go
    m = ds.manifest(root)
    ev2 = _events("t2", 3)
    d = ds.trace_dir(root, "events", "t2")
    d.mkdir(parents=True)
    ev2.write_parquet(d / "part-000.parquet")
    m["traces"].append({"trace_id": "t2", "sha256": "other", "kernel": "6.8.0"})
    ds.write_manifest(root, m)
    third = replay_dataset(root)
    assert third.rebuilt and third.traces == 2 and third.events == first.events + ev2.height
    assert not (root / "derived" / "findings").exists()
    assert set(_derived(root, "page_events")["trace_id"].unique()) == {"t1", "t2"}
    assert replay_dataset(root, force=True).rebuilt
    stamp = json.loads((root / "derived" / "replay.json").read_text())
    assert stamp["events"] == third.events


def test_duckdb_sees_derived_tables(tmp_path):
    root = _make_dataset(tmp_path / "ds", {"t1": _events("t1", 6)})
    replay_dataset(root)
    con = ds.connect(root)
    n = con.execute("SELECT count(*) FROM page_events WHERE trace_id = 't1'").fetchone()[0]
    assert n == 36
    holders = con.execute(
        "SELECT holders[1].caller FROM intervals WHERE state = 'pinned' LIMIT 1"
    ).fetchone()[0]
    assert holders == "ib_umem_get"
    # any Parquet reader can open the files
    files = list((root / "derived" / "intervals").rglob("*.parquet"))
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{files[0]}')").fetchall()[0][0] > 0


@pytest.mark.parametrize("name", ["case[1]", "a*b?"])
def test_a_dataset_path_with_glob_characters_is_read_as_itself(tmp_path, name):
    """Polars and DuckDB expand `[…]`, `*` and `?` in the paths they read: unescaped, a dataset
    under `case[1]/` replayed as 0 events without a word. Every table, every reader, and the
    sort of a trace stored out of replay order (a shuffled one here) must see its files."""
    ev = _events("t1", 6)
    root = _make_dataset(tmp_path / name, {"t1": ev.sample(fraction=1.0, shuffle=True, seed=3)})
    s = replay_dataset(root)
    assert s.events == ev.height
    assert _derived(root, "page_events").height == ev.height
    assert ds.scan_trace(root, "events", "t1").collect().height == ev.height
    con = ds.connect(root)
    try:
        got = con.execute("SELECT count(*) FROM page_events").fetchone()[0]
        spans = con.execute("SELECT count(*) FROM intervals").fetchone()[0]
        n = con.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        con.close()
    assert got == n == ev.height and spans == _derived(root, "intervals").height > 0


def test_bad_dataset_is_a_user_error(tmp_path):
    from pinscope.cli import app

    result = CliRunner().invoke(app, ["replay", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "no such dataset" in result.output


def test_cli_replay_then_reuse(tmp_path):
    from pinscope.cli import app

    root = _make_dataset(tmp_path / "ds", {"t1": _events("t1", 4)})
    r1 = CliRunner().invoke(app, ["replay", str(root)])
    assert r1.exit_code == 0, r1.output
    assert "replayed 1 trace(s), 24 events" in r1.output
    r2 = CliRunner().invoke(app, ["replay", str(root)])
    assert r2.exit_code == 0 and "up to date" in r2.output
    # buckets change how a rebuild runs, not the tables: a fresh derived/ stays
    r3 = CliRunner().invoke(app, ["replay", str(root), "--buckets", "2"])
    assert r3.exit_code == 0 and "up to date" in r3.output
    r3 = CliRunner().invoke(app, ["replay", str(root), "--buckets", "2", "--force"])
    assert r3.exit_code == 0, r3.output
    assert "replayed 1 trace(s) in 2 page buckets, 24 events" in r3.output
    assert "would not fit" not in r3.output  # asked for
    for bad in ("0", "40000"):
        r4 = CliRunner().invoke(app, ["replay", str(root), "--buckets", bad])
        assert r4.exit_code == 2 and "--buckets" in r4.output


def test_cli_says_why_it_replayed_in_buckets(tmp_path, monkeypatch):
    """Memory for fewer page slots than the trace has events: the replay goes to buckets
    without being asked, and says why and how to choose them."""
    from pinscope.cli import app

    root = _make_dataset(tmp_path / "ds", {"t1": _events("t1", 4)})
    monkeypatch.setattr(run, "usable_memory", lambda: 100)
    r = CliRunner().invoke(app, ["replay", str(root)])
    assert r.exit_code == 0, r.output
    assert "replayed 1 trace(s) in 2 page buckets, 24 events" in r.output
    assert "would not fit in half the memory" in r.output and "--buckets N" in r.output


@pytest.mark.parametrize("batch_rows", [1, 10_000])
def test_timestampless_event_is_rejected(tmp_path, batch_rows):
    ev = _events("t1", 2).with_columns(
        pl.when(pl.col("line") == 3).then(None).otherwise(pl.col("ts_ns")).alias("ts_ns")
    )
    root = _make_dataset(tmp_path / "ds", {"t1": ev})
    with pytest.raises(ds.InputError, match="line 3"):
        replay_dataset(root, batch_rows=batch_rows)


@pytest.mark.parametrize("batch_rows", [37, 10_000])
def test_part_files_are_grouped_by_kind(tmp_path, batch_rows):
    """The rules filter on one kind (or state) at a time: each page_events part file holds one
    stretch of replay order, in (kind, seq) order, and intervals come by state; row groups
    carry the min/max statistics that let a scan skip the other kinds."""
    import pyarrow.parquet as pq

    ev = _events("t1")
    root = _make_dataset(tmp_path / "ds", {"t1": ev})
    replay_dataset(root, batch_rows=batch_rows)
    parts = sorted((root / ds.DERIVED / "page_events").rglob("*.parquet"))
    assert len(parts) == -(-ev.height // batch_rows)
    next_seq = 0
    for part in parts:
        df = pl.read_parquet(part)
        want = df.sort(pl.col("kind").to_physical(), "seq")
        assert df.select("kind", "seq").equals(want.select("kind", "seq"))
        # consecutive stretches of replay order, in file-name order
        assert df["seq"].min() == next_seq and df["seq"].max() == next_seq + df.height - 1
        next_seq += df.height
        kind = pq.ParquetFile(part).metadata.row_group(0).column(df.columns.index("kind"))
        assert kind.statistics is not None and kind.statistics.has_min_max
    assert next_seq == ev.height
    # pageless rows: null generation (and so null page_id); page_id itself is not stored
    assert "page_id" not in pl.read_parquet_schema(parts[0])
    assert "fork" in set(pl.read_parquet(parts).filter(pl.col("generation").is_null())["kind"])
    for part in sorted((root / ds.DERIVED / "intervals").rglob("*.parquet")):
        st = pl.read_parquet(part, columns=["state"])["state"].to_physical()
        assert st.is_sorted(), part


@pytest.mark.parametrize("fmt", ["ftrace", "perf"])
def test_a_trace_printed_in_time_order_is_replayed_without_a_cut(tmp_path, monkeypatch, fmt):
    """Ingest stores a chunk's events in line order, whatever their event names, so a trace
    printed in time order (ftrace's `trace`, trace-cmd report, perf script) is read in replay
    order straight from its parts: no scratch copy, no cut."""
    from ingest.pipeline import ingest_files
    from ingest.simulate import simulate

    trace = tmp_path / f"mixed.{fmt}"
    simulate("mixed", trace, events=20_000, fmt=fmt, seed=3)
    root = tmp_path / "ds"
    ingest_files([trace], root)
    ev = ds.scan(root, "events").select("line", "ts_ns", "source_event").collect()
    assert ev["source_event"].n_unique() > 3
    assert ev["line"].diff().drop_nulls().min() > 0  # line order across parts and names
    assert ev["ts_ns"].diff().drop_nulls().min() >= 0  # hence replay order
    monkeypatch.setattr(
        run._ReplayOrder, "cut_into_replay_order", lambda self: pytest.fail("cut needlessly")
    )
    s = replay_dataset(root, batch_rows=4_096)
    assert s.events == ev.height and s.parts > 1


def test_a_long_out_of_order_trace_is_sorted_in_bounded_memory(tmp_path, monkeypatch):
    """The sort into replay order keeps to its memory limit by spilling to disk, as it must on
    a trace longer than memory, and gives the same tables as the in-memory replay."""
    ev = _events("t1", n_pages=100_000)  # 600k events
    monkeypatch.setattr(run, "CUT_MEMORY", "32MB")  # the events alone are 39 MB in Arrow
    monkeypatch.setattr(run, "CUT_THREADS", 1)
    root = _make_dataset(tmp_path / "ds", {"t1": ev.sample(fraction=1.0, shuffle=True, seed=11)})
    spilled = []
    connect = run.duckdb.connect

    class NotingSpills:
        """The sort's connection, noting at its close whether DuckDB made its spill directory
        (it makes it when it first spills, and removes it on close)."""

        def __init__(self, *a: Any, **k: Any) -> None:
            self.spill = Path(k["config"]["temp_directory"])
            self.con = connect(*a, **k)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.con, name)

        def close(self) -> None:
            spilled.append(self.spill.is_dir())
            self.con.close()

    monkeypatch.setattr(run.duckdb, "connect", NotingSpills)
    replay_dataset(root, batch_rows=100_000)
    assert spilled == [True]
    want = replay_events(ev, ds.scan(root, "lost").collect(), kernel="6.8.0")
    assert_frame_equal(_derived(root, "page_events").sort("seq"), want.page_events)
    assert not list(root.glob(f"{ds.TMP_PREFIX}*"))  # the scratch copy is gone


def test_a_failed_sort_into_replay_order_is_a_clear_error(tmp_path, monkeypatch):
    shuffled = _events("t1").sample(fraction=1.0, shuffle=True, seed=3)
    root = _make_dataset(tmp_path / "ds", {"t1": shuffled})
    monkeypatch.setattr(run, "CUT_MEMORY", "1MB")
    with pytest.raises(InputError, match=r"out of time order and sorting it .* failed"):
        replay_dataset(root)
    assert not list(root.glob(f"{ds.TMP_PREFIX}*"))


def test_page_id_is_computed_where_read_the_same_in_sql_as_in_memory(tmp_path):
    """page_id is not in the part files: the views compute it (PAGE_ID_SQL) and it matches the
    in-memory replay's, itself held to the reference oracle's: pfn pages, unresolved file pages
    with and without a dev, and pageless rows (null)."""
    ev = _events("t1", n_pages=12)
    last = ev["line"].max()
    extra = [  # file-only events on pages never cached: replayed under their file identity
        {"kind": "wb_start", "ino": 99, "index": 1},
        {"kind": "wb_end", "ino": 99, "index": 1},
        {"kind": "dirty", "dev": 3, "ino": 99, "index": 2},
        {"kind": "fork"},
    ]
    rows = [
        {"trace_id": "t1", "line": last + i + 1, "ts_ns": 10**9 + i, "pid": 8, **r}
        for i, r in enumerate(extra)
    ]
    ev = pl.concat([ev, conform(pl.DataFrame(rows), "events")])
    root = _make_dataset(tmp_path / "ds", {"t1": ev})
    replay_dataset(root)
    want = replay_events(ev, None, kernel="6.8.0")

    for table in ("page_events", "intervals"):
        for part in (root / ds.DERIVED / table).rglob("*.parquet"):
            assert "page_id" not in pl.read_parquet_schema(part)
    con = ds.connect(root, derived_schemas=DERIVED_TABLES, derived_computed=COMPUTED_SQL)
    got = con.sql("SELECT page_id FROM page_events ORDER BY seq").pl()["page_id"]
    assert got.to_list() == want.page_events.sort("seq")["page_id"].to_list()
    assert {"pfn:1000/0", "file:-:99/1", "file:3:99/2", None} <= set(got.to_list())
    got_iv = con.sql("SELECT page_id, state::VARCHAR AS state, start_line FROM intervals").pl()
    key = ["page_id", "state", "start_line"]
    want_iv = want.intervals.select("page_id", pl.col("state").cast(pl.String), "start_line")
    assert got_iv.sort(key, nulls_last=True).equals(want_iv.sort(key, nulls_last=True))
    # the polars readers compute the same text
    assert _derived(root, "page_events").sort("seq")["page_id"].equals(got.alias("page_id"))
