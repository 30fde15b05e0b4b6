"""The trace lines a finding cites, quoted from the original file when it is still there.

A report is only as convincing as the lines it quotes, so they come from the user's own file:
the manifest's source path, checked against its recorded size and sha256. When the file has
moved or changed, the line is rebuilt from the dataset's tables and marked "(reconstructed)" —
the line numbers stay true either way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ingest import dataset as ds
from ingest.errors import PinscopeError
from ingest.source import LineChunk, hashed_chunks, iter_line_chunks, open_source, sha256_of, sniff

RECONSTRUCTED = "(reconstructed)"


@dataclass(frozen=True)
class Quote:
    line: int
    text: str
    reconstructed: bool

    def render(self) -> str:
        return f"{self.text} {RECONSTRUCTED}" if self.reconstructed else self.text


def _pick(chunks: Iterable[LineChunk], wanted: pl.Series) -> dict[int, str]:
    """Lines whose numbers are in `wanted` (sorted), gathered chunk by chunk (no per-line
    Python). Only the chunks holding a wanted line are split into lines: the others are only
    counted (and hashed by the caller), which is most of a long trace."""
    out: dict[int, str] = {}
    for chunk in chunks:
        lo = wanted.search_sorted(chunk.first_line, side="left")
        hi = wanted.search_sorted(chunk.first_line + chunk.n_lines, side="left")
        if hi > lo:
            rel = wanted.slice(lo, hi - lo)
            got = chunk.lines.gather(rel - chunk.first_line)
            out.update(zip(rel.to_list(), got.to_list(), strict=True))
    return out


def _from_source(trace: dict, lines: list[int]) -> dict[int, str] | None:
    """The lines from the original file, or None when it is gone or no longer the same bytes."""
    source, size, sha = trace.get("source"), trace.get("size"), trace.get("sha256")
    if not source or not sha:
        return None
    path = Path(source)
    try:
        if not path.is_file() or (size is not None and path.stat().st_size != size):
            return None
        wanted = pl.Series("line", sorted(set(lines)), dtype=pl.Int64)
        if sniff(path) == "plain":
            h = hashlib.sha256()
            with open(path, "rb") as f:
                got = _pick(hashed_chunks(iter_line_chunks(f), h), wanted)
            return got if h.hexdigest() == sha else None
        if sha256_of(path) != sha:
            return None
        with open_source(path) as src:
            return _pick(iter_line_chunks(src.stream), wanted)
    except (OSError, PinscopeError):
        return None


def _ts_text(ts: pl.Expr) -> pl.Expr:
    return pl.format(
        "{}.{}",
        (ts // 1_000_000_000).cast(pl.String),
        ((ts % 1_000_000_000) // 1_000).cast(pl.String).str.zfill(6),
    )


def _header(df: pl.DataFrame) -> pl.Expr:
    return pl.format(
        "{}-{} [{}] {}: ",
        pl.col("comm").fill_null("<...>"),
        pl.col("pid").cast(pl.String).fill_null("?"),
        pl.col("cpu").cast(pl.String).fill_null("?").str.zfill(3),
        _ts_text(pl.col("ts_ns")).fill_null("?"),
    )


def _field(name: str, expr: pl.Expr) -> pl.Expr:
    return (
        pl.when(expr.is_not_null())
        .then(pl.format(" {}={}", pl.lit(name), expr))
        .otherwise(pl.lit(""))
    )


def _hex(col: str) -> pl.Expr:
    return pl.format("0x{}", pl.col(col).cast(pl.Int64).map_elements(hex, pl.String).str.slice(2))


def _reconstruct(dataset: Path, trace_id: str, lines: list[int]) -> dict[int, str]:
    """Lines rebuilt from the dataset's tables, in ftrace's shape, for a missing source."""
    want = pl.Series(sorted(set(lines)), dtype=pl.Int64)
    out: dict[int, str] = {}
    ev = ds.scan(dataset, "events").filter(
        (pl.col("trace_id") == trace_id) & pl.col("line").is_in(want.implode())
    )
    ev = ev.collect()
    if ev.height:
        text = ev.select(
            "line",
            pl.concat_str(
                _header(ev),
                pl.col("source_event"),
                pl.lit(":"),
                _field("pfn", _hex("pfn")),
                _field("order", pl.col("folio_order")),
                _field("dev", pl.col("dev")),
                _field("ino", pl.col("ino")),
                _field("index", pl.col("index")),
                _field("refs", pl.col("refs")),
                _field("count", pl.col("count")),
                _field("flags", _hex("gup_flags")),
                _field("caller", pl.col("caller")),
                _field("new_pfn", _hex("new_pfn")),
            ).alias("text"),
        )
        out.update(zip(text["line"].to_list(), text["text"].to_list(), strict=True))
    other = (
        ds.scan(dataset, "other_events")
        .filter((pl.col("trace_id") == trace_id) & pl.col("line").is_in(want.implode()))
        .collect()
    )
    if other.height:
        text = other.select(
            "line", pl.concat_str(_header(other), pl.col("event"), pl.lit(": "), pl.col("body"))
        )
        out.update(zip(text["line"].to_list(), text.to_series(1).to_list(), strict=True))
    for table, col in (("lost", "text"), ("rejects", "text"), ("stacks", "frame")):
        rows = (
            ds.scan(dataset, table)
            .filter((pl.col("trace_id") == trace_id) & pl.col("line").is_in(want.implode()))
            .select("line", col)
            .collect()
        )
        out.update(zip(rows["line"].to_list(), rows[col].to_list(), strict=True))
    return out


def quote(dataset: Path, trace_id: str, lines: Iterable[int]) -> dict[int, Quote]:
    """line → Quote for every requested line the source or the dataset still knows."""
    lines = sorted({int(x) for x in lines if x is not None})
    if not lines:
        return {}
    trace = next((t for t in ds.traces(dataset) if t.get("trace_id") == trace_id), None)
    if trace is None:
        return {}
    got = _from_source(trace, lines)
    if got is not None:
        return {n: Quote(n, text, False) for n, text in got.items()}
    return {n: Quote(n, text, True) for n, text in _reconstruct(dataset, trace_id, lines).items()}


def quote_lines(dataset: Path, trace_id: str, lines: Iterable[int]) -> dict[int, str]:
    """line → text, reconstructed lines marked so; for reports that only need the text."""
    return {n: q.render() for n, q in quote(dataset, trace_id, lines).items()}


QUOTE_SCHEMA: dict[str, pl.DataType] = {
    "trace_id": pl.String(),
    "line": pl.Int64(),
    "text": pl.String(),
    "reconstructed": pl.Boolean(),
}


def quote_frame(dataset: Path, findings: pl.DataFrame) -> pl.DataFrame:
    """Every evidence line of every finding as a table (QUOTE_SCHEMA), one pass per trace.

    A frame rather than a dict of Quote objects, so that a report over hundreds of thousands of
    findings joins its evidence in polars instead of building one Python object per line.
    """
    if findings.is_empty():
        return pl.DataFrame(schema=QUOTE_SCHEMA)
    wanted = (
        findings.select("trace_id", pl.col("evidence_lines").alias("line"))
        .explode("line")
        .drop_nulls()
        .unique()
        .group_by("trace_id")
        .agg("line")
    )
    parts = []
    for trace_id, lines in wanted.iter_rows():  # one pass over each trace's source
        lines = sorted({int(x) for x in lines})
        trace = next((t for t in ds.traces(dataset) if t.get("trace_id") == trace_id), None)
        if trace is None or not lines:
            continue
        got = _from_source(trace, lines)
        rebuilt = got is None
        if rebuilt:
            got = _reconstruct(dataset, trace_id, lines)
        parts.append(
            pl.DataFrame(
                {"line": list(got.keys()), "text": list(got.values())},
                schema={"line": pl.Int64(), "text": pl.String()},
            ).with_columns(
                pl.lit(trace_id).alias("trace_id"), pl.lit(rebuilt).alias("reconstructed")
            )
        )
    if not parts:
        return pl.DataFrame(schema=QUOTE_SCHEMA)
    return pl.concat(parts).select(list(QUOTE_SCHEMA)).cast(QUOTE_SCHEMA)  # type: ignore[arg-type]


def quotes_of(frame: pl.DataFrame) -> dict[tuple[str, int], Quote]:
    """(trace_id, line) → Quote for the rows of a quote_frame."""
    return {
        (t, n): Quote(n, text, r) for t, n, text, r in frame.select(list(QUOTE_SCHEMA)).iter_rows()
    }


def quote_findings(dataset: Path, findings: pl.DataFrame) -> dict[tuple[str, int], Quote]:
    """Every evidence line of every finding, one pass over each trace's source."""
    return quotes_of(quote_frame(dataset, findings))
