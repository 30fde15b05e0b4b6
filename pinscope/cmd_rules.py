"""`pinscope rules`: the hazard catalogue, documented from the rule files' own headers."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pinscope.errors import user_errors

_LABELS = {
    "means": "means",
    "predicts": "predicts",
    "cannot_prove": "cannot prove",
    "grain": "grain",
    "evidence": "evidence",
    "references": "references",
    "file": "file",
}


def register(app: typer.Typer) -> None:
    @app.command("rules")
    def rules(
        ids: list[str] | None = typer.Argument(None, help="Only these rule ids."),
        rules_dir: Path | None = typer.Option(
            None, "--rules", help="Also list (and validate) the rules in this directory."
        ),
        brief: bool = typer.Option(False, "--brief", help="One line per rule."),
    ) -> None:
        """The rule catalogue with each rule's documentation."""
        with user_errors():
            from analysis.rules import load_rules
            from ingest.errors import InputError

            catalogue = load_rules(rules_dir)
            if ids:
                known = {r.id for r in catalogue}
                unknown = [i for i in ids if i.upper() not in known]
                if unknown:
                    raise InputError(
                        f"unknown rule {', '.join(unknown)}: expected one of "
                        f"{', '.join(sorted(known))}"
                    )
                wanted = {i.upper() for i in ids}
                catalogue = [r for r in catalogue if r.id in wanted]
            console = Console(highlight=False)
            if brief:
                t = Table("rule", "severity", "confidence", "means")
                for r in catalogue:
                    t.add_row(r.id, r.severity, r.confidence, escape(r.means.split(". ")[0]))
                console.print(t)
                return
            for r in catalogue:
                console.print(
                    f"[bold]{r.id}[/]  {r.severity} · {r.confidence}"
                    + ("" if r.builtin else "  [dim](user rule)[/]")
                )
                doc = r.doc()
                for key, label in _LABELS.items():
                    if doc.get(key):
                        console.print(f"  [dim]{label}:[/] {escape(doc[key])}")
                console.print()
