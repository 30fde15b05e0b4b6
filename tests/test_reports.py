"""The reports over a real dataset: simulated trace → ingest → replay → rules → each format."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from analysis.evidence import _pick
from analysis.findings import FINDINGS_SCHEMA, RULE_COLUMNS
from analysis.report import at_or_above, build_report, sort_findings
from analysis.report_json import render_json
from analysis.report_md import render_md
from analysis.report_text import render_text
from analysis.rules import STAMP_FILE, analyze_dataset, read_findings
from ingest.pipeline import ingest_files
from ingest.simulate import simulate
from ingest.source import hashed_chunks, iter_line_chunks
from replay.run import replay_dataset


def make_dataset(tmp: Path, scenario: str) -> tuple[Path, Path]:
    trace = tmp / f"{scenario}.trace"
    simulate(scenario, trace)
    ds = tmp / "ds"
    ingest_files([trace], ds)
    replay_dataset(ds)
    return trace, ds


@pytest.fixture(scope="module")
def buffers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("buffers")
    trace, ds = make_dataset(tmp, "rdma-buffers-freed")
    return trace, ds, analyze_dataset(ds)


def test_findings_written_and_reused(buffers):
    _trace, ds, found = buffers
    assert set(found["rule"]) >= {"PIN_SPANS_WRITEBACK", "DIRTY_WITHOUT_BUFFERS"}
    assert dict(found.schema) == FINDINGS_SCHEMA
    stamp = ds / "derived" / "findings" / STAMP_FILE
    before = stamp.stat().st_mtime_ns
    again = analyze_dataset(ds)
    assert stamp.stat().st_mtime_ns == before  # fresh: reused, not rebuilt
    assert again.equals(found)
    assert read_findings(ds).equals(found)


def test_json_report_shape_and_quotes(buffers):
    trace, ds, found = buffers
    data = json.loads(render_json(build_report(ds, found)))
    assert set(data) == {"findings", "summary", "traces"}
    assert data["summary"]["total"] == found.height
    assert data["traces"][0]["trace_id"] == found["trace_id"][0]
    lines = trace.read_text().splitlines()
    for f in data["findings"]:
        assert list(f)[: len(RULE_COLUMNS)] == list(RULE_COLUMNS)
        assert [e["line"] for e in f["evidence"]] == f["evidence_lines"]
        for e in f["evidence"]:
            assert e["text"] == lines[e["line"] - 1] and not e["reconstructed"]
    sev = [f["severity"] for f in data["findings"]]
    assert sev == sorted(sev, key=["critical", "high", "medium", "low", "info"].index)


def test_moved_source_is_reconstructed(tmp_path):
    trace, ds = make_dataset(tmp_path, "odirect-truncate")
    found = analyze_dataset(ds)
    assert not found.is_empty()
    trace.write_text(trace.read_text().replace("pinscope", "PINSCOPE"))  # same size, new bytes
    report = build_report(ds, found)
    quotes = list(report.quotes.values())
    assert quotes and all(q.reconstructed for q in quotes)
    assert "(reconstructed)" in render_md(report)
    trace.unlink()
    assert all(q.reconstructed for q in build_report(ds, found).quotes.values())


def test_capped_report_quotes_only_the_shown_findings_but_checks_the_whole_source(tmp_path):
    """A report showing the first finding of each rule quotes just their lines, from the
    source; but a file changed past them (same size) is no longer the traced one: its lines
    are then rebuilt, not quoted."""
    trace = tmp_path / "mixed.trace"
    simulate("mixed", trace, events=20_000)
    ds = tmp_path / "ds"
    ingest_files([trace], ds)
    replay_dataset(ds)
    found = analyze_dataset(ds)
    report = build_report(ds, found, quote_per_rule=1)
    shown, _hidden = report.shown(1)
    cited = {(f["trace_id"], n) for f in shown for n in f["evidence_lines"]}
    assert set(report.quote_table.select("trace_id", "line").iter_rows()) == cited
    assert len(shown) < found.height
    text = trace.read_text().splitlines(keepends=True)
    assert all(q.text == text[q.line - 1].rstrip("\n") for q in report.quotes.values())
    assert not any(q.reconstructed for q in report.quotes.values())
    assert max(report.quote_table["line"]) < len(text)
    text[-1] = text[-1].swapcase()
    trace.write_text("".join(text))
    quotes = build_report(ds, found, quote_per_rule=1).quotes.values()
    assert quotes and all(q.reconstructed for q in quotes)


@pytest.mark.parametrize("block", [5, 64, 1 << 20])
def test_quoting_reads_and_hashes_the_file_in_one_pass(tmp_path, block):
    """The chunks' bytes hashed in order are the file's, whatever the block size: CRLF, a
    line longer than a block, a last line without a newline."""
    data = b"a 1\r\nbb 2\n" + b"x" * 150 + b"\n\nlast"
    path = tmp_path / "t.trace"
    path.write_bytes(data)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        got = _pick(hashed_chunks(iter_line_chunks(f, block), h), pl.Series([1, 3, 4, 5]))
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()
    assert got == {1: "a 1", 3: "x" * 150, 4: "", 5: "last"}


def test_text_and_markdown(buffers):
    trace, ds, found = buffers
    report = build_report(ds, found)
    console = Console(record=True, width=200)
    render_text(report, console)
    out = console.export_text()
    assert "DIRTY_WITHOUT_BUFFERS" in out and "Top callers" in out and "ib_umem_get" in out
    first = report.rows()[0]
    quoted = trace.read_text().splitlines()[first["evidence_lines"][0] - 1].strip()
    assert quoted in out
    md = render_md(report)
    assert md.count("```") == 2 * found.height
    assert "| rule | severity | confidence | count | uncertain |" in md


def test_empty_report(tmp_path):
    _trace, ds = make_dataset(tmp_path, "rdma-writeback-safe")
    found = analyze_dataset(ds)
    assert found.is_empty()
    console = Console(record=True, width=120)
    render_text(build_report(ds, found), console)
    assert "No findings" in console.export_text()
    assert json.loads(render_json(build_report(ds, found)))["findings"] == []


def test_sort_and_fail_threshold():
    rows = [
        {
            **dict.fromkeys(FINDINGS_SCHEMA),
            "rule": r,
            "severity": s,
            "start_ts_ns": t,
            "trace_id": "t",
            "uncertain": u,
            "evidence_lines": [],
        }
        for r, s, t, u in [
            ("A", "medium", 1, False),
            ("B", "critical", 5, True),
            ("C", "critical", 2, False),
        ]
    ]
    df = pl.DataFrame(rows, schema=FINDINGS_SCHEMA)
    assert sort_findings(df)["rule"].to_list() == ["C", "B", "A"]
    assert at_or_above(df, "critical") == 2  # the uncertain one counts
    assert at_or_above(df, "high") == 2
    assert at_or_above(df, "info") == 3


def test_rules_rebuilt_when_user_rules_change(buffers, tmp_path):
    _trace, ds, _found = buffers
    copy = tmp_path / "ds"
    shutil.copytree(ds, copy)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "dirty.sql").write_text(
        "-- id: ANY_DIRTY\n-- severity: info\n-- confidence: heuristic\n-- means: m\n"
        "-- predicts: p\n-- cannot_prove: c\n-- references: r\n"
        "SELECT 'ANY_DIRTY' AS rule, 'info' AS severity, 'heuristic' AS confidence, trace_id,"
        ' pfn, dev, ino, "index", pid, comm, caller, ts_ns AS start_ts_ns, ts_ns AS end_ts_ns,'
        " [line] AS evidence_lines, 'dirty' AS message FROM page_events WHERE kind = 'dirty'"
    )
    with_user = analyze_dataset(copy, rules_dir=rules)
    assert "ANY_DIRTY" in set(with_user["rule"])
    assert "ANY_DIRTY" not in set(analyze_dataset(copy)["rule"])
