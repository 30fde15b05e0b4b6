"""Ingest throughput and memory, against the two baselines that matter.

The trace is `pinscope simulate mixed` (--trace mixed, the default: what pinscope's own ftrace
recipe records — page events, scheduler events, the function tracer's lines, stack traces, lost
markers) of about N lines, or (--trace synthetic) a plainer mix from a vectorized polars
generator (~60% mapped page events, ~35% scheduler events, few stack blocks). Then, in one run:

  (a) splitting the file into lines (ingest.source.iter_line_chunks: the floor for any ingest),
  (b) a straightforward per-line Python ingest (benchmarks/baseline_ingest.py: `re` per line,
      rows in lists, Parquet with pyarrow; the same tables as pinscope's) on a 1M-line slice,
      scaled to N; and (b0) its parsing alone, without the columns and the writes, a lower
      bound that no per-line ingest can beat,
  (c) the real `ingest_files` end to end into Parquet, in a subprocess so that its peak RSS is
      its own: the child reads VmHWM from /proc/self/status (getrusage's maxrss would carry the
      parent's RSS over the fork/exec, i.e. the generator's memory).

Wall seconds are what the targets use; CPU seconds (user+sys) are printed beside them because
the machine may be shared: a stage that got less CPU than it needed shows it there.
The last line is BENCH_JSON for benchmarks/run_all.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import baseline_ingest

from ingest import source as src

GEN_BATCH = 1_000_000

CHILD = """
import json, re, sys, time
from ingest.pipeline import ingest_files
t, c = time.perf_counter(), time.process_time()
r = ingest_files([sys.argv[1]], sys.argv[2])[0]
s, c = time.perf_counter() - t, time.process_time() - c
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read())
rss = int(hwm.group(1)) / 1024 if hwm else None
print(json.dumps({"seconds": s, "cpu": c, "peak_rss_mb": rss, "entry": r.entry}))
"""


_HEX = {i: "0123456789abcdef"[i] for i in range(16)}


def _hex6(v: pl.Expr) -> pl.Expr:
    """Six lowercase hex digits of an integer expression, without a Python loop over rows."""
    digits = [
        ((v // (16**k)) % 16).replace_strict(_HEX, return_dtype=pl.String) for k in range(5, -1, -1)
    ]
    return pl.concat_str(digits)


def _batch(start: int, n: int) -> pl.DataFrame:
    """n lines starting at line index `start`, all built with expressions."""
    i = pl.int_range(start, start + n, dtype=pl.Int64, eager=True).alias("i")
    df = pl.DataFrame(i)
    slot = pl.col("i") % 20
    cpu = (pl.col("i") % 4).cast(pl.String).str.pad_start(3, "0")
    ts_us = 1_000_000_000 + pl.col("i") * 3
    ts = (
        (ts_us // 1_000_000).cast(pl.String)
        + "."
        + (ts_us % 1_000_000).cast(pl.String).str.pad_start(6, "0")
    )
    idx = ((pl.col("i") // 20) % 4096).cast(pl.String)
    head = (
        pl.when(slot < 12)
        .then(pl.lit("              dd-4242    ["))
        .otherwise(pl.lit("     kworker/1:2-117     ["))
        + cpu
        + "] ..... "
        + ts
        + ": "
    )
    body = (
        pl.when(slot == 0)
        .then(
            "mm_filemap_add_to_page_cache: dev 254:0 ino 3f85d pfn=0x"
            + pl.col("hex")
            + " ofs="
            + (((pl.col("i") // 20) % 4096) * 4096).cast(pl.String)
            + " order=0"
        )
        .when(slot == 1)
        .then(
            "pinscope_pin: (try_grab_folio+0x0/0x80) pfn=0x"
            + pl.col("hex")
            + " refs=1 flags=0x80001 order=0 caller=ib_umem_get"
        )
        .when(slot == 2)
        .then(
            "page_ref_mod: pfn=0x"
            + pl.col("hex")
            + " flags=uptodate|lru count=1026 mapcount=1 mapping=00000000a1b2c3d4 mt=1 val=1024"
        )
        .when(slot == 3)
        .then("writeback_dirty_folio: bdi 254:0: ino=260189 index=" + idx)
        .when(slot == 4)
        .then("pinscope_mkclean: (folio_mkclean+0x0/0x120) pfn=0x" + pl.col("hex"))
        .when(slot == 5)
        .then("pinscope_wb_start: (__folio_start_writeback+0x0/0x2c0) pfn=0x" + pl.col("hex"))
        .when(slot == 6)
        .then("pinscope_wb_end: (folio_end_writeback+0x0/0xa0) pfn=0x" + pl.col("hex"))
        .when(slot == 7)
        .then("pinscope_dirty: (folio_mark_dirty+0x0/0x90) pfn=0x" + pl.col("hex"))
        .when(slot == 8)
        .then(
            "pinscope_unpin: (gup_put_folio+0x0/0x90) pfn=0x"
            + pl.col("hex")
            + " refs=1 flags=0x80001"
        )
        .when(slot == 9)
        .then("folio_wait_writeback: bdi 254:0: ino=260189 index=" + idx)
        .when(slot == 10)
        .then(
            "mm_filemap_delete_from_page_cache: dev 254:0 ino 3f85d pfn=0x"
            + pl.col("hex")
            + " ofs="
            + (((pl.col("i") // 20) % 4096) * 4096).cast(pl.String)
            + " order=0"
        )
        .when(slot == 11)
        .then("mm_page_free: page=00000000ef7fd45a pfn=0x" + pl.col("hex") + " order=0")
        .when(slot < 16)
        .then(
            pl.lit(
                "sched_switch: prev_comm=kworker/1:2 prev_pid=117 prev_prio=120 prev_state=I "
                "==> next_comm=swapper/1 next_pid=0 next_prio=120"
            )
        )
        .when(slot < 19)
        .then(pl.lit("sched_wakeup: comm=dd pid=4242 prio=120 target_cpu=001"))
        .otherwise(pl.lit("sched_stat_runtime: comm=dd pid=4242 runtime=12345 [ns]"))
    )
    df = df.with_columns(_hex6(0x100000 + (pl.col("i") // 20) % 50_000).alias("hex"))
    line = head + body
    out = df.select(line.alias("line"), pl.col("i"))
    # a stack block after every 5,000th line, a lost marker every 250,000th
    stack = out.filter(pl.col("i") % 5000 == 4999).select(
        pl.concat_str(
            [
                pl.col("line").str.extract(r"^(.*?: )", 1),
                pl.lit(
                    "<stack trace>\n => folio_mark_dirty\n => unpin_user_pages_dirty_lock\n"
                    " => ib_umem_release\n => mlx5_ib_dereg_mr"
                ),
            ]
        ).alias("line"),
        (pl.col("i") + 0.5).alias("k"),
    )
    lost = out.filter(pl.col("i") % 250_000 == 124_999).select(
        pl.lit("CPU:1 [LOST 37 EVENTS]").alias("line"), (pl.col("i") + 0.7).alias("k")
    )
    return (
        pl.concat([out.select("line", pl.col("i").cast(pl.Float64).alias("k")), stack, lost])
        .sort("k")
        .select("line")
    )


def generate_mixed(path: Path, lines: int) -> int:
    """`pinscope simulate mixed` of about `lines` lines (1.06 lines an event); the exact count."""
    from ingest.simulate import simulate

    simulate("mixed", path, events=max(1, int(lines / 1.06)), fmt="ftrace", seed=1, entries=False)
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b""))


def generate(path: Path, lines: int) -> int:
    """Write about `lines` lines (stack blocks add a few) and return the exact count."""
    total = 0
    with open(path, "wb") as f:
        f.write(b"# pinscope kernel=6.8.0-bench host=bench\n# tracer: nop\n#\n")
        total += 3
        for start in range(0, lines, GEN_BATCH):
            df = _batch(start, min(GEN_BATCH, lines - start))
            text = df.get_column("line").str.join("\n").item() + "\n"
            f.write(text.encode())
            total += text.count("\n")
    return total


def split_lines(path: Path) -> tuple[float, float, int]:
    """(wall s, cpu s, lines): polars splitting the file into lines, nothing else."""
    t, c = time.perf_counter(), time.process_time()
    n = 0
    with src.open_source(path) as s:
        for chunk in src.iter_line_chunks(s.stream, src.BLOCK_SIZE):
            n += chunk.lines.len()  # (splits the chunk into a String series)
    return time.perf_counter() - t, time.process_time() - c, n


def stage_times(path: Path, max_lines: int, out: Path) -> dict[str, float]:
    """CPU seconds per million lines of each ingest stage, one after another in this process.

    Not the pipeline (no threads, no commit): where the CPU goes, to know what to work on.
    The stages are the compiled path's (ingest/ftrace_chunk.py): read (blocks of whole lines,
    counted), frame (find the lines, frame them; the odd ones through the polars readers),
    map (events, other events, rejects; line hashes), write (conform, Parquet parts as the
    pipeline writes them). A warm-up
    chunk first, so that loading the compiled kernels is not counted.
    """
    from ingest.framing import ChunkContext
    from ingest.ftrace_chunk import frame_chunk, frame_map_chunk, map_chunk
    from ingest.mapping import load_mapping
    from ingest.pipeline import write_dataset_part
    from ingest.schema import conform

    mapping = load_mapping()
    cpu = dict.fromkeys(("read", "frame", "map", "write"), 0.0)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with src.open_source(path) as s:
        chunks = src.iter_line_chunks(s.stream, src.BLOCK_SIZE)
        warm = next(chunks, None)
        if warm is not None:
            frame_map_chunk(warm, ChunkContext(path=str(path), format="ftrace"), "b", mapping)
        while n < max_lines:
            t = [time.process_time()]
            ch = next(chunks, None)
            if ch is None:
                break
            t.append(time.process_time())
            fc = frame_chunk(ch, ChunkContext(path=str(path), format="ftrace"))
            t.append(time.process_time())
            m = map_chunk(fc, "b", mapping)
            t.append(time.process_time())
            for df, table in ((m.events, "events"), (m.other, "other_events")):
                rows = conform(df.with_columns(pl.lit("b").alias("trace_id")), table)
                write_dataset_part(rows, out / f"{table}.parquet")
            t.append(time.process_time())
            for k, stage in enumerate(cpu):
                cpu[stage] += t[k + 1] - t[k]
            n += ch.n_lines
    return {k: v / max(n, 1) * 1e6 for k, v in cpu.items()}


def ingest_subprocess(path: Path, dataset: Path) -> tuple[float, dict[str, object]]:
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(dataset)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    wall = time.perf_counter() - t
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--lines", type=int, default=10_000_000, help="trace lines (default 10M)")
    ap.add_argument("--baseline-lines", type=int, default=1_000_000, help="slice for (b)")
    ap.add_argument("--keep", type=Path, help="write the trace and dataset here and keep them")
    ap.add_argument(
        "--trace",
        choices=("mixed", "synthetic"),
        default="mixed",
        help="simulate mixed (default) or the plainer synthetic mix",
    )
    ap.add_argument(
        "--no-stages",
        action="store_true",
        help="skip the per-stage CPU breakdown (on the --baseline-lines slice)",
    )
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    trace = work / "bench.trace"
    t = time.perf_counter()
    n = (generate_mixed if args.trace == "mixed" else generate)(trace, args.lines)
    gen_s = time.perf_counter() - t
    size_mb = trace.stat().st_size / 1e6
    if (work / "ds").exists():
        shutil.rmtree(work / "ds")

    # The split first: it also brings the file into the page cache for the other two.
    split_s, split_cpu, split_n = split_lines(trace)
    wall, res = ingest_subprocess(trace, work / "ds")
    entry = res["entry"]
    ingest_s = float(res["seconds"])  # inside the child, without interpreter start-up
    ingest_cpu = float(res["cpu"])
    rss_mb = float(res["peak_rss_mb"] or 0.0)
    assert split_n == n == entry["lines"]["total"], (split_n, n, entry["lines"])
    base_slice_s, base_slice_cpu, base_lines = baseline_ingest.ingest(
        trace, work / "baseline", args.baseline_lines
    )
    base_n = sum(base_lines.values())
    scale = n / max(base_n, 1)
    base_s, base_cpu = base_slice_s * scale, base_slice_cpu * scale
    parse_s, parse_cpu, parse_n = baseline_ingest.parse_only(trace, args.baseline_lines)
    parse_s, parse_cpu = parse_s * n / max(parse_n, 1), parse_cpu * n / max(parse_n, 1)

    rows = [
        ("(a) line split (polars)", split_s, split_cpu),
        (f"(b) per-line Python ingest, from {base_n:,}", base_s, base_cpu),
        ("(b0) its parsing alone, a lower bound", parse_s, parse_cpu),
        ("(c) ingest_files -> Parquet", ingest_s, ingest_cpu),
    ]
    lps = n / ingest_s
    ratio_split = ingest_s / split_s
    speedup = base_s / ingest_s
    print(
        f"trace ({args.trace}): {n:,} lines, {size_mb:,.0f} MB (generated in {gen_s:.1f}s) "
        f"at {trace}"
    )
    print(f"{'stage':<46} {'wall s':>8} {'cpu s':>8} {'lines/s':>12} {'MB/s':>8}")
    for name, s, c in rows:
        print(f"{name:<46} {s:>8.2f} {c:>8.2f} {n / s:>12,.0f} {size_mb / s:>8.1f}")
    print(f"ingest lines/s   {lps:>12,.0f}   target >= 1,000,000   {_mark(lps >= 1e6)}")
    print(f"ingest MB/s      {size_mb / ingest_s:>12.1f}")
    print(
        f"x line split     {ratio_split:>12.2f}   target <= 6            {_mark(ratio_split <= 6)}"
    )
    print(f"x faster than (b){speedup:>12.2f}   target >= 10           {_mark(speedup >= 10)}")
    print(f"x faster than b0 {parse_s / ingest_s:>12.2f}   (its parsing alone, a lower bound)")
    print(f"peak RSS MB      {rss_mb:>12,.0f}   target < 1536          {_mark(rss_mb < 1536)}")
    print(
        f"cpu-time ratios: {ingest_cpu / split_cpu:.2f}x the split, "
        f"{base_cpu / ingest_cpu:.2f}x faster than the baseline; wall with start-up {wall:.1f}s"
    )
    stages = {} if args.no_stages else stage_times(trace, args.baseline_lines, work / "stages")
    if stages:
        print(
            "cpu s per 1M lines by stage (sequential, after a warm-up chunk, "
            f"{args.baseline_lines:,} lines): "
            + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
            + f", sum {sum(stages.values()):.2f}; whole ingest {ingest_cpu / n * 1e6:.2f}"
        )
    print(f"line accounting: {json.dumps(entry['lines'])}")
    print(f"baseline's, first {base_n:,} lines: {json.dumps(base_lines)}")
    print(f"events by kind: {json.dumps(entry['events_by_kind'])}")
    print(
        "BENCH_JSON "
        + json.dumps(
            {
                "stage": "ingest",
                "trace": args.trace,
                "events": n,
                "seconds": round(ingest_s, 3),
                "events_per_s": round(lps),
                "peak_rss_mb": round(rss_mb, 1),
                "mb_per_s": round(size_mb / ingest_s, 1),
                "cpu_seconds": round(ingest_cpu, 3),
                "ratio_to_line_split": round(ratio_split, 2),
                "speedup_vs_python_baseline": round(speedup, 2),
                "speedup_vs_parse_only": round(parse_s / ingest_s, 2),
                "cpu_ratio_to_line_split": round(ingest_cpu / split_cpu, 2),
                "cpu_speedup_vs_python_baseline": round(base_cpu / ingest_cpu, 2),
                **{f"cpu_s_per_m_{k}": round(v, 3) for k, v in stages.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
