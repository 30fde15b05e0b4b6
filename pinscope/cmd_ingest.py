"""`pinscope ingest`: trace text → dataset, with a progress bar and a line-accounting summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from ingest.pipeline import TraceSummary, ingest_files
from pinscope.errors import user_errors
from pinscope.first_run import INGEST_KERNELS, announce_compile

# Show the bar for files this large even when stderr is not a terminal (CI logs stay readable:
# the bar is transient and rich prints it sparingly there).
LARGE_FILE = 256 << 20


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest(
        traces: Annotated[list[Path], typer.Argument(help="Trace files (text, compressed, .dat).")],
        output: Annotated[Path, typer.Option("-o", "--output", help="Dataset directory.")],
        format: Annotated[
            str | None,
            typer.Option(
                "--format",
                help="ftrace, trace-cmd, perf, bpftrace or bpftrace-json (default: detect).",
            ),
        ] = None,
        map_file: Annotated[
            Path | None, typer.Option("--map", help="TOML mapping for your own probe names.")
        ] = None,
        trace_id: Annotated[
            str | None, typer.Option("--trace-id", help="Id of the trace (default: file name).")
        ] = None,
        replace: Annotated[
            bool, typer.Option("--replace", help="Re-ingest a trace already in the dataset.")
        ] = False,
        kernel: Annotated[
            str | None,
            typer.Option("--kernel", help="Kernel release of the traced machine (e.g. 6.1.0)."),
        ] = None,
    ) -> None:
        """Read traces into a Parquet dataset; every line is accounted for."""
        with user_errors():
            results = run_ingest(
                traces,
                output,
                format=format,
                mapping_file=map_file,
                trace_id=trace_id,
                replace=replace,
                kernel=kernel,
            )
            print_summary(results, out_console())


def out_console() -> Console:
    """stdout; wide when it is a file or pipe so that tables are not squeezed to 80 columns."""
    c = Console(highlight=False)
    return c if c.is_terminal else Console(highlight=False, width=200)


def run_ingest(traces: list[Path], output: Path, **kwargs: Any) -> list[TraceSummary]:
    """Ingest with a transient rich progress bar on stderr when someone can see it."""
    err = Console(stderr=True)
    show = err.is_terminal or any(
        p.is_file() and p.stat().st_size >= LARGE_FILE for p in map(Path, traces)
    )
    # the first-run note; under the bar, err is the bar's console, which prints it above
    kwargs["before_kernels"] = lambda: announce_compile(err, INGEST_KERNELS)
    if not show:
        return ingest_files(traces, output, **kwargs)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        tasks: dict[Path, Any] = {}

        def progress(path: Path, done: int, total: int | None) -> None:
            if path not in tasks:
                tasks[path] = bar.add_task(path.name, total=total)
            bar.update(tasks[path], completed=done, total=total)

        return ingest_files(traces, output, progress=progress, **kwargs)


def _ts(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1e9:.6f}"


def print_summary(results: list[TraceSummary], console: Console) -> None:
    """One row per trace: where its lines went, what kinds it holds, its time range."""
    table = Table(title="ingested", title_justify="left")
    for col in (
        "trace",
        "status",
        "format",
        "lines",
        "events",
        "other",
        "stack",
        "lost",
        "comments",
        "rejected",
        "time range (s)",
    ):
        table.add_column(
            col,
            justify="right"
            if col not in ("trace", "status", "format", "time range (s)")
            else "left",
        )
    for r in results:
        e = r.entry
        lines = e.get("lines", {})
        table.add_row(
            r.trace_id,
            r.status,
            str(e.get("format")),
            f"{lines.get('total', 0):,}",
            f"{lines.get('events', 0):,}",
            f"{lines.get('other', 0):,}",
            f"{lines.get('stack', 0):,}",
            f"{lines.get('lost', 0):,}",
            f"{lines.get('comments', 0):,}",
            f"{lines.get('rejected', 0):,}",
            f"{_ts(e.get('first_ts_ns'))} – {_ts(e.get('last_ts_ns'))}",
        )
    console.print(table)
    for r in results:
        e = r.entry
        if r.status == "already":
            console.print(f"{r.path}: already ingested as [bold]{r.trace_id}[/] (use --replace)")
            continue
        kinds = ", ".join(f"{k} {n:,}" for k, n in (e.get("events_by_kind") or {}).items())
        console.print(f"[bold]{r.trace_id}[/] events by kind: {kinds or 'none'}")
        notes = []
        if e.get("lost_markers"):
            unknown = e.get("lost_markers_unknown") or 0
            notes.append(
                f"{e['lost_markers']} lost-event markers ({e.get('lost_events', 0):,} events"
                + (f", {unknown} markers without a count" if unknown else "")
                + ")"
            )
        warnings = e.get("warnings") or {}
        back = warnings.get("time_backwards_per_cpu")
        if back:
            notes.append(f"time goes backwards {back:,} times within a CPU")
        if warnings.get("duplicate_lines"):
            notes.append(f"{warnings['duplicate_lines']:,} duplicate event lines")
        if warnings.get("overlaps_same_host"):
            notes.append(
                f"overlaps in time with {warnings['overlaps_same_host']} "
                f"(same host {e.get('host')}): the same events may be in both"
            )
        if (e.get("lines") or {}).get("rejected"):
            notes.append(
                f"{e['lines']['rejected']:,} rejected lines: "
                f"SELECT * FROM rejects WHERE trace_id = '{r.trace_id}'"
            )
        for n in notes:
            console.print(f"  [yellow]warning:[/] {n}")
