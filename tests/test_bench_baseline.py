"""bench_ingest's per-line baseline does the job pinscope's ingest does, so the ratio between
them compares like with like: on a `simulate mixed` trace (page events of every kind, probes
with page= and vmemmap=, scheduler events, function-tracer lines, stack traces, lost markers)
its tables hold the same rows and values as the dataset's."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from ingest.pipeline import ingest_files
from ingest.simulate import simulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import baseline_ingest

TABLES = {
    "events": baseline_ingest.EVENT_TYPES,
    "other_events": baseline_ingest.OTHER_TYPES,
    "stacks": baseline_ingest.STACK_TYPES,
    "lost": baseline_ingest.LOST_TYPES,
}


def test_the_baseline_writes_the_tables_pinscope_writes(tmp_path: Path) -> None:
    trace = tmp_path / "mixed.trace"
    simulate("mixed", trace, events=4000, fmt="ftrace", seed=3, entries=False)
    entry = ingest_files([trace], tmp_path / "ds")[0].entry
    _, _, lines = baseline_ingest.ingest(trace, tmp_path / "baseline", 10**9)

    assert lines == {k: v for k, v in entry["lines"].items() if k != "total"}
    assert lines["events"] > 2000 and lines["other"] > 1000
    assert lines["stack"] > 0 and lines["lost"] > 0
    for table, types in TABLES.items():
        mine = pl.read_parquet(tmp_path / "baseline" / f"{table}.parquet")
        theirs = (
            pl.scan_parquet(tmp_path / "ds" / table / "**" / "*.parquet")
            .select(list(types))
            .with_columns(pl.col("kind").cast(pl.String) if table == "events" else [])
            .collect()
            .sort("line")
        )
        assert mine.equals(theirs), table


def test_the_parse_only_lower_bound_reads_every_line(tmp_path: Path) -> None:
    trace = tmp_path / "mixed.trace"
    simulate("mixed", trace, events=500, fmt="ftrace", seed=3, entries=False)
    n_lines = trace.read_bytes().count(b"\n")
    assert baseline_ingest.parse_only(trace, 10**9)[2] == n_lines
    assert baseline_ingest.parse_only(trace, 100)[2] == 100
