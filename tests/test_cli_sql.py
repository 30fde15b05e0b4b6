"""`pinscope sql`: one-shot queries in every output format, the prompt, and what it refuses."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from ingest.errors import InputError
from ingest.pipeline import ingest_files
from pinscope.cmd_sql import OutFormat, run_query

GOLDEN = Path(__file__).parent / "golden" / "real"


def sql(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pinscope", "sql", *args],
        capture_output=True,
        text=True,
        input=stdin if stdin is not None else "",
        timeout=120,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sql") / "ds"
    ingest_files([GOLDEN / "real-default.trace", GOLDEN / "real-stack.trace"], d)
    return d


Q = (
    "SELECT kind, count(*) AS n FROM events WHERE trace_id = 'real-default' "
    "GROUP BY kind ORDER BY kind"
)


def expected(d: Path) -> list[tuple[str, int]]:
    ev = pl.read_parquet(d / "events" / "trace_id=real-default" / "*.parquet")
    return sorted((str(k), n) for k, n in ev.group_by("kind").len().iter_rows())


def test_csv_json_table_parquet(dataset: Path, tmp_path: Path) -> None:
    want = expected(dataset)
    r = sql(str(dataset), Q, "--format", "csv")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "kind,n"
    assert [(k, int(n)) for k, n in (x.split(",") for x in lines[1:])] == want

    r = sql(str(dataset), Q, "--format", "json")
    assert r.returncode == 0, r.stderr
    assert [(o["kind"], o["n"]) for o in json.loads(r.stdout)] == want

    r = sql(str(dataset), Q)
    assert r.returncode == 0, r.stderr
    for kind, n in want:
        assert any(kind in line and str(n) in line for line in r.stdout.splitlines())
    assert f"{len(want)} rows" in r.stdout

    out = tmp_path / "r.parquet"
    r = sql(str(dataset), Q, "--format", "parquet", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert pl.read_parquet(out).rows() == want

    r = sql(str(dataset), Q, "--format", "parquet")
    assert r.returncode == 2 and "needs -o" in r.stderr


def test_nested_values_and_manifest_view(dataset: Path) -> None:
    r = sql(
        str(dataset),
        "SELECT trace_id, lines_total, [1, 2] AS l FROM manifest_traces ORDER BY trace_id",
        "--format",
        "csv",
    )
    assert r.returncode == 0, r.stderr
    rows = r.stdout.strip().splitlines()[1:]
    assert rows[0].startswith("real-default,120,")
    assert '"[1, 2]"' in rows[0]


def test_only_queries_are_allowed(dataset: Path, tmp_path: Path) -> None:
    before = sorted(str(p) for p in dataset.rglob("*"))
    target = dataset / "events" / "evil.csv"
    r = sql(str(dataset), f"COPY events TO '{target}'")
    assert r.returncode == 2
    assert "only queries are allowed" in r.stderr and "Traceback" not in r.stderr
    for stmt in (
        "CREATE TABLE t AS SELECT 1",
        f"ATTACH '{dataset / 'x.db'}'",
        "SELECT 1; SELECT 2",
        "INSTALL httpfs",
        "SET threads = 1",
        f"PRAGMA profiling_output = '{target}'",
    ):
        with pytest.raises(InputError, match="only queries are allowed"):
            run_query(dataset, stmt, OutFormat.csv, None, io.StringIO())
    assert sorted(str(p) for p in dataset.rglob("*")) == before
    r = sql(str(dataset), "SELECT 1", "-o", str(dataset / "out.csv"), "--format", "csv")
    assert r.returncode == 2 and "inside the dataset" in r.stderr
    for ok in (
        "DESCRIBE events",
        "SHOW TABLES",
        "SUMMARIZE lost",
        "FROM stacks LIMIT 3",
        "PRAGMA version",
    ):
        out = io.StringIO()
        run_query(dataset, ok, OutFormat.csv, None, out)
        assert out.getvalue().count("\n") >= 2, ok


def test_bad_sql_and_bad_dataset(dataset: Path, tmp_path: Path) -> None:
    r = sql(str(dataset), "SELECT nope FROM events")
    assert r.returncode == 2
    assert "nope" in r.stderr and "Traceback" not in r.stderr
    r = sql(str(dataset), "SELEC 1")
    assert r.returncode == 2 and "syntax error" in r.stderr
    r = sql(str(tmp_path), "SELECT 1")
    assert r.returncode == 2 and "not a pinscope dataset" in r.stderr


def test_interactive_prompt_from_stdin(dataset: Path) -> None:
    script = (
        ".tables\n"
        "SELECT count(*) AS n\n"
        "  FROM events\n"
        "  WHERE trace_id = 'real-default';\n"
        "SELECT 'second' AS s;\n"
        ".quit\n"
        "SELECT 'never' AS s;\n"
    )
    r = sql(str(dataset), "--format", "csv", stdin=script)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert {"events", "lost", "manifest_traces", "other_events", "rejects", "stacks"} <= set(out)
    assert not any(line.startswith("_") for line in out)  # internal registrations hidden
    n = sum(c for _, c in expected(dataset))
    assert out[out.index("n") + 1] == str(n)
    assert "second" in out and "never" not in out

    r = sql(str(dataset), "--format", "csv", stdin="SELEC 1;\nSELECT 42 AS x;\n")
    assert "42" in r.stdout  # carries on after an error
    assert "syntax error" in r.stderr
    assert r.returncode == 2  # but a script with errors fails

    r = sql(str(dataset), "--format", "csv", stdin="SELECT 7 AS x")  # EOF ends the statement
    assert r.returncode == 0 and r.stdout.splitlines() == ["x", "7"]


def test_warns_when_derived_is_out_of_date(tmp_path: Path) -> None:
    """sql never replays (the dataset may be read-only, or shared), but derived tables older
    than the dataset's traces must not pass for the truth: it says so on stderr and answers
    from what is there, stdout left clean for scripts."""
    from replay.run import replay_dataset

    d = tmp_path / "ds"
    ingest_files([GOLDEN / "real-default.trace"], d)
    q = "SELECT count(DISTINCT trace_id) AS traces FROM page_events"
    r = sql(str(d), q, "--format", "csv")  # never replayed: empty views, nothing to warn of
    assert r.returncode == 0 and r.stdout.splitlines() == ["traces", "0"]
    assert "warning" not in r.stderr
    replay_dataset(d)
    ingest_files([GOLDEN / "real-stack.trace"], d)
    r = sql(str(d), q, "--format", "csv")
    assert r.returncode == 0 and r.stdout.splitlines() == ["traces", "1"]
    said = " ".join(r.stderr.split())
    assert "warning:" in said and "not built from the dataset's current traces" in said
    assert f"`pinscope replay {d}` rebuilds them" in said
    r = sql(str(d), "--format", "csv", stdin="SELECT 1 AS x;\nSELECT 2 AS y;\n")
    assert r.stderr.count("warning:") == 1  # the prompt says it once, not per statement
    assert r.stdout.splitlines() == ["x", "1", "y", "2"]
    replay_dataset(d)
    r = sql(str(d), q, "--format", "csv")
    assert r.stdout.splitlines() == ["traces", "2"] and "warning" not in r.stderr
