"""Interrupted runs, a full disk, concurrent commands, hostile SQL: the dataset is never torn.

Real processes, real signals: `pinscope ingest` and `pinscope replay` are killed with SIGKILL
at seeded moments of their run (fractions of how long an uninterrupted run takes here), a
file-size limit stands in for a full disk, and a report holds the dataset while an ingest
tries to commit. After each, the dataset must be as it was before or complete: the manifest
parses, every table reads, every trace's line accounting holds, and derived/ is either stale
(no stamp: rebuilt next time) or consistent with its stamp.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingest import dataset as ds
from ingest.pipeline import ingest_files
from ingest.schema import TABLES
from ingest.simulate import simulate
from pinscope.cli import app
from replay import run as replay_run

PY = sys.executable
SEED = 6
LINE_TABLES = {
    "events": "events",
    "other_events": "other",
    "stacks": "stack",
    "lost": "lost",
    "rejects": "rejected",
}


def pinscope(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "-m", "pinscope", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        **kw,  # type: ignore[arg-type]
    )


def timed(*args: str) -> float:
    t0 = time.monotonic()
    p = pinscope(*args)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    return time.monotonic() - t0


def kill_after(delay: float, *args: str) -> int:
    """Start a pinscope command, SIGKILL it after `delay` s; its exit code (-9 if killed)."""
    p = pinscope(*args)
    try:
        p.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
    p.communicate()
    return p.returncode


def delays(total: float, n: int = 3) -> list[float]:
    """Seeded moments spread over a run: early (imports, reading), middle, late (commit)."""
    rng = random.Random(SEED)
    return [total * rng.uniform(lo, hi) for lo, hi in ((0.2, 0.5), (0.5, 0.8), (0.8, 1.0))][:n]


def dir_hash(d: Path) -> str:
    """Every file's path and bytes (the lock file aside: it is the lock, not data)."""
    h = hashlib.sha256()
    for p in sorted(d.rglob("*")):
        if p.is_file() and p.name != ds.LOCK_FILE:
            h.update(str(p.relative_to(d)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def check_consistent(d: Path) -> list[str]:
    """The committed state reads whole; returns the trace ids."""
    man = json.loads((d / ds.MANIFEST).read_text())
    ids = [t["trace_id"] for t in man["traces"]]
    con = ds.connect(d)
    try:
        for table, key in LINE_TABLES.items():
            got = dict(
                con.execute(f"SELECT trace_id, count(*) FROM {table} GROUP BY ALL").fetchall()
            )
            for t in man["traces"]:
                assert got.get(t["trace_id"], 0) == t["lines"][key], (table, t["trace_id"])
        for t in man["traces"]:
            lines = t["lines"]
            assert sum(v for k, v in lines.items() if k != "total") == lines["total"]
    finally:
        con.close()
    derived = d / ds.DERIVED
    stamp = derived / replay_run.STAMP
    if stamp.exists():  # derived/ is complete: current, or old (stale) after an ingest
        data = json.loads(stamp.read_text())
        assert (
            ds.scan(d, "derived/page_events").select("seq").collect().height
            == (data["page_events"])
        )
        assert ds.scan(d, "derived/intervals").collect().height == data["intervals"]
    for name in ds.derived_tables(d):  # whatever is there reads
        ds.scan(d, f"derived/{name}").collect()
    return ids


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("traces")
    small, mid, other = d / "small.trace", d / "mid.trace", d / "other.trace"
    simulate("rdma-writeback", small, fmt="ftrace", seed=1)
    simulate("odirect-truncate", other, fmt="perf", seed=2)
    simulate("mixed", mid, events=200_000, fmt="ftrace", seed=3)  # ~30 MB, ~1.5 s to ingest
    return {"small": small, "mid": mid, "other": other}


# ---------------------------------------------------------------------------- kill -9


def test_kill_ingest_at_random_moments(traces: dict[str, Path], tmp_path: Path) -> None:
    full = timed("ingest", str(traces["mid"]), "-o", str(tmp_path / "full"))
    d = tmp_path / "ds"
    ingest_files([traces["small"]], d)
    before = dir_hash(d)
    outcomes = []
    for delay in delays(full):
        code = kill_after(delay, "ingest", str(traces["mid"]), "-o", str(d))
        ids = check_consistent(d)
        assert ids in (["small"], ["small", "mid"])
        if ids == ["small"]:
            # as it was, scratch leftovers aside (the next writer removes them)
            assert json.loads((d / ds.MANIFEST).read_text()) == ds.manifest(d)
            ingest_files([traces["small"]], d)  # a no-op that collects the garbage
            assert dir_hash(d) == before
        outcomes.append((round(delay, 2), code, ids))
    assert any(c == -signal.SIGKILL for _, c, _ in outcomes), outcomes  # some kill landed
    ingest_files([traces["mid"]], d)  # completes (or is already there)
    assert check_consistent(d) == ["small", "mid"]
    want = ds.traces(tmp_path / "full")[0]["lines"]
    assert ds.traces(d)[1]["lines"] == want


@pytest.mark.parametrize("buckets", [(), ("--buckets", "3")], ids=["whole", "buckets"])
def test_kill_replay_at_random_moments(
    traces: dict[str, Path], tmp_path: Path, buckets: tuple[str, ...]
) -> None:
    """Killed whole, or in page buckets (with a routing file in its scratch directory)."""
    d = tmp_path / "ds"
    ingest_files([traces["mid"]], d)
    full = timed("replay", *buckets, str(d))
    stamp = json.loads((d / ds.DERIVED / replay_run.STAMP).read_text())
    codes = []
    for delay in delays(full):
        codes.append(kill_after(delay, "replay", "--force", *buckets, str(d)))
        check_consistent(d)
        stamped = (d / ds.DERIVED / replay_run.STAMP).exists()
        assert not stamped or replay_run.is_fresh(d)  # a stamp means built from these traces
    assert -signal.SIGKILL in codes, codes
    assert timed("replay", *buckets, str(d)) > 0
    check_consistent(d)
    again = json.loads((d / ds.DERIVED / replay_run.STAMP).read_text())
    assert again == stamp  # same rows as an uninterrupted run
    assert not list(d.rglob(f"{ds.TMP_PREFIX}*"))


# ---------------------------------------------------------------------------- disk full


def _fsize_limit(nbytes: int):
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return limit


def test_disk_full_during_ingest_and_replay(traces: dict[str, Path], tmp_path: Path) -> None:
    d = tmp_path / "ds"
    ingest_files([traces["small"]], d)
    before = dir_hash(d)
    # (the largest part of "mid" is ~280 kB: its events)
    p = pinscope("ingest", str(traces["mid"]), "-o", str(d), preexec_fn=_fsize_limit(150_000))
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2, err
    assert "Traceback" not in err
    assert str(d) in err and "file too large/disk full" in err
    assert dir_hash(d) == before  # not a byte changed
    assert check_consistent(d) == ["small"]

    ingest_files([traces["mid"]], d)
    p = pinscope("replay", str(d), preexec_fn=_fsize_limit(300_000))
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2, err
    assert "Traceback" not in err and str(d) in err and "file too large/disk full" in err
    check_consistent(d)
    assert not (d / ds.DERIVED / replay_run.STAMP).exists()  # stale, so rebuilt next time
    assert timed("replay", str(d)) > 0
    check_consistent(d)


# ---------------------------------------------------------------------------- concurrency


def test_ingest_during_a_report_waits_or_is_refused(
    traces: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "ds"
    ingest_files([traces["mid"]], d)
    report = pinscope("report", str(d), "--format", "json")
    try:
        deadline = time.monotonic() + 60
        while (d / ds.LOCK_FILE).read_text().strip() != str(report.pid):
            assert report.poll() is None and time.monotonic() < deadline, "report never locked"
            time.sleep(0.01)
        # an impatient ingest (in-process: no start-up time) is refused, naming the report
        monkeypatch.setenv("PINSCOPE_LOCK_TIMEOUT", "0.2")
        quick = CliRunner().invoke(app, ["ingest", str(traces["other"]), "-o", str(d)])
        monkeypatch.delenv("PINSCOPE_LOCK_TIMEOUT")
        assert quick.exit_code == 2, quick.output
        assert f"locked by another pinscope (pid {report.pid})" in " ".join(quick.output.split())
        assert report.poll() is None, "the report finished before the ingest tried"
        # a patient one waits for the report, then commits
        patient = pinscope("ingest", str(traces["other"]), "-o", str(d))
        out, err = report.communicate(timeout=120)
        assert report.returncode == 0, err
        _, perr = patient.communicate(timeout=120)
        assert patient.returncode == 0, perr
    finally:
        if report.poll() is None:
            report.kill()
            report.wait()
    # the report saw one consistent state: the trace that was there when it started
    doc = json.loads(out)
    assert [t["trace_id"] for t in doc["traces"]] == ["mid"]
    assert {f["trace_id"] for f in doc["findings"]} <= {"mid"}
    assert check_consistent(d) == ["mid", "other"]


def test_the_same_file_ingested_twice_at_once_commits_once(
    traces: dict[str, Path], tmp_path: Path
) -> None:
    d = tmp_path / "ds"
    procs = [pinscope("ingest", str(traces["small"]), "-o", str(d)) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    statuses = sorted("already ingested" in out for out, _ in results)
    assert statuses == [False, True]  # one ingested it, the other found it there
    assert check_consistent(d) == ["small"]
    assert not list(d.glob(f"{ds.TMP_PREFIX}*"))


# ---------------------------------------------------------------------------- pinscope sql


def test_sql_refuses_writes_and_bad_queries_without_touching_the_dataset(
    traces: dict[str, Path], tmp_path: Path
) -> None:
    d = tmp_path / "ds"
    ingest_files([traces["small"]], d)
    assert CliRunner().invoke(app, ["replay", str(d)]).exit_code == 0
    before = dir_hash(d)
    bad = {
        "SELEC 1": "syntax error",
        "SELECT * FROM no_such_table": "no_such_table",
        "SELECT no_such_column FROM events": "no_such_column",
        f"COPY events TO '{d / 'x.csv'}'": "only queries",
        f"COPY (SELECT 1) TO '{d / 'events' / 'x.parquet'}' (FORMAT parquet)": "only queries",
        f"EXPORT DATABASE '{d / 'export'}'": "only queries",
        "CREATE TABLE t AS SELECT 1": "only queries",
        "CREATE OR REPLACE VIEW events AS SELECT 1": "only queries",
        "DROP VIEW events": "only queries",
        "INSERT INTO events SELECT * FROM events": "only queries",
        f"ATTACH '{d / 'x.db'}' AS x": "only queries",
        "INSTALL httpfs": "only queries",
        "LOAD httpfs": "only queries",
        f"SET profiling_output = '{d / 'p.json'}'": "only queries",
        "SELECT 1; DROP VIEW events": "one at a time",
        f"SELECT * FROM query('COPY events TO ''{d / 'y.csv'}''')": "SQL error",
    }
    runner = CliRunner()
    for query, why in bad.items():
        r = runner.invoke(app, ["sql", str(d), query])
        assert r.exit_code == 2, (query, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), query
        assert why in r.output, (query, r.output)
    # reading files outside the dataset is fine
    r = runner.invoke(
        app,
        ["sql", str(d), "SELECT count(*) AS n FROM read_csv('/etc/passwd', sep=':', header=false)"],
    )
    assert r.exit_code == 0, r.output
    assert dir_hash(d) == before
    # and through a real process: exit 2, a message, no traceback
    p = pinscope("sql", str(d), f"COPY events TO '{d / 'x.csv'}'")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "only queries" in err and "Traceback" not in err
    assert dir_hash(d) == before
    for t in TABLES:
        assert ds.scan(d, t).collect().height >= 0
    shutil.rmtree(d)
