"""The JSON report of DESIGN.md: {"findings": [...], "summary": {...}, "traces": [...]}.

Each finding carries the rule columns, `uncertain`, `kernel_context`, and `evidence` (the quoted
lines) so a CI job or a script needs nothing else.
"""

from __future__ import annotations

import json
from typing import Any

from analysis.evidence import Quote
from analysis.report import Report


def report_dict(report: Report) -> dict[str, Any]:
    findings = []
    for f in report.rows():
        evidence = [
            {"line": q.line, "text": q.text, "reconstructed": q.reconstructed}
            if isinstance(q, Quote)
            else {"line": q, "text": None, "reconstructed": False}
            for q in report.evidence(f)
        ]
        findings.append({**f, "evidence": evidence})
    return {"findings": findings, "summary": report.summary, "traces": report.traces}


def render_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, default=str) + "\n"
