"""`pinscope simulate`: synthetic traces of named workloads, with the findings they must yield."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ingest.scenarios import listing
from ingest.simulate import simulate, truth_path
from ingest.writers import DEFAULT_KERNEL, FORMATS
from pinscope.errors import fail, user_errors


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate_cmd(
        scenario: str = typer.Argument(None, help="Scenario name (see --list)."),
        output: Path = typer.Option(
            None,
            "-o",
            "--output",
            help="Trace file to write (.gz compresses); FILE.truth.json beside it.",
        ),
        events: int = typer.Option(
            None,
            "--events",
            "-n",
            help=(
                "mixed: about how many records to simulate; ftrace, trace-cmd and perf write "
                "about that many lines, bpftrace formats (no scheduler lines) about half."
            ),
        ),
        fmt: str = typer.Option("ftrace", "--format", "-f", help=f"One of: {', '.join(FORMATS)}."),
        seed: int = typer.Option(0, "--seed", "-s", help="Same seed, same bytes."),
        kernel: str = typer.Option(
            DEFAULT_KERNEL,
            "--kernel",
            "-k",
            help="Kernel release whose probe names, flag values and tracepoint formats to use.",
        ),
        list_: bool = typer.Option(False, "--list", help="Name the scenarios, one line each."),
    ) -> None:
        """Write a synthetic trace of a named workload and its ground truth (FILE.truth.json)."""
        with user_errors():
            if list_:
                table = Table(show_header=False, box=None)
                for name, summary in listing():
                    table.add_row(name, summary)
                Console(width=200).print(table)
                return
            if not scenario:
                raise fail("simulate: expected a SCENARIO (or --list)")
            if output is None:
                raise fail("simulate: expected -o FILE")
            truth = simulate(
                scenario, output, events=events, fmt=fmt, seed=seed, kernel=kernel, entries=False
            )
            n = truth["expected_count"]
            Console(stderr=True, soft_wrap=True).print(
                f"wrote {output} ({fmt}, kernel {kernel}) and {truth_path(output).name}: "
                f"{n} expected finding{'s' if n != 1 else ''}"
            )
