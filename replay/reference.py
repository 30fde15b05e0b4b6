"""The test oracle: docs/replay.md executed one event at a time, in plain Python.

Slow on purpose and written to be read against the spec, clause by clause. The property tests
check that the compiled core (replay/kernel.py via replay/core.py) gives exactly the same
tables.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from ingest.schema import foll_flags_for
from replay.core import ReplayResult, _lost_frame, prepare
from replay.schema import INTERVALS_SCHEMA, PAGE_EVENTS_SCHEMA, STATE_COLUMNS

Row = dict[str, Any]


def replay_events_reference(
    events: pl.DataFrame | pl.LazyFrame,
    lost: pl.DataFrame | pl.LazyFrame | None,
    *,
    kernel: str | None,
    trace_start_ts: int | None = None,
    trace_end_ts: int | None = None,
) -> ReplayResult:
    """Same contract as replay.core.replay_events."""
    ev = prepare(events)
    gaps_all = _lost_frame(lost).to_dicts()
    out_rows: list[Row] = []
    out_spans: list[Row] = []
    flags = foll_flags_for(kernel)
    by_trace: dict[Any, list[Row]] = {}
    for r in ev.to_dicts():
        by_trace.setdefault(r["trace_id"], []).append(r)
    for tid, rows in by_trace.items():
        rows.sort(key=lambda r: (r["ts_ns"], r["line"]))
        for i, r in enumerate(rows):
            r["seq"] = i
        start = trace_start_ts if trace_start_ts is not None else min(r["ts_ns"] for r in rows)
        end = trace_end_ts if trace_end_ts is not None else max(r["ts_ns"] for r in rows)
        gaps = [g for g in gaps_all if g["trace_id"] == tid]
        _resolve(rows)
        pages = _pages(rows)
        for key, page in pages.items():
            _replay_page(key, page, flags)
            out_spans.extend(_spans(page, start, end, gaps))
        for r in rows:
            if r["_page"] is None:
                r["page_id"] = None
                r["generation"] = None
                for c in (*STATE_COLUMNS, "inferred_initial", "mismatch"):
                    r[c] = None
        out_rows.extend(rows)
    page_events = pl.DataFrame(
        [{c: r[c] for c in PAGE_EVENTS_SCHEMA} for r in out_rows], schema=PAGE_EVENTS_SCHEMA
    )
    return ReplayResult(page_events.sort("seq"), pl.DataFrame(out_spans, schema=INTERVALS_SCHEMA))


def _resolve(rows: list[Row]) -> None:
    """Head pfns and file-only resolution, walking the trace in replay order."""
    extent: dict[int, tuple[int, int] | None] = {}  # head -> (order, seq) or None once freed
    cache: dict[tuple[int, int], tuple[str, int | None, int | None]] = {}
    for r in rows:
        kind = r["kind"]
        r["event_pfn"] = r["pfn"]
        traced = None if kind == "fork" else r["pfn"]
        order = r["folio_order"] or 0
        p = traced
        if p is not None and order == 0:
            best = None
            for o in range(1, 64):
                h = p & ~((1 << o) - 1)
                ext = extent.get(h)
                if (
                    h != p
                    and ext is not None
                    and ext[0] == o
                    and (best is None or ext[1] > best[1])
                ):
                    best = (h, ext[1])
            if best is not None:
                p = best[0]
        if p is None and kind != "fork" and r["ino"] is not None and r["index"] is not None:
            hit = cache.get((r["ino"], r["index"]))
            if hit is not None and hit[0] == "cache_add" and hit[1] is not None:
                dev_clash = r["dev"] is not None and hit[2] is not None and r["dev"] != hit[2]
                if not dev_clash:
                    p = hit[1]
        if traced is not None:
            if kind == "free":
                extent[traced] = None
            elif order > 0:
                extent[traced] = (order, r["seq"])
        if kind in ("cache_add", "cache_del") and r["ino"] is not None and r["index"] is not None:
            # the cache row's own resolution (head pfn); its file-only lookup is not reused
            cache[(r["ino"], r["index"])] = (kind, p if traced is not None else None, r["dev"])
        r["pfn"] = p


def _pages(rows: list[Row]) -> dict[tuple, list[Row]]:
    """Generations per pfn; rows grouped by page, each page in replay order."""
    life: dict[int, dict[str, Any]] = {}
    pages: dict[tuple, list[Row]] = {}
    for r in rows:
        kind, p = r["kind"], r["pfn"]
        if kind == "fork" or (p is None and (r["ino"] is None or r["index"] is None)):
            r["_page"] = None
            continue
        if p is None:
            r["generation"] = 0
            key: tuple = ("file", r["dev"], r["ino"], r["index"])
        else:
            s = life.get(p)
            if s is None:
                s = life[p] = {"gen": 0, "last": None, "had_ca": False, "ino": None, "dev": None}
            else:
                differs = s["ino"] != r["ino"] or (
                    s["dev"] is not None and r["dev"] is not None and s["dev"] != r["dev"]
                )
                if (
                    kind == "alloc"
                    or s["last"] == "free"
                    or (kind == "cache_add" and s["had_ca"] and differs)
                ):
                    s["gen"] += 1
            s["last"] = kind
            if kind == "cache_add":
                s["had_ca"] = True
                s["ino"], s["dev"] = r["ino"], r["dev"]
            r["generation"] = s["gen"]
            key = ("pfn", p, s["gen"])
        r["_page"] = key
        pages.setdefault(key, []).append(r)
    return pages


def _initial(page: list[Row], infer: bool, raise_kind: str, release_kind: str) -> int:
    """Smallest count that keeps the counter ≥ 0 over the releases before its first raise."""
    if not infer:
        return 0
    total, lowest = 0, 0
    for r in page:
        if r["kind"] == raise_kind:
            break
        if r["kind"] == release_kind:
            total -= _refs(r)
            lowest = min(lowest, total)
    return -lowest


def _refs(r: Row) -> int:
    return 1 if r["refs"] is None else abs(r["refs"])


def _first_flag_event(page: list[Row], kinds: dict[str, bool]) -> bool | None:
    for r in page:
        if r["kind"] in kinds:
            return kinds[r["kind"]]
    return None


def _replay_page(key: tuple, page: list[Row], flags: dict[str, int]) -> None:
    infer = page[0]["generation"] == 0 and page[0]["kind"] != "alloc"
    pins = _initial(page, infer, "pin", "unpin")
    gets = _initial(page, infer, "get", "put")
    wb = infer and _first_flag_event(page, {"wb_start": True, "wb_end": False}) is False
    cached = infer and (
        _first_flag_event(page, {"cache_add": True, "cache_del": False, "truncate": False}) is False
    )
    inferred = pins > 0 or gets > 0 or wb or cached
    pins_known, gets_known = not infer, not infer
    writable = longterm = 0
    refcount = None
    dirty = False
    buffers = "unknown"
    ident = (None, None, None)
    for r in page:
        kind = r["kind"]
        n = _refs(r)
        gup = r["gup_flags"] or 0
        acquire = kind in ("pin", "get")
        w_raise = acquire and (gup & flags["FOLL_WRITE"]) != 0
        l_raise = acquire and (gup & flags["FOLL_LONGTERM"]) != 0
        before = {
            "pins": pins, "gets": gets, "writable_pins": writable, "longterm_pins": longterm,
            "refcount": refcount, "dirty": dirty, "writeback": wb, "cached": cached,
            "buffers": buffers,
        }  # fmt: skip
        mismatch = False
        if kind == "pin":
            pins_known = True
            pins += n
        elif kind == "unpin":
            if pins - n < 0:
                mismatch = mismatch or pins_known
                pins = 0
            else:
                pins -= n
        if kind == "get":
            gets_known = True
            gets += n
        elif kind == "put":
            if gets - n < 0:
                mismatch = mismatch or gets_known
                gets = 0
            else:
                gets -= n
        writable = min(writable + (n if w_raise else 0), pins + gets)
        longterm = min(longterm + (n if l_raise else 0), pins + gets)
        if kind == "ref" and r["count"] is not None:
            refcount = r["count"]
        if kind == "dirty":
            dirty = True
        elif kind in ("mkclean", "wb_start", "cache_del", "truncate"):
            dirty = False
        if kind == "wb_start":
            wb = True
        elif kind == "wb_end":
            wb = False
        if kind == "cache_add":
            cached = True
        elif kind in ("cache_del", "truncate"):
            cached = False
        if kind == "mkwrite":
            buffers = "yes"
        elif kind == "free_buffers":
            buffers = "no"
        after = {
            "pins": pins, "gets": gets, "writable_pins": writable, "longterm_pins": longterm,
            "refcount": refcount, "dirty": dirty, "writeback": wb, "cached": cached,
            "buffers": buffers,
        }  # fmt: skip
        for name in before:
            r[f"{name}_before"] = before[name]
            r[f"{name}_after"] = after[name]
        r["mismatch"] = mismatch
        r["inferred_initial"] = inferred
        r["_pin_raise"], r["_w_raise"], r["_l_raise"] = kind == "pin", w_raise, l_raise
        if key[0] == "pfn":
            if kind in ("cache_add", "cache_del") and r["ino"] is not None:
                ident = (r["dev"], r["ino"], r["index"])
            r["dev"], r["ino"], r["index"] = ident
            r["page_id"] = f"pfn:{key[1]}/{key[2]}"
        else:
            dev = "-" if key[1] is None else key[1]
            r["page_id"] = f"file:{dev}:{key[2]}/{key[3]}"


_STATES: dict[str, tuple[str, str | None]] = {
    "pinned": ("pins", "_pin_raise"),
    "writable_pinned": ("writable_pins", "_w_raise"),
    "longterm_pinned": ("longterm_pins", "_l_raise"),
    "writeback": ("writeback", None),
    "dirty": ("dirty", None),
    "cached": ("cached", None),
}


def _spans(page: list[Row], start: int, end: int, gaps: list[Row]) -> list[Row]:
    """Walk each state over the page: open on false→true, close on true→false."""
    out = []
    first = page[0]
    for state, (col, raise_col) in _STATES.items():
        cur: Row | None = None
        spans: list[Row] = []
        if bool(first[f"{col}_before"]):
            cur = {"start": None, "rows": [], "holders": []}
        for r in page:
            holds = bool(r[f"{col}_after"])
            if cur is None and holds:
                cur = {"start": r, "rows": [], "holders": []}
            if cur is None:
                continue
            cur["rows"].append(r)
            if holds and raise_col and r[raise_col]:
                h = {"pid": r["pid"], "comm": r["comm"], "caller": r["caller"]}
                if h not in cur["holders"]:
                    cur["holders"].append(h)
            if not holds:
                cur["end"] = r
                spans.append(cur)
                cur = None
        if cur is not None:
            cur["end"] = None
            spans.append(cur)
        for s in spans:
            ident = next(
                ((r["dev"], r["ino"], r["index"]) for r in s["rows"] if r["ino"] is not None),
                (None, None, None),
            )
            st = s["start"]["ts_ns"] if s["start"] else start
            en = s["end"]["ts_ns"] if s["end"] else None
            hi = en if en is not None else end
            uncertain = any(
                (g["gap_start_ts_ns"] is None or hi is None or g["gap_start_ts_ns"] <= hi)
                and (g["gap_end_ts_ns"] is None or st is None or g["gap_end_ts_ns"] >= st)
                for g in gaps
            )
            out.append(
                {
                    "trace_id": first["trace_id"],
                    "page_id": first["page_id"],
                    "pfn": first["pfn"],
                    "generation": first["generation"],
                    "dev": ident[0],
                    "ino": ident[1],
                    "index": ident[2],
                    "state": state,
                    "start_ts_ns": st,
                    "end_ts_ns": en,
                    "start_line": s["start"]["line"] if s["start"] else None,
                    "end_line": s["end"]["line"] if s["end"] else None,
                    "open_at_start": s["start"] is None,
                    "open_at_end": s["end"] is None,
                    "uncertain": uncertain,
                    "holders": s["holders"] if raise_col else None,
                }
            )
    return out
