"""Simulator throughput and memory: `pinscope simulate mixed`, against polars writing as much.

Issue #3's target: large outputs stream to disk with flat memory at 1 million lines per second
or more (the default ftrace format at least). In one run this measures:

  (a) the baseline, the floor for any writer: polars building lines of the same count and
      average length as the simulator wrote (one concat_str of a literal and a counter) and
      writing them with `write_csv` — in this process;
  (b) the real command, `python -m pinscope simulate mixed --events N -f FORMAT -o FILE`, in a
      subprocess per format (interpreter start and imports included, as a user sees it): wall
      seconds, CPU seconds (user+sys of the child, all threads), and the child's peak RSS
      (VmHWM, read by the child itself at exit).

Wall seconds are what the target uses; CPU seconds are printed beside them because the machine
may be shared. Lines are counted in the file written (a stack trace or perf call chain counts
one line per frame; bpftrace formats write fewer lines per event: no scheduler lines). The last
line is BENCH_JSON for benchmarks/run_all.py (the first format's numbers, the others inside).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import atexit, re, sys
def _hwm():
    m = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read())
    sys.stderr.write("PEAK_RSS_KB %s\\n" % (m.group(1) if m else ""))
atexit.register(_hwm)
sys.argv = ["pinscope", *sys.argv[1:]]
from pinscope.cli import main
main()
"""


def _count(path: Path) -> tuple[int, int]:
    """(lines, bytes) of the text written, decompressed when .gz."""
    opener = gzip.open if path.suffix == ".gz" else open
    lines = size = 0
    with opener(path, "rb") as f:
        while chunk := f.read(1 << 24):
            lines += chunk.count(b"\n")
            size += len(chunk)
    return lines, size


def run_simulate(events: int, fmt: str, out: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = [sys.executable, "-c", CHILD, "simulate", "mixed", "--events", str(events)]
    cmd += ["-f", fmt, "-o", str(out)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"simulate -f {fmt} failed: {proc.stderr.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rss = [ln.split()[1] for ln in proc.stderr.splitlines() if ln.startswith("PEAK_RSS_KB ")]
    lines, size = _count(out)
    return {
        "format": fmt + (" .gz" if out.suffix == ".gz" else ""),
        "lines": lines,
        "mb": size / 1e6,
        "file_mb": out.stat().st_size / 1e6,
        "wall": wall,
        "cpu": cpu,
        "peak_rss_mb": round(int(rss[-1]) / 1024) if rss and rss[-1] else None,
    }


def run_baseline(lines: int, size: int, out: Path) -> dict:
    """polars building `lines` lines of the same average length and writing them."""
    width = max(1, size // lines - 1 - 7)  # minus the newline and the 7-digit counter
    t, c = time.perf_counter(), time.process_time()
    with open(out, "wb") as f:
        for start in range(0, lines, 1_000_000):
            i = pl.int_range(start, min(lines, start + 1_000_000), dtype=pl.Int64)
            text = pl.concat_str([pl.lit("x" * width), (i % 10_000_000).cast(pl.String)])
            pl.select(text.str.pad_end(width + 7).alias("l")).write_csv(
                f, include_header=False, quote_style="never"
            )
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    got, got_size = _count(out)
    return {"format": "baseline", "lines": got, "mb": got_size / 1e6, "wall": wall, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2_000_000, help="simulate --events N")
    ap.add_argument(
        "--formats",
        nargs="*",
        default=["ftrace"],
        help="writer formats to run (add .gz to one, e.g. ftrace.gz, for compressed output)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the files written")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pinscope-bench-sim-"))
    runs = []
    try:
        for spec in args.formats:
            fmt, gz = spec.removesuffix(".gz"), spec.endswith(".gz")
            out = tmp / f"sim-{fmt}.trace{'.gz' if gz else ''}"
            runs.append(run_simulate(args.events, fmt, out))
            if not args.keep:
                out.unlink()
                Path(str(out) + ".truth.json").unlink()
        first = runs[0]
        base = run_baseline(first["lines"], int(first["mb"] * 1e6), tmp / "baseline.txt")
    finally:
        if not args.keep:
            for p in tmp.iterdir():
                p.unlink()
            os.rmdir(tmp)
    print(f"simulate mixed --events {args.events:,}  ({os.cpu_count()} CPUs)")
    head = f"{'run':<16}{'lines':>12}{'MB':>9}{'wall s':>9}{'cpu s':>8}{'lines/s':>12}"
    print(head + f"{'MB/s':>9}{'peak RSS MiB':>14}{'x baseline':>12}")
    base_rate = base["lines"] / base["wall"]
    for r in [*runs, base]:
        rate = r["lines"] / r["wall"]
        rss = r.get("peak_rss_mb")
        print(
            f"{r['format']:<16}{r['lines']:>12,}{r['mb']:>9.0f}{r['wall']:>9.2f}{r['cpu']:>8.2f}"
            f"{rate:>12,.0f}{r['mb'] / r['wall']:>9.0f}{rss if rss is not None else '-':>14}"
            f"{rate / base_rate:>12.2f}"
        )
    rate = first["lines"] / first["wall"]
    print(
        "BENCH_JSON "
        + json.dumps(
            {
                "stage": "simulate",
                "events": first["lines"],
                "seconds": round(first["wall"], 3),
                "events_per_s": round(rate),
                "peak_rss_mb": first["peak_rss_mb"],
                "format": first["format"],
                "cpu_s": round(first["cpu"], 3),
                "mb_per_s": round(first["mb"] / first["wall"], 1),
                "baseline_lines_per_s": round(base_rate),
                "vs_baseline": round(rate / base_rate, 3),
                "others": {
                    r["format"]: {
                        "lines_per_s": round(r["lines"] / r["wall"]),
                        "cpu_s": round(r["cpu"], 3),
                        "peak_rss_mb": r["peak_rss_mb"],
                    }
                    for r in runs[1:]
                },
            }
        )
    )


if __name__ == "__main__":
    main()
