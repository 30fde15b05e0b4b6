"""`pinscope report DATASET`: findings as a terminal report, Markdown, JSON or HTML."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console

from pinscope.errors import EXIT_FINDINGS, user_errors


class Format(StrEnum):
    text = "text"
    md = "md"
    json = "json"
    html = "html"


class Severity(StrEnum):
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"
    info = "info"


FAIL_ON_HELP = (
    "Exit 1 when any finding is at or above this severity (uncertain findings, those with "
    "lost events in their span, count too)."
)
ALL_HELP = (
    "Show every finding in full in the text, Markdown and HTML reports (by default the first "
    "50 of each rule are shown and the rest counted; JSON always has them all)."
)


def report_and_exit(
    dataset: Path,
    *,
    fmt: Format,
    out: Path | None,
    fail_on: Severity | None,
    rules: Path | None,
    show_all: bool = False,
) -> None:
    """Replay if needed, run the rules, write the report; exit 1 on --fail-on findings."""
    from analysis.report import SHOW_PER_RULE, at_or_above, write_report
    from analysis.rules import analyze_dataset
    from ingest.dataset import collect_garbage, disk_errors, lock, require_dataset
    from replay.run import replay_dataset

    console = Console(highlight=False)
    require_dataset(dataset)
    per_rule = None if show_all else SHOW_PER_RULE
    # One lock from replay to the last quote: an ingest committing in between would otherwise
    # mix old findings with new traces. Concurrent ingests wait (or give up, naming us).
    with disk_errors(dataset), lock(dataset):
        collect_garbage(dataset)  # scratch of a writer killed earlier
        replay_dataset(dataset)
        findings = analyze_dataset(dataset, rules_dir=rules)
        write_report(dataset, findings, fmt.value, out, console, per_rule=per_rule)
    if fail_on is not None:
        n = at_or_above(findings, fail_on.value)
        if n:
            Console(stderr=True, highlight=False).print(
                f"pinscope: {n} finding(s) at or above {fail_on.value}"
            )
            raise typer.Exit(EXIT_FINDINGS)


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        dataset: Path = typer.Argument(..., help="A dataset directory (from `pinscope ingest`)."),
        fmt: Format = typer.Option(Format.text, "--format", "-f", help="Report format."),
        out: Path | None = typer.Option(
            None, "-o", "--output", help="Write to FILE (required for html)."
        ),
        fail_on: Severity | None = typer.Option(None, "--fail-on", help=FAIL_ON_HELP),
        rules: Path | None = typer.Option(
            None, "--rules", help="A directory of your own .sql rules, run with the catalogue."
        ),
        show_all: bool = typer.Option(False, "--all", help=ALL_HELP),
    ) -> None:
        """Findings of a dataset: summary by rule and severity, then each with its evidence."""
        with user_errors():
            report_and_exit(
                dataset, fmt=fmt, out=out, fail_on=fail_on, rules=rules, show_all=show_all
            )
