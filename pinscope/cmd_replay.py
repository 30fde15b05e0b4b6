"""`pinscope replay DATASET`: build derived/ (page_events, intervals), reusing it when fresh."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ingest.dataset import collect_garbage, disk_errors, lock, require_dataset
from pinscope.errors import user_errors
from pinscope.first_run import announce_compile
from replay.partition import MAX_BUCKETS
from replay.run import replay_dataset
from replay.stamp import is_fresh


def register(app: typer.Typer) -> None:
    @app.command("replay")
    def replay(
        dataset: Annotated[
            Path, typer.Argument(help="Dataset directory (from `pinscope ingest`).")
        ],
        force: Annotated[
            bool, typer.Option("--force", help="Rebuild even if derived/ is up to date.")
        ] = False,
        buckets: Annotated[
            int | None,
            typer.Option(
                "--buckets",
                min=1,
                max=MAX_BUCKETS,
                help="When replaying, split each trace's pages into N buckets, each replayed "
                "in passes of its own after a routing pass: less memory, two more reads of "
                "the events each. Default: 1, more only where the pages and page slots "
                "would pass half the memory available (the machine's, or its cgroup's "
                "limit). The tables are the same either way.",
            ),
        ] = None,
    ) -> None:
        """Replay every page's life: per-event state (page_events) and state spans (intervals)."""
        with user_errors(), disk_errors(dataset):
            require_dataset(dataset)
            with lock(dataset):
                collect_garbage(dataset)  # scratch of a replay killed earlier
                if force or not is_fresh(dataset):
                    announce_compile()
                s = replay_dataset(dataset, force=force, buckets=buckets)
        out = Console(highlight=False, soft_wrap=True)
        if not s.rebuilt:
            out.print(
                f"{s.dataset}/derived is up to date ({s.events:,} events, "
                f"{s.intervals:,} intervals): nothing to do (--force rebuilds)"
            )
            return
        rate = s.events / s.seconds if s.seconds > 0 else 0.0
        in_buckets = f" in {s.buckets} page buckets" if s.buckets > 1 else ""
        out.print(
            f"replayed {s.traces} trace(s){in_buckets}, {s.events:,} events in {s.parts} part(s): "
            f"{s.page_events:,} page_events, {s.intervals:,} intervals "
            f"in {s.seconds:.2f}s ({rate:,.0f} events/s) → {s.dataset}/derived"
        )
        if s.buckets > 1 and buckets is None:
            out.print(
                "  page buckets: the pages would not fit in half the memory this process may "
                "use, so each bucket was replayed in passes of its own (--buckets N sets them)"
            )
