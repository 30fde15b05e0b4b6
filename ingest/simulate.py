"""`pinscope simulate`: write a scenario's trace and its ground truth, streaming to disk.

Small scenarios are built record by record (ingest/scenarios.py). `mixed` builds one *round* —
every scenario but lost-events once, on its own pages, tasks and files — and replicates it with
polars: each copy shifts pfns, inode numbers, pids and time, so copies never share a page or a
holder, and their truths are the round's truth shifted the same way. Rounds overlap in time
within a block of rounds; blocks follow one another, so each block is sorted and written on its
own and memory stays flat however many events are asked for.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import polars as pl
import pyarrow as pa
from polars import CompatLevel

from ingest.errors import PinscopeError
from ingest.scenarios import MIXED, PFN_SPAN, SCENARIOS, Expect, Story, build
from ingest.writers import DEFAULT_KERNEL, FORMATS, Renderer

MIXED_SKIP = ("lost-events",)  # a gap would make every open span of the whole trace uncertain
STORY_PID_MIN = 4000  # pids below are system tasks shared by all copies; above, story tasks
PID_BASE, PID_MAX = 5000, 4_194_304
INO_STEP = 5_000_000
BLOCK_ROUNDS = 400
DEFAULT_EVENTS = 100_000


def truth_path(out: Path) -> Path:
    return out.with_name(out.name + ".truth.json")


@contextmanager
def _open(out: Path) -> Iterator[IO[bytes]]:
    with open(out, "wb") as raw:
        if out.suffix != ".gz":
            yield raw
            return
        # mtime=0 and no file name: the same seed gives the same bytes
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            yield gz  # type: ignore[misc]


def _write_text(f: IO[bytes], lines: list[str]) -> None:
    f.write(("\n".join(lines) + "\n").encode("utf-8"))


def _write_lines(f: IO[bytes], lines: pl.Series) -> None:
    """Write a block's lines straight from Arrow's buffer: no Python string per line."""
    if not lines.len():
        return
    arr = (lines + "\n").to_arrow(compat_level=CompatLevel.oldest())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    width = pa.int64() if arr.type == pa.large_string() else pa.int32()
    offsets = pa.Array.from_buffers(
        width, len(arr) + 1, [None, arr.buffers()[1]], offset=arr.offset
    )
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    f.write(memoryview(arr.buffers()[2])[start:end])


def simulate(
    name: str,
    out: Path,
    *,
    events: int | None = None,
    fmt: str = "ftrace",
    seed: int = 0,
    kernel: str = DEFAULT_KERNEL,
) -> dict:
    """Write the trace to `out` and its truth to `out`.truth.json; return the truth."""
    if fmt not in FORMATS:
        raise PinscopeError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if name == MIXED:
        expected = _mixed(out, events or DEFAULT_EVENTS, fmt, seed, kernel)
    elif name in SCENARIOS:
        records, exp = build(name, seed)
        renderer = Renderer(fmt, kernel, t0_ns=int(records["ts_ns"].min()))
        with _open(out) as f:
            _write_text(f, renderer.header(records.height))
            _write_lines(f, renderer.render(records))
        expected = [_entry(e.rule, e.pfn, e.uncertain) for e in exp]
    else:
        known = ", ".join([*SCENARIOS, MIXED])
        raise PinscopeError(f"unknown scenario {name!r}: expected one of {known}")
    truth = {"scenario": name, "seed": seed, "format": fmt, "kernel": kernel, "expected": expected}
    _write_truth(truth_path(out), truth)
    return truth


def _write_truth(path: Path, truth: dict) -> None:
    """JSON with one expected finding per line: diffable, and fast for mixed's many."""
    head = {k: v for k, v in truth.items() if k != "expected"}
    entries = ",\n  ".join(json.dumps(e) for e in truth["expected"])
    text = json.dumps(head)[:-1] + ', "expected": [' + (f"\n  {entries}\n" if entries else "")
    path.write_text(text + "]}\n", encoding="utf-8")


def _entry(rule: str, pfn: int, uncertain: bool = False) -> dict:
    return (
        {"rule": rule, "pfn": pfn, "uncertain": True} if uncertain else {"rule": rule, "pfn": pfn}
    )


def round_template(seed: int) -> tuple[pl.DataFrame, list[Expect], int]:
    """One round of mixed: every scenario once, on disjoint pages; (records, truth, pfn span)."""
    frames, expected = [], []
    names = [n for n in SCENARIOS if n not in MIXED_SKIP]
    for i, n in enumerate(names):
        base = 0x100000 + i * PFN_SPAN
        df, exp = build(n, seed * 1009 + i, base_pfn=base, quiet_tail=False)
        # stagger the stories inside the round so that they interleave
        df = df.with_columns(pl.col("ts_ns") - df["ts_ns"].min() + i * 3_000_000)
        frames.append(df)
        expected += exp
    tpl = pl.concat(frames).sort("ts_ns", maintain_order=True).with_row_index("_seq")
    story_pids = sorted(
        {
            int(v)
            for c in ("pid", "tgid", "arg_pid")
            for v in tpl[c].drop_nulls().to_list()
            if v >= STORY_PID_MIN
        }
    )
    local = pl.DataFrame(
        {"_p": story_pids, "_loc": list(range(len(story_pids)))},
        schema={"_p": pl.Int32, "_loc": pl.Int64},
    )
    for c in ("pid", "tgid", "arg_pid"):
        tpl = tpl.join(
            local.rename({"_p": c, "_loc": f"_{c}_loc"}), on=c, how="left", maintain_order="left"
        )
    tpl = tpl.with_columns(pl.lit(len(story_pids)).alias("_npid"))
    return tpl, expected, len(names) * PFN_SPAN


def _mixed(out: Path, events: int, fmt: str, seed: int, kernel: str) -> list[dict]:
    if events < 1:
        raise PinscopeError(f"--events {events}: expected a positive number of events")
    tpl, exp, pfn_step = round_template(seed)
    rounds = max(1, -(-events // tpl.height))
    t0 = int(tpl["ts_ns"].min())
    duration = int(tpl["ts_ns"].max()) - t0
    step = duration // 4 + 1  # about four rounds are in flight at any time
    tail = Story(random.Random(seed), t_us=0, noise_pfn=0x80)
    tail.noise(5)
    tail.journal()
    tail_df = tail.frame()
    renderer = Renderer(fmt, kernel, t0_ns=t0)
    block_start = 0
    with _open(out) as f:
        _write_text(f, renderer.header(rounds * tpl.height + tail_df.height))
        for k0 in range(0, rounds, BLOCK_ROUNDS):
            k1 = min(rounds, k0 + BLOCK_ROUNDS)
            block = _replicate(tpl, k0, k1, pfn_step, step, block_start, seed)
            _write_lines(f, renderer.render(block))
            block_start = int(block["ts_ns"].max()) - t0 + 1_000_000
        end = block_start + t0 + 2_000_000_000
        tail_df = tail_df.with_columns(pl.col("ts_ns") - tail_df["ts_ns"].min() + end)
        _write_lines(f, renderer.render(tail_df))
    by_round = [(e.rule, e.pfn) for e in exp]
    truth = (
        pl.DataFrame({"rule": [r for r, _ in by_round], "pfn": [p for _, p in by_round]})
        .join(pl.DataFrame({"k": pl.int_range(0, rounds, eager=True)}), how="cross")
        .sort("k", maintain_order=True)
        .with_columns(pl.col("pfn") + pl.col("k") * pfn_step)
    )
    return [{"rule": r, "pfn": p} for r, p in zip(truth["rule"], truth["pfn"], strict=True)]


def _replicate(
    tpl: pl.DataFrame, k0: int, k1: int, pfn_step: int, step: int, start: int, seed: int
) -> pl.DataFrame:
    """Copies k0..k1-1 of the round, shifted onto their own pages, files, pids and times."""
    ks = pl.DataFrame({"k": pl.int_range(k0, k1, eager=True).cast(pl.Int64)})
    df = tpl.join(ks, how="cross")
    k = pl.col("k")
    jitter = (k * 7919 + seed * 104729) % 997 * 1000
    span = PID_MAX - PID_BASE

    def pid(c: str) -> pl.Expr:
        loc = pl.col(f"_{c}_loc")
        mapped = (PID_BASE + (k * pl.col("_npid") + loc) % span).cast(pl.Int32)
        return pl.when(loc.is_not_null()).then(mapped).otherwise(pl.col(c)).alias(c)

    df = df.with_columns(
        pl.col("ts_ns") + start + (k - k0) * step + jitter,
        pl.col("pfn") + k * pfn_step,
        pl.col("new_pfn") + k * pfn_step,
        pl.col("ino") + k * INO_STEP,
        pid("pid"),
        pid("tgid"),
        pid("arg_pid"),
    )
    return df.sort(["ts_ns", "k", "_seq"])
