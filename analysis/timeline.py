"""One page's spans and point events over a time window: the data behind every drawn timeline.

Both the HTML report (one timeline per finding) and `explain` (one page's whole life) draw the
same thing, so they share this module; drawing lives in analysis/plot.py.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ingest.errors import InputError
from replay.schema import INTERVALS_SCHEMA, PAGE_EVENTS_SCHEMA, STATES, STORED_TABLES, with_computed

# Lanes drawn for a page, top to bottom after the events lane.
LANES: tuple[str, ...] = STATES

# Columns a point event keeps: enough for a tooltip and the explain table.
POINT_COLUMNS: tuple[str, ...] = (
    "trace_id",
    "line",
    "ts_ns",
    "cpu",
    "pid",
    "comm",
    "kind",
    "refs",
    "gup_flags",
    "caller",
    "page_id",
    "pfn",
)

_DERIVED = {"page_events": PAGE_EVENTS_SCHEMA, "intervals": INTERVALS_SCHEMA}


def scan(dataset: Path, table: str, *, computed: bool = True) -> pl.LazyFrame:
    """A derived table of the dataset, typed exactly as replay/schema.py says (without its
    computed columns, page_id, unless `computed`).

    Goes through ingest.dataset (which knows the layout and skips half-written directories);
    the fallback reads DATASET/derived/<table>/**/*.parquet directly.
    """
    dataset = Path(dataset)
    schema = _DERIVED[table]
    try:
        from ingest import dataset as ds  # lazy: keeps this module importable on its own

        lf = ds.scan(dataset, f"derived/{table}", schema=schema)
    except ImportError:
        root = dataset / "derived" / table
        if not (root.is_dir() and any(root.rglob("*.parquet"))):
            raise InputError(
                f"{dataset}: no derived table {table!r} (run `pinscope replay {dataset}` first)"
            ) from None
        lf = pl.scan_parquet(
            os.path.join(glob.escape(str(root)), "**", "*.parquet"),
            hive_partitioning=True,
            hive_schema={"trace_id": pl.String()},
            missing_columns="insert",
        )
    names = lf.collect_schema().names()
    stored = lf.select(
        [
            (pl.col(c) if c in names else pl.lit(None)).cast(t, strict=False).alias(c)
            for c, t in STORED_TABLES[table].items()
        ]
    )
    # page_id: computed where read (replay/schema.py)
    return with_computed(stored, table) if computed else stored


def manifest_traces(dataset: Path) -> list[dict]:
    """The manifest's per-trace records (id, source, kernel, line accounting…)."""
    dataset = Path(dataset)
    try:
        from ingest import dataset as ds

        return list(ds.traces(ds.require_dataset(dataset)))
    except ImportError:
        pass
    path = dataset / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{dataset}: not a pinscope dataset (no manifest.json)") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}: expected JSON ({exc.msg})") from None
    traces = manifest.get("traces") if isinstance(manifest, dict) else None
    if not isinstance(traces, list):
        raise InputError(f"{path}: expected an object with a 'traces' list")
    return [t for t in traces if isinstance(t, dict)]


def trace_kernel(trace: dict) -> str | None:
    """The traced kernel's release as the manifest records it, under any of its usual keys."""
    for key in ("kernel", "kernel_release", "release"):
        value = trace.get(key)
        if isinstance(value, str) and value:
            return value
    return None


@dataclass(frozen=True)
class PageRef:
    """Which page a timeline is about: a pfn, or a file identity when the pfn is unknown."""

    trace_id: str
    pfn: int | None = None
    dev: int | None = None
    ino: int | None = None
    index: int | None = None

    def predicate(self) -> pl.Expr:
        cond = pl.col("trace_id") == self.trace_id
        if self.pfn is not None:
            return cond & (pl.col("pfn") == self.pfn)
        if self.ino is None or self.index is None:
            return pl.lit(False)
        cond = cond & (pl.col("ino") == self.ino) & (pl.col("index") == self.index)
        if self.dev is not None:
            cond = cond & (pl.col("dev").is_null() | (pl.col("dev") == self.dev))
        return cond

    def label(self) -> str:
        if self.pfn is not None:
            return f"pfn {self.pfn:#x} ({self.pfn})"
        dev = "-" if self.dev is None else f"{self.dev >> 20}:{self.dev & 0xFFFFF}"
        return f"file {dev} ino {self.ino} index {self.index}"


@dataclass
class Timeline:
    """Spans (one row per interval, clipped to the window) and point events of one page."""

    page: PageRef
    t0: int
    t1: int
    spans: pl.DataFrame
    points: pl.DataFrame
    hidden_points: int = 0
    evidence: tuple[int, ...] = field(default_factory=tuple)


def load_pages(dataset: Path, pages: list[PageRef]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """page_events and intervals of just these pages (plus fork events), read once for all.

    Reading per page would rescan the dataset per finding; one filtered scan keeps a report of
    many findings to one pass over the derived tables.
    """
    if not pages:
        return (
            pl.DataFrame(schema=PAGE_EVENTS_SCHEMA),
            pl.DataFrame(schema=INTERVALS_SCHEMA),
        )
    traces = sorted({p.trace_id for p in pages})
    pfn_keys = sorted({f"{p.trace_id}|{p.pfn}" for p in pages if p.pfn is not None})
    file_keys = sorted({f"{p.trace_id}|{p.ino}|{p.index}" for p in pages if p.pfn is None})
    by_pfn = pl.concat_str([pl.col("trace_id"), pl.col("pfn").cast(pl.String)], separator="|")
    by_file = pl.concat_str(
        [pl.col("trace_id"), pl.col("ino").cast(pl.String), pl.col("index").cast(pl.String)],
        separator="|",
    )
    wanted = by_pfn.is_in(pfn_keys).fill_null(False) | by_file.is_in(file_keys).fill_null(False)
    pe = scan(dataset, "page_events").filter(
        pl.col("trace_id").is_in(traces) & (wanted | (pl.col("kind") == "fork"))
    )
    iv = scan(dataset, "intervals").filter(pl.col("trace_id").is_in(traces) & wanted)
    return pe.collect(), iv.collect()


def _hold_pids(spans: pl.DataFrame) -> pl.Series:
    if spans.is_empty():
        return pl.Series("pid", [], dtype=pl.Int32())
    return (
        spans.select(pl.col("holders").explode().struct.field("pid").alias("pid"))
        .drop_nulls()
        .get_column("pid")
        .unique()
    )


def build_timeline(
    page_events: pl.DataFrame,
    intervals: pl.DataFrame,
    page: PageRef,
    start_ns: int | None = None,
    end_ns: int | None = None,
    evidence_lines: list[int] | tuple[int, ...] = (),
    pad_fraction: float = 0.15,
    max_points: int = 400,
) -> Timeline:
    """The page's timeline around [start_ns, end_ns]; the page's whole life when both are None.

    The window grows to take in the page's evidence events, then gets a margin so that the
    events that open and close the finding are not drawn on the frame's edge.
    """
    pred = page.predicate()
    mine = page_events.filter(pred)
    spans_all = intervals.filter(pred)
    evidence = tuple(sorted({int(x) for x in evidence_lines if x is not None}))
    ev_ts = mine.filter(pl.col("line").is_in(evidence)).get_column("ts_ns").drop_nulls()

    page_ts = mine.get_column("ts_ns").drop_nulls()
    if start_ns is None and end_ns is None:
        starts = [page_ts.min(), spans_all.get_column("start_ts_ns").min()]
        ends = [page_ts.max(), spans_all.get_column("end_ts_ns").max()]
        t0 = min((v for v in starts if v is not None), default=0)
        t1 = max((v for v in ends if v is not None), default=t0)
        pad_fraction = min(pad_fraction, 0.02)
    else:
        t0 = start_ns if start_ns is not None else end_ns
        t1 = end_ns if end_ns is not None else max(page_ts.max() or t0, t0)
        if not ev_ts.is_empty():
            t0, t1 = min(t0, ev_ts.min()), max(t1, ev_ts.max())
    pad = max(int((t1 - t0) * pad_fraction), 1_000)
    t0, t1 = t0 - pad, t1 + pad

    end_or_max = pl.col("end_ts_ns").fill_null(t1)
    spans = (
        spans_all.filter((pl.col("start_ts_ns") <= t1) & (end_or_max >= t0))
        .with_columns(
            x0_ns=pl.max_horizontal(pl.col("start_ts_ns"), pl.lit(t0)),
            x1_ns=pl.min_horizontal(end_or_max, pl.lit(t1)),
            clipped_start=(pl.col("start_ts_ns") < t0) & ~pl.col("open_at_start"),
            clipped_end=pl.col("end_ts_ns").is_not_null() & (pl.col("end_ts_ns") > t1),
            holders_text=pl.col("holders")
            .list.eval(
                pl.format(
                    "{}-{} ({})",
                    pl.element().struct.field("comm").fill_null("?"),
                    pl.element().struct.field("pid").cast(pl.String).fill_null("?"),
                    pl.element().struct.field("caller").fill_null("?"),
                )
            )
            .list.join(", ")
            .fill_null(""),
        )
        .sort("state", "start_ts_ns")
    )

    pids = pl.concat([_hold_pids(spans), mine.get_column("pid").drop_nulls().unique()]).unique()
    in_window = pl.col("ts_ns").is_between(t0, t1)
    forks = page_events.filter(
        (pl.col("trace_id") == page.trace_id)
        & (pl.col("kind") == "fork")
        & in_window
        & (pl.col("pid").is_in(pids.implode()) | pl.col("tgid").is_in(pids.implode()))
    )
    points = (
        pl.concat([mine.filter(in_window), forks])
        .unique(subset=["trace_id", "line"], keep="first")
        .sort("ts_ns", "line")
        .select(POINT_COLUMNS)
        .with_columns(evidence=pl.col("line").is_in(evidence))
    )
    hidden = 0
    if points.height > max_points:
        keep = pl.col("evidence") | (pl.int_range(pl.len()) < max_points)
        hidden = points.height - points.filter(keep).height
        points = points.filter(keep)
    return Timeline(page, t0, t1, spans, points, hidden, evidence)


def format_ts(expr: pl.Expr) -> pl.Expr:
    """ftrace-style seconds.microseconds of a ts_ns column, as text."""
    return pl.format(
        "{}.{}",
        (expr // 1_000_000_000).cast(pl.String),
        ((expr % 1_000_000_000) // 1_000).cast(pl.String).str.zfill(6),
    )


def ts_text(ts_ns: int | None) -> str:
    if ts_ns is None:
        return "-"
    return f"{ts_ns // 1_000_000_000}.{(ts_ns % 1_000_000_000) // 1_000:06d}"
