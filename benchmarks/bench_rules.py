"""Rules and report throughput: every rule of the catalogue over an N-event replayed dataset.

The targeted row runs over a *realistic* dataset: folio lives that pin, dirty, unpin, write back
and truncate the way a correct driver does, with a hazardous life (the dense lives of
bench_replay.py) only every `--hazard-every` lives, so findings are rare (about one per
thousand events) as in real traces. A second, "stress" row runs the same stages over the dense
dataset of bench_replay.py (about one finding per five events): reported, not targeted.

Each dataset is built straight as Parquet and replayed (not timed), then `analyze_dataset` (all
rules in DuckDB, findings written to derived/) and the JSON report (summary, every finding with
its evidence reconstructed from the dataset) are timed, and the terminal report too. The
baseline, run in the same invocation, is one DuckDB pass over page_events (`count(*) … group by
kind`): the ratio says how many such passes the rules cost. The last line is BENCH_JSON for
benchmarks/run_all.py.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from analysis.report import build_report  # noqa: E402
from analysis.report_json import render_json  # noqa: E402
from analysis.report_text import render_text  # noqa: E402
from analysis.rules import analyze_dataset, load_rules  # noqa: E402
from ingest import dataset as ds  # noqa: E402
from ingest.schema import FORMAT_VERSION, conform  # noqa: E402
from replay.run import replay_dataset  # noqa: E402
from replay.schema import DERIVED_TABLES  # noqa: E402

W = 1  # FOLL_WRITE on 6.x

# (kind, on a subpage pfn, file-only (no pfn), gup_flags): a correct driver's page life —
# read-only get/put, a writable pin dirtied before unpin, writeback after, truncate, free.
_BENIGN = [
    ("alloc", False, False, 0),
    ("cache_add", False, False, 0),
    ("ref", False, False, 0),
    ("get", True, False, 0),
    ("put", True, False, 0),
    ("pin", True, False, W),
    ("dirty", False, False, 0),
    ("unpin", True, False, 0),
    ("mkclean", False, False, 0),
    ("wb_start", False, False, 0),
    ("wb_end", False, True, 0),
    ("ref", False, False, 0),
    ("mkwrite", False, False, 0),
    ("free_buffers", False, False, 0),
    ("cache_del", False, False, 0),
    ("free", False, False, 0),
]
# bench_replay.py's life: pin across writeback, dirty after truncate, a mismatch, …
_HAZARD = [
    ("alloc", False, False, 0),
    ("cache_add", False, False, 0),
    ("pin", True, False, W),
    ("get", True, False, 0),
    ("dirty", False, True, 0),
    ("mkclean", False, False, 0),
    ("wb_start", False, False, 0),
    ("wb_end", False, True, 0),
    ("put", True, False, 0),
    ("ref", False, False, 0),
    ("unpin", True, False, 0),
    ("dirty", False, False, 0),
    ("cache_del", False, False, 0),
    ("truncate", False, False, 0),
    ("unpin", False, False, 0),
    ("free", False, False, 0),
]
assert len(_BENIGN) == len(_HAZARD)


def synth(n: int, hazard_every: int, trace_id: str = "bench") -> pl.DataFrame:
    """n events: order-2 folio lives interleaved in time, pfns reused; every
    `hazard_every`-th life is hazardous (1 = all of them: the stress case)."""
    L = len(_BENIGN)
    i = pl.int_range(n, dtype=pl.Int64, eager=True)
    n_pages = max(1, n // (L * 3))  # each pfn lives ~3 times
    tpl = pl.DataFrame(
        {
            "_t": [t for t in range(2) for _ in range(L)],
            "step": list(range(L)) * 2,
            "kind": [k for k, *_ in _BENIGN + _HAZARD],
            "sub": [s for _, s, _, _ in _BENIGN + _HAZARD],
            "fonly": [f for _, _, f, _ in _BENIGN + _HAZARD],
            "gup_flags": [g for *_, g in _BENIGN + _HAZARD],
        },
        schema_overrides={"step": pl.Int64, "_t": pl.Int64},
    )
    df = (
        pl.DataFrame({"life": i // L, "step": i % L})
        .with_columns((pl.col("life") % hazard_every == 0).cast(pl.Int64).alias("_t"))
        .join(tpl, on=["_t", "step"], how="left", maintain_order="left")
        .with_columns(
            ((pl.col("life") % n_pages) * 4 + 4096).cast(pl.UInt64).alias("head"),
            (pl.col("life") // n_pages).alias("round"),
        )
    )
    # lives of the same round overlap in time; a pfn's next life comes a round later
    df = df.with_columns(
        (
            pl.col("round") * 10_000_000_000 + pl.col("step") * 1_000_000 + (pl.col("life") % 997)
        ).alias("ts_ns"),
        (pl.col("life") * 7 + pl.col("round")).alias("ino"),
    )
    df = df.sort("ts_ns", "life").with_columns(
        pl.lit(trace_id).alias("trace_id"),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("line"),
        pl.when(pl.col("fonly")).then(None).when(pl.col("sub")).then(pl.col("head") + 1)
        .otherwise(pl.col("head")).alias("pfn"),
        pl.when(pl.col("kind").is_in(["alloc", "cache_add", "free"])).then(2).otherwise(0)
        .cast(pl.UInt8).alias("folio_order"),
        pl.when(pl.col("kind").is_in(["cache_add", "cache_del"]) | pl.col("fonly"))
        .then(pl.col("ino")).alias("ino"),
        pl.when(pl.col("kind").is_in(["cache_add", "cache_del"]) | pl.col("fonly"))
        .then(0).alias("index"),
        pl.lit(1).alias("refs"),
        (pl.col("life") % 64 + 100).alias("pid"),
        pl.lit("ib_write_bw").alias("comm"),
        pl.when(pl.col("kind").is_in(["pin", "get"])).then(pl.lit("ib_umem_get")).alias("caller"),
        pl.when(pl.col("kind") == "ref").then(pl.lit(1025)).alias("count"),
        pl.lit(3).alias("cpu"),
        pl.col("kind").alias("source_event"),
    )  # fmt: skip
    return conform(df, "events")


def make_dataset(root: Path, n: int, hazard_every: int) -> Path:
    root.mkdir(parents=True)
    d = ds.trace_dir(root, "events", "bench")
    d.mkdir(parents=True)
    chunk = 2_000_000
    ev = synth(n, hazard_every)
    for k in range(0, n, chunk):
        ev.slice(k, chunk).write_parquet(d / f"part-{k // chunk:05d}.parquet")
    first, last = ev["ts_ns"].min(), ev["ts_ns"].max()
    del ev
    ds.write_manifest(
        root,
        {
            "format_version": FORMAT_VERSION,
            "traces": [{"trace_id": "bench", "sha256": f"synthetic-{n}-{hazard_every}",
                        "kernel": "6.8.0", "first_ts_ns": first, "last_ts_ns": last}],
        },
    )  # fmt: skip
    return root


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline_scan(root: Path) -> float:
    con = ds.connect(root, derived_schemas=DERIVED_TABLES)
    t = time.perf_counter()
    con.sql("SELECT kind, count(*), sum(pins_before) FROM page_events GROUP BY kind").fetchall()
    dt = time.perf_counter() - t
    con.close()
    return dt


def run_case(scratch: Path, name: str, n: int, hazard_every: int, per_rule: bool) -> dict:
    """Build + replay (untimed), then time the rules, the JSON report and the terminal report."""
    from rich.console import Console

    t = time.perf_counter()
    root = make_dataset(scratch / name, n, hazard_every)
    events = replay_dataset(root, force=True).events
    t_prep = time.perf_counter() - t
    t_base = baseline_scan(root)
    rules_time: dict[str, float] = {}
    if per_rule:
        con = ds.connect(root, derived_schemas=DERIVED_TABLES)
        for rule in load_rules():
            t = time.perf_counter()
            con.sql(rule.sql).to_arrow_table()
            rules_time[rule.id] = time.perf_counter() - t
        con.close()
    t = time.perf_counter()
    findings = analyze_dataset(root, force=True)
    t_rules = time.perf_counter() - t
    t = time.perf_counter()
    text = render_json(build_report(root, findings))
    t_json = time.perf_counter() - t
    t = time.perf_counter()
    buf = io.StringIO()
    render_text(build_report(root, findings), Console(file=buf, width=120, color_system=None))
    t_text = time.perf_counter() - t
    shutil.rmtree(root, ignore_errors=True)
    return {
        "name": name,
        "events": events,
        "findings": findings.height,
        "prep": t_prep,
        "base": t_base,
        "rules": t_rules,
        "json": t_json,
        "text": t_text,
        "json_mb": len(text) / 1e6,
        "text_mb": len(buf.getvalue()) / 1e6,
        "per_rule": rules_time,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000, help="realistic dataset (events)")
    ap.add_argument(
        "--hazard-every", type=int, default=300, help="one hazardous page life in this many"
    )
    ap.add_argument(
        "--stress-events", type=int, default=2_000_000, help="dense dataset (0: skip the row)"
    )
    ap.add_argument("--per-rule", action="store_true", help="also time each rule's SQL alone")
    ap.add_argument("--dir", type=Path, default=None, help="scratch dir (default: a temp dir)")
    args = ap.parse_args()

    scratch = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        main_case = run_case(scratch, "realistic", args.events, args.hazard_every, args.per_rule)
        peak = rss_mb()
        stress = (
            run_case(scratch, "stress", args.stress_events, 1, args.per_rule)
            if args.stress_events
            else None
        )
        peak_all = rss_mb()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(
        f"{'dataset':<11}{'stage':<30}{'events':>12}{'findings':>10}{'seconds':>9}{'events/s':>13}"
    )
    for c in [main_case] + ([stress] if stress else []):
        n, f = c["events"], c["findings"]
        total = c["rules"] + c["json"]
        rows = [
            ("build + replay (untimed)", c["prep"]),
            ("baseline: scan page_events", c["base"]),
            ("rules (analyze_dataset)", c["rules"]),
            (f"report json ({c['json_mb']:.1f} MB)", c["json"]),
            (f"report text ({c['text_mb']:.2f} MB)", c["text"]),
            ("rules + json report", total),
        ]
        for label, s in rows:
            print(f"{c['name']:<11}{label:<30}{n:>12,}{f:>10,}{s:>9.2f}{n / s:>13,.0f}")
        if c["per_rule"]:
            print("  per rule (s): " + ", ".join(f"{k} {v:.2f}" for k, v in c["per_rule"].items()))
        print(f"  rules cost {c['rules'] / c['base']:.1f} baseline scans; one finding per "
              f"{n / max(f, 1):,.0f} events")  # fmt: skip
    print(f"peak RSS {peak:,.0f} MiB (realistic), {peak_all:,.0f} MiB (with stress)")
    n, total = main_case["events"], main_case["rules"] + main_case["json"]
    out = {
        "stage": "rules+report",
        "events": n,
        "seconds": round(total, 3),
        "events_per_s": round(n / total),
        "peak_rss_mb": round(peak),
        "findings": main_case["findings"],
        "rules_events_per_s": round(n / main_case["rules"]),
        "report_events_per_s": round(n / main_case["json"]),
        "rules_vs_baseline_scan": round(main_case["rules"] / main_case["base"], 1),
    }
    if stress:
        st = stress["rules"] + stress["json"]
        out["stress_events"] = stress["events"]
        out["stress_findings"] = stress["findings"]
        out["stress_events_per_s"] = round(stress["events"] / st)
    print("BENCH_JSON " + json.dumps(out))


if __name__ == "__main__":
    main()
