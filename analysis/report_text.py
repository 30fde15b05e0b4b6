"""The terminal report (rich): what `analyze` and `report` print for a person at a console."""

from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from analysis.evidence import Quote
from analysis.report import (
    SHOW_PER_RULE,
    Report,
    page_text,
    span_text,
    task_text,
    trace_problems,
)

SEVERITY_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}


def _traces_table(report: Report) -> Table:
    t = Table(title="Traces", title_justify="left", expand=False)
    for col in ("trace", "format", "kernel", "lines", "events", "lost", "rejects", "data quality"):
        t.add_column(col)
    for tr in report.traces:
        lines = tr.get("lines") or {}
        t.add_row(
            escape(str(tr.get("trace_id"))),
            escape(str(tr.get("format") or "-")),
            escape(str(tr.get("kernel") or "unknown")),
            str(lines.get("total", "-")),
            str(lines.get("events", "-")),
            str(tr.get("lost_events") or 0),
            str(lines.get("rejected") or 0),
            _quality_cell(tr),
        )
    return t


def _quality_cell(tr: dict) -> str:
    n = len(trace_problems(tr))
    return "ok" if not n else f"[yellow]{n} warning{'s' if n > 1 else ''} (below)[/]"


def _quality_notes(report: Report, console: Console) -> None:
    """Each trace's data-quality warnings on lines of their own: a table cell would cut them."""
    for tr in report.traces:
        for note in trace_problems(tr):
            console.print(
                f"[yellow]data quality:[/] {escape(str(tr.get('trace_id')))}: {escape(note)}",
                soft_wrap=True,
            )


def _summary_table(report: Report) -> Table:
    t = Table(title="Findings by rule", title_justify="left")
    for col in ("rule", "severity", "confidence", "count", "uncertain"):
        t.add_column(col, justify="right" if col in ("count", "uncertain") else "left")
    for row in report.summary["by_rule"]:
        sev = row["severity"]
        t.add_row(
            row["rule"],
            Text(sev, style=SEVERITY_STYLE.get(sev, "")),
            row["confidence"],
            str(row["count"]),
            str(row["uncertain"]),
        )
    return t


def _top_table(title: str, rows: list[dict], cols: tuple[str, ...]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in cols:
        t.add_column(c, justify="right" if c in ("count", "pid") else "left")
    for r in rows:
        t.add_row(*(escape(str(r.get(c))) for c in cols))
    return t


def _finding_panel(i: int, f: dict, report: Report, quotes: dict) -> Panel:
    sev = f["severity"]
    head = Text.assemble(
        (f"#{i} ", "bold"),
        (f" {sev.upper()} ", SEVERITY_STYLE.get(sev, "")),
        " ",
        (f["rule"], "bold"),
        f"  ({f['confidence']}",
        ", UNCERTAIN: lost events in this span" if f["uncertain"] else "",
        ")",
    )
    meta = Table.grid(padding=(0, 2))
    meta.add_column(style="dim")
    meta.add_column()
    meta.add_row("trace", escape(f["trace_id"]))
    meta.add_row("task", escape(task_text(f)))
    meta.add_row("caller", escape(f.get("caller") or "-"))
    meta.add_row("page", escape(page_text(f)))
    meta.add_row("time", escape(span_text(f)))
    meta.add_row("what", escape(f.get("message") or ""))
    if f.get("kernel_context"):
        meta.add_row("kernel", escape(f["kernel_context"]))
    ev = Text()
    for q in report.evidence(f, quotes):
        if isinstance(q, Quote):
            ev.append(f"{q.line:>9} │ ", style="dim")
            ev.append(q.text.strip())
            if q.reconstructed:
                ev.append("  (reconstructed)", style="italic dim")
        else:
            ev.append(f"{q:>9} │ ", style="dim")
            ev.append("(line not available)", style="italic dim")
        ev.append("\n")
    ev.rstrip()
    return Panel(Group(meta, Text("evidence:", style="dim"), ev), title=head, title_align="left")


def render_text(report: Report, console: Console, *, per_rule: int | None = SHOW_PER_RULE) -> None:
    """Header with the traces, summary tables, then the findings with their evidence.

    The first `per_rule` findings of each rule are shown in full (None: all), the rest counted:
    the JSON report has every one."""
    console.print(_traces_table(report))
    _quality_notes(report, console)
    s = report.summary
    if s["total"] == 0:
        console.print("[bold green]No findings.[/]")
        return
    sev = ", ".join(f"{n} {k}" for k, n in s["by_severity"].items() if n)
    console.print(
        f"\n[bold]{s['total']} finding(s)[/]: {sev}"
        + (f" ({s['uncertain']} uncertain)" if s["uncertain"] else "")
    )
    console.print(_summary_table(report))
    if s["top_callers"]:
        console.print(_top_table("Top callers", s["top_callers"], ("caller", "count")))
    if s["top_tasks"]:
        console.print(_top_table("Top tasks", s["top_tasks"], ("comm", "pid", "count")))
    rows, hidden = report.shown(per_rule)
    quotes = report.quotes_for(rows)
    for i, f in enumerate(rows, 1):
        console.print(_finding_panel(i, f, report, quotes))
    if hidden:
        more = ", ".join(f"{n} {rule}" for rule, n in hidden.items())
        console.print(
            f"[dim]{sum(hidden.values())} more finding(s) not shown ({escape(more)}): the first "
            f"{per_rule} of each rule are shown; the JSON report (--format json) has them all.[/]"
        )
