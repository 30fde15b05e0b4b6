"""Draw a page timeline as inline SVG, and turn it into a file (SVG, HTML or PNG).

SVG is generated here in Python so that reports stay one offline file: no JS library, no CDN.
Element strings are built with polars expressions over the spans and points (one expression per
element kind), not a loop over events. PNG goes through Debian's headless chromium, which the
HTML report's tests need anyway, rather than a new plotting dependency.
"""

from __future__ import annotations

import html
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import polars as pl

from analysis.timeline import LANES, Timeline, format_ts, ts_text
from ingest.errors import InputError, PinscopeError

STATE_COLORS: dict[str, str] = {
    "pinned": "#d62728",
    "writable_pinned": "#ff7f0e",
    "longterm_pinned": "#9467bd",
    "writeback": "#1f77b4",
    "dirty": "#8c564b",
    "cached": "#2ca02c",
}

# Marker shapes as relative SVG paths centred on the event's point.
_UP = "m0,-6 l6,11 h-12 z"
_DOWN = "m0,6 l6,-11 h-12 z"
_DIAMOND = "m0,-6 l6,6 l-6,6 l-6,-6 z"
_SQUARE = "m-5,-5 h10 v10 h-10 z"
_CIRCLE = "m-5,0 a5,5 0 1,0 10,0 a5,5 0 1,0 -10,0"
_SMALL = "m-3,0 a3,3 0 1,0 6,0 a3,3 0 1,0 -6,0"
_CROSS = "m-6,-4 l2,-2 l4,4 l4,-4 l2,2 l-4,4 l4,4 l-2,2 l-4,-4 l-4,4 l-2,-2 l4,-4 z"

KIND_STYLE: dict[str, tuple[str, str]] = {
    "pin": ("#d62728", _UP),
    "unpin": ("#d62728", _DOWN),
    "get": ("#ff7f0e", _UP),
    "put": ("#ff7f0e", _DOWN),
    "ref": ("#999999", _SMALL),
    "dirty": ("#8c564b", _DIAMOND),
    "mkclean": ("#17becf", _SQUARE),
    "wb_start": ("#1f77b4", _UP),
    "wb_end": ("#1f77b4", _DOWN),
    "wb_wait": ("#aec7e8", _CIRCLE),
    "cache_add": ("#2ca02c", _CIRCLE),
    "cache_del": ("#2ca02c", _CROSS),
    "truncate": ("#111111", _CROSS),
    "free_buffers": ("#9467bd", _DIAMOND),
    "mkwrite": ("#9467bd", _CIRCLE),
    "alloc": ("#7f7f7f", _CIRCLE),
    "free": ("#111111", _SQUARE),
    "replace": ("#e377c2", _DIAMOND),
    "fork": ("#bcbd22", _UP),
}

LABEL_W = 130
RIGHT = 24
TOP = 6
EVENTS_H = 44
LANE_H = 16
LANE_GAP = 8
AXIS_H = 30


def esc(expr: pl.Expr) -> pl.Expr:
    """HTML/XML-escape a text column: comm, caller and bodies come from traces (hostile input)."""
    out = expr.cast(pl.String).fill_null("")
    for raw, safe in (
        ("&", "&amp;"),
        ("<", "&lt;"),
        (">", "&gt;"),
        ('"', "&quot;"),
        ("'", "&#39;"),
    ):
        out = out.str.replace_all(raw, safe, literal=True)
    return out


def _nice_step(span: float, n: int = 6) -> int:
    raw = max(span / n, 1.0)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return int(m * mag)
    return int(10 * mag)


def _axis(t0: int, t1: int, x_of, y: float, bottom: float) -> list[str]:
    step = _nice_step(t1 - t0)
    first = -(-t0 // step) * step
    out = [
        f'<line class="axis" x1="{LABEL_W}" y1="{y}" x2="{x_of(t1):.1f}" y2="{y}" stroke="#888"/>'
    ]
    t = first
    while t <= t1:
        x = x_of(t)
        out.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{y + 4}" stroke="#e4e4e4"/>'
            f'<text x="{x:.1f}" y="{bottom - 6}" font-size="10" text-anchor="middle" '
            f'fill="#555">{ts_text(t)}</text>'
        )
        t += step
    return out


def timeline_svg(tl: Timeline, uid: str, width: int = 1100, title: str | None = None) -> str:
    """One page's timeline: an events lane of markers over one lane per state."""
    plot_w = width - LABEL_W - RIGHT
    lanes_top = TOP + EVENTS_H
    axis_y = lanes_top + len(LANES) * (LANE_H + LANE_GAP)
    height = axis_y + AXIS_H
    span_ns = max(tl.t1 - tl.t0, 1)
    scale = plot_w / span_ns

    def x_of(ts: int) -> float:
        return LABEL_W + (ts - tl.t0) * scale

    def x_expr(col: str) -> pl.Expr:
        return (LABEL_W + (pl.col(col) - tl.t0).cast(pl.Float64) * scale).round(1)

    lane_index = {s: i for i, s in enumerate(LANES)}
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" id="tl-{uid}" '
        f'data-page="{html.escape(tl.page.label())}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" font-family="sans-serif">',
        f'<defs><pattern id="hatch-{uid}" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff" '
        f'fill-opacity="0.15"/><line x1="0" y1="0" x2="0" y2="6" stroke="#000" '
        f'stroke-width="2.5" stroke-opacity="0.55"/></pattern></defs>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    if title:
        parts.append(f"<title>{html.escape(title)}</title>")
    parts.append(
        f'<text x="6" y="{TOP + EVENTS_H / 2 + 4}" font-size="11" fill="#333">events</text>'
    )
    for state, i in lane_index.items():
        y = lanes_top + i * (LANE_H + LANE_GAP)
        parts.append(
            f'<rect x="{LABEL_W}" y="{y}" width="{plot_w}" height="{LANE_H}" fill="#f6f6f6"/>'
            f'<text x="6" y="{y + LANE_H - 4}" font-size="11" fill="{STATE_COLORS[state]}">'
            f"{state}</text>"
        )
    parts += _axis(tl.t0, tl.t1, x_of, axis_y, height)

    spans = tl.spans
    if not spans.is_empty():
        y = (
            pl.col("state")
            .cast(pl.String)
            .replace_strict({s: lanes_top + i * (LANE_H + LANE_GAP) for s, i in lane_index.items()})
        )
        color = pl.col("state").cast(pl.String).replace_strict(STATE_COLORS)
        start_text = (
            pl.when(pl.col("open_at_start"))
            .then(pl.lit("before trace start"))
            .otherwise(pl.format("line {}", pl.col("start_line")))
        )
        end_text = (
            pl.when(pl.col("open_at_end"))
            .then(pl.lit("still held at trace end"))
            .otherwise(pl.format("line {}", pl.col("end_line")))
        )
        tip = esc(
            pl.format(
                "{} · {} ({}) → {} ({}){}{}",
                pl.col("state").cast(pl.String),
                start_text,
                format_ts(pl.col("start_ts_ns")),
                end_text,
                pl.when(pl.col("end_ts_ns").is_null())
                .then(pl.lit("-"))
                .otherwise(format_ts(pl.col("end_ts_ns"))),
                pl.when(pl.col("holders_text") != "")
                .then(pl.format(" · holders: {}", pl.col("holders_text")))
                .otherwise(pl.lit("")),
                pl.when(pl.col("uncertain"))
                .then(pl.lit(" · uncertain: lost events inside"))
                .otherwise(pl.lit("")),
            )
        )
        s = spans.with_columns(
            _x0=x_expr("x0_ns"),
            _w=pl.max_horizontal(x_expr("x1_ns") - x_expr("x0_ns"), pl.lit(2.0)).round(1),
            _y=y,
            _c=color,
            _tip=tip,
        ).with_columns(_x1=(pl.col("_x0") + pl.col("_w")).round(1))
        flags = pl.concat_str(
            [
                pl.when(pl.col("open_at_start")).then(pl.lit(" open-start")).otherwise(pl.lit("")),
                pl.when(pl.col("open_at_end")).then(pl.lit(" open-end")).otherwise(pl.lit("")),
                pl.when(pl.col("uncertain")).then(pl.lit(" uncertain")).otherwise(pl.lit("")),
            ]
        )
        bars = s.select(
            pl.format(
                '<rect class="span{}" data-state="{}" x="{}" y="{}" width="{}" height="{}" '
                'fill="{}" rx="2"><title>{}</title></rect>',
                flags,
                pl.col("state").cast(pl.String),
                pl.col("_x0"),
                pl.col("_y"),
                pl.col("_w"),
                pl.lit(LANE_H),
                pl.col("_c"),
                pl.col("_tip"),
            )
        ).to_series()
        hatch = (
            s.filter(pl.col("uncertain"))
            .select(
                pl.format(
                    '<rect class="hatch" x="{}" y="{}" width="{}" height="{}" '
                    'fill="url(#hatch-{})" pointer-events="none"/>',
                    pl.col("_x0"),
                    pl.col("_y"),
                    pl.col("_w"),
                    pl.lit(LANE_H),
                    pl.lit(uid),
                )
            )
            .to_series()
        )
        half = LANE_H / 2
        # Open ends point outward: the state held beyond what the trace (or the window) shows.
        left = _open_ends(s, "start", "_x0", -8, half)
        right = _open_ends(s, "end", "_x1", 8, half)
        for series in (bars, hatch, left, right):
            parts.extend(series.to_list())

    pts = tl.points
    if not pts.is_empty():
        ymid = TOP + EVENTS_H / 2 + 6
        kind = pl.col("kind").cast(pl.String)
        tip = esc(
            pl.format(
                "line {} · {} · {}-{} · cpu {} · {}{}{}",
                pl.col("line"),
                kind,
                pl.col("comm").fill_null("?"),
                pl.col("pid").cast(pl.String).fill_null("?"),
                pl.col("cpu").cast(pl.String).fill_null("?"),
                format_ts(pl.col("ts_ns")),
                pl.when(pl.col("caller").is_not_null())
                .then(pl.format(" · caller {}", pl.col("caller")))
                .otherwise(pl.lit("")),
                pl.when(pl.col("refs").is_not_null() & (pl.col("refs") != 0))
                .then(pl.format(" · refs {}", pl.col("refs")))
                .otherwise(pl.lit("")),
            )
        )
        p = pts.with_columns(
            _x=x_expr("ts_ns"),
            _c=kind.replace_strict({k: v[0] for k, v in KIND_STYLE.items()}, default="#777777"),
            _d=kind.replace_strict({k: v[1] for k, v in KIND_STYLE.items()}, default=_CIRCLE),
            _tip=tip,
            _kind=esc(kind),
        )
        ev = p.filter(pl.col("evidence"))
        guides = ev.select(
            pl.format(
                '<line class="evidence-guide" x1="{}" y1="{}" x2="{}" y2="{}" stroke="#c00000" '
                'stroke-width="1" stroke-dasharray="3,3"/>'
                '<text class="evidence-label" x="{}" y="{}" font-size="9" text-anchor="middle" '
                'fill="#c00000">L{}</text>',
                pl.col("_x"),
                pl.lit(TOP + 12),
                pl.col("_x"),
                pl.lit(axis_y),
                pl.col("_x"),
                pl.lit(TOP + 9),
                pl.col("line"),
            )
        ).to_series()
        marks = p.select(
            pl.format(
                '<path class="event{}" data-kind="{}" data-line="{}" d="M{},{} {}" fill="{}" '
                'stroke="{}" stroke-width="{}"><title>{}</title></path>',
                pl.when(pl.col("evidence")).then(pl.lit(" evidence")).otherwise(pl.lit("")),
                pl.col("_kind"),
                pl.col("line"),
                pl.col("_x"),
                pl.lit(ymid),
                pl.col("_d"),
                pl.col("_c"),
                pl.when(pl.col("evidence")).then(pl.lit("#c00000")).otherwise(pl.lit("#ffffff")),
                pl.when(pl.col("evidence")).then(pl.lit(2)).otherwise(pl.lit(1)),
                pl.col("_tip"),
            )
        ).to_series()
        parts.extend(guides.to_list())
        parts.extend(marks.to_list())
    if tl.hidden_points:
        parts.append(
            f'<text x="{width - RIGHT}" y="{TOP + 10}" font-size="10" text-anchor="end" '
            f'fill="#a00">{tl.hidden_points} more events not drawn</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def legend_svg(max_width: int = 1080) -> str:
    """Which marker and which colour means what, drawn once per page (wrapped to max_width)."""
    items: list[str] = []
    x, y = 4, 12

    def place(w: int) -> tuple[int, int]:
        nonlocal x, y
        if x + w > max_width and x > 4:
            x, y = 4, y + 18
        at = (x, y)
        x += w
        return at

    for kind, (color, shape) in KIND_STYLE.items():
        px, py = place(24 + 7 * len(kind))
        items.append(
            f'<path d="M{px + 6},{py} {shape}" fill="{color}" stroke="#fff"/>'
            f'<text x="{px + 15}" y="{py + 4}" font-size="11">{kind}</text>'
        )
    x, y = 4, y + 18
    for state, color in STATE_COLORS.items():
        px, py = place(30 + 7 * len(state))
        items.append(
            f'<rect x="{px}" y="{py - 5}" width="16" height="10" fill="{color}"/>'
            f'<text x="{px + 20}" y="{py + 4}" font-size="11">{state}</text>'
        )
    px, py = place(180)
    items.append(
        f'<rect x="{px}" y="{py - 5}" width="16" height="10" fill="#888"/>'
        f'<rect x="{px}" y="{py - 5}" width="16" height="10" fill="url(#hatch-legend)"/>'
        f'<text x="{px + 20}" y="{py + 4}" font-size="11">uncertain (lost events)</text>'
    )
    px, py = place(230)
    items.append(
        f'<polygon points="{px + 8},{py - 5} {px},{py} {px + 8},{py + 5}" fill="#555"/>'
        f'<text x="{px + 12}" y="{py + 4}" font-size="11">open-ended (before/after trace)</text>'
    )
    height = y + 12
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="legend" width="{max_width}" '
        f'height="{height}" viewBox="0 0 {max_width} {height}" font-family="sans-serif">'
        f'<defs><pattern id="hatch-legend" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#000" '
        f'stroke-width="2.5" stroke-opacity="0.55"/></pattern></defs>{"".join(items)}</svg>'
    )


def timeline_height() -> int:
    return TOP + EVENTS_H + len(LANES) * (LANE_H + LANE_GAP) + AXIS_H


def standalone_html(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:12px;background:#fff}"
        "h1{font-size:16px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )


# --- headless chromium -------------------------------------------------------------------------

CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    """Debian's chromium (or an explicit $PINSCOPE_CHROMIUM)."""
    explicit = os.environ.get("PINSCOPE_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def run_chromium(page: Path, *args: str, timeout: float = 120.0) -> str:
    """Run headless chromium on a local file; returns stdout (the DOM with --dump-dom)."""
    exe = find_chromium()
    if exe is None:
        raise PinscopeError(
            "chromium not found: PNG output and the HTML checks need Debian's chromium "
            "(apt-get install chromium); write .svg or .html instead"
        )
    with tempfile.TemporaryDirectory(prefix="pinscope-chromium-") as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PinscopeError(f"{exe}: timed out after {timeout:.0f}s rendering {page}") from None
    if done.returncode != 0:
        raise PinscopeError(
            f"{exe}: exit {done.returncode} rendering {page}: {done.stderr.strip()[-500:]}"
        )
    return done.stdout


def screenshot(page: Path, png: Path, width: int, height: int) -> None:
    png = png.resolve()
    run_chromium(page, f"--screenshot={png}", f"--window-size={width},{height}")
    if not png.is_file() or png.stat().st_size == 0:
        raise PinscopeError(f"chromium wrote no screenshot to {png}")


def write_plot(tl: Timeline, out: Path, title: str) -> None:
    """--plot FILE: the suffix picks SVG, HTML or PNG."""
    suffix = out.suffix.lower()
    svg = timeline_svg(tl, "plot", title=title)
    if suffix == ".svg":
        out.write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + svg + "\n", encoding="utf-8")
    elif suffix in (".html", ".htm"):
        out.write_text(standalone_html(title, legend_svg() + "<br>" + svg), encoding="utf-8")
    elif suffix == ".png":
        with tempfile.TemporaryDirectory(prefix="pinscope-plot-") as tmp:
            page = Path(tmp) / "plot.html"
            page.write_text(standalone_html(title, legend_svg() + "<br>" + svg), encoding="utf-8")
            screenshot(page, out, 1140, timeline_height() + 150)
    else:
        raise InputError(f"{out}: --plot expects a .svg, .html or .png file name")


def _open_ends(s: pl.DataFrame, side: str, x: str, dx: int, half: float) -> pl.Series:
    """Chevrons at one side of the spans held (or clipped) beyond what is drawn."""
    held = pl.col(f"open_at_{side}")
    return (
        s.filter(held | pl.col(f"clipped_{side}"))
        .select(
            pl.format(
                '<polygon class="{}" points="{},{} {},{} {},{}" fill="{}" fill-opacity="{}"/>',
                pl.when(held).then(pl.lit(f"open-{side}")).otherwise(pl.lit("clipped")),
                pl.col(x),
                pl.col("_y"),
                (pl.col(x) + dx).round(1),
                pl.col("_y") + half,
                pl.col(x),
                pl.col("_y") + LANE_H,
                pl.col("_c"),
                pl.when(held).then(pl.lit(1.0)).otherwise(pl.lit(0.35)),
            )
        )
        .to_series()
    )
