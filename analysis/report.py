"""What every report format shows, assembled once: findings in order, summaries, traces, quotes.

The terminal, Markdown and JSON renderers only lay this out, so the three always agree on what
was found, and in which order (most severe first, then by time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl

from analysis.evidence import QUOTE_SCHEMA, Quote, quote_frame, quotes_of
from analysis.findings import FINDINGS_SCHEMA, SEVERITIES, severity_rank
from ingest import dataset as ds

PAGE_SIZE = 4096
TOP = 10
# Findings shown in full per rule by the terminal and Markdown reports (None: all); the rest are
# counted. Hundreds of thousands of panels help nobody; the JSON report always has every one.
SHOW_PER_RULE = 50


@dataclass
class Report:
    findings: pl.DataFrame  # FINDINGS_SCHEMA, sorted
    summary: dict[str, Any]
    traces: list[dict[str, Any]]
    quote_table: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=QUOTE_SCHEMA))

    @cached_property
    def quotes(self) -> dict[tuple[str, int], Quote]:
        return quotes_of(self.quote_table)

    def rows(self) -> list[dict[str, Any]]:
        return self.findings.to_dicts()

    def shown(self, per_rule: int | None = SHOW_PER_RULE) -> tuple[list[dict[str, Any]], dict]:
        """The first `per_rule` findings of each rule (report order), and {rule: n not shown}."""
        if per_rule is None:
            return self.rows(), {}
        kept = first_per_rule(self.findings, per_rule)
        rest = (
            self.findings.group_by("rule", maintain_order=True)
            .len()
            .filter(pl.col("len") > per_rule)
        )
        hidden = {r: n - per_rule for r, n in rest.iter_rows()}
        return kept.to_dicts(), hidden

    def quotes_for(self, rows: list[dict[str, Any]]) -> dict[tuple[str, int], Quote]:
        """The quotes of just these findings' evidence (a capped report needs no others)."""
        want = pl.DataFrame(
            {
                "trace_id": [f["trace_id"] for f in rows],
                "line": [f["evidence_lines"] or [] for f in rows],
            },
            schema={"trace_id": pl.String(), "line": pl.List(pl.Int64())},
        ).explode("line")
        return quotes_of(self.quote_table.join(want.unique(), on=["trace_id", "line"]))

    def evidence(
        self, finding: dict[str, Any], quotes: dict[tuple[str, int], Quote] | None = None
    ) -> list[Quote | int]:
        """Each evidence line as a Quote, or its bare number when nothing could quote it."""
        quotes = self.quotes if quotes is None else quotes
        return [quotes.get((finding["trace_id"], n), n) for n in finding["evidence_lines"] or []]


def sort_findings(findings: pl.DataFrame) -> pl.DataFrame:
    """Most severe first, then by time: what a reader should look at first."""
    return (
        findings.with_columns(
            pl.col("severity")
            .replace_strict(
                {s: -i for i, s in enumerate(SEVERITIES)}, default=1, return_dtype=pl.Int32
            )
            .alias("_rank")
        )
        .sort(["_rank", "start_ts_ns", "trace_id", "rule", "pfn"], nulls_last=True)
        .drop("_rank")
    )


def summarize(findings: pl.DataFrame, top: int = TOP) -> dict[str, Any]:
    """Counts by rule and severity, and the callers and tasks that appear most."""
    by_rule = (
        findings.group_by("rule", "severity", "confidence")
        .agg(pl.len().alias("count"), pl.col("uncertain").sum().alias("uncertain"))
        .pipe(sort_findings_like)
    )
    by_sev = findings.group_by("severity").agg(pl.len().alias("count"))
    sev_counts = dict(zip(by_sev["severity"].to_list(), by_sev["count"].to_list(), strict=True))
    callers = (
        findings.filter(pl.col("caller").is_not_null())
        .group_by("caller")
        .agg(pl.len().alias("count"))
        .sort(["count", "caller"], descending=[True, False])
        .head(top)
    )
    tasks = (
        findings.filter(pl.col("pid").is_not_null())
        .group_by("comm", "pid")
        .agg(pl.len().alias("count"))
        .sort(["count", "pid"], descending=[True, False])
        .head(top)
    )
    return {
        "total": findings.height,
        "uncertain": int(findings["uncertain"].sum() or 0),
        "by_severity": {s: sev_counts.get(s, 0) for s in reversed(SEVERITIES)},
        "by_rule": by_rule.to_dicts(),
        "top_callers": callers.to_dicts(),
        "top_tasks": tasks.to_dicts(),
    }


def sort_findings_like(df: pl.DataFrame) -> pl.DataFrame:
    return (
        df.with_columns(
            pl.col("severity")
            .replace_strict(
                {s: -i for i, s in enumerate(SEVERITIES)}, default=1, return_dtype=pl.Int32
            )
            .alias("_rank")
        )
        .sort(["_rank", "rule"])
        .drop("_rank")
    )


def first_per_rule(findings: pl.DataFrame, n: int) -> pl.DataFrame:
    """The first n findings of each rule, in the frame's order."""
    return findings.filter(pl.int_range(pl.len()).over("rule") < n)


def build_report(
    dataset: Path | None,
    findings: pl.DataFrame,
    *,
    traces: list[dict[str, Any]] | None = None,
    quote: bool = True,
    quote_per_rule: int | None = None,
) -> Report:
    """The report data for a dataset's findings; quotes the evidence when `quote`, of only the
    first `quote_per_rule` findings of each rule when the renderer shows no more: then only
    the parts of the source holding their lines are split into lines (the whole file is still
    read, to check its hash)."""
    findings = sort_findings(findings.select(list(FINDINGS_SCHEMA)))
    if traces is None:
        traces = ds.traces(dataset) if dataset is not None else []
    cited = findings if quote_per_rule is None else first_per_rule(findings, quote_per_rule)
    quotes = (
        quote_frame(dataset, cited)
        if quote and dataset is not None
        else pl.DataFrame(schema=QUOTE_SCHEMA)
    )
    return Report(findings, summarize(findings), traces, quotes)


def at_or_above(findings: pl.DataFrame, severity: str) -> int:
    """How many findings (uncertain ones included) are at or above `severity`: for --fail-on."""
    rank = severity_rank(severity)
    return findings.filter(
        pl.col("severity").is_in([s for s in SEVERITIES if severity_rank(s) >= rank])
    ).height


# ---------------------------------------------------------------------------- shared wording


def dev_text(dev: int | None) -> str:
    return "-" if dev is None else f"{dev >> 20}:{dev & 0xFFFFF}"


def page_text(f: dict[str, Any]) -> str:
    """`pfn 0x… · file 8:1:12 @ 12288` — what a kernel engineer looks up first."""
    parts = []
    if f.get("pfn") is not None:
        parts.append(f"pfn {f['pfn']:#x}")
    if f.get("ino") is not None:
        where = f"file {dev_text(f.get('dev'))}:{f['ino']}"
        if f.get("index") is not None:
            where += f" @ {f['index'] * PAGE_SIZE} (index {f['index']})"
        parts.append(where)
    return " · ".join(parts) or "-"


def task_text(f: dict[str, Any]) -> str:
    if f.get("pid") is None:
        return "-"
    return f"{f.get('comm') or '?'}/{f['pid']}"


def span_text(f: dict[str, Any]) -> str:
    start, end = f.get("start_ts_ns"), f.get("end_ts_ns")

    def s(ts: int | None) -> str:
        return "trace end" if ts is None else f"{ts / 1e9:.6f}"

    if start is None:
        return s(end)
    dur = "" if end is None else f" ({(end - start) / 1e6:.3f} ms)"
    return f"{s(start)} → {s(end)}{dur}"


def trace_problems(t: dict[str, Any]) -> list[str]:
    """Data-quality notes of one trace: lost events, rejected lines, warnings."""
    notes = []
    lines = t.get("lines") or {}
    if t.get("lost_events"):
        notes.append(f"{t['lost_events']} events lost")
    if t.get("lost_markers_unknown"):
        notes.append(f"{t['lost_markers_unknown']} lost-event markers without a count")
    if lines.get("rejected"):
        notes.append(f"{lines['rejected']} lines rejected")
    for k, v in (t.get("warnings") or {}).items():
        if v:
            notes.append(f"{k.replace('_', ' ')}: {v}")
    return notes


FORMATS: tuple[str, ...] = ("text", "md", "json", "html")


def write_report(
    dataset: Path,
    findings: pl.DataFrame,
    fmt: str,
    out: Path | None,
    console: Any,
    *,
    per_rule: int | None = SHOW_PER_RULE,
) -> None:
    """Render one format to `out` (or the console); HTML always goes to a file.

    `per_rule` caps the findings shown in full per rule in the text, Markdown and HTML formats
    (None: all); JSON always carries every finding."""
    from ingest.errors import InputError

    if fmt == "html":
        if out is None:
            raise InputError("--format html writes a file: give it one with -o FILE")
        from analysis.report_html import render_html  # another module; loaded only when asked

        render_html(dataset, sort_findings(findings), ds.traces(dataset), out, per_rule=per_rule)
        console.print(f"wrote {out}", highlight=False)
        return
    # text and Markdown show the first per_rule findings of each rule: only theirs are quoted
    capped = per_rule if fmt in ("text", "md") else None
    report = build_report(dataset, findings, quote_per_rule=capped)
    if fmt == "text":
        from rich.console import Console

        from analysis.report_text import render_text

        if out is None:
            render_text(report, console, per_rule=per_rule)
        else:
            with open(out, "w") as fh:
                console_file = Console(file=fh, width=120, color_system=None)
                render_text(report, console_file, per_rule=per_rule)
        return
    if fmt == "md":
        from analysis.report_md import render_md

        text = render_md(report, per_rule=per_rule)
    elif fmt == "json":
        from analysis.report_json import render_json

        text = render_json(report)
    else:
        raise InputError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if out is None:
        import sys

        sys.stdout.write(text)
    else:
        Path(out).write_text(text)
