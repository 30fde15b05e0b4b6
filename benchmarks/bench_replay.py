"""Replay throughput and memory: the driver on an N-event dataset, and the core vs the oracle.

Builds a synthetic dataset (pins/gets on folio subpages, writeback, truncate, file-only
writeback events, pfn reuse) straight as Parquet, runs `replay_dataset` on it (events/s, peak
RSS), then runs the compiled core and the reference state machine on the same sample and
prints the ratio. The last line is BENCH_JSON for benchmarks/run_all.py.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import ingest  # noqa: E402, F401, I001  (pinscope's allocator setting, before polars loads)

from synthetic import cpu_s, make_dataset, rss_mb, synth  # noqa: E402

from replay.core import replay_events  # noqa: E402
from replay.reference import replay_events_reference  # noqa: E402
from replay.run import replay_dataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000_000, help="dataset size (events)")
    ap.add_argument("--sample", type=int, default=200_000, help="events for core vs reference")
    ap.add_argument("--dir", type=Path, default=None, help="scratch dir (default: a temp dir)")
    ap.add_argument(
        "--buckets", type=int, default=None, help="page buckets (default: as replay chooses)"
    )
    args = ap.parse_args()

    # core vs oracle on the same in-memory sample (before the big run, so RSS stays the
    # driver's); wall and CPU ratios both, since other work may share the machine
    sample = synth(args.sample)
    # numba compiles (or loads from its cache) on a process's first call: once per process,
    # not per event, so it is kept out of the steady-state ratio
    replay_events(sample, None, kernel="6.8.0")
    t, c = time.perf_counter(), cpu_s()
    fast = replay_events(sample, None, kernel="6.8.0")
    t_core, c_core = time.perf_counter() - t, cpu_s() - c
    t, c = time.perf_counter(), cpu_s()
    slow = replay_events_reference(sample, None, kernel="6.8.0")
    t_ref, c_ref = time.perf_counter() - t, cpu_s() - c
    same = fast.page_events.equals(slow.page_events)
    del fast, slow, sample

    scratch = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        t = time.perf_counter()
        # built in a child process: the synthetic frame must not count in the driver's peak RSS
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(target=make_dataset, args=(scratch / "ds", args.events))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"building the dataset failed (exit {child.exitcode})")
        root = scratch / "ds"
        t_make = time.perf_counter() - t
        # the driver in a child of its own: its peak RSS (VmHWM) is then the replay's alone,
        # not this process's sample and oracle runs
        q = ctx.Queue()
        child = ctx.Process(target=_replay_child, args=(root, q, args.buckets))
        child.start()
        s, peak, c_run = _result(q, child)
        child.join()
        t_run = s.seconds
        ordered = _parts_sorted(root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    eps = s.events / t_run
    ratio = t_ref / t_core
    cpu_ratio = c_ref / max(c_core, 1e-9)
    print(f"{'stage':<28}{'events':>12}{'seconds':>10}{'events/s':>14}")
    print(f"{'build dataset':<28}{args.events:>12,}{t_make:>10.2f}{args.events / t_make:>14,.0f}")
    print(f"{'replay_dataset (driver)':<28}{s.events:>12,}{t_run:>10.2f}{eps:>14,.0f}"
          f"   cpu {c_run:.2f}s")  # fmt: skip
    for name, st in s.stages.items():
        cpu = st["cpu_seconds"]
        print(f"{'  ' + name:<28}{'':>12}{st['seconds']:>10.2f}{'':>14}   cpu {cpu:.2f}s"
              f"  ({cpu / s.events * 1e6:.2f} cpu-s per 1M events)"
              f"  peak RSS {st['peak_rss_mb']:,.0f} MiB")  # fmt: skip
    print(f"{'core (in memory, sample)':<28}{args.sample:>12,}{t_core:>10.2f}"
          f"{args.sample / t_core:>14,.0f}")  # fmt: skip
    print(
        f"{'reference (sample)':<28}{args.sample:>12,}{t_ref:>10.2f}{args.sample / t_ref:>14,.0f}"
    )
    print(f"core / reference speed ratio: {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU"
          f"  (page_events identical: {same})")  # fmt: skip
    print(f"page buckets: {s.buckets}")
    print(f"parts: {s.parts}, page_events {s.page_events:,}, intervals {s.intervals:,}"
          f"  (part files sorted by (kind, seq): {ordered})")  # fmt: skip
    print(f"peak RSS of the replay (its own process): {peak:,.0f} MiB")
    for name, value, target, ok in (
        ("events/s", f"{eps:,.0f}", ">= 2,000,000", eps >= 2e6),
        ("x reference", f"{ratio:.1f}", ">= 30", ratio >= 30),
        ("peak RSS MiB", f"{peak:,.0f}", "< 3,072", peak < 3072),
    ):
        print(f"{name:<16}{value:>12}   target {target:<14}{'ok' if ok else 'MISSED'}")
    # The oracle is plain Python on one core, the same code every run: its speed moves with
    # the host's, not with pinscope's, and tells a slow host from a slow change.
    print(f"host witness: the reference ran {args.sample / t_ref:,.0f} events/s")
    out = {
        "stage": "replay",
        "events": s.events,
        "seconds": round(t_run, 3),
        "events_per_s": round(eps),
        "peak_rss_mb": round(peak),
        "cpu_seconds": round(c_run, 3),
        "core_vs_reference": round(ratio, 1),
        "core_vs_reference_cpu": round(cpu_ratio, 1),
        "reference_events_per_s": round(args.sample / t_ref),
        "parts": s.parts,
        "buckets": s.buckets,
        "identical_to_reference": same,
        "parts_sorted_by_kind_seq": ordered,
        "stages": {k: {m: round(v, 3) for m, v in st.items()} for k, st in s.stages.items()},
    }
    print("BENCH_JSON " + json.dumps(out))


def _result(q: multiprocessing.Queue, child: multiprocessing.Process) -> tuple:
    """The child's result; an error if it died without one (its traceback is on stderr)."""
    import queue

    while True:
        try:
            return q.get(timeout=1)
        except queue.Empty:
            if not child.is_alive():
                raise SystemExit(f"the replay failed (exit {child.exitcode})") from None


def _replay_child(root: Path, q: multiprocessing.Queue, buckets: int | None) -> None:
    import re

    c = cpu_s()
    s = replay_dataset(root, force=True, buckets=buckets)
    c = cpu_s() - c
    hwm = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    q.put((s, int(hwm.group(1)) / 1024 if hwm else rss_mb(), c))


def _parts_sorted(root: Path) -> bool:
    """Every page_events part file is in (kind, seq) order."""
    import polars as pl

    for f in sorted((root / "derived" / "page_events").rglob("*.parquet")):
        df = pl.read_parquet(f, columns=["kind", "seq"])
        want = df.sort(pl.col("kind").to_physical(), "seq")
        if not df.equals(want):
            return False
    return True


if __name__ == "__main__":
    main()
