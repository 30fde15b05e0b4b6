"""Format detection on the captured traces, the golden inputs and made-up bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.detect import detect_format
from ingest.errors import InputError

GOLDEN = Path(__file__).parent / "golden"


def head(rel: str, n: int = 200) -> list[str]:
    text = (GOLDEN / rel).read_bytes()[:65536].decode("utf-8", errors="replace")
    return text.split("\n")[:n]


@pytest.mark.parametrize(
    ("rel", "fmt"),
    [
        ("real/real-default.trace", "ftrace"),
        ("real/real-tgid.trace", "ftrace"),
        ("real/real-noirq.trace", "ftrace"),
        ("real/real-latency.trace", "ftrace"),
        ("real/real-counter.trace", "ftrace"),
        ("real/real-stack.trace", "ftrace"),
        ("real/real-tracecmd.txt", "trace-cmd"),
        ("real/real-tracecmd-ns.txt", "trace-cmd"),
        ("real/real-perf.txt", "perf"),
        ("real/real-perf-g.txt", "perf"),
        ("ftrace/default.trace", "ftrace"),
        ("ftrace/tgid.trace", "ftrace"),
        ("ftrace/clocks.trace", "ftrace"),
        ("ftrace/latency.trace", "ftrace"),
        ("ftrace/trace-cmd.txt", "trace-cmd"),
        ("perf/perf.txt", "perf"),
        ("perf/perf-g.txt", "perf"),
    ],
)
def test_files(rel: str, fmt: str) -> None:
    assert detect_format(head(rel), rel) == fmt


def test_trace_pipe_without_header_is_ftrace() -> None:
    lines = head("real/real-default.trace")[12:]
    assert not lines[0].startswith("#")
    assert detect_format(lines, "pipe") == "ftrace"


def test_bpftrace_plain_and_json() -> None:
    plain = [
        "Attaching 12 probes...",
        "1040523190123 1 6757 6757 pinscope_pin: pfn=0x18d15e refs=1 flags=0x40001 comm=ib write",
    ]
    assert detect_format(plain, "b.txt") == "bpftrace"
    assert detect_format(plain[1:] * 3, "b.txt") == "bpftrace"
    js = ['{"type": "attached_probes", "data": {"probes": 12}}', '{"type": "printf", "data": "x"}']
    assert detect_format(js, "b.json") == "bpftrace-json"


def test_unknown_text_names_path_formats_and_first_lines() -> None:
    lines = ["hello world", "this is a CSV, not a trace", "a,b,c", "more"]
    with pytest.raises(InputError) as exc:
        detect_format(lines, "/tmp/notes.txt")
    msg = str(exc.value)
    assert "/tmp/notes.txt" in msg
    for fmt in ("ftrace", "trace-cmd", "perf", "bpftrace", "bpftrace-json"):
        assert fmt in msg
    assert repr("hello world") in msg and repr("a,b,c") in msg and "more" not in msg


def test_binary_content_is_refused() -> None:
    with pytest.raises(InputError, match="trace-cmd report"):
        detect_format(head("real/real.dat", 5), "real.dat")
    with pytest.raises(InputError, match="NUL"):
        detect_format(["\x00\x01\x02garbage"], "blob.bin")
    with pytest.raises(InputError, match=r"x\.trace"):
        detect_format(["", "   "], "x.trace")


def test_long_first_lines_are_truncated_in_the_message() -> None:
    with pytest.raises(InputError) as exc:
        detect_format(["x" * 500], "big.txt")
    assert "x" * 78 not in str(exc.value)
    assert "..." in str(exc.value)
