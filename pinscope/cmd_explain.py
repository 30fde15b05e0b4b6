"""`pinscope explain DATASET --pfn PFN | --ino INO --index N`: one page's life, event by event."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from analysis.explain import explain, make_query
from ingest.dataset import collect_garbage, disk_errors, lock, require_dataset
from pinscope.cmd_sql import warn_if_stale
from pinscope.errors import user_errors
from pinscope.first_run import announce_compile
from replay.stamp import is_fresh


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_cmd(
        dataset: Path = typer.Argument(..., help="dataset directory (from `pinscope ingest`)"),
        pfn: str | None = typer.Option(None, "--pfn", help="page frame number (decimal or 0x…)"),
        ino: str | None = typer.Option(None, "--ino", help="inode number of a file page"),
        index: str | None = typer.Option(None, "--index", help="page index in the file"),
        trace: str | None = typer.Option(None, "--trace", help="only this trace id"),
        limit: int = typer.Option(200, "--limit", help="show at most this many events"),
        skip: int = typer.Option(0, "--skip", help="start after this many events (paging)"),
        plot: Path | None = typer.Option(
            None, "--plot", help="also draw the timeline to FILE (.svg, .html or .png)"
        ),
    ) -> None:
        """One page's life event by event, with its state after each and its spans drawn."""
        with user_errors():
            query = make_query(pfn, ino, index, trace)
            replay_if_needed(dataset, Console(stderr=True, highlight=False, soft_wrap=True))
            explain(dataset, query, Console(highlight=False), limit=limit, skip=skip, plot=plot)


def replay_if_needed(dataset: Path, err: Console) -> None:
    """explain reads derived/: build it first where it is missing or older than the dataset's
    traces, as `report` does, so that a page ingested since is shown rather than reported as
    having no events. A dataset this process cannot write is shown as it is, with a warning."""
    require_dataset(dataset)
    if is_fresh(dataset):
        return
    if not os.access(dataset, os.W_OK):
        warn_if_stale(dataset, err)
        return
    with disk_errors(dataset), lock(dataset):
        collect_garbage(dataset)  # scratch of a writer killed earlier
        if is_fresh(dataset):  # built by another pinscope while this one waited
            return
        built = (dataset / "derived" / "page_events").is_dir()
        why = "not built from the dataset's current traces" if built else "not built yet"
        err.print(f"[dim]{escape(str(dataset))}/derived is {why}: replaying first[/]")
        announce_compile(err)
        from replay.run import replay_dataset  # the compiled kernels, only when replaying

        replay_dataset(dataset)
