"""`explain`: one page's life, event by event, with its state after each and its spans drawn.

This is what a kernel engineer reads after a finding: the exact sequence on that page, with the
counters the rules reasoned on, so that they can check pinscope's verdict line by line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from analysis.plot import STATE_COLORS, write_plot
from analysis.timeline import (
    LANES,
    PageRef,
    Timeline,
    build_timeline,
    format_ts,
    manifest_traces,
    scan,
    trace_kernel,
    ts_text,
)
from ingest.errors import InputError, PinscopeError
from ingest.schema import foll_flags_for
from replay.schema import with_computed

# One character per kind in the terminal lane chart.
KIND_CHAR: dict[str, str] = {
    "pin": "P",
    "unpin": "p",
    "get": "G",
    "put": "g",
    "ref": ".",
    "dirty": "D",
    "mkclean": "C",
    "wb_start": "W",
    "wb_end": "w",
    "wb_wait": "z",
    "cache_add": "A",
    "cache_del": "X",
    "truncate": "T",
    "free_buffers": "B",
    "mkwrite": "M",
    "alloc": "a",
    "free": "F",
    "replace": "R",
    "fork": "K",
}

# (header, column stem) of the state shown after each event.
STATE_VIEW: tuple[tuple[str, str], ...] = (
    ("pins", "pins"),
    ("w-pins", "writable_pins"),
    ("lt-pins", "longterm_pins"),
    ("gets", "gets"),
    ("dirty", "dirty"),
    ("wb", "writeback"),
    ("cached", "cached"),
    ("bufs", "buffers"),
)


@dataclass(frozen=True)
class Query:
    """What the user asked for: a pfn, or a file offset (ino, index); optionally one trace."""

    pfn: int | None = None
    ino: int | None = None
    index: int | None = None
    trace: str | None = None
    text: str = ""


def parse_number(option: str, value: str | None) -> int | None:
    """Accept decimal or 0x-hex, as kernel logs print both."""
    if value is None:
        return None
    try:
        n = int(value.strip(), 0)
    except ValueError:
        raise InputError(
            f"{option}: expected a number (decimal or 0x hex), got {value!r}"
        ) from None
    if n < 0:
        raise InputError(f"{option}: expected a non-negative number, got {value!r}")
    return n


def make_query(pfn: str | None, ino: str | None, index: str | None, trace: str | None) -> Query:
    if pfn is not None and (ino is not None or index is not None):
        raise InputError("explain: give either --pfn PFN or --ino INO --index N, not both")
    if pfn is not None:
        return Query(pfn=parse_number("--pfn", pfn), trace=trace, text=f"pfn {pfn}")
    if ino is None or index is None:
        raise InputError("explain: give --pfn PFN, or --ino INO together with --index N")
    return Query(
        ino=parse_number("--ino", ino),
        index=parse_number("--index", index),
        trace=trace,
        text=f"ino {ino} index {index}",
    )


def page_rows(dataset: Path, q: Query) -> pl.DataFrame:
    """Every page_events row of the pages the query names, in replay order.

    A pfn also matches events traced on a subpage (event_pfn) and shows the whole head page;
    a file offset selects the page lifetimes that held it, then shows each whole lifetime.
    """
    lf = scan(dataset, "page_events", computed=False)
    if q.trace is not None:
        lf = lf.filter(pl.col("trace_id") == q.trace)
    if q.pfn is not None:
        hit = (pl.col("pfn") == q.pfn) | (pl.col("event_pfn") == q.pfn)
    else:
        hit = (pl.col("ino") == q.ino) & (pl.col("index") == q.index)
    # the pages hit, by what page_id is made of: (pfn, generation) of pfn pages, (dev, ino,
    # index) of file pages (null pfn); a pageless row has a null generation
    hits = lf.filter(hit & pl.col("generation").is_not_null())
    pfn_keys = _keys(hits.filter(pl.col("pfn").is_not_null()), "pfn", "generation")
    file_keys = _keys(hits.filter(pl.col("pfn").is_null()), "dev", "ino", "index")
    # each page's rows: a filter on the keys' values the Parquet scan applies as it reads,
    # then the exact match (page_id itself is computed for these rows only)
    parts = []
    if pfn_keys.height:
        rows = lf.filter(pl.col("pfn").is_in(pfn_keys["pfn"].implode()))
        parts.append(rows.join(pfn_keys.lazy(), on=list(pfn_keys.columns), how="semi"))
    if file_keys.height:
        rows = lf.filter(
            pl.col("pfn").is_null()
            & pl.col("generation").is_not_null()
            & pl.col("ino").is_in(file_keys["ino"].implode())
        )
        on = list(file_keys.columns)
        parts.append(rows.join(file_keys.lazy(), on=on, how="semi", nulls_equal=True))
    if not parts:
        raise PinscopeError(f"no events for {q.text} in {dataset}")
    rows = pl.concat(parts).sort("trace_id", "ts_ns", "line").collect()
    return with_computed(rows, "page_events")


def _keys(hits: pl.LazyFrame, *columns: str) -> pl.DataFrame:
    """The distinct (trace_id, *columns) of these rows."""
    return hits.select("trace_id", *columns).unique().collect()


def decode_flags(rows: pl.DataFrame, bits: dict[str, int]) -> pl.Series:
    """gup_flags as FOLL_* names of the traced kernel; unknown bits kept as hex."""
    flags = pl.col("gup_flags").cast(pl.UInt32)
    known = 0
    parts = []
    for name, value in bits.items():  # four flags
        known |= value
        parts.append(
            pl.when((flags & pl.lit(value, dtype=pl.UInt32)) != 0).then(
                pl.lit(name.removeprefix("FOLL_"))
            )
        )
    rest = flags & pl.lit(~known & 0xFFFFFFFF, dtype=pl.UInt32)
    leftovers = rows.select(rest.alias("r")).get_column("r").drop_nulls().unique().to_list()
    as_hex = {v: f"0x{v:x}" for v in leftovers if v}  # distinct values, not rows
    parts.append(pl.when(rest != 0).then(rest.replace_strict(as_hex, default=None)))
    return rows.select(
        pl.when(flags.fill_null(0) != 0)
        .then(pl.concat_list(parts).list.drop_nulls().list.join("|"))
        .otherwise(pl.lit(""))
        .alias("flags")
    ).get_column("flags")


def _cell(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.String).fill_null("")


def event_table(rows: pl.DataFrame, kernel: str | None, title: str) -> Table:
    """The rich table: one row per event, the state after it, changed values highlighted."""
    bits = foll_flags_for(kernel)
    cells = rows.select(
        line=_cell(pl.col("line")),
        ts=format_ts(pl.col("ts_ns")).fill_null(""),
        cpu=_cell(pl.col("cpu")),
        task=pl.format("{}-{}", pl.col("comm").fill_null("?"), _cell(pl.col("pid"))),
        kind=_cell(pl.col("kind")),
        refs=pl.when(pl.col("refs").fill_null(0) != 0)
        .then(_cell(pl.col("refs")))
        .otherwise(pl.lit("")),
        flags=decode_flags(rows, bits),
        caller=_cell(pl.col("caller")),
        mismatch=pl.col("mismatch").fill_null(False),
        inferred=pl.col("inferred_initial").fill_null(False),
        **{
            f"s_{stem}": pl.when(pl.col(f"{stem}_after").is_null() | pl.col("page_id").is_null())
            .then(pl.lit(""))
            .otherwise(
                pl.col(f"{stem}_after").cast(pl.String).replace({"true": "yes", "false": "no"})
            )
            for _, stem in STATE_VIEW
        },
        **{
            f"c_{stem}": pl.col(f"{stem}_after").ne_missing(pl.col(f"{stem}_before"))
            & pl.col("page_id").is_not_null()
            for _, stem in STATE_VIEW
        },
    )
    table = Table(
        title=title,
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
    )
    for name in ("line", "ts", "cpu", "task", "kind", "refs", "flags", "caller"):
        table.add_column(
            name,
            justify="right" if name in ("line", "cpu", "refs") else "left",
            no_wrap=name in ("line", "ts", "kind"),
            min_width={"ts": 10, "kind": 5, "line": 4, "cpu": 3, "refs": 4}.get(name, 8),
            overflow="fold",
        )
    for header, _ in STATE_VIEW:
        table.add_column(header, justify="right", no_wrap=True, min_width=len(header))
    for r in cells.iter_rows(named=True):  # display loop, bounded by --limit
        style = "red" if r["mismatch"] else None
        base = [
            Text(r[c], style=style)
            for c in ("line", "ts", "cpu", "task", "kind", "refs", "flags", "caller")
        ]
        state = [
            Text(r[f"s_{stem}"], style="bold yellow" if r[f"c_{stem}"] else "dim")
            for _, stem in STATE_VIEW
        ]
        table.add_row(*base, *state)
    return table


def lane_chart(tl: Timeline, width: int) -> list[Text]:
    """The page's spans as one text row per state, scaled to the terminal's width."""
    label_w = 17
    cols = max(width - label_w - 1, 20)
    span_ns = max(tl.t1 - tl.t0, 1)

    def col(expr: pl.Expr) -> pl.Expr:
        return ((expr - tl.t0).cast(pl.Float64) * (cols - 1) / span_ns).round(0).cast(pl.Int64)

    out: list[Text] = []
    pts = tl.points
    line = [" "] * cols
    if not pts.is_empty():
        marks = (
            pts.with_columns(c=col(pl.col("ts_ns")).clip(0, cols - 1))
            .group_by("c")
            .agg(n=pl.len(), kind=pl.col("kind").first().cast(pl.String))
            .with_columns(
                ch=pl.when(pl.col("n") > 1)
                .then(pl.lit("*"))
                .otherwise(pl.col("kind").replace_strict(KIND_CHAR, default="?"))
            )
        )
        for c, ch in marks.select("c", "ch").iter_rows():  # ≤ one per terminal column
            line[c] = ch
    out.append(Text("events".ljust(label_w) + "│" + "".join(line), style="bold"))

    cells = pl.DataFrame(schema={"state": pl.String(), "c": pl.Int64(), "ch": pl.String()})
    if not tl.spans.is_empty():
        s = tl.spans.with_columns(
            state=pl.col("state").cast(pl.String),
            c0=col(pl.col("x0_ns")).clip(0, cols - 1),
            c1=col(pl.col("x1_ns")).clip(0, cols - 1),
        )
        body = (
            s.with_columns(c=pl.int_ranges("c0", pl.col("c1") + 1))
            .explode("c")
            .with_columns(
                ch=pl.when(pl.col("uncertain")).then(pl.lit("▒")).otherwise(pl.lit("█")),
                prio=pl.lit(0),
            )
        )
        ends = pl.concat(
            [
                s.filter(pl.col("open_at_start")).select(
                    "state", c=pl.col("c0"), ch=pl.lit("◀"), prio=pl.lit(1)
                ),
                s.filter(pl.col("open_at_end")).select(
                    "state", c=pl.col("c1"), ch=pl.lit("▶"), prio=pl.lit(1)
                ),
            ]
        )
        cells = (
            pl.concat([body.select("state", "c", "ch", "prio"), ends])
            .sort("prio", descending=True)
            .unique(subset=["state", "c"], keep="first")
            .select("state", "c", "ch")
        )
    for state in LANES:  # six lanes
        row = [" "] * cols
        for c, ch in cells.filter(pl.col("state") == state).select("c", "ch").iter_rows():
            row[c] = ch
        out.append(
            Text(state.ljust(label_w) + "│", style="default")
            + Text("".join(row), style=STATE_COLORS[state])
        )
    left, right = ts_text(tl.t0), ts_text(tl.t1)
    gap = max(cols - len(left) - len(right), 1)
    out.append(Text(" " * label_w + "└" + "─" * cols))
    out.append(Text(" " * (label_w + 1) + left + " " * gap + right, style="dim"))
    return out


def legend() -> Text:
    marks = " ".join(f"{ch}={k}" for k, ch in KIND_CHAR.items())
    return Text(f"{marks} *=several  █ held  ▒ uncertain  ◀/▶ open before/after trace", "dim")


def check_options(limit: int, skip: int, plot: Path | None) -> None:
    """explain's paging and plot options, checked before anything is read (or replayed)."""
    if limit < 1 or skip < 0:
        raise InputError("explain: --limit must be ≥ 1 and --skip ≥ 0")
    if plot is not None and plot.suffix.lower() not in (".svg", ".html", ".htm", ".png"):
        raise InputError(f"{plot}: --plot expects a .svg, .html or .png file name")


def explain(
    dataset: Path,
    q: Query,
    console: Console,
    limit: int = 200,
    skip: int = 0,
    plot: Path | None = None,
) -> int:
    """Print the page's life; returns how many pages (trace, page lifetime groups) were shown."""
    dataset = Path(dataset)
    check_options(limit, skip, plot)
    rows = page_rows(dataset, q)
    kernels = {t.get("trace_id"): trace_kernel(t) for t in manifest_traces(dataset)}
    intervals = scan(dataset, "intervals")
    events_all = scan(dataset, "page_events")
    shown = 0
    groups = rows.partition_by(["trace_id", "pfn"], maintain_order=True, include_key=True)
    if plot is not None and len(groups) > 1:
        raise InputError(
            f"explain: {q.text} matches {len(groups)} pages (traces or pfns); "
            "choose one with --trace (or --pfn) to --plot it"
        )
    for g in groups:
        trace_id = g["trace_id"][0]
        pfn = g["pfn"][0]
        first = g.row(0, named=True)
        page = (
            PageRef(trace_id, pfn)
            if pfn is not None
            else PageRef(trace_id, None, first["dev"], first["ino"], first["index"])
        )
        pe = events_all.filter(
            (pl.col("trace_id") == trace_id) & (page.predicate() | (pl.col("kind") == "fork"))
        ).collect()
        iv = intervals.filter(page.predicate()).collect()
        page_ids = g["page_id"].unique(maintain_order=True).to_list()
        iv = iv.filter(pl.col("page_id").is_in(page_ids))
        pe = pe.filter(pl.col("page_id").is_in(page_ids) | (pl.col("kind") == "fork"))
        tl = build_timeline(pe, iv, page)
        # The table: the page's events plus the pin holders' forks the timeline found.
        fork_lines = tl.points.filter(pl.col("kind") == "fork").get_column("line")
        table_rows = pl.concat(
            [g, pe.filter((pl.col("kind") == "fork") & pl.col("line").is_in(fork_lines.implode()))]
        ).sort("ts_ns", "line")
        total = table_rows.height
        part = table_rows.slice(skip, limit)
        files = (
            g.filter(pl.col("ino").is_not_null())
            .select("dev", "ino", "index")
            .unique(maintain_order=True)
        )
        where = "; ".join(
            f"dev {'-' if d is None else f'{d >> 20}:{d & 0xFFFFF}'} ino {i} index {x}"
            for d, i, x in files.iter_rows()
        )
        kernel = kernels.get(trace_id)
        head = (
            f"trace {trace_id} · {page.label()} · lifetimes {', '.join(map(str, page_ids))}"
            + (f" · {where}" if where else "")
            + f" · kernel {kernel or 'unknown'}"
        )
        console.print(Text(head, style="bold"))
        if part.is_empty():
            console.print(f"(no events at --skip {skip}: the page has {total})")
        else:
            caption = f"events {skip + 1}–{skip + part.height} of {total}"
            if part.height < total:
                caption += " (page through with --skip / --limit)"
            # Never squeeze columns away on a narrow terminal: wider lines wrap, data stays.
            console.print(
                event_table(part, kernel, caption), width=max(console.width, 150), crop=False
            )
        for row in lane_chart(tl, console.width):
            console.print(row, overflow="crop", no_wrap=True, crop=True)
        console.print(legend())
        console.print()
        if plot is not None:
            write_plot(tl, plot, f"pinscope explain — trace {trace_id} · {page.label()}")
            console.print(f"plot written to {plot}")
        shown += 1
    return shown
