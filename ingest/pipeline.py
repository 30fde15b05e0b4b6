"""Streaming ingest: trace text → canonical tables in the dataset, one bounded chunk at a time.

Each chunk of lines is framed by the format's reader, its event rows mapped to kinds, and every
table's share written as its own Parquet part into a scratch directory; nothing holds more than
one chunk, so memory stays flat whatever the file's size. What must cross chunk boundaries
(timestamps around lost-event markers, the last timestamp per CPU, stack depth) is carried in a
small `_Carry`. Finished traces are renamed into place and committed by the manifest
(see ingest/dataset.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ingest import dataset as ds
from ingest import parquet_parts
from ingest import source as src
from ingest.errors import InputError
from ingest.framing import FORMATS, FRAMED_SCHEMA, ChunkContext, conform_framed
from ingest.schema import KINDS, LINE_CATEGORIES, TABLES, conform

HEAD_LINES = 200
WORKERS = 2  # chunks framed and mapped at once (polars releases the GIL)
# Formats whose reader carries nothing across chunks but the last event line (fixed up after).
_PARALLEL_FORMATS = ("ftrace", "trace-cmd")
# Formats framed and mapped from the chunk's bytes by the compiled kernels (ingest/ftrace_chunk.py)
_COMPILED_FORMATS = ("ftrace", "trace-cmd")
_UNKNOWN_LINE = -1  # event_line of a chunk's leading stack frames until the previous is known

# The trace clock as the text shows it (first match wins): ns digits (`trace-cmd report -t`,
# `perf script --ns`), µs digits (ftrace's default display of local/global/mono clocks), a
# latency-format `NNNus` count, or a bare counter (`trace_clock` counter, x86-tsc).
_CLOCKS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ns", re.compile(r"\s\d+\.\d{9}:\s")),
    ("us", re.compile(r"\s\d+\.\d{6}:\s")),
    ("us", re.compile(r"\s\d+us\S?\s?:\s")),
    ("counter", re.compile(r"\]\s+(?:[^\s\d]\S*\s+)?\d+:\s")),
)

# progress(path, bytes_done, bytes_total or None)
Progress = Callable[[Path, int, int | None], None]
Framer = Callable[[pl.Series, int, ChunkContext], pl.DataFrame]


@dataclass
class TraceSummary:
    """What happened to one input: `status` is ingested, replaced or already."""

    trace_id: str
    path: Path
    status: str
    entry: dict[str, Any]

    @property
    def message(self) -> str:
        if self.status == "already":
            return f"{self.path}: already ingested as {self.trace_id}"
        return f"{self.path}: {self.status} as {self.trace_id}"


# ---------------------------------------------------------------------------- readers


def framer_for(fmt: str) -> Framer:
    """The reader for one of framing.FORMATS."""
    if fmt in ("ftrace", "trace-cmd"):
        from ingest.read_ftrace import frame_ftrace

        return frame_ftrace
    if fmt == "perf":
        from ingest.read_perf import frame_perf

        return frame_perf
    if fmt in ("bpftrace", "bpftrace-json"):
        from ingest.read_bpftrace import frame_bpftrace

        return frame_bpftrace
    raise InputError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")


def _detect(head: list[str], path: Path) -> str:
    from ingest.detect import detect_format

    return detect_format(head, str(path))


def _load_mapping(mapping_file: Path | None) -> Any:
    from ingest.mapping import load_mapping

    return load_mapping(Path(mapping_file) if mapping_file else None)


def _map(events: pl.DataFrame, trace_id: str, mapping: Any) -> Any:
    from ingest.mapping import map_events

    return map_events(events, trace_id, mapping)


# ---------------------------------------------------------------------------- entry point


def ingest_files(
    paths: Iterable[Path | str],
    dataset: Path | str,
    *,
    format: str | None = None,
    mapping_file: Path | str | None = None,
    trace_id: str | None = None,
    replace: bool = False,
    kernel: str | None = None,
    progress: Progress | None = None,
    before_kernels: Callable[[], None] | None = None,
) -> list[TraceSummary]:
    """Ingest trace files into a dataset (created if needed), committing each one atomically.

    All inputs are checked (exist, readable, not binary, mapping valid) before the dataset is
    touched, so a typo in the last argument does not leave the first ones half-done.
    `before_kernels` is called before each trace that goes through the compiled kernels
    (ftrace, trace-cmd): the command line says there that they compile, on a first run.
    """
    paths = [Path(p) for p in paths]
    dataset = Path(dataset)
    if not paths:
        raise InputError("no trace files given")
    if trace_id is not None:
        if len(paths) != 1:
            raise InputError("--trace-id names one trace: give exactly one TRACE with it")
        ds.check_trace_id(trace_id)
    if format is not None and format not in FORMATS:
        raise InputError(f"unknown format {format!r}: expected one of {', '.join(FORMATS)}")
    for p in paths:
        src.sniff(p)
    _check_dataset_dir(dataset)
    mapping = _load_mapping(Path(mapping_file) if mapping_file else None)

    results: list[TraceSummary] = []
    with ds.disk_errors(dataset), ds.lock(dataset):
        ds.collect_garbage(dataset)
        for p in paths:
            results.append(
                _ingest_one(
                    p,
                    dataset,
                    fmt=format,
                    mapping=mapping,
                    mapping_file=mapping_file,
                    trace_id=trace_id,
                    replace=replace,
                    kernel=kernel,
                    progress=progress,
                    before_kernels=before_kernels,
                )
            )
    return results


def _check_dataset_dir(dataset: Path) -> None:
    if dataset.exists() and not dataset.is_dir():
        raise InputError(f"{dataset}: exists and is not a directory; expected a dataset dir")
    if dataset.is_dir() and not ds.is_dataset(dataset):
        stray = [
            p.name
            for p in dataset.iterdir()
            if p.name not in (ds.LOCK_FILE, *TABLES) and not p.name.startswith(ds.TMP_PREFIX)
        ]
        if stray:
            raise InputError(
                f"{dataset}: exists, is not empty and is not a pinscope dataset (no "
                "manifest.json); choose a new or empty directory"
            )


def _choose_id(
    path: Path, sha: str | None, existing: list[dict[str, Any]], trace_id: str | None, replace: bool
) -> str:
    by_id = {t["trace_id"]: t for t in existing}
    if trace_id is not None:
        held = by_id.get(trace_id)
        if held is not None and held["sha256"] != sha and not replace:
            raise InputError(
                f"{path}: trace id {trace_id!r} already holds {held['source']}; "
                "use --replace to overwrite it or choose another --trace-id"
            )
        return trace_id
    same = [t for t in existing if t["sha256"] == sha]
    if same:
        return same[0]["trace_id"]
    name = path.name
    for suffix in (".gz", ".xz", ".bz2", ".zst"):
        name = name.removesuffix(suffix)
    base = ds.safe_id(Path(name).stem or name)
    if replace or base not in by_id:
        return base
    n = 2
    while f"{base}-{n}" in by_id:
        n += 1
    return f"{base}-{n}"


def _ingest_one(
    path: Path,
    dataset: Path,
    *,
    fmt: str | None,
    mapping: Any,
    mapping_file: Path | str | None,
    trace_id: str | None,
    replace: bool,
    kernel: str | None,
    progress: Progress | None,
    before_kernels: Callable[[], None] | None,
) -> TraceSummary:
    existing = ds.traces(dataset)
    size = path.stat().st_size
    sha: str | None = None
    if any(t.get("size") in (None, size) for t in existing):
        # It may be a trace already here: its identity decides what happens, so first.
        # (Otherwise none has this sha256, and the ingest's own pass hashes the file.)
        sha = src.sha256_of(path)
    same = [t for t in existing if t["sha256"] == sha]
    if same and not replace and (trace_id is None or trace_id == same[0]["trace_id"]):
        return TraceSummary(same[0]["trace_id"], path, "already", same[0])
    tid = _choose_id(path, sha, existing, trace_id, replace)
    tmp = ds.new_tmp_dir(dataset)
    try:
        entry = _write_trace(path, tmp, tid, sha, fmt, mapping, kernel, progress, before_kernels)
        replacing = _commit_trace(dataset, tmp, tid, entry, existing, mapping_file)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return TraceSummary(tid, path, "replaced" if replacing else "ingested", entry)


def _commit_trace(
    dataset: Path,
    tmp: Path,
    tid: str,
    entry: dict[str, Any],
    existing: list[dict[str, Any]],
    mapping_file: Path | str | None,
) -> bool:
    """Move a written trace into place and commit it in the manifest; True if it replaced one."""
    if mapping_file:
        entry["mapping"] = str(Path(mapping_file).resolve())
    replacing = any(t["trace_id"] == tid for t in existing)
    man = ds.manifest(dataset)
    if replacing:
        # Two commits: first the trace leaves the manifest (its dirs become garbage), then
        # the new dirs move in and the manifest takes it back. A crash in between loses
        # the old copy of this one trace, never mixes old and new rows.
        man["traces"] = [t for t in man["traces"] if t["trace_id"] != tid]
        mark_overlaps(man["traces"])
        ds.write_manifest(dataset, man)
    for table in TABLES:
        (dataset / table).mkdir(exist_ok=True)
        ds.swap_into_place(tmp / table, ds.trace_dir(dataset, table, tid))
    man["traces"].append(entry)
    mark_overlaps(man["traces"])
    ds.write_manifest(dataset, man)
    return replacing


OVERLAP_WARNING = "overlaps_same_host"


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if not a.get("host") or a.get("host") != b.get("host"):
        return False
    if a.get("clock") and b.get("clock") and a["clock"] != b["clock"]:
        return False  # different clocks: the ranges cannot be compared
    ends = (a.get("first_ts_ns"), a.get("last_ts_ns"), b.get("first_ts_ns"), b.get("last_ts_ns"))
    if any(x is None for x in ends):
        return False
    return ends[0] <= ends[3] and ends[2] <= ends[1]


def mark_overlaps(traces: list[dict[str, Any]]) -> None:
    """Warn on traces of one host whose time ranges overlap: the same events may be in both.

    Logs of one machine concatenated or collected twice would otherwise be replayed as twice
    the activity. Recomputed on every commit, so a replaced or new trace updates the others.
    """
    for t in traces:  # a handful of traces per dataset
        others = [o["trace_id"] for o in traces if o is not t and _overlap(t, o)]
        warnings = t.setdefault("warnings", {})
        if others:
            warnings[OVERLAP_WARNING] = ", ".join(others)
        else:
            warnings.pop(OVERLAP_WARNING, None)


# ---------------------------------------------------------------------------- one trace


@dataclass
class _Carry:
    """State crossing chunk boundaries."""

    last_ts: int | None = None  # last timestamped line so far (lost gaps start here)
    pending_lost: pl.DataFrame | None = None  # lost markers still waiting for a next timestamp
    cpu_last: dict[int | None, int] = field(default_factory=dict)  # each CPU's last time stamp
    stack_event_line: int | None = None
    stack_next_depth: int = 0
    # the hash tables of the chunks before (and their bytes), back at least a block: duplicate
    # lines are found that close together (~350k lines), which catches re-read buffers and
    # glued copies, whatever size the chunks came in
    prev_tables: deque[tuple[np.ndarray, int]] = field(default_factory=deque)


@dataclass
class _Totals:
    lines: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LINE_CATEGORIES, 0))
    total: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    lost_events: int = 0
    lost_unknown: int = 0
    backwards: int = 0
    duplicates: int = 0
    first_ts: int | None = None
    last_ts: int | None = None


# How the dataset's parts are encoded (ingest/parquet_parts.py). Delta for the line numbers and
# time stamps, which rise through a part (a few bits a row where plain takes 64), and for pfns,
# inodes and page indexes, whose deltas are no wider than their values (on a `simulate mixed`
# trace, `events` parts a fifth smaller and 6% less CPU to write, read as fast). Dictionaries
# for the few-valued strings: plain comms and callers saved 1-2% of an ingest's CPU, but
# replay, which reads every column of `events`, read them 8% slower (with the dictionaries it
# reads these parts 9% faster than polars'). Min/max statistics for the numbers (cheap, and
# what lets a scan of a time or line range skip row groups) and the few-valued strings a query
# filters on, not for comms and bodies, where they cost the most and prune nothing. zstd at
# pyarrow's level (1). Against polars' writer (zstd level 3, statistics on every column), on a
# `simulate mixed` trace: a fifth less CPU to write; `events` parts a third smaller, the
# dataset a sixth.
PART_ROW_GROUP_ROWS = 262_144
_DICTIONARY = ("trace_id", "comm", "kind", "source_event", "caller", "event")
_DELTA = ("line", "ts_ns", "event_line", "pfn", "new_pfn", "ino", "index")
_STRING_STATISTICS = ["trace_id", "kind", "event"]


def write_dataset_part(df: pl.DataFrame, path: Path) -> None:
    """One part of a dataset table, encoded as the constants above say."""
    parquet_parts.write_part(
        df,
        path,
        compression="zstd",
        row_group_rows=PART_ROW_GROUP_ROWS,
        dictionary=_DICTIONARY,
        delta=_DELTA,
        statistics=[c for c, t in df.schema.items() if t.is_numeric()] + _STRING_STATISTICS,
        constant=("trace_id",),  # one ingest, one trace
    )


class _PartWriter:
    """Numbered Parquet parts per table inside the scratch dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.n = dict.fromkeys(TABLES, 0)
        for t in TABLES:
            (root / t).mkdir(parents=True)

    def write(self, table: str, df: pl.DataFrame, part: int) -> None:
        """Write chunk `part`'s rows: part numbers give the file order, whichever thread writes."""
        if df.height == 0:
            return
        self._put(table, df, part)

    def _put(self, table: str, df: pl.DataFrame, part: int) -> None:
        write_dataset_part(df, self.root / table / f"part-{part:06d}.parquet")
        self.n[table] += 1

    def finish(self, part: int) -> None:
        # Every table gets at least one (possibly empty) part: readers always find the schema.
        for t in TABLES:
            if self.n[t] == 0:
                self._put(t, pl.DataFrame(schema=TABLES[t]), part)


def _write_trace(
    path: Path,
    tmp: Path,
    tid: str,
    sha: str | None,
    fmt: str | None,
    mapping: Any,
    kernel: str | None,
    progress: Progress | None,
    before_kernels: Callable[[], None] | None = None,
) -> dict[str, Any]:
    writer = _PartWriter(tmp)
    carry = _Carry()
    tot = _Totals()
    with src.open_source(path) as source:
        plain = source.container == "plain"  # (the size of the text is known)
        chunks = src.iter_line_chunks(source.stream, src.BLOCK_SIZE, source.size if plain else None)
        first = next(chunks, None)
        if first is None:
            if source.container not in ("plain", "dat"):
                raise InputError(
                    f"{path}: no text inside the .{source.container} data (empty, or cut off "
                    "before its first block); expected a compressed trace"
                )
            raise InputError(f"{path}: empty file, nothing to ingest (expected trace text)")
        head = src.head_lines(first, HEAD_LINES)
        if fmt is None:
            fmt = "trace-cmd" if source.container == "dat" else _detect(head, path)
        info = {**src.uname_info(source.uname), **src.header_info(head)}
        ctx = ChunkContext(path=str(path), format=fmt)
        frame = framer_for(fmt)
        parallel = fmt in _PARALLEL_FORMATS
        if before_kernels is not None and fmt in _COMPILED_FORMATS:
            before_kernels()
        # Not hashed yet: a plain file's chunks are its bytes, hashed as they go by (one read
        # of the file, not two); a compressed one is hashed after, in a pass over its fewer bytes.
        file_hash = hashlib.sha256() if sha is None and plain else None
        every = chain([first], chunks)
        if file_hash is not None:
            every = src.hashed_chunks(every, file_hash)
        k = 0
        with ThreadPoolExecutor(WORKERS if parallel else 1) as pool:
            # Chunks are framed and mapped WORKERS at a time and committed in file order. One
            # more, read and split, waits in the pool's queue: a worker that finishes starts it
            # at once instead of idling while this thread commits and reads the next (that
            # bubble cost ~1/4 of each worker's time). Each commit frees its chunk.
            flight: deque[tuple[src.LineChunk, Future[_Mapped]]] = deque()
            for chunk in _with_progress(every, source, path, progress):
                local = replace(ctx, last_event_line=_UNKNOWN_LINE) if parallel else ctx
                flight.append(
                    (chunk, pool.submit(_frame_map, chunk, k, frame, local, tid, mapping, writer))
                )
                k += 1
                if len(flight) > WORKERS:
                    c, fut = flight.popleft()
                    _commit(c, fut.result(), frame, ctx, parallel, tid, writer, carry, tot)
            while flight:
                c, fut = flight.popleft()
                _commit(c, fut.result(), frame, ctx, parallel, tid, writer, carry, tot)
    if carry.pending_lost is not None:
        writer.write("lost", carry.pending_lost, k)
    writer.finish(k)

    accounted = sum(tot.lines.values())
    if accounted != tot.total:
        raise RuntimeError(
            f"{path}: line accounting is off: {tot.total} lines but {tot.lines} add up to "
            f"{accounted} (a reader or the mapper lost or invented rows)"
        )
    clock = ctx.extra.get("clock") or detect_clock(head, fmt)
    if sha is None:
        sha = file_hash.hexdigest() if file_hash is not None else src.sha256_of(path)
    return {
        "trace_id": tid,
        "source": str(path.resolve()),
        "sha256": sha,
        "size": source.size,
        "container": source.container,
        "format": fmt,
        "kernel": kernel or info.get("kernel"),
        "host": info.get("host"),
        "clock": clock,
        "first_ts_ns": tot.first_ts,
        "last_ts_ns": tot.last_ts,
        "lines": {"total": tot.total, **tot.lines},
        "lost_events": tot.lost_events,
        "lost_markers": tot.lines["lost"],
        "lost_markers_unknown": tot.lost_unknown,
        "events_by_kind": {k: tot.by_kind[k] for k in KINDS if tot.by_kind.get(k)},
        "warnings": {"time_backwards_per_cpu": tot.backwards, "duplicate_lines": tot.duplicates},
        "ingested_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def detect_clock(head: list[str], fmt: str) -> str | None:
    """Which clock the timestamps in the first lines were printed with; None if unknown."""
    if fmt.startswith("bpftrace"):
        return None
    for name, pattern in _CLOCKS:
        if any(pattern.search(line) for line in head):  # at most HEAD_LINES lines
            return name
    return None


def _with_progress(
    chunks: Iterator[src.LineChunk],
    source: src.Source,
    path: Path,
    progress: Progress | None,
) -> Iterator[src.LineChunk]:
    text_bytes = 0
    for chunk in chunks:
        yield chunk
        text_bytes += chunk.nbytes
        if progress is not None:
            pos = source.raw_position()
            if pos is None:
                progress(path, text_bytes, None)
            else:
                progress(path, pos, source.size)


@dataclass
class _Mapped:
    """A chunk framed and mapped (its events and other_events already written)."""

    part: int
    lines: dict[str, pl.DataFrame]  # the lines that are not events, by class (`_by_class`)
    ctx: ChunkContext  # the reader's context after this chunk
    n_events: int
    kinds: dict[str, int]  # events by kind
    n_other: int
    map_rejects: pl.DataFrame
    ts: pl.DataFrame  # line, ts_ns, cpu of the timestamped event lines, in line order
    clock: pl.DataFrame  # per CPU: its first and last time stamp, and steps back in between
    hashes: np.ndarray  # of the event lines' text, each distinct value once
    hash_table: np.ndarray  # the hashset table holding them
    n_dup: int  # event lines whose text came earlier in this chunk


def _frame_map(
    chunk: src.LineChunk,
    part: int,
    frame: Framer,
    ctx: ChunkContext,
    tid: str,
    mapping: Any,
    writer: _PartWriter,
) -> _Mapped:
    """The per-chunk work that needs nothing from the chunk before: runs in a worker thread."""
    n = chunk.n_lines
    tid_lit = pl.lit(tid, pl.String()).alias("trace_id")
    if ctx.format in _COMPILED_FORMATS:
        from ingest.ftrace_chunk import frame_map_chunk

        t = frame_map_chunk(chunk, ctx, tid, mapping)
        n_rows = t.framed.height + t.n_event_lines
        n_ev, framed, ts, n_dup = t.n_event_lines, t.framed, t.ts, t.n_dup
        hashes, table = t.hashes, t.hash_table
        raw_events, raw_other, raw_rejects = t.events, t.other, t.rejects
    else:
        framed = conform_framed(frame(chunk.lines, chunk.first_line, ctx))
        n_rows = framed.height
        ev = framed.filter(pl.col("cls") == "event")
        mapped = _map(ev, tid, mapping)
        raw_events, raw_other, raw_rejects = mapped.events, mapped.other, mapped.rejects
        n_ev = ev.height
        ts = ev.select("line", "ts_ns", "cpu").filter(pl.col("ts_ns").is_not_null())
        # hash every line, then pick the events' (gathering numbers, not strings)
        from ingest import hashset  # (numba: loaded when a chunk needs it)

        every = chunk.lines.hash(seed=0).gather(ev.get_column("line") - chunk.first_line)
        hashes, table = hashset.distinct_set(every.to_numpy())
        n_dup = ev.height - len(hashes)
        framed = framed.filter(pl.col("cls") != "event")
    if n_rows != n:
        raise RuntimeError(
            f"{ctx.path}: the {ctx.format} reader returned {n_rows} rows for {n} lines "
            f"starting at line {chunk.first_line}"
        )
    events = conform(raw_events.with_columns(tid_lit), "events")
    other = conform(raw_other.with_columns(tid_lit), "other_events")
    map_rejects = conform(raw_rejects.with_columns(tid_lit), "rejects")
    if events.height + other.height + map_rejects.height != n_ev:
        raise RuntimeError(
            f"{ctx.path}: the mapper returned {events.height} events + {other.height} other + "
            f"{map_rejects.height} rejects for {n_ev} event lines "
            f"starting at line {chunk.first_line}"
        )
    writer.write("events", events, part)
    writer.write("other_events", other, part)
    kinds = events.get_column("kind").drop_nulls().value_counts()
    return _Mapped(
        part,
        _by_class(framed),
        ctx,
        events.height,
        dict(kinds.iter_rows()),  # at most len(KINDS) rows
        other.height,
        map_rejects,
        ts,
        _clock(ts),
        hashes,
        table,
        n_dup,
    )


def _by_class(framed: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """A chunk's non-event lines split by class in one pass, in the worker (the commit, on the
    main thread, filtered them once per class)."""
    parts = framed.partition_by("cls", as_dict=True, maintain_order=True)
    return {str(key[0]): rows for key, rows in parts.items()}


def _clock(ts: pl.DataFrame) -> pl.DataFrame:
    """What the time checks need of a chunk, summed up per CPU in the worker: the commit then
    joins it to the chunks before in a few rows instead of a pass over every line."""
    ts_ns = pl.col("ts_ns")
    return ts.group_by("cpu").agg(
        ts_ns.first().alias("first"),
        ts_ns.last().alias("last"),
        ts_ns.min().alias("lo"),
        ts_ns.max().alias("hi"),
        (ts_ns.diff() < 0).sum().alias("back"),
    )


def _fix_leading_stacks(
    chunk: src.LineChunk, m: _Mapped, frame: Framer, ctx: ChunkContext
) -> dict[str, pl.DataFrame]:
    """Attach the stack frames at the top of a chunk framed in parallel to the event before."""
    lines = m.lines
    stack = lines.get("stack")
    lead = pl.col("event_line") == _UNKNOWN_LINE
    if stack is not None and ctx.last_event_line is not None:
        stack = stack.with_columns(
            event_line=pl.when(lead)
            .then(pl.lit(ctx.last_event_line, pl.Int64))
            .otherwise(pl.col("event_line"))
        )
        lines = {**lines, "stack": stack}
    elif stack is not None and stack.select(lead.any()).item():
        # No event anywhere before: frame again in order, so that they become rejects.
        again = conform_framed(frame(chunk.lines, chunk.first_line, replace(ctx)))
        lines = _by_class(again.filter(pl.col("cls") != "event"))
    if m.ctx.last_event_line != _UNKNOWN_LINE:
        ctx.last_event_line = m.ctx.last_event_line
    return lines


_NO_LINES = pl.DataFrame(schema=FRAMED_SCHEMA)


def _commit(
    chunk: src.LineChunk,
    m: _Mapped,
    frame: Framer,
    ctx: ChunkContext,
    parallel: bool,
    tid: str,
    writer: _PartWriter,
    carry: _Carry,
    tot: _Totals,
) -> None:
    """What depends on the chunks before, in file order: stacks, lost gaps, totals."""
    lines = _fix_leading_stacks(chunk, m, frame, ctx) if parallel else m.lines
    tot.total += chunk.n_lines
    tid_lit = pl.lit(tid, pl.String()).alias("trace_id")
    rejects = conform(lines.get("reject", _NO_LINES).with_columns(tid_lit), "rejects")
    if m.map_rejects.height:
        rejects = pl.concat([rejects, m.map_rejects]).sort("line")
    stacks = _stacks(lines.get("stack", _NO_LINES), tid, carry)
    ts = m.ts
    lost_rows = lines.get("lost", _NO_LINES)
    lost = _lost(lost_rows, ts, tid, carry)

    writer.write("rejects", rejects, m.part)
    writer.write("stacks", stacks, m.part)
    writer.write("lost", lost, m.part)

    n_comments = lines.get("comment", _NO_LINES).height
    n_lost = lost_rows.height
    if n_lost:
        known, unknown = lost_rows.select(
            pl.col("lost_events").sum().alias("known"),
            pl.col("lost_events").null_count().alias("unknown"),
        ).row(0)
        tot.lost_events += int(known or 0)
        tot.lost_unknown += int(unknown)
    for key, value in (
        ("events", m.n_events),
        ("other", m.n_other),
        ("stack", stacks.height),
        ("lost", n_lost),
        ("comments", n_comments),
        ("rejected", rejects.height),
    ):
        tot.lines[key] += value
    for kind, n in m.kinds.items():
        tot.by_kind[kind] = tot.by_kind.get(kind, 0) + n
    _time_stats(m.clock, ts, carry, tot)
    _duplicates(m, chunk.nbytes, carry, tot)


def _duplicates(m: _Mapped, nbytes: int, carry: _Carry, tot: _Totals) -> None:
    """Event lines whose exact text came before (in this chunk or the previous one).

    The same line twice is the same event recorded twice (a re-read buffer, logs glued
    together): replay would count it twice, so it is a data-quality warning.
    """
    tot.duplicates += m.n_dup
    if len(m.hashes) == 0:
        return
    if carry.prev_tables:
        from ingest import hashset

        seen = np.zeros(len(m.hashes), np.bool_)
        for table, _ in carry.prev_tables:
            hashset.mark_in_table(m.hashes, table, seen)
        tot.duplicates += int(seen.sum())
    window = carry.prev_tables
    window.append((m.hash_table, nbytes))
    while sum(n for _, n in window) - window[0][1] >= src.BLOCK_SIZE:
        window.popleft()


def _time_stats(clock: pl.DataFrame, ts: pl.DataFrame, carry: _Carry, tot: _Totals) -> None:
    """First/last timestamp and time going backwards within a CPU, in file order: the steps
    back inside the chunk (`_clock`), and at each CPU's first line after the chunks before."""
    if ts.height == 0:
        return
    for cpu, first, last, lo, hi, back in clock.select(
        "cpu", "first", "last", "lo", "hi", "back"
    ).iter_rows():  # one row a CPU
        tot.first_ts = lo if tot.first_ts is None else min(tot.first_ts, lo)
        tot.last_ts = hi if tot.last_ts is None else max(tot.last_ts, hi)
        before = carry.cpu_last.get(cpu)
        tot.backwards += back + (before is not None and first < before)
        carry.cpu_last[cpu] = last
    carry.last_ts = int(ts["ts_ns"][-1])


def _stacks(rows: pl.DataFrame, tid: str, carry: _Carry) -> pl.DataFrame:
    """Stack frames with their depth in their block (which may continue from the last chunk)."""
    if rows.height == 0:
        return pl.DataFrame(schema=TABLES["stacks"])
    # a frame's depth: its place in the run of frames of one event (the rows are in line
    # order, so each event's frames are one run), counted on from the last chunk's
    ev = rows.get_column("event_line").to_numpy()
    run = np.flatnonzero(np.concatenate([[True], ev[1:] != ev[:-1]]))
    depth = np.arange(len(ev)) - np.repeat(run, np.diff(np.append(run, len(ev))))
    if carry.stack_event_line is not None:
        depth[ev == carry.stack_event_line] += carry.stack_next_depth
    out = rows.select(
        pl.lit(tid, pl.String()).alias("trace_id"),
        pl.col("event_line"),
        pl.col("line"),
        pl.Series("depth", depth, dtype=pl.Int32),
        pl.col("body").alias("frame"),
    )
    last = out.row(-1, named=True)
    carry.stack_event_line = last["event_line"]
    carry.stack_next_depth = last["depth"] + 1
    return conform(out, "stacks")


def _lost(rows: pl.DataFrame, ts: pl.DataFrame, tid: str, carry: _Carry) -> pl.DataFrame:
    """Lost markers with the timestamps around them; those with no next timestamp yet wait."""
    first_ts = int(ts["ts_ns"][0]) if ts.height else None
    out: list[pl.DataFrame] = []
    if carry.pending_lost is not None and first_ts is not None:
        out.append(
            carry.pending_lost.with_columns(pl.lit(first_ts, pl.Int64).alias("gap_end_ts_ns"))
        )
        carry.pending_lost = None
    if rows.height:
        lost = rows.select("line", "cpu", "lost_events", "text").sort("line")
        # the time stamps before and after each marker (ts is in line order, no marker in it)
        lines = ts.get_column("line").to_numpy()
        at = np.searchsorted(lines, lost.get_column("line").to_numpy())
        stamps = np.concatenate([[0], ts.get_column("ts_ns").to_numpy(), [0]])  # [i]: ts[i - 1]
        lost = lost.with_columns(
            gap_start_ts_ns=pl.when(pl.Series(at > 0))
            .then(pl.Series(stamps[at], dtype=pl.Int64))
            .otherwise(pl.lit(carry.last_ts, pl.Int64)),
            gap_end_ts_ns=pl.when(pl.Series(at < len(lines))).then(
                pl.Series(stamps[at + 1], dtype=pl.Int64)
            ),
            trace_id=pl.lit(tid, pl.String()),
        )
        lost = conform(lost, "lost")
        waiting = lost.filter(pl.col("gap_end_ts_ns").is_null())
        out.append(lost.filter(pl.col("gap_end_ts_ns").is_not_null()))
        if waiting.height:
            carry.pending_lost = (
                waiting if carry.pending_lost is None else pl.concat([carry.pending_lost, waiting])
            )
    if not out:
        return pl.DataFrame(schema=TABLES["lost"])
    return conform(pl.concat(out), "lost")
