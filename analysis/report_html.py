"""The HTML report: one self-contained offline file, a timeline per finding.

It gets attached to bug reports and opened on machines without network access, so everything
(CSS, a little JS for filtering, the SVG timelines) is inline and nothing is fetched. Every
string that came from a trace is escaped: comm, caller and bodies are attacker-controlled.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from string import Template

import polars as pl

from analysis.findings import SEVERITIES
from analysis.plot import legend_svg, timeline_svg
from analysis.report import SHOW_PER_RULE, first_per_rule, trace_problems
from analysis.timeline import PageRef, build_timeline, load_pages, ts_text

# Findings beyond this many are listed without a drawn timeline (the file stays openable).
MAX_TIMELINES = 1000


def _e(value: object) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


def _template() -> Template:
    text = resources.files("analysis").joinpath("report.html.tmpl").read_text(encoding="utf-8")
    return Template(text)


def _page_of(f: dict) -> PageRef:
    return PageRef(f["trace_id"], f.get("pfn"), f.get("dev"), f.get("ino"), f.get("index"))


def _dev_text(dev: int | None) -> str:
    return "-" if dev is None else f"{dev >> 20}:{dev & 0xFFFFF}"


def _quotes(dataset: Path, rows: list[dict]) -> tuple[dict[tuple[str, int], str], str | None]:
    """Evidence lines quoted from the source, when analysis.evidence can (it is optional)."""
    try:
        from analysis.evidence import quote_lines  # lazy: written by another module owner
    except ImportError:
        return {}, None
    wanted: dict[str, set[int]] = {}
    for f in rows:
        wanted.setdefault(f["trace_id"], set()).update(f.get("evidence_lines") or [])
    quotes: dict[tuple[str, int], str] = {}
    problem = None
    for trace_id, lines in wanted.items():
        try:
            got = quote_lines(dataset, trace_id, sorted(lines))
        except Exception as exc:  # degrade: the report still lists the line numbers
            problem = f"source lines unavailable for trace {trace_id}: {exc}"
            continue
        quotes.update({(trace_id, int(k)): v for k, v in (got or {}).items()})
    return quotes, problem


def _summary(findings: pl.DataFrame) -> str:
    if findings.is_empty():
        return '<p class="none">No findings.</p>'
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    table = (
        findings.group_by("rule", "severity", "confidence")
        .agg(
            n=pl.len(),
            pages=pl.struct("trace_id", "pfn", "ino", "index").n_unique(),
            uncertain=pl.col("uncertain").fill_null(False).sum(),
        )
        .with_columns(_r=pl.col("severity").replace_strict(rank, default=-1))
        .sort(["_r", "n", "rule"], descending=[True, True, False])
    )
    rows = "".join(
        f'<tr><td><span class="sev sev-{_e(r["severity"])}">{_e(r["severity"])}</span></td>'
        f"<td><code>{_e(r['rule'])}</code></td><td>{_e(r['confidence'])}</td>"
        f'<td class="num">{r["n"]}</td><td class="num">{r["pages"]}</td>'
        f'<td class="num">{r["uncertain"]}</td></tr>'
        for r in table.iter_rows(named=True)
    )
    return (
        '<table class="summary"><tr><th>severity</th><th>rule</th><th>confidence</th>'
        "<th>findings</th><th>pages</th><th>uncertain</th></tr>" + rows + "</table>"
    )


def _flatten(prefix: str, value: object, out: list[tuple[str, object]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out.append((prefix, json.dumps(value, default=str)))
    else:
        out.append((prefix, value))


def _traces(traces: list[dict]) -> str:
    if not traces:
        return '<p class="note">The manifest lists no traces.</p>'
    blocks = []
    for t in traces:
        items: list[tuple[str, object]] = []
        _flatten("", t, items)
        rows = "".join(f'<tr><td>{_e(k)}</td><td class="mono">{_e(v)}</td></tr>' for k, v in items)
        lines = t.get("lines") if isinstance(t.get("lines"), dict) else {}
        blocks.append(
            f'<details class="trace"><summary>trace <code>{_e(t.get("trace_id"))}</code> · '
            f"{_e(t.get('source'))} · {_e(t.get('format'))} · kernel "
            f"{_e(t.get('kernel') or 'unknown')} · {_e(lines.get('total'))} lines, "
            f"{_e(lines.get('events'))} events, {_e(lines.get('rejected'))} rejected · "
            f"lost events {_e(t.get('lost_events'))}</summary>"
            f'<table class="trace-info">{rows}</table></details>'
        )
        # Data-quality warnings stay visible: findings on a damaged trace must be read with them.
        notes = trace_problems(t)
        if notes:
            items_html = "".join(f"<li>{_e(n)}</li>" for n in notes)
            blocks.append(f'<ul class="quality">{items_html}</ul>')
    return "".join(blocks)


def _fields(f: dict) -> str:
    pfn = f.get("pfn")
    rows = [
        ("rule", f"<code>{_e(f['rule'])}</code>"),
        ("severity", f'<span class="sev sev-{_e(f["severity"])}">{_e(f["severity"])}</span>'),
        ("confidence", _e(f.get("confidence"))),
        ("trace", f"<code>{_e(f['trace_id'])}</code>"),
        ("pfn", "-" if pfn is None else f"<code>{pfn:#x}</code> ({pfn})"),
        (
            "file",
            f"dev {_e(_dev_text(f.get('dev')))} ino {_e(f.get('ino'))} index {_e(f.get('index'))}"
            if f.get("ino") is not None
            else "-",
        ),
        ("task", f"{_e(f.get('comm'))}-{_e(f.get('pid'))}"),
        ("caller", f"<code>{_e(f.get('caller'))}</code>" if f.get("caller") else "-"),
        (
            "time",
            f"{ts_text(f.get('start_ts_ns'))} → {ts_text(f.get('end_ts_ns'))}"
            if f.get("end_ts_ns") is not None
            else f"{ts_text(f.get('start_ts_ns'))} → (open)",
        ),
        (
            "uncertain",
            '<span class="uncertain">yes: a lost-events gap overlaps this finding</span>'
            if f.get("uncertain")
            else "no",
        ),
    ]
    if f.get("kernel_context"):
        rows.append(("kernel", _e(f["kernel_context"])))
    return (
        '<table class="fields">'
        + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
        + "</table>"
    )


def _evidence(f: dict, quotes: dict[tuple[str, int], str]) -> str:
    lines = [int(x) for x in (f.get("evidence_lines") or []) if x is not None]
    if not lines:
        return '<div class="evidence note">no evidence lines</div>'
    rows = "".join(
        f'<tr><td class="num">{n}</td><td class="quote">{_e(quotes.get((f["trace_id"], n), ""))}'
        "</td></tr>"
        for n in lines
    )
    return (
        '<div class="evidence"><b>evidence lines</b> '
        f'<span class="mono">{", ".join(str(n) for n in lines)}</span>'
        f'<table class="evidence-lines"><tr><th>line</th><th>text</th></tr>{rows}</table></div>'
    )


def render_html(
    dataset: Path,
    findings: pl.DataFrame,
    traces: list[dict],
    out: Path,
    *,
    per_rule: int | None = SHOW_PER_RULE,
) -> None:
    """Write the report: summary, traces, and each finding with its fields, evidence, timeline.

    The first `per_rule` findings of each rule are shown (None: all), the rest counted in the
    summary: a page of 100k findings is hundreds of MB no browser opens, and the JSON report
    has them all."""
    dataset = Path(dataset)
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    ordered = (
        findings.with_columns(
            _r=pl.col("severity").replace_strict(rank, default=-1, return_dtype=pl.Int64)
        )
        .sort(["_r", "trace_id", "start_ts_ns", "rule"], descending=[True, False, False, False])
        .drop("_r")
    )
    shown = ordered if per_rule is None else first_per_rule(ordered, per_rule)
    rows = shown.to_dicts()
    hidden = ordered.height - shown.height

    drawn = rows[:MAX_TIMELINES]
    pages = list(dict.fromkeys(_page_of(f) for f in drawn))
    page_events, intervals = load_pages(dataset, pages)
    quotes, quote_problem = _quotes(dataset, rows)

    sections = []
    for i, f in enumerate(rows, start=1):
        page = _page_of(f)
        if i <= MAX_TIMELINES:
            tl = build_timeline(
                page_events,
                intervals,
                page,
                f.get("start_ts_ns"),
                f.get("end_ts_ns"),
                f.get("evidence_lines") or [],
            )
            drawing = (
                f'<div class="tlwrap">{timeline_svg(tl, f"f{i}", title=page.label())}</div>'
                if not (tl.spans.is_empty() and tl.points.is_empty())
                else '<p class="note">no replayed events for this page in the dataset</p>'
            )
        else:
            drawing = f'<p class="note">timeline omitted: over {MAX_TIMELINES} findings</p>'
        search = " ".join(
            str(f.get(k) or "")
            for k in ("rule", "severity", "comm", "caller", "trace_id", "message")
        )
        sections.append(
            f'<details class="finding sev-{_e(f["severity"])}-box" open id="finding-{i}" '
            f'data-severity="{_e(f["severity"])}" data-rule="{_e(f["rule"])}" '
            f'data-search="{_e(search)}">'
            f'<summary><b>#{i}</b> <span class="sev sev-{_e(f["severity"])}">'
            f"{_e(f['severity'])}</span> <code>{_e(f['rule'])}</code> — {_e(page.label())} — "
            f"{_e(f.get('comm'))}-{_e(f.get('pid'))}"
            f"{' · ' + _e(f.get('caller')) if f.get('caller') else ''}"
            f"{' · <span class=uncertain>uncertain</span>' if f.get('uncertain') else ''}"
            f'</summary><p class="message">{_e(f.get("message"))}</p>'
            f"{_fields(f)}{_evidence(f, quotes)}{drawing}</details>"
        )

    present = [s for s in reversed(SEVERITIES) if s in set(findings.get_column("severity"))]
    controls = (
        '<div class="controls">Show: '
        + "".join(
            f'<label><input type="checkbox" class="sevfilter" value="{_e(s)}" checked> '
            f'<span class="sev sev-{_e(s)}">{_e(s)}</span></label>'
            for s in present
        )
        + '<label>filter <input id="q" type="search" placeholder="rule, task, caller…"></label>'
        '<button id="expand" type="button">expand all</button> '
        '<button id="collapse" type="button">collapse all</button> '
        f'<span class="note"><span id="shown">{len(rows)}</span> of {len(rows)} shown</span></div>'
    )
    capped = (
        f'<p class="note" id="capped">{hidden} more finding(s) not shown: the first {per_rule} '
        "of each rule are (pinscope report --all shows every one; the JSON report "
        "(--format json) has them all).</p>"
        if hidden
        else ""
    )
    title = f"pinscope report — {dataset.name}"
    body = (
        f"<h1>{_e(title)}</h1>"
        f'<div class="sub">{ordered.height} findings in {len(traces)} trace(s) · dataset '
        f"<code>{_e(dataset)}</code> · generated "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}</div>"
        f"<h2>Summary</h2>{_summary(findings)}"
        f"<h2>Traces</h2>{_traces(traces)}"
        f'<h2>Findings</h2><div class="legendbox">{legend_svg()}</div>'
        + (f'<p class="note">{_e(quote_problem)}</p>' if quote_problem else "")
        + (controls if rows else "")
        + capped
        + "".join(sections)
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_template().substitute(title=_e(title), body=body), encoding="utf-8")
