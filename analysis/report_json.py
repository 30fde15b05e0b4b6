"""The JSON report of DESIGN.md: {"findings": [...], "summary": {...}, "traces": [...]}.

Each finding carries the rule columns, `uncertain`, `kernel_context`, and `evidence` (the quoted
lines) so a CI job or a script needs nothing else. Every finding is in it, however many: the
evidence is joined in polars and the findings serialized by polars (one object per line), so a
report of hundreds of thousands of findings builds no Python object per finding.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from analysis.report import Report

_EVIDENCE = pl.List(
    pl.Struct({"line": pl.Int64(), "text": pl.String(), "reconstructed": pl.Boolean()})
)


def findings_frame(report: Report) -> pl.DataFrame:
    """The findings in report order, each with its `evidence` list (line, text, reconstructed)."""
    f = report.findings.with_row_index("_i")
    lines = (
        f.select("_i", "trace_id", pl.col("evidence_lines").alias("line"))
        .explode("line")
        .drop_nulls("line")
        .with_row_index("_j")
        .join(report.quote_table, on=["trace_id", "line"], how="left")
        .sort("_j")
        .group_by("_i", maintain_order=True)
        .agg(pl.struct("line", "text", pl.col("reconstructed").fill_null(False)).alias("evidence"))
    )
    return (
        f.join(lines, on="_i", how="left", maintain_order="left")
        .with_columns(pl.col("evidence").fill_null(pl.lit([], dtype=_EVIDENCE)).cast(_EVIDENCE))
        .drop("_i")
    )


def report_dict(report: Report) -> dict[str, Any]:
    return {
        "findings": findings_frame(report).to_dicts(),
        "summary": report.summary,
        "traces": report.traces,
    }


def render_json(report: Report) -> str:
    findings = findings_frame(report)
    rows = findings.write_ndjson().splitlines() if findings.height else []
    head = json.dumps({"summary": report.summary, "traces": report.traces}, indent=2, default=str)
    body = ",\n".join(f"    {r}" for r in rows)
    # the same document as json.dumps(report_dict(...)), findings first, one per line
    return '{\n  "findings": [' + (f"\n{body}\n  " if rows else "") + "],\n" + head[2:] + "\n"
