"""The simulator, its writers and the shipped examples: real bytes, real layouts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from ingest.scenarios import MIXED, RECORD_SCHEMA, SCENARIOS, build
from ingest.simulate import BLOCK_ROUNDS, _flag, round_template, simulate
from ingest.writers import FORMATS, Renderer, hex_series
from pinscope.cli import app

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "tests" / "golden" / "real"
EXAMPLES = ROOT / "examples"
runner = CliRunner()


def _record(**kw: object) -> pl.DataFrame:
    return pl.DataFrame([kw], schema=RECORD_SCHEMA)


def _real_line(name: str, n: int) -> str:
    return (REAL / name).read_text().split("\n")[n - 1]


FORK = {
    "ev": "fork",
    "ts_ns": 1026_681333_000,
    "cpu": 1,
    "pid": 6623,
    "tgid": 6623,
    "comm": "bash",
    "arg_pid": 6630,
    "arg_comm": "bash",
}


@pytest.mark.parametrize(
    ("fmt", "golden", "line", "record"),
    [
        ("ftrace", "real-default.trace", 13, FORK),
        ("ftrace-tgid", "real-tgid.trace", 13,
         {**FORK, "ts_ns": 1040_520685_000, "pid": 6754, "tgid": 6754, "arg_pid": 6756}),
        ("ftrace-noirq", "real-noirq.trace", 7,
         {**FORK, "ts_ns": 1040_568615_000, "cpu": 0, "pid": 6754, "arg_pid": 6768}),
        ("trace-cmd", "real-tracecmd.txt", 2,
         {**FORK, "ts_ns": 1034_784906_000, "pid": 6723, "arg_pid": 6725}),
        ("ftrace-noirq", "real-noirq.trace", 9,
         {"ev": "cache_add", "ts_ns": 1040_570790_000, "cpu": 0, "pid": 6769,
          "comm": "dd", "dev_major": 254, "dev_minor": 0, "ino": 0x514362,
          "index": 0, "pfn": 0x18D2E4, "order": 0}),
        ("trace-cmd", "real-tracecmd.txt", 4,
         {"ev": "dirty_tp", "ts_ns": 1034_787489_000, "cpu": 1, "pid": 6726, "comm": "dd",
          "dev_major": 254, "dev_minor": 0, "ino": 266338304, "index": 21299201}),
    ],
)  # fmt: skip
def test_lines_match_real_captures(fmt: str, golden: str, line: int, record: dict) -> None:
    """The writers reproduce what a real 6.18 kernel, trace-cmd and ftrace printed."""
    lines = Renderer(fmt, "6.18.44").render(_record(**record))
    assert lines.to_list() == [_real_line(golden, line)]


def test_perf_layout_matches_real_capture() -> None:
    rec = {**FORK, "comm": "workload.sh", "pid": 7057, "cpu": 0, "ts_ns": 1116_710726_000}
    rec.update(arg_comm="workload.sh", arg_pid=7059)
    got = Renderer("perf", "6.18.44").render(_record(**rec)).item()
    want = _real_line("real-perf.txt", 1)
    # perf pads the event name to the session's longest; ours are all probes + tracepoints
    assert got.split(": ", 1)[0] == want.split(": ", 1)[0]
    assert got.split(":", 4)[-1] == want.split(":", 4)[-1]
    assert got.endswith("sched:sched_process_fork: comm=workload.sh pid=7057 "
                        "child_comm=workload.sh child_pid=7059")  # fmt: skip


def test_latency_layout_matches_real_capture() -> None:
    rec = {**FORK, "cpu": 0, "pid": 6754, "arg_pid": 6780, "ts_ns": 9193_000}
    nxt = {**FORK, "ts_ns": 9193_000 + 1_144_000}  # a >1 ms gap: the '#' mark
    got = Renderer("ftrace-latency", t0_ns=0).render(pl.concat([_record(**rec), _record(**nxt)]))
    assert got[0] == _real_line("real-latency.trace", 19)


def test_kprobe_body_and_kernel_eras() -> None:
    pin = {"ev": "pin", "ts_ns": 5_000_000_000, "cpu": 2, "pid": 7, "tgid": 7, "comm": "fio"}
    pin.update(pfn=0x1051DF, refs=1, bits=1 | 8, caller="ib_umem_get", order=0)
    new = Renderer("ftrace", "6.8.0").render(_record(**pin)).item()
    assert new.endswith(
        "pinscope_pin: (try_grab_folio+0x0/0x80) page=0xffffea00041477c0 "
        "vmemmap=0xffffea0000000000 refs=1 flags=0x80001 order=0 caller=ib_umem_get"
    )
    old = Renderer("ftrace", "5.10.0").render(_record(**pin)).item()
    assert "(try_grab_compound_head+0x0/0x80)" in old and "flags=0x40001 " in old
    add = {"ev": "cache_add", "ts_ns": 5_000_000_000, "cpu": 0, "pid": 7, "comm": "dd"}
    add.update(pfn=1000, dev_major=8, dev_minor=1, ino=255, index=2, order=0)
    assert " ino ff page=" in Renderer("ftrace", "5.10").render(_record(**add)).item()
    assert " pfn=1000 ofs=8192" in Renderer("ftrace", "5.10").render(_record(**add)).item()
    assert " pfn=0x3e8 ofs=8192" in Renderer("ftrace", "5.14").render(_record(**add)).item()
    assert (
        Renderer("ftrace", "6.1")
        .render(_record(**add))
        .item()
        .endswith("dev 8:1 ino ff pfn=0x3e8 ofs=8192 order=0")
    )
    dirty = {**add, "ev": "dirty_tp", "dev_minor": 0}
    assert (
        "writeback_dirty_page: bdi 8:0: ino=255 index=2"
        in Renderer("ftrace", "5.10").render(_record(**dirty)).item()
    )


def test_bpftrace_lines_follow_the_shipped_script() -> None:
    pin = {"ev": "pin", "ts_ns": 5_000_000_123, "cpu": 2, "pid": 7, "tgid": 6, "comm": "ib write",
           "pfn": 4242, "refs": 1, "bits": 1 | 8, "caller": "ib_umem_get", "order": 0}  # fmt: skip
    plain = Renderer("bpftrace").render(_record(**pin)).item()
    assert plain == (
        "5000000123 2 7 6 pinscope_pin: pfn=4242 refs=1 flags=0x80001 order=0 "
        "caller=ib_umem_get comm=ib write"
    )
    js = json.loads(Renderer("bpftrace-json").render(_record(**pin)).item())
    assert js == {"type": "printf", "data": plain + "\n"}
    lost = {"ev": "lost", "ts_ns": 1, "cpu": 1, "pid": 0, "comm": "", "count": 9}
    assert json.loads(Renderer("bpftrace-json").render(_record(**lost)).item()) == {
        "type": "lost_events",
        "data": {"events": 9},
    }
    assert Renderer("trace-cmd").render(_record(**lost)).item() == "CPU:1 [9 EVENTS DROPPED]"
    assert Renderer("ftrace").render(_record(**lost)).item() == "CPU:1 [LOST 9 EVENTS]"


def test_hex_series_agrees_with_python() -> None:
    values = [0, 1, 15, 16, 0x1051DF, 2**40 + 3, 2**63 + 5, 2**64 - 1]
    got = hex_series(pl.Series(values, dtype=pl.UInt64)).to_list()
    assert got == [f"{v:x}" for v in values]
    padded = hex_series(pl.Series([255], dtype=pl.UInt64), strip=False).item()
    assert padded == "00000000000000ff"


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_scenario_writes_in_every_format(tmp_path: Path, fmt: str) -> None:
    for name in SCENARIOS:
        out = tmp_path / f"{name}.trace"
        truth = simulate(name, out, fmt=fmt, seed=5)
        text = out.read_text()
        assert text.startswith("# pinscope kernel=6.8.0 host=")
        assert truth["scenario"] == name and truth["format"] == fmt
        assert "pinscope_" in text
        hazard = not SCENARIOS[name].benign
        assert bool(truth["expected"]) == hazard, name


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in ("a.trace", "b.trace", "c.trace"))
    for name in ("rdma-buffers-freed", MIXED):
        simulate(name, a, seed=3, events=4000, fmt="perf-g")
        simulate(name, b, seed=3, events=4000, fmt="perf-g")
        simulate(name, c, seed=4, events=4000, fmt="perf-g")
        assert a.read_bytes() == b.read_bytes()
        assert a.read_bytes() != c.read_bytes()


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    a, b, plain = tmp_path / "a.trace.gz", tmp_path / "b.trace.gz", tmp_path / "a.trace"
    # several blocks: one gzip member each, compressed in parallel
    simulate(MIXED, a, seed=1, events=BLOCK_ROUNDS * 600 * 2)
    simulate(MIXED, b, seed=1, events=BLOCK_ROUNDS * 600 * 2)
    simulate(MIXED, plain, seed=1, events=BLOCK_ROUNDS * 600 * 2)
    assert a.read_bytes() == b.read_bytes()
    text = gzip.decompress(a.read_bytes())
    assert text.startswith(b"# pinscope kernel=") and text == plain.read_bytes()
    with gzip.open(a) as f:  # what ingest reads with: the members are one stream
        assert f.read() == text


def test_mixed_replicates_rounds_on_disjoint_pages(tmp_path: Path) -> None:
    tpl, per_round, step = round_template(0)
    out = tmp_path / "m.trace"
    truth = simulate(MIXED, out, seed=0, events=tpl.height * 3)
    pfns = [e["pfn"] for e in truth["expected"]]
    assert len(truth["expected"]) == 3 * len(per_round)
    assert (
        len(set(pfns))
        == len({(e.rule, e.pfn) for e in per_round}) * 3
        - (len(per_round) - len({e.pfn for e in per_round})) * 3
    )
    assert {e["rule"] for e in truth["expected"]} == {e.rule for e in per_round}
    lines = out.read_text().count("\n")
    assert lines >= tpl.height * 3
    # every copy's pages lie in its own pfn range
    assert max(pfns) - min(pfns) < 3 * step
    # time never goes backwards in the written file (ftrace timestamps in file order)
    ts = pl.Series(out.read_text().splitlines()).str.extract(r"\] \.{5}\s+(\d+\.\d{6}):")
    ts = ts.drop_nulls().cast(pl.Float64)
    assert ts.len() > 0 and (ts.diff().drop_nulls() >= 0).all()


def test_scenarios_have_docstrings_and_one_line_summaries() -> None:
    for sc in SCENARIOS.values():
        assert sc.build.__doc__ and "\n" not in sc.summary and len(sc.summary) < 100
    records, expected = build("lost-events", 0)
    assert (records["ev"] == "lost").sum() == 1
    assert [e.uncertain for e in expected] == [False, True]


@pytest.mark.parametrize("fmt", ["ftrace", "bpftrace-json"])
def test_computed_uncertain_flags_agree_with_the_stories(tmp_path: Path, fmt: str) -> None:
    """Each expected finding names its times; the flag the truth carries is computed from them
    and the gaps, and agrees with what each story's author stated."""
    for name in SCENARIOS:
        records, expected = build(name, 4)
        ts = set(records["ts_ns"].to_list())
        for e in expected:  # every time named is a record's time
            assert e.span[0] in ts and {e.span[1], *(t for p in e.pins for t in p)} <= ts | {None}
        truth = simulate(name, tmp_path / "t.trace", fmt=fmt, seed=4)
        assert [bool(x.get("uncertain")) for x in truth["expected"]] == [
            e.uncertain for e in expected
        ], name


def test_uncertain_edges_follow_the_rules() -> None:
    """A finding's span must overlap a gap strictly (the runner's SQL); its pin interval counts
    when a gap touches it (replay's `uncertain`), an open interval reaches every later gap."""
    gaps = pl.DataFrame({"gs": [20, 100], "ge": [25, 101]})
    checks = [  # (finding, start, end, strict)
        (0, 10, 20, True),  # ends where the gap starts: certain
        (1, 10, 20, False),  # a pin interval ending there: uncertain
        (2, 25, 30, True),  # starts where the gap ends: certain
        (3, 25, 30, False),
        (4, 30, None, True),  # open: the gap at 100 hits it
        (5, 101, None, False),
        (6, 102, None, False),  # after every gap
        (7, 21, 24, True),  # inside a gap
    ]
    frame = pl.DataFrame(
        [(f, "R", f, a, b, s) for f, a, b, s in checks],
        schema=["_f", "rule", "pfn", "a", "b", "strict"],
        orient="row",
    ).with_columns(pl.lit(0, pl.Int64).alias("k"), pl.col("b").cast(pl.Int64))
    flags = _flag(frame, gaps)["uncertain"].to_list()
    assert flags == [False, True, False, True, True, True, False, True]


def test_mixed_has_lost_events_and_exact_uncertain_flags(tmp_path: Path) -> None:
    """mixed replicates every scenario, lost-events too: each copy's gap makes that copy's
    pin-spans-writeback uncertain, open spans before any gap uncertain, and some other copy's
    span that it falls into (the end-to-end test checks the flags against the pipeline)."""
    out = tmp_path / "m.trace"
    _, per_round, _ = round_template(11)
    truth = simulate(MIXED, out, seed=11, events=20000)
    rounds = len(truth["expected"]) // len(per_round)
    assert out.read_text().count("[LOST 187 EVENTS]") == rounds > 1
    unsure = [(e["rule"], e["pfn"]) for e in truth["expected"] if e.get("uncertain")]
    by_rule = {r: sum(1 for u, _ in unsure if u == r) for r, _ in unsure}
    assert by_rule["PIN_LEAK"] == by_rule["PAGE_FREED_WHILE_PINNED"] == rounds
    assert by_rule["PIN_SPANS_WRITEBACK"] >= rounds
    # a gap of one copy inside a span of another copy's story
    assert set(by_rule) - {"PIN_LEAK", "PAGE_FREED_WHILE_PINNED", "PIN_SPANS_WRITEBACK"}
    assert len(unsure) < len(truth["expected"]) / 2


def test_cli_list_and_errors(tmp_path: Path) -> None:
    res = runner.invoke(app, ["simulate", "--list"])
    assert res.exit_code == 0
    for name in [*SCENARIOS, MIXED]:
        assert name in res.output
    res = runner.invoke(app, ["simulate", "no-such", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown scenario 'no-such'" in res.output
    res = runner.invoke(app, ["simulate", "midtrace", "-f", "xml", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--format 'xml'" in res.output
    res = runner.invoke(app, ["simulate", "midtrace", "-k", "banana", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--kernel 'banana'" in res.output
    res = runner.invoke(app, ["simulate", "midtrace"])
    assert res.exit_code == 2 and "-o FILE" in res.output


def test_cli_writes_trace_and_truth(tmp_path: Path) -> None:
    out = tmp_path / "fw.trace"
    res = runner.invoke(
        app, ["simulate", "fork-while-pinned", "-o", str(out), "--seed", "9", "-f", "trace-cmd"]
    )
    assert res.exit_code == 0, res.output
    truth = json.loads((tmp_path / "fw.trace.truth.json").read_text())
    assert truth["seed"] == 9 and truth["expected"][0]["rule"] == "FORK_WHILE_PINNED"
    assert "sched_process_fork:" in out.read_text()


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("rdma-writeback.trace", ["rdma-writeback", "--seed", "1"]),
        ("odirect-read.trace", ["odirect-read", "--seed", "2"]),
        ("customer-mixed.trace.gz", ["mixed", "--events", "5000", "--seed", "3"]),
    ],
)
def test_examples_do_not_drift(tmp_path: Path, name: str, args: list[str]) -> None:
    out = tmp_path / name
    res = runner.invoke(app, ["simulate", *args, "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == (EXAMPLES / name).read_bytes(), f"regenerate examples/{name}"
    truth = (tmp_path / f"{name}.truth.json").read_bytes()
    assert truth == (EXAMPLES / f"{name}.truth.json").read_bytes()
