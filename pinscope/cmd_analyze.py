"""`pinscope analyze TRACE…`: ingest, replay, rules and the report in one go (the main job)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import typer

from pinscope.cmd_report import ALL_HELP, FAIL_ON_HELP, Format, Severity, report_and_exit
from pinscope.errors import user_errors
from pinscope.first_run import INGEST_KERNELS, announce_compile


def register(app: typer.Typer) -> None:
    @app.command("analyze")
    def analyze(
        traces: list[Path] = typer.Argument(
            ..., help="Trace files (ftrace, trace-cmd, perf, bpftrace; compressed or not)."
        ),
        out: Path | None = typer.Option(
            None,
            "-o",
            "--output",
            help="Keep the dataset in this directory (default: a "
            "temporary one, removed at the end).",
        ),
        fail_on: Severity | None = typer.Option(None, "--fail-on", help=FAIL_ON_HELP),
        fmt: Format = typer.Option(Format.text, "--format", "-f", help="Report format."),
        report_file: Path | None = typer.Option(
            None, "--report-file", help="Write the report to FILE (required for html)."
        ),
        map_file: Path | None = typer.Option(
            None, "--map", help="A TOML mapping for probes named differently."
        ),
        kernel: str | None = typer.Option(
            None,
            "--kernel",
            help="Kernel release of the traced machine, when the trace "
            "does not say (decodes gup flags, adds kernel context).",
        ),
        rules: Path | None = typer.Option(
            None, "--rules", help="A directory of your own .sql rules, run with the catalogue."
        ),
        show_all: bool = typer.Option(False, "--all", help=ALL_HELP),
    ) -> None:
        """Ingest, replay and check traces, then print the report."""
        with user_errors():
            from ingest.pipeline import ingest_files

            tmp = None
            dataset = out
            if dataset is None:
                tmp = Path(tempfile.mkdtemp(prefix="pinscope-"))
                dataset = tmp / "dataset"
            try:
                announce_compile()  # replay's kernels; ingest's (ftrace text) at its hook
                ingest_files(
                    traces,
                    dataset,
                    mapping_file=map_file,
                    kernel=kernel,
                    before_kernels=lambda: announce_compile(modules=INGEST_KERNELS),
                )
                report_and_exit(
                    dataset,
                    fmt=fmt,
                    out=report_file,
                    fail_on=fail_on,
                    rules=rules,
                    show_all=show_all,
                )
            finally:
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
