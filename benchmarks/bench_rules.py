"""Rules and report throughput: every rule of the catalogue over an N-event replayed dataset.

Builds the same synthetic dataset as bench_replay.py (folio lives with pins, writeback,
truncate, mismatches), replays it (not timed here), then times `analyze_dataset` (all rules in
DuckDB, findings written to derived/) and the JSON report (summary, evidence reconstructed from
the dataset). The baseline, run in the same invocation, is one DuckDB pass over page_events
(`count(*) … group by kind`): the ratio says how many such passes the rules cost. The last line
is BENCH_JSON for benchmarks/run_all.py.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_replay import make_dataset  # noqa: E402

from analysis.report import build_report  # noqa: E402
from analysis.report_json import render_json  # noqa: E402
from analysis.rules import analyze_dataset, load_rules  # noqa: E402
from ingest import dataset as ds  # noqa: E402
from replay.run import replay_dataset  # noqa: E402
from replay.schema import DERIVED_TABLES  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline_scan(root: Path) -> float:
    con = ds.connect(root, derived_schemas=DERIVED_TABLES)
    t = time.perf_counter()
    con.sql("SELECT kind, count(*), sum(pins_before) FROM page_events GROUP BY kind").fetchall()
    dt = time.perf_counter() - t
    con.close()
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000, help="dataset size (events)")
    ap.add_argument("--dir", type=Path, default=None, help="scratch dir (default: a temp dir)")
    args = ap.parse_args()

    scratch = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        t = time.perf_counter()
        root = make_dataset(scratch / "ds", args.events)
        replay = replay_dataset(root, force=True)
        t_prep = time.perf_counter() - t
        t_base = baseline_scan(root)
        base_rss = rss_mb()
        per_rule: dict[str, float] = {}
        con = ds.connect(root, derived_schemas=DERIVED_TABLES)
        for rule in load_rules():
            t = time.perf_counter()
            con.sql(rule.sql).to_arrow_table()
            per_rule[rule.id] = time.perf_counter() - t
        con.close()
        t = time.perf_counter()
        findings = analyze_dataset(root, force=True)
        t_rules = time.perf_counter() - t
        t = time.perf_counter()
        text = render_json(build_report(root, findings))
        t_report = time.perf_counter() - t
        peak = rss_mb()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    n = replay.events
    total = t_rules + t_report
    print(f"{'stage':<34}{'events':>12}{'seconds':>10}{'events/s':>14}")
    print(f"{'build + replay (untimed setup)':<34}{n:>12,}{t_prep:>10.2f}{n / t_prep:>14,.0f}")
    print(f"{'baseline: one scan of page_events':<34}{n:>12,}{t_base:>10.2f}{n / t_base:>14,.0f}")
    print(f"{'rules (analyze_dataset)':<34}{n:>12,}{t_rules:>10.2f}{n / t_rules:>14,.0f}")
    print(f"{'report (json, with evidence)':<34}{n:>12,}{t_report:>10.2f}{n / t_report:>14,.0f}")
    print(f"{'rules + report':<34}{n:>12,}{total:>10.2f}{n / total:>14,.0f}")
    print(f"findings: {findings.height:,}; report {len(text) / 1e6:.1f} MB")
    print("per rule (s): " + ", ".join(f"{k} {v:.2f}" for k, v in per_rule.items()))
    print(f"rules cost {t_rules / t_base:.1f} baseline scans; peak RSS {peak:,.0f} MiB "
          f"(before rules: {base_rss:,.0f} MiB)")  # fmt: skip
    out = {
        "stage": "rules+report",
        "events": n,
        "seconds": round(total, 3),
        "events_per_s": round(n / total),
        "peak_rss_mb": round(peak),
        "rules_events_per_s": round(n / t_rules),
        "report_events_per_s": round(n / t_report),
        "rules_vs_baseline_scan": round(t_rules / t_base, 1),
        "findings": findings.height,
    }
    print("BENCH_JSON " + json.dumps(out))


if __name__ == "__main__":
    main()
