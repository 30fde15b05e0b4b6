"""The dataset layer: manifest, locks, atomic directories, garbage, scan and connect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import dataset as ds
from ingest.errors import InputError
from ingest.fields import kv_list
from ingest.pipeline import ingest_files
from ingest.schema import FIELDS_SQL, TABLES

GOLDEN = Path(__file__).parent / "golden" / "real"
PY = sys.executable


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    d = tmp_path / "ds"
    ingest_files([GOLDEN / "real-default.trace", GOLDEN / "real-noirq.trace"], d)
    return d


def test_require_dataset(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such dataset"):
        ds.require_dataset(tmp_path / "missing")
    with pytest.raises(InputError, match=r"is not a pinscope dataset \(no manifest.json\)"):
        ds.require_dataset(tmp_path)


def test_manifest_roundtrip_and_bad_manifest(tmp_path: Path) -> None:
    assert ds.manifest(tmp_path) == {"format_version": 1, "traces": []}
    data = {"format_version": 1, "traces": [{"trace_id": "a", "sha256": "x"}]}
    ds.write_manifest(tmp_path, data)
    assert ds.manifest(tmp_path) == data
    assert ds.traces(tmp_path) == data["traces"]
    assert not list(tmp_path.glob(".tmp-*"))  # the temp file was renamed, not left behind
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match=r"manifest\.json: unreadable manifest"):
        ds.manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 99, "traces": []}))
    with pytest.raises(InputError, match="format version 99"):
        ds.manifest(tmp_path)


def test_safe_ids() -> None:
    assert ds.safe_id("my trace (1).txt") == "my_trace_1_.txt"
    assert ds.safe_id("..hidden") == "hidden"
    assert ds.check_trace_id("a.b-c_1") == "a.b-c_1"
    for bad in ("", ".x", "a/b", "a b"):
        with pytest.raises(InputError):
            ds.check_trace_id(bad)


HOLD = """
import sys, time
from pathlib import Path
from ingest import dataset as ds
with ds.lock(Path(sys.argv[1]), shared=sys.argv[2] == "shared"):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def _holder(d: Path, mode: str, seconds: float) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [PY, "-c", HOLD, str(d), mode, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "held"
    return p


def test_exclusive_lock_names_the_holder(tmp_path: Path) -> None:
    p = _holder(tmp_path, "exclusive", 30)
    try:
        t0 = time.monotonic()
        with (
            pytest.raises(InputError, match=rf"locked by another pinscope \(pid {p.pid}\)"),
            ds.lock(tmp_path, timeout=0.3),
        ):
            pass
        assert time.monotonic() - t0 >= 0.3
        with pytest.raises(InputError, match="locked"), ds.lock(tmp_path, shared=True, timeout=0.1):
            pass
    finally:
        p.kill()
        p.wait()
    with ds.lock(tmp_path, timeout=1):  # released when its holder died
        pass


def test_shared_locks_coexist_and_block_writers(tmp_path: Path) -> None:
    p = _holder(tmp_path, "shared", 30)
    try:
        with ds.lock(tmp_path, shared=True, timeout=0.1):
            pass
        with pytest.raises(InputError, match="a reader"), ds.lock(tmp_path, timeout=0.2):
            pass
    finally:
        p.kill()
        p.wait()


def test_writer_waits_for_a_short_lock(tmp_path: Path) -> None:
    p = _holder(tmp_path, "exclusive", 0.5)
    t0 = time.monotonic()
    try:
        with ds.lock(tmp_path, timeout=10):
            assert time.monotonic() - t0 > 0.2  # it waited for the holder, then got the lock
    finally:
        p.wait()
    assert p.returncode == 0


def test_atomic_dir_replaces_or_keeps(tmp_path: Path) -> None:
    with ds.atomic_dir(tmp_path, "derived/page_events") as tmp:
        (tmp / "a.parquet").write_text("one")
    target = tmp_path / "derived" / "page_events"
    assert [p.name for p in target.iterdir()] == ["a.parquet"]
    with ds.atomic_dir(tmp_path, "derived/page_events") as tmp:
        (tmp / "b.parquet").write_text("two")
    assert [p.name for p in target.iterdir()] == ["b.parquet"]
    with pytest.raises(RuntimeError), ds.atomic_dir(tmp_path, "derived/page_events") as tmp:
        (tmp / "c.parquet").write_text("half")
        raise RuntimeError("writer died")
    assert [p.name for p in target.iterdir()] == ["b.parquet"]
    assert sorted(p.name for p in (tmp_path / "derived").iterdir()) == ["page_events"]


def test_garbage_is_collected_but_manifest_traces_kept(dataset: Path) -> None:
    orphan = dataset / "events" / "trace_id=orphan"
    orphan.mkdir()
    pl.DataFrame(schema=TABLES["events"]).write_parquet(orphan / "part-00000.parquet")
    (dataset / ".tmp-dead").mkdir()
    (dataset / "derived" / ".tmp-x-1").mkdir(parents=True)
    # readers never see traces outside the manifest
    assert "orphan" not in ds.scan(dataset, "events").collect()["trace_id"].to_list()
    removed = {p.name for p in ds.collect_garbage(dataset)}
    assert removed == {"trace_id=orphan", ".tmp-dead", ".tmp-x-1"}
    assert sorted(p.name for p in (dataset / "events").iterdir()) == [
        "trace_id=real-default",
        "trace_id=real-noirq",
    ]


def test_scan_schema_and_contents(dataset: Path, tmp_path: Path) -> None:
    for name, schema in TABLES.items():
        lf = ds.scan(dataset, name)
        assert dict(lf.collect_schema()) == schema, name
    ev = ds.scan(dataset, "events").collect()
    by_trace = dict(ev.group_by("trace_id").len().iter_rows())
    for t in ds.traces(dataset):
        assert by_trace[t["trace_id"]] == t["lines"]["events"]
    empty = tmp_path / "empty"
    ds.write_manifest(empty.mkdir() or empty, ds.empty_manifest())
    for name, schema in TABLES.items():
        df = ds.scan(empty, name).collect()
        assert df.height == 0 and dict(df.schema) == schema
    with pytest.raises(InputError, match="unknown table"):
        ds.scan(dataset, "nope")
    with pytest.raises(InputError, match="no derived table"):
        ds.scan(dataset, "derived/page_events")
    typed = ds.scan(dataset, "derived/page_events", schema={"pfn": pl.UInt64()}).collect()
    assert dict(typed.schema) == {"pfn": pl.UInt64()}
    with ds.atomic_dir(dataset, "derived/page_events") as tmp:
        pl.DataFrame({"pfn": [1, 2]}, schema={"pfn": pl.UInt64()}).write_parquet(
            tmp / "part-0.parquet"
        )
    assert ds.scan(dataset, "derived/page_events").collect()["pfn"].to_list() == [1, 2]


def test_connect_views(dataset: Path, tmp_path: Path) -> None:
    con = ds.connect(dataset, extra_views={"frees": "SELECT * FROM events WHERE kind = 'free'"})
    n = con.sql("SELECT count(*) FROM events").fetchall()[0]
    assert n is not None and n[0] == sum(t["lines"]["events"] for t in ds.traces(dataset))
    rows = con.sql(
        "SELECT trace_id, lines_total, lines_events FROM manifest_traces ORDER BY trace_id"
    ).fetchall()
    assert rows == [
        (t["trace_id"], t["lines"]["total"], t["lines"]["events"])
        for t in sorted(ds.traces(dataset), key=lambda t: t["trace_id"])
    ]
    frees = con.sql("SELECT count(*) FROM frees").fetchall()[0]
    assert frees is not None and frees[0] == 25
    types = {r[0]: r[1] for r in con.sql("DESCRIBE events").fetchall()}
    assert types["pfn"] == "UBIGINT" and types["line"] == "BIGINT"
    # derived tables: typed empty views until replay writes them, then the files
    con = ds.connect(dataset, derived_schemas={"intervals": {"pfn": pl.UInt64()}})
    assert con.sql("SELECT count(*) FROM intervals").fetchall()[0] == (0,)
    with ds.atomic_dir(dataset, "derived/intervals") as tmp:
        pl.DataFrame({"pfn": [7]}, schema={"pfn": pl.UInt64()}).write_parquet(tmp / "p.parquet")
    con = ds.connect(dataset, derived_schemas={"intervals": {"pfn": pl.UInt64()}})
    assert con.sql("SELECT pfn FROM intervals").fetchall() == [(7,)]
    with pytest.raises(InputError, match="view 'bad'"):
        ds.connect(dataset, extra_views={"bad": "SELECT * FROM nowhere"})
    # an empty dataset still has every canonical table, typed
    empty = tmp_path / "e"
    empty.mkdir()
    ds.write_manifest(empty, ds.empty_manifest())
    con = ds.connect(empty)
    for name in TABLES:
        assert con.sql(f"SELECT count(*) FROM {name}").fetchall()[0] == (0,)
    assert {r[0]: r[1] for r in con.sql("DESCRIBE lost").fetchall()}["lost_events"] == "BIGINT"
    assert con.sql("SELECT count(*) FROM manifest_traces").fetchall()[0] == (0,)


_OTHER_LINES = (
    "            bash-2201    [000] .....     0.000001: sched_switch: prev_comm=bash "
    "prev_pid=12 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120\n"
    "     kworker/0:1-40      [001] d..2.     0.000002: writeback_single_inode: "
    "bdi 8:0: ino=12 state=I_DIRTY_PAGES|I_SYNC a==b\n"
    "            bash-2201    [000] .....     0.000003: function:             "
    "schedule <-worker_thread\n"
)
_OTHER_FIELDS = [
    {"prev_comm": "bash", "prev_pid": "12", "prev_prio": "120", "prev_state": "S",
     "next_comm": "swapper/1", "next_pid": "0", "next_prio": "120"},
    {"ino": "12", "state": "I_DIRTY_PAGES|I_SYNC", "a": ""},
    {},
]  # fmt: skip


def test_other_events_fields_are_computed_where_read(tmp_path: Path) -> None:
    """The parts store each other event's body, not its key=value fields: the SQL views and
    `scan` compute them from the body, the same pairs. Parts written before, which stored the
    fields, are read the same way (their stored column is ignored)."""
    trace = tmp_path / "other.trace"
    trace.write_text(_OTHER_LINES)
    d = tmp_path / "ds"
    ingest_files([trace], d)
    parts = sorted((d / "other_events").rglob("*.parquet"))
    assert parts and all("fields" not in pq.read_schema(p).names for p in parts)

    def pairs(rows: list[list[dict[str, str]]]) -> list[dict[str, str]]:
        return [{f["key"]: f["value"] for f in r} for r in rows]

    def read_both() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        scanned = ds.scan(d, "other_events").sort("line").collect()
        assert dict(scanned.schema) == TABLES["other_events"]
        con = ds.connect(d)
        sql = con.sql("SELECT fields FROM other_events ORDER BY line").fetchall()
        return pairs(scanned["fields"].to_list()), pairs([r[0] for r in sql])

    assert read_both() == (_OTHER_FIELDS, _OTHER_FIELDS)
    # a part as older ingests wrote it: with a fields column, here holding something else
    old = pq.read_table(parts[0])
    stale = pa.array(
        [[{"key": "stale", "value": "x"}]] * old.num_rows,
        pa.large_list(pa.struct([("key", pa.string()), ("value", pa.string())])),
    )
    pq.write_table(old.append_column("fields", stale), parts[0])
    assert read_both() == (_OTHER_FIELDS, _OTHER_FIELDS)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="ab_Z9=.[]- \t\u00e9", max_size=40) | st.none(), max_size=8))
def test_the_views_fields_sql_is_kv_list(bodies: list[str | None]) -> None:
    """FIELDS_SQL (DuckDB) and kv_list (polars) split any body into the same pairs."""
    frame = pl.DataFrame({"body": bodies}, schema={"body": pl.String()})
    want = frame.select(kv_list(pl.col("body")).alias("fields"))
    con = duckdb.connect()
    con.register("t", frame.to_arrow())
    got = con.sql(f"SELECT {FIELDS_SQL} AS fields FROM t").pl()
    assert got.to_dicts() == want.to_dicts()


def test_connect_does_not_write_the_dataset(dataset: Path) -> None:
    before = sorted(str(p) for p in dataset.rglob("*"))
    con = ds.connect(dataset)
    con.execute("CREATE TABLE scratch AS SELECT * FROM events")
    con.close()
    assert sorted(str(p) for p in dataset.rglob("*")) == before
    assert isinstance(con, duckdb.DuckDBPyConnection)
    assert os.path.exists(dataset / "manifest.json")
