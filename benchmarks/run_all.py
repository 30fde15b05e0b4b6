"""Run every stage's benchmark as a subprocess and print one table of their BENCH_JSON lines.

Each bench_*.py prints, as its last line, `BENCH_JSON {"stage": ..., "events": N, "seconds": s,
"events_per_s": x, "peak_rss_mb": m, ...ratios...}`; this script only gathers them, so each
benchmark stays a standalone script with its own baseline.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ("bench_ingest.py", "bench_replay.py", "bench_rules.py", "bench_simulate.py")
PREFIX = "BENCH_JSON "


def run_one(script: Path, extra: list[str]) -> dict:
    if not script.exists():
        return {"stage": script.stem.removeprefix("bench_"), "error": "missing"}
    proc = subprocess.run(
        [sys.executable, str(script), *extra], capture_output=True, text=True, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"stage": script.stem.removeprefix("bench_"), "error": tail[0][:80]}
    return json.loads(lines[-1][len(PREFIX) :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=None, help="pass --events N to every bench")
    ap.add_argument("--only", nargs="*", default=None, help="bench file names to run")
    args = ap.parse_args()
    extra = ["--events", str(args.events)] if args.events else []
    results = [run_one(HERE / name, extra) for name in (args.only or BENCHES)]
    print(f"{'stage':<16}{'events':>14}{'seconds':>10}{'events/s':>14}{'peak RSS MiB':>14}  other")
    for r in results:
        if "error" in r:
            print(f"{r['stage']:<16}  error: {r['error']}")
            continue
        known = {"stage", "events", "seconds", "events_per_s", "peak_rss_mb"}
        other = ", ".join(f"{k}={v}" for k, v in r.items() if k not in known)
        print(
            f"{r['stage']:<16}{r.get('events', 0):>14,}{r.get('seconds', 0):>10.2f}"
            f"{r.get('events_per_s', 0):>14,}{r.get('peak_rss_mb', 0):>14,}  {other}"
        )
    print(PREFIX + json.dumps({"stage": "all", "results": results}))


if __name__ == "__main__":
    main()
