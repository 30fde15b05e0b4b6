"""Rules and report throughput: every rule of the catalogue over an N-event replayed dataset.

The targeted row runs over a *realistic* dataset: folio lives that pin, dirty, unpin, write back
and truncate the way a correct driver does, with a hazardous life (the dense lives of
benchmarks/synthetic.py) only every `--hazard-every` lives, so findings are rare (about one per
thousand events) as in real traces. A second, "stress" row runs the same stages over the dense
dataset (HAZARD_LIFE in every life, about one finding per five events): reported, not targeted.

Each dataset is built straight as Parquet and replayed (not timed), then `analyze_dataset` (all
rules in DuckDB, `rule_workers()` of them at once, findings written to derived/) and the JSON
report (summary, every finding with its evidence reconstructed from the dataset) are timed, and
the terminal report too. Each stage shows wall seconds and CPU seconds of this process (on a
busy machine the CPU column is the steadier one). The baseline, run in the same invocation, is
one DuckDB pass over page_events (`count(*) … group by kind`, best of 3): the ratio says how
many such passes the rules cost. `--per-rule` also times each rule's SQL alone, sequentially.
The last line is BENCH_JSON for benchmarks/run_all.py.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import ingest  # noqa: E402, F401, I001  (pinscope's allocator setting, before polars loads)

from synthetic import make_dataset, rss_mb  # noqa: E402

from analysis.report import build_report  # noqa: E402
from analysis.report_json import render_json  # noqa: E402
from analysis.report_text import render_text  # noqa: E402
from analysis.rules import analyze_dataset, load_rules, rule_workers  # noqa: E402
from ingest import dataset as ds  # noqa: E402
from replay.run import replay_dataset  # noqa: E402
from replay.schema import COMPUTED_SQL, DERIVED_TABLES  # noqa: E402


class Timer:
    """Wall and CPU seconds (this process, all threads) of a block."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def baseline_scan(root: Path) -> float:
    con = ds.connect(root, derived_schemas=DERIVED_TABLES, derived_computed=COMPUTED_SQL)
    best = float("inf")
    for _ in range(3):
        with Timer() as t:
            con.sql(
                "SELECT kind, count(*), sum(pins_before) FROM page_events GROUP BY kind"
            ).fetchall()
        best = min(best, t.wall)
    con.close()
    return best


def run_case(scratch: Path, name: str, n: int, hazard_every: int, per_rule: bool) -> dict:
    """Build + replay (untimed), then time the rules, the JSON report and the terminal report."""
    from rich.console import Console

    t = time.perf_counter()
    root = make_dataset(scratch / name, n, hazard_every)
    events = replay_dataset(root, force=True).events
    t_prep = time.perf_counter() - t
    t_base = baseline_scan(root)
    rules_time: dict[str, tuple[float, float]] = {}
    if per_rule:
        con = ds.connect(root, derived_schemas=DERIVED_TABLES, derived_computed=COMPUTED_SQL)
        for rule in load_rules():
            with Timer() as tr:
                con.sql(rule.sql).to_arrow_table()
            rules_time[rule.id] = (tr.wall, tr.cpu)
        con.close()
    with Timer() as t_rules:
        findings = analyze_dataset(root, force=True)
    with Timer() as t_json:
        text = render_json(build_report(root, findings))
    buf = io.StringIO()
    with Timer() as t_text:
        render_text(build_report(root, findings), Console(file=buf, width=120, color_system=None))
    shutil.rmtree(root, ignore_errors=True)
    return {
        "name": name,
        "events": events,
        "findings": findings.height,
        "prep": t_prep,
        "base": t_base,
        "rules": t_rules.wall,
        "rules_cpu": t_rules.cpu,
        "json": t_json.wall,
        "json_cpu": t_json.cpu,
        "text": t_text.wall,
        "text_cpu": t_text.cpu,
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
        f"{'dataset':<11}{'stage':<30}{'events':>12}{'findings':>10}{'seconds':>9}{'cpu s':>8}"
        f"{'events/s':>13}"
    )
    for c in [main_case] + ([stress] if stress else []):
        n, f = c["events"], c["findings"]
        rows = [
            ("build + replay (untimed)", c["prep"], None),
            ("baseline: scan page_events", c["base"], None),
            ("rules (analyze_dataset)", c["rules"], c["rules_cpu"]),
            (f"report json ({c['json_mb']:.1f} MB)", c["json"], c["json_cpu"]),
            (f"report text ({c['text_mb']:.2f} MB)", c["text"], c["text_cpu"]),
            ("rules + json report", c["rules"] + c["json"], c["rules_cpu"] + c["json_cpu"]),
        ]
        for label, s, cpu in rows:
            cpu_text = "" if cpu is None else f"{cpu:.2f}"
            print(
                f"{c['name']:<11}{label:<30}{n:>12,}{f:>10,}{s:>9.2f}{cpu_text:>8}{n / s:>13,.0f}"
            )
        if c["per_rule"]:
            print("  per rule, alone (wall s / cpu s / baseline scans of cpu):")
            for k, (w, cpu) in c["per_rule"].items():
                print(f"    {k:<28}{w:>7.2f}{cpu:>7.2f}{cpu / c['base']:>7.1f}")
            tw = sum(w for w, _ in c["per_rule"].values())
            tc = sum(cpu for _, cpu in c["per_rule"].values())
            print(f"    {'sum':<28}{tw:>7.2f}{tc:>7.2f}{tc / c['base']:>7.1f}")
        workers = rule_workers()
        print(
            f"  rules cost {c['rules'] / c['base']:.1f} baseline scans ({workers} rules at once); "
            f"one finding per {n / max(f, 1):,.0f} events"
        )
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
        "rules_s": round(main_case["rules"], 3),
        "rules_cpu_s": round(main_case["rules_cpu"], 3),
        "json_s": round(main_case["json"], 3),
        "json_cpu_s": round(main_case["json_cpu"], 3),
        "rule_workers": rule_workers(),
    }
    if stress:
        st = stress["rules"] + stress["json"]
        out["stress_events"] = stress["events"]
        out["stress_findings"] = stress["findings"]
        out["stress_events_per_s"] = round(stress["events"] / st)
    print("BENCH_JSON " + json.dumps(out))


if __name__ == "__main__":
    main()
