"""The `pinscope` command line: one typer app; each command lives in its own `cmd_*` module."""

from __future__ import annotations

import typer

from pinscope import (
    cmd_analyze,
    cmd_explain,
    cmd_ingest,
    cmd_probes,
    cmd_replay,
    cmd_report,
    cmd_rules,
    cmd_simulate,
    cmd_sql,
)

app = typer.Typer(
    name="pinscope",
    help="Find the pages pinned across writeback or truncate in Linux kernel traces.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for _module in (
    cmd_analyze,
    cmd_ingest,
    cmd_replay,
    cmd_report,
    cmd_explain,
    cmd_sql,
    cmd_rules,
    cmd_probes,
    cmd_simulate,
):
    _module.register(app)


def main() -> None:
    app()
