"""A small public Python API: open a dataset, ingest traces, replay them, query it.

from pinscope.api import ingest, open_dataset, replay
ingest(["trace.txt.zst"], "ds")
replay("ds")
d = open_dataset("ds")
d.scan("events").filter(...).collect()
d.scan("derived/page_events").filter(pl.col("mismatch")).collect()
d.connect().sql("SELECT kind, count(*) FROM events GROUP BY kind").show()

Reading derived tables that were not built from the dataset's current traces (an ingest since
the last replay) warns with StaleDerivedWarning, as `pinscope sql` does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import polars as pl

from ingest import dataset as ds
from ingest.pipeline import TraceSummary, ingest_files

if TYPE_CHECKING:
    from replay.run import ReplaySummary

__all__ = [
    "Dataset",
    "StaleDerivedWarning",
    "TraceSummary",
    "connect",
    "ingest",
    "open_dataset",
    "replay",
]


class StaleDerivedWarning(UserWarning):
    """derived/ was not built from the dataset's current traces: its tables show an older
    replay. `replay(dataset)` rebuilds it."""


# Hooks adding views to every connection (name → SELECT) besides the rules' own views.
VIEW_PROVIDERS: list[Callable[[Path], dict[str, str]]] = []


def _derived_schemas() -> dict[str, dict[str, pl.DataType]]:
    from analysis.findings import FINDINGS_SCHEMA
    from replay.schema import DERIVED_TABLES

    return {**DERIVED_TABLES, "findings": FINDINGS_SCHEMA}


def _derived_computed() -> dict[str, dict[str, str]]:
    from replay.schema import COMPUTED_SQL

    return COMPUTED_SQL


def _extra_views(dataset: Path) -> dict[str, str]:
    """The rule catalogue's helper views and one view per rule (findings as SQL)."""
    from analysis.rules import rule_views

    views = dict(rule_views())
    for provider in VIEW_PROVIDERS:
        views.update(provider(dataset))
    return views


def connect(
    dataset: Path | str, *, read_only: bool = True, stale_warning: bool = True
) -> duckdb.DuckDBPyConnection:
    """DuckDB over the dataset: canonical, derived (typed even before replay) and rule views.
    StaleDerivedWarning where derived/ is out of date (unless `stale_warning` is False: callers
    that say so themselves)."""
    dataset = ds.require_dataset(Path(dataset))
    if stale_warning:
        _warn_if_stale(dataset, "its derived views")
    return ds.connect(
        dataset,
        read_only=read_only,
        extra_views=_extra_views(dataset),
        derived_schemas=_derived_schemas(),
        derived_computed=_derived_computed(),
    )


@dataclass(frozen=True)
class Dataset:
    """An opened dataset; every read goes through the manifest."""

    path: Path

    @property
    def manifest(self) -> dict[str, Any]:
        return ds.manifest(self.path)

    @property
    def traces(self) -> list[dict[str, Any]]:
        return ds.traces(self.path)

    @property
    def derived_fresh(self) -> bool:
        """derived/ was built from exactly the traces the manifest lists now."""
        from replay.stamp import is_fresh

        return is_fresh(self.path)

    def scan(self, table: str) -> pl.LazyFrame:
        """A table as a LazyFrame: a canonical one (`events`, `lost`, …) or `derived/<name>`
        (`derived/page_events`, `derived/intervals`), typed as its schema says."""
        schema = None
        if table.startswith(f"{ds.DERIVED}/"):
            from replay.schema import COMPUTED_SQL, STORED_TABLES, with_computed

            _warn_if_stale(self.path, table)
            name = table.split("/", 1)[1]
            if name in COMPUTED_SQL:  # its computed columns (page_id) added to what is stored
                return with_computed(ds.scan(self.path, table, schema=STORED_TABLES[name]), name)
            schema = _derived_schemas().get(name)
        return ds.scan(self.path, table, schema=schema)

    def connect(self) -> duckdb.DuckDBPyConnection:
        """DuckDB with a view per table, as `pinscope sql` has them."""
        return connect(self.path)


def _warn_if_stale(dataset: Path, what: str) -> None:
    from replay.stamp import is_stale

    if is_stale(dataset):
        warnings.warn(
            f"{dataset}/derived was not built from the dataset's current traces, so {what} "
            f"come from an older replay; pinscope.api.replay({str(dataset)!r}) rebuilds it",
            StaleDerivedWarning,
            stacklevel=3,
        )


def open_dataset(path: Path | str) -> Dataset:
    """Open an existing dataset (InputError if the directory holds none)."""
    return Dataset(ds.require_dataset(Path(path)))


def ingest(
    paths: Iterable[Path | str],
    dataset: Path | str,
    **kwargs: Any,
) -> list[TraceSummary]:
    """Ingest traces (see ingest.pipeline.ingest_files for the options)."""
    return ingest_files(paths, dataset, **kwargs)


def replay(dataset: Path | str, *, force: bool = False) -> ReplaySummary:
    """Build derived/ (page_events, intervals) unless it is fresh, under the dataset's lock, as
    `pinscope replay` does (a full disk is an InputError naming the dataset)."""
    from replay.run import replay_dataset

    path = ds.require_dataset(Path(dataset))
    with ds.disk_errors(path), ds.lock(path):
        ds.collect_garbage(path)  # scratch of a writer killed earlier
        return replay_dataset(path, force=force)
