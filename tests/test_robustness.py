"""Hostile input: mutated traces of every format never crash `analyze` nor lose a line.

Each example starts from a small valid trace written by the simulator, damages it the ways real
traces get damaged (bit rot, a crash cutting the file, logs glued together, binary junk, numbers
no kernel prints, events missing fields) and runs `pinscope analyze` in-process. The property:
the exit code is 0, 1 or 2 and never a traceback; on 0 or 1 the dataset opens, every table reads
and the manifest accounts for every line of the file exactly once.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ingest import dataset as ds
from ingest.errors import InputError
from ingest.pipeline import ingest_files
from ingest.schema import TABLES
from ingest.simulate import simulate
from ingest.source import open_source
from pinscope.cli import app

# One writer per reader variant: the ftrace flag layouts, trace-cmd, perf with and without
# stacks, bpftrace text and JSON.
WRITERS = (
    "ftrace",
    "ftrace-tgid",
    "ftrace-irq4",
    "ftrace-noirq",
    "ftrace-latency",
    "trace-cmd",
    "perf",
    "perf-g",
    "bpftrace",
    "bpftrace-json",
    # other scenarios: lost-event markers, stacks and forks, truncates
    "ftrace/lost-events",
    "perf-g/fork-while-pinned",
    "trace-cmd/dirty-after-truncate",
    "bpftrace/midtrace",
)
LINE_CATEGORIES = ("events", "other", "stack", "lost", "comments", "rejected")
HUGE = 1 << 64
FUZZ_EXAMPLES = int(os.environ.get("PINSCOPE_FUZZ_EXAMPLES", "40"))


@pytest.fixture(scope="session")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("seeds")
    out = {}
    for w in WRITERS:
        fmt, _, scenario = w.partition("/")
        p = d / f"seed.{fmt}.{scenario}"
        simulate(scenario or "rdma-writeback", p, fmt=fmt, seed=1)
        out[w] = p.read_bytes()
    return out


def count_lines(data: bytes) -> int:
    """Lines as pinscope promises to count them: split on \\n; a last unterminated line counts."""
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


# ---------------------------------------------------------------------------- mutations
# Each takes the bytes and a seeded Random: hypothesis draws the seed, so every example is
# reproducible from its seed alone.


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def flip(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        b[rng.randrange(len(b))] ^= rng.randint(1, 255)
    return bytes(b)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randint(0, len(data))]


def shuffle(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    rng.shuffle(lines)
    return b"\n".join(lines)


def duplicate(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    for _ in range(rng.randint(1, 5)):
        lines.insert(rng.randint(0, len(lines)), rng.choice(lines))
    return b"\n".join(lines)


JUNK = (
    b"\x00",
    b"\x00\x00\x00\x00",
    b"\xff\xfe",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\r",
    b"\x1f",
    b"\x1b[0m",
)


def junk(data: bytes, rng: random.Random) -> bytes:
    """NUL bytes, invalid UTF-8, lone CRs and control bytes spliced in anywhere."""
    for _ in range(rng.randint(1, 4)):
        piece = rng.choice(JUNK) if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 16))
        i = rng.randint(0, len(data))
        data = data[:i] + piece + data[i:]
    return data


_NUMBER = re.compile(rb"(?<![0-9A-Za-z])(0x[0-9a-fA-F]+|[0-9]+)")
ODD_NUMBERS = (
    b"-1",
    b"-4096",
    str(HUGE).encode(),
    str(HUGE - 1).encode(),
    str(1 << 63).encode(),
    b"0x" + b"f" * 20,
    b"0xffffffffffffffff",
    b"99999999999999999999999999",
    b"-0x10",
)


def numbers(data: bytes, rng: random.Random) -> bytes:
    """Replace some numbers with ones no kernel prints: negative, 2^64, 2^63, huge hex."""
    for _ in range(rng.randint(1, 6)):
        spans = [m.span() for m in _NUMBER.finditer(data)]
        if not spans:
            break
        a, b = rng.choice(spans)
        data = data[:a] + rng.choice(ODD_NUMBERS) + data[b:]
    return data


_FIELD = re.compile(rb"\s[A-Za-z_]+=\S*")


def missing_fields(data: bytes, rng: random.Random) -> bytes:
    """Drop `key=value` fields from some lines, or cut a line right after its event name."""
    lines = _lines(data)
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(len(lines))
        line = lines[i]
        fields = list(_FIELD.finditer(line))
        if fields and rng.random() < 0.5:
            m = rng.choice(fields)
            lines[i] = line[: m.start()] + line[m.end() :]
        else:
            cut = line.find(b": ", line.find(b"]") + 1)
            lines[i] = line[: cut + 1] if cut >= 0 else line[: len(line) // 2]
    return b"\n".join(lines)


MUTATIONS = {
    f.__name__: f for f in (flip, truncate, shuffle, duplicate, junk, numbers, missing_fields)
}


def mutate(data: bytes, names: list[str], seed: int) -> bytes:
    rng = random.Random(seed)
    for name in names:
        if data:
            data = MUTATIONS[name](data, rng)
    return data


# ---------------------------------------------------------------------------- the property

runner = CliRunner()


def analyze(trace: Path, out: Path, *extra: str) -> int:
    """Run `pinscope analyze` in-process; fail the test on anything but a clean exit."""
    r = runner.invoke(app, ["analyze", str(trace), "-o", str(out), *extra])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"analyze crashed ({r.exit_code}):\n{r.output}") from r.exception
    assert r.exit_code in (0, 1, 2), r.output
    assert "Traceback" not in r.output
    if r.exit_code == 2:
        assert "pinscope:" in r.output  # a message, not silence
    return r.exit_code


def check_dataset(d: Path, data: bytes) -> None:
    """The dataset opens, every table reads, and the manifest accounts for every line once."""
    (entry,) = ds.traces(d)
    lines = entry["lines"]
    assert lines["total"] == count_lines(data), (lines, count_lines(data))
    assert sum(lines[k] for k in LINE_CATEGORIES) == lines["total"], lines
    con = ds.connect(d)
    try:
        n = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # type: ignore[index]
    finally:
        con.close()
    assert n["events"] == lines["events"]
    assert n["other_events"] == lines["other"]
    assert n["stacks"] == lines["stack"]
    assert n["lost"] == lines["lost"]
    assert n["rejects"] == lines["rejected"]
    for name in ds.derived_tables(d):
        ds.scan(d, f"derived/{name}").collect()


def run_case(tmp: Path, data: bytes, name: str = "t.trace") -> int:
    trace = tmp / name
    trace.write_bytes(data)
    out = tmp / "ds"
    code = analyze(trace, out)
    if code in (0, 1):
        check_dataset(out, data)
    return code


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    writer=st.sampled_from(WRITERS),
    names=st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_mutated_traces_never_crash_nor_lose_lines(
    seeds: dict[str, bytes],
    tmp_path_factory: pytest.TempPathFactory,
    writer: str,
    names: list[str],
    seed: int,
) -> None:
    run_case(tmp_path_factory.mktemp("fuzz"), mutate(seeds[writer], names, seed))


@pytest.mark.parametrize("writer", WRITERS)
def test_every_mutation_of_every_format(
    seeds: dict[str, bytes], tmp_path: Path, writer: str
) -> None:
    """Each mutation on each format at least once, whatever hypothesis draws (fixed seeds).

    Through the ingest API (the stage that reads the bytes) to keep the suite fast; the
    hypothesis test above runs the whole `analyze`.
    """
    for i, name in enumerate(sorted(MUTATIONS)):
        data = mutate(seeds[writer], [name], i)
        trace = tmp_path / f"{name}.trace"
        trace.write_bytes(data)
        out = tmp_path / f"ds-{name}"
        try:
            ingest_files([trace], out)
        except InputError as exc:
            assert str(trace) in str(exc)  # names the file
            assert not ds.traces(out)  # nothing committed
            continue
        check_dataset(out, data)


# ---------------------------------------------------------------------------- data quality


def _event_lines(data: bytes) -> list[int]:
    """Indices of the event lines of an ftrace text (not comments, not blank)."""
    return [
        i
        for i, ln in enumerate(_lines(data))
        if ln.strip() and not ln.startswith(b"#") and not ln.lstrip().startswith(b"=>")
    ]


def test_duplicates_and_time_backwards_are_counted(seeds: dict[str, bytes], tmp_path: Path) -> None:
    lines = _lines(seeds["ftrace"])
    ev = _event_lines(seeds["ftrace"])
    # three event lines recorded twice, right after themselves and at the end
    dup = lines[:]
    for i in (ev[3], ev[10]):
        dup.insert(dup.index(lines[i]) + 1, lines[i])
    dup.insert(len(dup) - 1, lines[ev[20]])
    p = tmp_path / "dup.trace"
    p.write_bytes(b"\n".join(dup))
    (e,) = (r.entry for r in ingest_files([p], tmp_path / "ds"))
    assert e["warnings"]["duplicate_lines"] == 3
    assert e["lines"]["total"] == count_lines(p.read_bytes())
    # the line at the end is older than its CPU's last event
    assert e["warnings"]["time_backwards_per_cpu"] >= 1


def test_duplicates_are_found_across_a_chunk_boundary(
    seeds: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log glued to itself: every event of the second copy is a duplicate, however it is cut."""
    from ingest import source

    seed = seeds["ftrace"]
    single = tmp_path / "once.trace"
    single.write_bytes(seed)
    lines = ingest_files([single], tmp_path / "once")[0].entry["lines"]
    assert lines["rejected"] == 0
    n_events = lines["events"] + lines["other"]
    p = tmp_path / "twice.trace"
    p.write_bytes(seed + seed)
    (one,) = ingest_files([p], tmp_path / "one-chunk")
    assert one.entry["warnings"]["duplicate_lines"] == n_events
    monkeypatch.setattr(source, "BLOCK_SIZE", len(seed) * 5 // 4)  # copy 2 straddles 2 chunks
    (cut,) = ingest_files([p], tmp_path / "three-chunks")
    assert cut.entry["warnings"]["duplicate_lines"] == n_events


def test_clean_trace_has_no_warnings(seeds: dict[str, bytes], tmp_path: Path) -> None:
    for w in ("ftrace", "perf-g", "bpftrace"):
        p = tmp_path / f"{w}.trace"
        p.write_bytes(seeds[w])
        (r,) = ingest_files([p], tmp_path / f"ds-{w}")
        assert r.entry["warnings"] == {"time_backwards_per_cpu": 0, "duplicate_lines": 0}, w


def _with_host(data: bytes, host: str) -> bytes:
    return data.replace(b"host=pinscope-sim", f"host={host}".encode(), 1)


def test_overlapping_traces_of_one_host_warn_in_both(
    seeds: dict[str, bytes], tmp_path: Path
) -> None:
    a, b, c = tmp_path / "a.trace", tmp_path / "b.trace", tmp_path / "c.trace"
    a.write_bytes(seeds["ftrace"])
    # the same machine captured again with another tool: overlapping time, same host
    b.write_bytes(seeds["perf"])
    c.write_bytes(_with_host(seeds["bpftrace"], "elsewhere"))  # another machine
    d = tmp_path / "ds"
    ingest_files([a], d)
    assert "overlaps_same_host" not in ds.traces(d)[0]["warnings"]
    ingest_files([b, c], d)
    w = {t["trace_id"]: t["warnings"] for t in ds.traces(d)}
    assert w["a"]["overlaps_same_host"] == "b"
    assert w["b"]["overlaps_same_host"] == "a"
    assert "overlaps_same_host" not in w["c"]
    con = ds.connect(d)  # and SQL sees them
    rows = con.sql(
        "SELECT trace_id, overlaps_same_host, duplicate_lines FROM manifest_traces ORDER BY 1"
    ).fetchall()
    con.close()
    assert rows == [("a", "b", 0), ("b", "a", 0), ("c", None, 0)]
    # replacing b with a trace of another host lifts the warning from a too
    b.write_bytes(_with_host(seeds["perf"], "third"))
    ingest_files([b], d, trace_id="b", replace=True)
    w = {t["trace_id"]: t["warnings"] for t in ds.traces(d)}
    assert "overlaps_same_host" not in w["a"] and "overlaps_same_host" not in w["b"]


@pytest.mark.parametrize("fmt", ["text", "md", "json", "html"])
def test_reports_show_the_data_quality_warnings(
    seeds: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory, fmt: str
) -> None:
    tmp = tmp_path_factory.mktemp(f"report-{fmt}")
    lines = _lines(seeds["ftrace"])
    ev = _event_lines(seeds["ftrace"])
    a = tmp / "a.trace"
    a.write_bytes(b"\n".join([*lines[:-1], lines[ev[5]], lines[ev[5]], lines[-1]]))
    b = tmp / "b.trace"
    b.write_bytes(seeds["trace-cmd"])
    d = tmp / "ds"
    ingest_files([a, b], d)
    (wa,) = (t["warnings"] for t in ds.traces(d) if t["trace_id"] == "a")
    assert wa["duplicate_lines"] == 2 and wa["time_backwards_per_cpu"] >= 1
    out = ["-o", str(tmp / "r.html")] if fmt == "html" else []
    r = CliRunner().invoke(app, ["report", str(d), "--format", fmt, *out], terminal_width=250)
    assert r.exit_code == 0, r.output
    if fmt == "html":
        page = (tmp / "r.html").read_text()
        quality = re.findall(r'<ul class="quality">(.*?)</ul>', page)
        assert len(quality) == 2
        assert "duplicate lines: 2" in quality[0] and "overlaps same host: b" in quality[0]
        return
    if fmt == "json":
        traces = {t["trace_id"]: t for t in json.loads(r.output)["traces"]}
        assert traces["a"]["warnings"]["duplicate_lines"] == 2
        assert traces["a"]["warnings"]["overlaps_same_host"] == "b"
        assert traces["b"]["warnings"]["overlaps_same_host"] == "a"
        return
    text = " ".join(r.output.split())
    assert "duplicate lines: 2" in text
    assert "time backwards per cpu:" in text
    assert "overlaps same host: b" in text and "overlaps same host: a" in text


# ---------------------------------------------------------------------------- edge cases


def _giant(data: bytes, where: str) -> bytes:
    """A line of several megabytes: junk text, or an event whose field value is huge."""
    lines = _lines(data)
    ev = _event_lines(data)
    i = ev[len(ev) // 2]
    if where == "junk":
        lines.insert(i, b"x" * (5 << 20))
    else:  # the same event with a 5 MB field value glued on
        lines.insert(i, lines[i] + b" comm=" + b"A" * (5 << 20))
    return b"\n".join(lines)


@pytest.mark.parametrize("writer", ["ftrace", "trace-cmd", "perf-g", "bpftrace", "bpftrace-json"])
@pytest.mark.parametrize("where", ["junk", "event"])
def test_a_line_of_several_megabytes(
    seeds: dict[str, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    writer: str,
    where: str,
) -> None:
    from ingest import source

    monkeypatch.setattr(source, "BLOCK_SIZE", 1 << 20)  # the line spans several read blocks
    data = _giant(seeds[writer], where)
    p = tmp_path / "giant.trace"
    p.write_bytes(data)
    (r,) = ingest_files([p], tmp_path / "ds")
    check_dataset(tmp_path / "ds", data)
    assert r.entry["lines"]["events"] >= 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"\n\n\n", "no trace lines"),
        (b"\x00" * 100 + b"\n", "binary"),
        (bytes(range(256)) * 40, "binary"),
        ("ñ€😀 not a trace\n".encode() * 50, "no line looks like a trace event"),
        (b"\xff\xfe" * 500 + b"\n", "binary or non-UTF-8"),
    ],
)
def test_hopeless_inputs_exit_2_with_a_message(tmp_path: Path, data: bytes, message: str) -> None:
    trace = tmp_path / "bad.trace"
    trace.write_bytes(data)
    r = runner.invoke(app, ["analyze", str(trace), "-o", str(tmp_path / "ds")])
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert (message in text and str(trace) in text.replace(" ", "")) or message in text
    assert not ds.traces(tmp_path / "ds")


def test_analyze_in_a_real_process(seeds: dict[str, bytes], tmp_path: Path) -> None:
    """A few damaged files through `python -m pinscope analyze`: no traceback reaches a user."""
    cases = {
        "huge-numbers": mutate(seeds["ftrace"], ["numbers"], 7),
        "giant-line": _giant(seeds["perf-g"], "event"),
        "junk": mutate(seeds["bpftrace"], ["junk", "flip"], 3),
        "truncated": seeds["bpftrace-json"][: len(seeds["bpftrace-json"]) // 2],
        "empty": b"",
    }
    for name, data in cases.items():
        trace = tmp_path / f"{name}.trace"
        trace.write_bytes(data)
        out = tmp_path / f"ds-{name}"
        p = subprocess.run(
            [sys.executable, "-m", "pinscope", "analyze", str(trace), "-o", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode in (0, 1, 2), (name, p.stderr)
        assert "Traceback" not in p.stderr + p.stdout, (name, p.stderr)
        if p.returncode == 2:
            assert "pinscope:" in p.stderr, name
        else:
            check_dataset(out, data)


def _compress(kind: str, data: bytes) -> bytes:
    import bz2
    import gzip
    import lzma

    import zstandard

    return {
        "gz": gzip.compress,
        "xz": lzma.compress,
        "bz2": bz2.compress,
        "zst": zstandard.ZstdCompressor().compress,
    }[kind](data)


@pytest.mark.parametrize("kind", ["gz", "xz", "bz2", "zst"])
def test_cut_off_or_corrupt_compressed_traces_exit_2(
    seeds: dict[str, bytes], tmp_path: Path, kind: str
) -> None:
    """A compressed trace cut off by a crash is refused with a message, never half-read."""
    packed = _compress(kind, seeds["ftrace"] * 200)
    cases = {
        "cut": packed[: len(packed) // 2],
        "magic-only": packed[:6],
        "flipped": packed[:60] + bytes([packed[60] ^ 0xFF]) + packed[61:],
    }
    for name, bad in cases.items():
        trace = tmp_path / f"{name}.trace.{kind}"
        trace.write_bytes(bad)
        out = tmp_path / f"ds-{name}"
        r = runner.invoke(app, ["analyze", str(trace), "-o", str(out)])
        assert r.exit_code in (0, 2), (name, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), (name, r.exception)
        if r.exit_code == 0:  # a flip the format's checksum does not cover: still accounted
            with open_source(trace) as src:
                check_dataset(out, src.stream.read())
            continue
        text = " ".join(r.output.split())
        assert f".{kind} data is" in text or "no text inside" in text, text
        assert not ds.traces(out)
