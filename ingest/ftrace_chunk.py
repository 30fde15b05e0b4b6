"""One chunk of ftrace / trace-cmd bytes → its share of every table, for the pipeline.

The compiled path from raw bytes: lines are found, framed and mapped by the kernels
(`ftrace_fast`, `map_fast`), and only the lines they leave are decoded into strings for the
polars readers — decoded exactly as `source.split_lines` decodes a whole chunk, so every line
reads the same whichever path it takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ingest import arrow_cols as ac
from ingest import ftrace_kernel as K
from ingest import hashset
from ingest import source as src
from ingest.framing import ChunkContext
from ingest.ftrace_fast import FastFramed, frame_block
from ingest.map_fast import map_block
from ingest.mapping import Mapping
from ingest.read_ftrace import finish


@dataclass
class ChunkTables:
    """What `pipeline._frame_map` needs of a chunk."""

    framed: pl.DataFrame  # the lines that are not events (FRAMED_SCHEMA), stacks attached
    n_event_lines: int
    events: pl.DataFrame  # EVENTS_SCHEMA without trace_id
    other: pl.DataFrame  # OTHER_EVENTS_SCHEMA without trace_id
    rejects: pl.DataFrame  # REJECTS_SCHEMA (events the mapping rejected)
    ts: pl.DataFrame  # line, ts_ns, cpu of the timestamped event lines, in file order
    hashes: np.ndarray  # of the event lines' text, each distinct value once
    hash_table: np.ndarray  # the hashset table holding them
    n_dup: int  # event lines whose text came earlier in this chunk


@dataclass
class FramedChunk:
    """A chunk framed: the kernel's event lines (f) and the others, finished (framed)."""

    f: FastFramed
    framed: pl.DataFrame  # FRAMED_SCHEMA rows of the lines the kernel left to polars
    loads: np.ndarray  # ftrace_kernel.loads_of(f.buf)


def frame_chunk(chunk: src.LineChunk, ctx: ChunkContext) -> FramedChunk:
    """Find and frame a chunk's lines; ctx is updated as `read_ftrace.frame_ftrace` does."""
    buf = np.frombuffer(chunk.data, np.uint8)
    words = K.words_of(buf)
    starts, ends, clean = K.scan_lines(buf, words, chunk.end, chunk.n_lines)
    if len(starts) != chunk.n_lines:
        raise RuntimeError(f"{ctx.path}: {len(starts)} lines found, {chunk.n_lines} expected")

    def fallback_text(idx: np.ndarray) -> pl.Series:
        _, data = K.gather_spans(buf, starts[idx], ends[idx], True)
        lines = src.split_lines(data.tobytes())
        if lines.len() != len(idx):
            raise RuntimeError(f"{ctx.path}: {lines.len()} lines decoded for {len(idx)}")
        return lines

    f = frame_block(buf, starts, ends, chunk.first_line, ctx, fallback_text, clean)
    return FramedChunk(f, finish(f.others), K.loads_of(buf))


def map_chunk(fc: FramedChunk, trace_id: str, mapping: Mapping) -> ChunkTables:
    """Map a framed chunk's events; time stamps and line hashes for the pipeline's checks."""
    f = fc.f
    is_event = pl.col("cls") == "event"
    fb_events = fc.framed.filter(is_event)
    mapped = map_block(f, fb_events, trace_id, mapping)

    ts = pl.DataFrame(
        {
            "line": pl.Series(f.line_numbers(), dtype=pl.Int64),
            "ts_ns": pl.Series(f.ts, dtype=pl.Int64),
            "cpu": pl.Series(f.cpu, dtype=pl.Int16),
        }
    )
    hashes = K.hash_spans(f.buf, fc.loads, f.starts[f.rows], f.ends[f.rows])
    if fb_events.height:
        ts = (
            pl.concat([ts, fb_events.select("line", "ts_ns", "cpu")])
            .sort("line")
            .filter(pl.col("ts_ns").is_not_null())
        )
        fb_buf, fb_s, fb_e = ac.string_buffers(f.others.filter(is_event).get_column("raw"))
        hashes = np.concatenate([hashes, K.hash_spans(fb_buf, K.loads_of(fb_buf), fb_s, fb_e)])
    n_events = len(f.rows) + fb_events.height
    distinct, table = hashset.distinct_set(hashes)
    return ChunkTables(
        framed=fc.framed.filter(~is_event),
        n_event_lines=n_events,
        events=mapped.events,
        other=mapped.other,
        rejects=mapped.rejects,
        ts=ts,
        hashes=distinct,
        hash_table=table,
        n_dup=n_events - len(distinct),
    )


def frame_map_chunk(
    chunk: src.LineChunk, ctx: ChunkContext, trace_id: str, mapping: Mapping
) -> ChunkTables:
    """Frame and map a chunk's bytes; ctx is updated as `read_ftrace.frame_ftrace` does."""
    return map_chunk(frame_chunk(chunk, ctx), trace_id, mapping)
