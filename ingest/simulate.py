"""`pinscope simulate`: write a scenario's trace and its ground truth, streaming to disk.

Small scenarios are built record by record (ingest/scenarios.py). `mixed` builds one *round* —
every scenario once, on its own pages, tasks and files — and replicates it with polars: each
copy shifts pfns, inode numbers, pids and time, so copies never share a page or a holder, and
their truths are the round's truth shifted the same way. Rounds overlap in time within a block
of rounds; blocks follow one another, so each block is sorted and written on its own and memory
stays flat however many events are asked for. A round's lines are rendered once
(`Renderer.compile`); a block only formats what its copies shift.

The truth's `uncertain` flags are computed, not assumed: each lost-events marker opens a gap
from the previous timestamped line of the file to the next (whatever the CPU), and a finding is
uncertain when a gap overlaps its span or its pin interval (docs/rules.md, docs/replay.md). In
`mixed` a copy's gap can fall inside another copy's spans, and an open span (a leaked pin, a
pin outliving its page's free) meets every later gap.
"""

from __future__ import annotations

import gzip
import io
import json
import random
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import polars as pl

from ingest.errors import PinscopeError
from ingest.scenarios import MIXED, PFN_SPAN, SCENARIOS, Expect, Story, build
from ingest.writers import DEFAULT_KERNEL, DYNAMIC_COLUMNS, FORMATS, Renderer

STORY_PID_MIN = 4000  # pids below are system tasks shared by all copies; above, story tasks
PID_BASE, PID_MAX = 5000, 4_194_304
INO_STEP = 5_000_000
BLOCK_ROUNDS = 400
WORKERS = 2
GZIP_LEVEL = 6  # gzip's own default: 2.5x the speed of 9 for 7% more bytes on these traces
DEFAULT_EVENTS = 100_000
_MIN_TS, _MAX_TS = -(2**63) + 1, 2**63 - 1


def truth_path(out: Path) -> Path:
    return out.with_name(out.name + ".truth.json")


class _Out:
    """The trace file. A .gz is written as one gzip member per chunk (RFC 1952 allows several
    members; gzip readers, ours included, read them as one stream), so that each block is
    compressed on the worker thread that rendered it. mtime=0 and no file name: the same seed
    gives the same bytes."""

    def __init__(self, raw: IO[bytes], gz: bool) -> None:
        self.raw, self.gz = raw, gz

    def encode(self, lines: pl.Series) -> bytes | pl.Series:
        """What `write` takes; the costly part (compression) runs in the caller's thread."""
        if not self.gz:
            return lines
        buf = io.BytesIO()
        _csv(lines, buf)
        return gzip.compress(buf.getbuffer(), GZIP_LEVEL, mtime=0)

    def write(self, payload: bytes | pl.Series) -> None:
        if isinstance(payload, pl.Series):
            _csv(payload, self.raw)
        else:
            self.raw.write(payload)

    def text(self, lines: list[str]) -> None:
        data = ("\n".join(lines) + "\n").encode("utf-8")
        self.raw.write(gzip.compress(data, GZIP_LEVEL, mtime=0) if self.gz else data)


@contextmanager
def _open(out: Path) -> Iterator[_Out]:
    with open(out, "wb") as raw:
        yield _Out(raw, out.suffix == ".gz")


def _csv(lines: pl.Series, f: IO[bytes]) -> None:
    """Each line and a newline, written by polars' CSV writer: no Python string per line."""
    if lines.len():
        lines.to_frame("l").write_csv(f, include_header=False, quote_style="never")


def simulate(
    name: str,
    out: Path,
    *,
    events: int | None = None,
    fmt: str = "ftrace",
    seed: int = 0,
    kernel: str = DEFAULT_KERNEL,
    entries: bool = True,
) -> dict:
    """Write the trace to `out` and its truth to `out`.truth.json; return the truth.

    The returned truth holds `expected_count` and, unless `entries` is false, the `expected`
    list as in the file: a big `mixed` run has hundreds of thousands, which the command line
    does not need to hold in memory as Python objects.
    """
    if fmt not in FORMATS:
        raise PinscopeError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if name == MIXED:
        flagged = _mixed(out, events or DEFAULT_EVENTS, fmt, seed, kernel)
    elif name in SCENARIOS:
        records, exp = build(name, seed)
        renderer = Renderer(fmt, kernel, t0_ns=int(records["ts_ns"].min()))
        compiled = renderer.compile(records)
        with _open(out) as f:
            f.text(renderer.header(records.height))
            f.write(f.encode(compiled.lines(compiled.records)))
        found = _checks(exp).with_columns(pl.lit(0, pl.Int64).alias("k"))
        flagged = _flag(found, gaps(compiled.records))
    else:
        known = ", ".join([*SCENARIOS, MIXED])
        raise PinscopeError(f"unknown scenario {name!r}: expected one of {known}")
    head = {"scenario": name, "seed": seed, "format": fmt, "kernel": kernel}
    _write_truth(truth_path(out), head, flagged)
    truth = {**head, "expected_count": flagged.height}
    if entries:
        truth["expected"] = _entries(flagged)
    return truth


def _write_truth(path: Path, head: dict, flagged: pl.DataFrame) -> None:
    """JSON with one expected finding per line, as json.dumps spells each: diffable, and
    written by polars for mixed's many."""
    bad = flagged.filter(~pl.col("rule").str.contains(r"^[A-Z_]+$"))
    if bad.height:  # rule ids need no JSON escaping
        raise AssertionError(f"rule id {bad['rule'][0]!r}")
    tail = pl.when(pl.col("uncertain")).then(pl.lit(', "uncertain": true}')).otherwise(pl.lit("}"))
    entries = flagged.select(
        pl.concat_str(
            [pl.lit('{"rule": "'), pl.col("rule"), pl.lit('", "pfn": '), pl.col("pfn"), tail]
        )
    )
    # streamed by polars' CSV writer: no single string of every entry in memory
    last = pl.int_range(pl.len()) == pl.len() - 1
    lines = entries.select(
        pl.concat_str(
            [pl.lit("  "), pl.all(), pl.when(last).then(pl.lit("")).otherwise(pl.lit(","))]
        )
    )
    with open(path, "wb") as f:
        f.write((json.dumps(head)[:-1] + ', "expected": [').encode())
        if lines.height:
            f.write(b"\n")
            lines.write_csv(f, include_header=False, quote_style="never")
        f.write(b"]}\n")


def _entries(truth: pl.DataFrame) -> list[dict]:
    """{"rule", "pfn"} per expected finding, with "uncertain": true only where it is."""
    return [
        {"rule": r, "pfn": p, "uncertain": True} if u else {"rule": r, "pfn": p}
        for r, p, u in truth.select("rule", "pfn", "uncertain").iter_rows()
    ]


# -- uncertain -------------------------------------------------------------------------------


def gaps(rows: pl.DataFrame) -> pl.DataFrame:
    """(gs, ge) of each lost marker among `rows` (a format's records in file order): the
    timestamps of the lines before and after it (null at the file's edges)."""
    ts = pl.when(~pl.col("_lost")).then(pl.col("ts_ns"))
    return (
        rows.select(
            ts.forward_fill().shift(1).alias("gs"),
            ts.backward_fill().shift(-1).alias("ge"),
            pl.col("_lost"),
        )
        .filter(pl.col("_lost"))
        .drop("_lost")
    )


def _checks(exp: list[Expect]) -> pl.DataFrame:
    """One row per time range that decides a finding's flag: its span (a gap must overlap it
    strictly, as the runner's SQL compares) and its pin intervals (ends included, as replay
    compares). `_f` numbers the findings."""
    rows = []
    for f, e in enumerate(exp):
        rows.append((f, e.rule, e.pfn, e.span[0], e.span[1], True))
        rows += [(f, e.rule, e.pfn, a, b, False) for a, b in e.pins]
    return pl.DataFrame(
        rows,
        schema={
            "_f": pl.Int64,
            "rule": pl.String,
            "pfn": pl.Int64,
            "a": pl.Int64,
            "b": pl.Int64,
            "strict": pl.Boolean,
        },
        orient="row",
    )


def _flag(checks: pl.DataFrame, gaps: pl.DataFrame) -> pl.DataFrame:
    """Per finding (k, _f): rule, pfn and whether any gap overlaps any of its time ranges.

    Vectorized as replay does it: gaps sorted by start with a running max of their ends; for a
    range [a, b], the gaps starting before b overlap it iff that running max reaches a."""
    g = (
        gaps.select(
            pl.col("gs").fill_null(_MIN_TS).cast(pl.Int64),
            pl.col("ge").fill_null(_MAX_TS).cast(pl.Int64),
        )
        .sort("gs")
        .with_columns(pl.col("ge").cum_max())
    )
    b = pl.col("b").fill_null(_MAX_TS)
    q = checks.with_row_index("_i").with_columns(
        pl.when(pl.col("strict") & (b < _MAX_TS)).then(b - 1).otherwise(b).alias("_key")
    )
    hit = q.sort("_key").join_asof(g, left_on="_key", right_on="gs", strategy="backward")
    over = (
        pl.when(pl.col("strict"))
        .then(pl.col("ge") > pl.col("a"))
        .otherwise(pl.col("ge") >= pl.col("a"))
    )
    hit = hit.with_columns(over.fill_null(False).alias("uncertain"))
    return (
        hit.group_by(["k", "_f"], maintain_order=False)
        .agg(pl.col("rule").first(), pl.col("pfn").first(), pl.col("uncertain").any())
        .sort(["k", "_f"])
    )


# -- mixed -----------------------------------------------------------------------------------


def round_template(seed: int) -> tuple[pl.DataFrame, list[Expect], int]:
    """One round of mixed: every scenario once, on disjoint pages; (records, truth, pfn span)."""
    frames, expected = [], []
    names = list(SCENARIOS)
    for i, n in enumerate(names):
        base = 0x100000 + i * PFN_SPAN
        df, exp = build(n, seed * 1009 + i, base_pfn=base, quiet_tail=False)
        # stagger the stories inside the round so that they interleave
        shift = -int(df["ts_ns"].min()) + i * 3_000_000
        frames.append(df.with_columns(pl.col("ts_ns") + shift))
        expected += [_shifted(e, shift) for e in exp]
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


def _shifted(e: Expect, dt: int) -> Expect:
    def sh(t: int | None) -> int | None:
        return None if t is None else t + dt

    span = (e.span[0] + dt, sh(e.span[1]))
    return Expect(e.rule, e.pfn, e.uncertain, span, tuple((a + dt, sh(b)) for a, b in e.pins))


def _mixed(out: Path, events: int, fmt: str, seed: int, kernel: str) -> pl.DataFrame:
    if events < 1:
        raise PinscopeError(f"--events {events}: expected a positive number of events")
    tpl, exp, pfn_step = round_template(seed)
    rounds = max(1, -(-events // tpl.height))
    t0 = int(tpl["ts_ns"].min())
    duration = int(tpl["ts_ns"].max()) - t0
    # about four rounds are in flight at any time; whole microseconds, so that every format
    # (ftrace prints µs, bpftrace ns) shows the same times and the truth holds for all
    step = (duration // 4 // 1000 + 1) * 1000
    tail = Story(random.Random(seed), t_us=0, noise_pfn=0x80)
    tail.noise(5)
    tail.journal()
    tail_df = tail.frame()
    renderer = Renderer(fmt, kernel, t0_ns=t0)
    compiled = renderer.compile(tpl)
    # only what a copy changes is replicated; the rest of each line was rendered once
    keep = [*DYNAMIC_COLUMNS, "_seq", "_g", "_li", "_lost", "_stack"]
    keep += [f"_{c}_loc" for c in ("pid", "tgid", "arg_pid")]
    dyn = compiled.records.select(keep)
    npid = int(tpl["_npid"][0])
    shifts = []  # each block's copies and their time shifts: blocks follow one another
    block_start = 0
    for k0 in range(0, rounds, BLOCK_ROUNDS):
        shifts.append(_shifts(k0, min(rounds, k0 + BLOCK_ROUNDS), step, block_start, seed))
        block_start = duration + int(shifts[-1]["shift"].max()) + 1_000_000

    def render(f: _Out, shift: pl.DataFrame) -> tuple[bytes | pl.Series, pl.DataFrame]:
        block = _replicate(dyn, npid, shift, pfn_step)
        return f.encode(compiled.lines(block)), gaps(block)

    gap_parts = []
    with _open(out) as f, ThreadPoolExecutor(WORKERS) as pool:
        f.text(renderer.header(rounds * tpl.height + tail_df.height))
        # blocks render on both cores (polars releases the GIL) while this thread writes them
        # in order; at most WORKERS + 1 blocks are in memory at once
        pending: deque[Future] = deque()
        for shift in shifts:
            if len(pending) > WORKERS:
                _write_block(f, pending.popleft(), gap_parts)
            pending.append(pool.submit(render, f, shift))
        while pending:
            _write_block(f, pending.popleft(), gap_parts)
        end = block_start + t0 + 2_000_000_000
        tail_df = tail_df.with_columns(pl.col("ts_ns") - tail_df["ts_ns"].min() + end)
        f.write(f.encode(renderer.render(tail_df)))
    all_gaps = pl.concat(gap_parts)
    _check_gaps(all_gaps, out)
    checks = _checks(exp)
    # block by block, against every gap (an open span meets later blocks' gaps too): the
    # checks of all copies at once would grow with --events, a block's do not
    flagged = []
    for shift in shifts:
        found = checks.join(shift, how="cross").with_columns(
            pl.col("pfn") + pl.col("k") * pfn_step,
            pl.col("a") + pl.col("shift"),
            pl.col("b") + pl.col("shift"),
        )
        flagged.append(_flag(found, all_gaps))
    return pl.concat(flagged)


def _write_block(f: _Out, done: Future, gap_parts: list[pl.DataFrame]) -> None:
    payload, block_gaps = done.result()
    f.write(payload)
    gap_parts.append(block_gaps)


def _check_gaps(g: pl.DataFrame, out: Path) -> None:
    """A marker sits inside its own story, so both its neighbours are in its block."""
    if g.height and (g["gs"].null_count() or g["ge"].null_count()):
        raise AssertionError(f"{out}: a lost-events marker at the edge of a block")


def _shifts(k0: int, k1: int, step: int, start: int, seed: int) -> pl.DataFrame:
    """Copies k0..k1-1 of a block and the time each is shifted by."""
    k = pl.int_range(k0, k1, dtype=pl.Int64).alias("k")
    jitter = (k * 7919 + seed * 104729) % 997 * 1000
    return pl.select(k, (start + (k - k0) * step + jitter).alias("shift"))


def _replicate(tpl: pl.DataFrame, npid: int, shifts: pl.DataFrame, pfn_step: int) -> pl.DataFrame:
    """Copies of the round, shifted onto their own pages, files, pids and times, in time order."""
    # copy-major order, so that a stable sort on time alone orders by (time, copy, template row)
    df = shifts.join(tpl, how="cross", maintain_order="left_right")
    k = pl.col("k")
    span = PID_MAX - PID_BASE

    def pid(c: str) -> pl.Expr:
        loc = pl.col(f"_{c}_loc")
        mapped = (PID_BASE + (k * npid + loc) % span).cast(pl.Int32)
        return pl.when(loc.is_not_null()).then(mapped).otherwise(pl.col(c)).alias(c)

    df = df.with_columns(
        pl.col("ts_ns") + pl.col("shift"),
        pl.col("pfn") + k * pfn_step,
        pl.col("new_pfn") + k * pfn_step,
        pl.col("ino") + k * INO_STEP,
        pid("pid"),
        pid("tgid"),
        pid("arg_pid"),
    )
    return df.sort("ts_ns", maintain_order=True)
