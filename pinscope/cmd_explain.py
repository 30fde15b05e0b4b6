"""`pinscope explain DATASET --pfn PFN | --ino INO --index N`: one page's life, event by event."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from analysis.explain import explain, make_query
from pinscope.errors import user_errors


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
            explain(dataset, query, Console(highlight=False), limit=limit, skip=skip, plot=plot)
