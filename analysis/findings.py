"""The one shape every rule returns (DESIGN.md "Rules"), plus what pinscope adds to each row."""

from __future__ import annotations

import polars as pl

SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")
CONFIDENCES: tuple[str, ...] = ("certain", "heuristic")

# Columns a rule's SQL must return, in this order.
RULE_COLUMNS: dict[str, pl.DataType] = {
    "rule": pl.String(),
    "severity": pl.String(),
    "confidence": pl.String(),
    "trace_id": pl.String(),
    "pfn": pl.UInt64(),
    "dev": pl.UInt32(),
    "ino": pl.UInt64(),
    "index": pl.UInt64(),
    "pid": pl.Int32(),
    "comm": pl.String(),
    "caller": pl.String(),
    "start_ts_ns": pl.Int64(),
    "end_ts_ns": pl.Int64(),
    "evidence_lines": pl.List(pl.Int64()),
    "message": pl.String(),
}

# Added by the runner: a lost-events gap overlaps [start, end]; kernel-version context.
FINDINGS_SCHEMA: dict[str, pl.DataType] = {
    **RULE_COLUMNS,
    "uncertain": pl.Boolean(),
    "kernel_context": pl.String(),
}


def severity_rank(severity: str) -> int:
    """Order severities so --fail-on can compare them."""
    return SEVERITIES.index(severity)
