"""`pinscope explain DATASET --pfn PFN | --ino INO --index N`: one page's life, event by event."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from analysis.explain import check_options, explain, make_query
from ingest.dataset import collect_garbage, disk_errors, lock, require_dataset
from ingest.errors import InputError
from pinscope.errors import user_errors
from pinscope.first_run import announce_compile
from pinscope.stale import StaleNotice
from replay.stamp import is_built, is_fresh

# Taking the exclusive lock fails with these where the dataset cannot be written.
_CANNOT_WRITE = (errno.EACCES, errno.EPERM, errno.EROFS)


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
        """One page's life event by event, with its state after each and its spans drawn.
        Replays the dataset first where derived/ is missing or older than its traces."""
        with user_errors():
            query = make_query(pfn, ino, index, trace)
            check_options(limit, skip, plot)
            err = Console(stderr=True, highlight=False, soft_wrap=True)
            with derived_up_to_date(dataset, err):
                explain(dataset, query, Console(highlight=False), limit=limit, skip=skip, plot=plot)


@contextlib.contextmanager
def derived_up_to_date(dataset: Path, err: Console) -> Iterator[None]:
    """Hold the dataset's lock with derived/ built from its current traces, replaying first
    where it is missing or out of date (as `report` does), so that a page ingested since is
    shown rather than reported as having no events, and no writer swaps the tables mid-read.
    A dataset this process cannot write is read as it is, with `pinscope sql`'s warning."""
    require_dataset(dataset)
    if is_fresh(dataset):
        with lock(dataset, shared=True):
            StaleNotice(err).check(dataset)  # gone stale since the look above: say so
            yield
        return
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(lock(dataset))
        except OSError as exc:
            if exc.errno not in _CANNOT_WRITE:
                raise
            held.enter_context(lock(dataset, shared=True))
            _read_as_it_is(dataset, err)
        else:
            with disk_errors(dataset):
                collect_garbage(dataset)  # scratch of a writer killed earlier
                if not is_fresh(dataset):  # another pinscope may have built it meanwhile
                    _replay_first(dataset, err)
        yield


def _read_as_it_is(dataset: Path, err: Console) -> None:
    cannot = f"{dataset} cannot be written here: replay it where it can (`pinscope replay`)"
    if not is_built(dataset):
        raise InputError(f"{dataset}/derived is not built yet and {cannot}")
    StaleNotice(err, escape(cannot)).check(dataset)


def _replay_first(dataset: Path, err: Console) -> None:
    why = "not built from the dataset's current traces" if is_built(dataset) else "not built yet"
    err.print(f"[dim]{escape(str(dataset))}/derived is {why}: replaying first[/]")
    announce_compile(err)
    from replay.run import replay_dataset  # the compiled kernels, only when replaying

    replay_dataset(dataset)
