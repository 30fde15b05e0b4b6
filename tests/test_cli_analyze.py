"""`pinscope analyze`, `report` and `rules` run as the real command (typer's runner, real files)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ingest.simulate import simulate
from pinscope.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    d = tmp_path_factory.mktemp("traces")
    out = {}
    for name in ("rdma-writeback", "rdma-writeback-safe", "unpin-without-dirty"):
        simulate(name, d / f"{name}.trace")
        out[name] = d / f"{name}.trace"
    return out


def test_analyze_prints_the_report_and_cleans_up(traces, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    r = run("analyze", traces["rdma-writeback"])
    assert r.exit_code == 0, r.output
    assert "PIN_SPANS_WRITEBACK" in r.output and "critical" in r.output.lower()
    assert "pinscope_pin" in r.output  # evidence quoted from the trace
    assert list(tmp_path.iterdir()) == []  # temporary dataset removed


def test_fail_on(traces):
    assert run("analyze", traces["rdma-writeback"], "--fail-on", "critical").exit_code == 1
    assert run("analyze", traces["unpin-without-dirty"], "--fail-on", "critical").exit_code == 0
    assert run("analyze", traces["unpin-without-dirty"], "--fail-on", "high").exit_code == 1
    assert run("analyze", traces["rdma-writeback-safe"], "--fail-on", "info").exit_code == 0


def test_bad_usage_and_input_exit_2(traces, tmp_path):
    assert run("analyze", tmp_path / "missing.trace").exit_code == 2
    assert run("analyze", traces["rdma-writeback"], "--fail-on", "severe").exit_code == 2
    assert run("report", tmp_path).exit_code == 2  # not a dataset
    r = run("analyze", traces["rdma-writeback"], "--format", "html")
    assert r.exit_code == 2


def test_analyze_keeps_dataset_then_report_formats(traces, tmp_path):
    ds = tmp_path / "ds"
    assert run("analyze", traces["rdma-writeback"], "-o", ds).exit_code == 0
    assert (ds / "derived" / "findings" / "findings.parquet").exists()
    out = tmp_path / "r.json"
    r = run("report", ds, "--format", "json", "-o", out, "--fail-on", "high")
    assert r.exit_code == 1
    data = json.loads(out.read_text())
    assert [f["rule"] for f in data["findings"]] == ["PIN_SPANS_WRITEBACK"]
    assert data["findings"][0]["evidence"][0]["text"].strip().startswith("ib_write_bw")
    md = run("report", ds, "--format", "md")
    assert md.exit_code == 0 and "### 1. `PIN_SPANS_WRITEBACK`" in md.output
    html = tmp_path / "r.html"
    r = run("report", ds, "--format", "html", "-o", html)
    assert r.exit_code == 0, r.output
    assert html.read_text().lstrip().lower().startswith("<!doctype html")


def test_report_with_bad_user_rules_names_the_file(traces, tmp_path):
    ds = tmp_path / "ds"
    assert run("analyze", traces["rdma-writeback"], "-o", ds).exit_code == 0
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "broken.sql").write_text("/* id: BROKEN\nseverity: fatal\n*/ SELECT 1")
    r = run("report", ds, "--rules", rules)
    assert r.exit_code == 2
    assert "broken.sql" in r.output and "header lacks" in r.output


def test_rules_command(tmp_path):
    r = run("rules")
    assert r.exit_code == 0
    for rid in ("PIN_SPANS_WRITEBACK", "PIN_LEAK", "RELEASE_MISMATCH"):
        assert rid in r.output
    assert "cannot prove" in r.output
    one = run("rules", "pin_leak")
    assert one.exit_code == 0 and "PIN_SPANS_WRITEBACK" not in one.output
    assert run("rules", "NO_SUCH_RULE").exit_code == 2


def test_all_shows_every_finding(tmp_path):
    """Text and Markdown cap each rule at 50 findings; --all shows every one (analyze, report)."""
    trace = tmp_path / "mixed.trace"
    truth = simulate("mixed", trace, events=20000)
    n_wb = sum(e["rule"] == "PIN_SPANS_WRITEBACK" for e in truth["expected"])
    assert n_wb > 50
    ds = tmp_path / "ds"
    capped = run("analyze", trace, "-o", ds)
    assert capped.exit_code == 0, capped.output
    assert "more finding(s) not shown" in capped.output
    full = run("analyze", trace, "-o", tmp_path / "ds2", "--all")
    assert full.exit_code == 0, full.output
    assert "more finding(s) not shown" not in full.output
    md_capped = run("report", ds, "--format", "md")
    md_all = run("report", ds, "--format", "md", "--all")
    assert md_capped.exit_code == 0 and md_all.exit_code == 0
    shown = md_all.output.count("`PIN_SPANS_WRITEBACK`")
    assert "more finding(s) not shown" in md_capped.output
    assert "more finding(s) not shown" not in md_all.output
    assert md_capped.output.count("`PIN_SPANS_WRITEBACK`") < shown
    assert shown >= n_wb  # every writeback finding has its heading
    text_all = run("report", ds, "--all")
    assert text_all.exit_code == 0 and "more finding(s) not shown" not in text_all.output
