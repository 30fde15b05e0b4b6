"""The per-line baseline of bench_ingest: a straightforward Python ingest of an ftrace text file.

What a careful engineer writes without pinscope: one `re` match per line, a dict of the
`key=value` fields, the kind looked up, the columns converted, rows appended to lists and
written to Parquet with pyarrow a batch at a time. It produces the tables pinscope's ingest
produces from the same lines (events with their mapped columns, other_events with their body,
stacks, lost, rejects: what pinscope stores; tests/test_bench_baseline.py checks that they
agree), so that
the ratio compares the same job done two ways. `parse_only` is the baseline bench_ingest had
up to stop 15: one regex per line, the fields' dict, the kind, a tuple of six columns, nothing
written. It does less than any ingest can (no mapped columns, no stacks, no tables), so the
ratio against it is printed too, as a lower bound.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.schema import STORED_TABLES

BATCH_ROWS = 200_000

_HEAD = re.compile(
    r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?:\S+\s+)?"
    r"(?P<secs>\d+)\.(?P<usecs>\d+):\s+(?P<rest>.*)$"
)
_EVENT = re.compile(r"(?P<event>[\w:]+):\s?(?P<body>.*)$")
_FUNCTION = re.compile(r"\S+ <-\S+$")
_LOST = re.compile(r"CPU:(\d+) \[LOST (\d+) EVENTS\]$")
# parse_only's one regex for the whole line (bench_ingest's baseline up to stop 15)
_LINE = re.compile(
    r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?:\S+\s+)?"
    r"(?P<secs>\d+)\.(?P<usecs>\d+):\s+(?P<event>[\w:]+):\s?(?P<body>.*)$"
)
_KV = re.compile(r"(\w+)=(\S+)")
_FILEMAP = re.compile(r"dev (\d+):(\d+) ino ([0-9a-f]+)")

_KINDS = {
    "mm_filemap_add_to_page_cache": "cache_add",
    "mm_filemap_delete_from_page_cache": "cache_del",
    "writeback_dirty_page": "dirty",
    "writeback_dirty_folio": "dirty",
    "wait_on_page_writeback": "wb_wait",
    "folio_wait_writeback": "wb_wait",
    "mm_page_alloc": "alloc",
    "mm_page_free": "free",
    "sched_process_fork": "fork",
    "page_ref_mod": "ref",
}
_RELEASES = ("unpin", "put")


def _types(table: str, *, leave_out: tuple[str, ...] = ()) -> dict[str, pa.DataType]:
    """A canonical table's stored columns (ingest/schema.py) as Arrow types, less trace_id and
    those the baseline leaves out; the kind enum as plain strings."""
    schema = {
        c: pl.String() if c == "kind" else t
        for c, t in STORED_TABLES[table].items()
        if c not in ("trace_id", *leave_out)
    }
    return dict(zip(schema, pl.DataFrame(schema=schema).to_arrow().schema.types, strict=True))


EVENT_TYPES = _types("events", leave_out=("tgid",))
OTHER_TYPES = _types("other_events", leave_out=("tgid",))
STACK_TYPES = _types("stacks")
LOST_TYPES = _types("lost", leave_out=("gap_start_ts_ns", "gap_end_ts_ns"))
REJECT_TYPES = _types("rejects")


def _int(d: dict[str, str], key: str, base: int = 0) -> int | None:
    v = d.get(key)
    return None if v is None else int(v, base)


def _event_row(line_no: int, head: tuple, ev: str, kind: str, body: str) -> tuple | None:
    """The events row of one mapped line, or None when it lacks its page."""
    d = dict(_KV.findall(body))
    pfn = _int(d, "pfn")
    dev = ino = index = refs = count = flags = caller = new_pfn = None
    order = _int(d, "order")
    if ev.startswith("pinscope_"):
        if pfn is None and "page" in d and "vmemmap" in d:
            pfn = (int(d["page"], 16) - int(d["vmemmap"], 16)) // 64
        if "new_page" in d and "vmemmap" in d:
            new_pfn = (int(d["new_page"], 16) - int(d["vmemmap"], 16)) // 64
        refs, flags, caller = _int(d, "refs"), _int(d, "flags"), d.get("caller")
        if kind in ("pin", "get", "unpin", "put"):
            refs = abs(refs if refs is not None else 1) * (-1 if kind in _RELEASES else 1)
    elif kind in ("cache_add", "cache_del"):
        m = _FILEMAP.match(body)
        if m:
            dev, ino = int(m[1]) << 20 | int(m[2]), int(m[3], 16)
        index = _int(d, "ofs") >> 12 if "ofs" in d else None
    elif kind in ("dirty", "wb_wait"):
        ino, index = _int(d, "ino"), _int(d, "index")
    elif kind == "ref":
        count, refs = _int(d, "count"), _int(d, "val")
        if "head" not in d.get("flags", "").split("|") and refs in (1024, 1023, -1024):
            kind, refs = ("pin", 1) if refs > 0 else ("unpin", -1)
    if pfn is None and (ino is None or index is None) and kind != "fork":
        return None
    return (line_no, *head, kind, ev, pfn, order, dev, ino, index, refs, count, flags, caller,
            new_pfn)  # fmt: skip


@contextmanager
def _first_lines(path: Path, max_lines: int) -> Iterator[Iterator[tuple[int, str]]]:
    """(line number, text) of the file's first `max_lines` lines, as Python reads them."""
    with open(path, encoding="utf-8", errors="replace") as f:
        yield ((n, raw.rstrip("\n")) for n, raw in islice(enumerate(f, 1), max_lines))


class _Table:
    """Rows of one table, written to one Parquet file BATCH_ROWS at a time."""

    def __init__(self, path: Path, types: dict[str, pa.DataType]) -> None:
        self.schema = pa.schema(list(types.items()))
        self.writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self.rows: list[tuple] = []
        self.total = 0

    def add(self, row: tuple) -> None:
        self.rows.append(row)
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            cols = list(zip(*self.rows, strict=True))
            arrays = [pa.array(c, f.type) for c, f in zip(cols, self.schema, strict=True)]
            self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
            self.total += len(self.rows)
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


def ingest(path: Path, out: Path, max_lines: int) -> tuple[float, float, dict[str, int]]:
    """(wall s, cpu s, line accounting) of the first `max_lines` lines, tables under `out`."""
    t, c = time.perf_counter(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "events": _Table(out / "events.parquet", EVENT_TYPES),
        "other": _Table(out / "other_events.parquet", OTHER_TYPES),
        "stack": _Table(out / "stacks.parquet", STACK_TYPES),
        "lost": _Table(out / "lost.parquet", LOST_TYPES),
        "rejected": _Table(out / "rejects.parquet", REJECT_TYPES),
    }
    comments = n = 0
    event_line, depth = None, 0
    with _first_lines(path, max_lines) as lines:
        for n, line in lines:
            if line.startswith(" => ") and event_line is not None:
                depth += 1
                tables["stack"].add((event_line, n, depth, line[4:]))
                continue
            event_line = None
            if not line.strip() or line.startswith("#"):
                comments += 1
                continue
            m = _HEAD.match(line)
            if m is None:
                lost = _LOST.match(line)
                if lost:
                    tables["lost"].add((n, int(lost[1]), int(lost[2]), line))
                else:
                    tables["rejected"].add((n, "not an event line", line))
                continue
            head = (
                int(m["secs"]) * 1_000_000_000 + int(m["usecs"]) * 1000,
                int(m["cpu"]),
                int(m["pid"]),
                m["comm"].strip(),
            )
            rest = m["rest"]
            if rest == "<stack trace>":
                event_line, depth = n - 1, 0
                tables["stack"].add((event_line, n, 0, rest))
                continue
            e = _EVENT.match(rest)
            if e is None:
                if _FUNCTION.match(rest):
                    tables["other"].add((n, *head, "function", rest))
                else:
                    tables["rejected"].add((n, "not an event line", line))
                continue
            ev, body = e["event"], e["body"]
            kind = _KINDS.get(ev) or (ev[9:] if ev.startswith("pinscope_") else None)
            if kind is None:
                tables["other"].add((n, *head, ev, body))
                continue
            row = _event_row(n, head, ev, kind, body)
            if row is None:
                tables["rejected"].add((n, f"{ev}: no page", line))
            else:
                tables["events"].add(row)
    for table in tables.values():
        table.close()
    accounting = {name: table.total for name, table in tables.items()}
    accounting["comments"] = comments
    return time.perf_counter() - t, time.process_time() - c, accounting


def parse_only(path: Path, max_lines: int) -> tuple[float, float, int]:
    """The lower bound: header regex, key=value dict, kind lookup, a row tuple; nothing kept
    per column, nothing written."""
    t, c = time.perf_counter(), time.process_time()
    events, other, n = [], [], 0
    with _first_lines(path, max_lines) as lines:
        for n, line in lines:  # noqa: B007  (the last n is the count)
            if not line or line.startswith("#"):
                continue
            m = _LINE.match(line)
            if m is None:
                continue
            ev = m["event"]
            kind = _KINDS.get(ev) or (ev[9:] if ev.startswith("pinscope_") else None)
            fields = dict(_KV.findall(m["body"]))
            row = (
                int(m["pid"]),
                int(m["cpu"]),
                int(m["secs"]) * 1_000_000_000 + int(m["usecs"]) * 1000,
                ev,
                kind,
                int(fields["pfn"], 0) if "pfn" in fields else None,
            )
            (events if kind else other).append(row)
    return time.perf_counter() - t, time.process_time() - c, n
