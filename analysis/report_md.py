"""The Markdown report: pasted into a bug tracker, so plain tables and fenced evidence."""

from __future__ import annotations

from analysis.evidence import Quote
from analysis.report import (
    SHOW_PER_RULE,
    Report,
    page_text,
    span_text,
    task_text,
    trace_problems,
)


def _cell(value: object) -> str:
    return str(value if value is not None else "-").replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return out


def render_md(report: Report, *, per_rule: int | None = SHOW_PER_RULE) -> str:
    """Summary tables, then the first `per_rule` findings of each rule in full (None: all)."""
    s = report.summary
    out = ["# pinscope report", ""]
    out += ["## Traces", ""]
    out += _table(
        ["trace", "format", "kernel", "lines", "lost", "rejects", "data quality"],
        [
            [
                t.get("trace_id"),
                t.get("format"),
                t.get("kernel") or "unknown",
                (t.get("lines") or {}).get("total"),
                t.get("lost_events") or 0,
                (t.get("lines") or {}).get("rejected") or 0,
                "; ".join(trace_problems(t)) or "ok",
            ]
            for t in report.traces
        ],
    )
    out += ["", "## Summary", ""]
    if not s["total"]:
        out += ["No findings.", ""]
        return "\n".join(out)
    sev = ", ".join(f"{n} {k}" for k, n in s["by_severity"].items() if n)
    out += [f"**{s['total']} finding(s)**: {sev} ({s['uncertain']} uncertain)", ""]
    out += _table(
        ["rule", "severity", "confidence", "count", "uncertain"],
        [
            [r["rule"], r["severity"], r["confidence"], r["count"], r["uncertain"]]
            for r in s["by_rule"]
        ],
    )
    if s["top_callers"]:
        out += ["", "**Top callers**", ""]
        out += _table(["caller", "count"], [[r["caller"], r["count"]] for r in s["top_callers"]])
    if s["top_tasks"]:
        out += ["", "**Top tasks**", ""]
        out += _table(
            ["comm", "pid", "count"], [[r["comm"], r["pid"], r["count"]] for r in s["top_tasks"]]
        )
    out += ["", "## Findings", ""]
    rows, hidden = report.shown(per_rule)
    quotes = report.quotes_for(rows)
    for i, f in enumerate(rows, 1):
        flag = " — **uncertain** (lost events in this span)" if f["uncertain"] else ""
        out += [f"### {i}. `{f['rule']}` — {f['severity']} ({f['confidence']}){flag}", ""]
        out += [
            f"- **trace**: `{f['trace_id']}`",
            f"- **task**: `{task_text(f)}`  **caller**: `{f.get('caller') or '-'}`",
            f"- **page**: {page_text(f)}",
            f"- **time**: {span_text(f)}",
            f"- **what**: {f.get('message') or ''}",
        ]
        if f.get("kernel_context"):
            out.append(f"- **kernel**: {f['kernel_context']}")
        out += ["", "```"]
        for q in report.evidence(f, quotes):
            if isinstance(q, Quote):
                out.append(f"{q.line:>9} | {q.render().strip()}")
            else:
                out.append(f"{q:>9} | (line not available)")
        out += ["```", ""]
    if hidden:
        more = ", ".join(f"{n} `{rule}`" for rule, n in hidden.items())
        out += [
            f"*{sum(hidden.values())} more finding(s) not shown ({more}): the first {per_rule} "
            "of each rule are shown; the JSON report has them all.*",
            "",
        ]
    return "\n".join(out)
