"""Tell a trace's format from its first lines, so users need not say `--format`.

Headers decide first (they are unambiguous); otherwise the layout most lines match wins. An
unknown format stops ingest at once with the lines it saw, rather than producing 100 % rejects.
"""

from __future__ import annotations

import re

from ingest.errors import InputError
from ingest.framing import FORMATS

_TRACE_CMD_HEADER = re.compile(r"^(?:version = [0-9]+|cpus=[0-9]+|CPU [0-9]+ is empty)\s*$")
_FTRACE_HEADER = re.compile(r"^#\s*tracer: \S+")
_BPFTRACE_ATTACH = re.compile(r"^Attaching [0-9]+ probes?\.\.\.\s*$")
_BPFTRACE_EVENT = re.compile(r"^[0-9]+ -?[0-9]+ -?[0-9]+ -?[0-9]+ pinscope_[A-Za-z0-9_]+: ")
_FTRACE_EVENT = re.compile(
    r"^\s*.*?-[0-9]+\s+(?:\([ 0-9-]+\)\s+)?\[[0-9]+\]\s+(?:\S{4,6}\s+)?[0-9]+(?:\.[0-9]+)?:\s"
)
_LATENCY_EVENT = re.compile(r"^\s*.*?-[0-9]+\s+[0-9]+\S{4,6}\s+[0-9]+us.?\s?:\s")
_PERF_EVENT = re.compile(
    r"^\s*.*?\s(?:-?[0-9]+/)?-?[0-9]+\s+\[[0-9]+\]\s+[0-9]+\.[0-9]+:\s+(?:[0-9]+\s+)?\S+:(?:\s|$)"
)
_LOST = re.compile(r"^CPU:[0-9]+ \[")
_DAT_MAGIC = "\x17\x08Dtracing"


def _quote(head: list[str]) -> str:
    first = [line if len(line) <= 80 else line[:77] + "..." for line in head[:3]]
    return ", ".join(repr(line) for line in first) or "(empty file)"


def _unknown(head: list[str], path: str, why: str) -> InputError:
    return InputError(
        f"{path}: {why}; tried the formats {', '.join(FORMATS)} (use --format to force one); "
        f"line 1-3: {_quote(head)}"
    )


def detect_format(head: list[str], path: str) -> str:
    """One of framing.FORMATS for the first ~200 lines of a file; InputError when none fits."""
    lines = [line.rstrip("\r\n") for line in head[:200]]
    if any(line.startswith(_DAT_MAGIC) for line in lines[:1]):
        raise _unknown(
            lines, path, "binary trace-cmd .dat file: convert it with 'trace-cmd report -i FILE'"
        )
    # one stray NUL is the framer's business (a reject); many mean a binary file
    if sum("\x00" in line for line in lines) * 4 > len(lines) or "\x00" in lines[0]:
        raise _unknown(lines, path, "binary content (NUL bytes)")
    text = [line for line in lines if line.strip()]
    if not text:
        raise _unknown(lines, path, "no trace lines in the file")
    first = next((line for line in text if not line.startswith("#")), text[0])
    if first.lstrip().startswith('{"type":'):
        return "bpftrace-json"
    if any(_BPFTRACE_ATTACH.match(line) for line in text[:5]):
        return "bpftrace"
    if any(_TRACE_CMD_HEADER.match(line) for line in text[:20]):
        return "trace-cmd"
    if any(_FTRACE_HEADER.match(line) for line in text[:5]):
        return "ftrace"
    body = [line for line in text if not line.startswith("#") and not _LOST.match(line)]
    votes = {
        "bpftrace": sum(1 for line in body if _BPFTRACE_EVENT.match(line)),
        "ftrace": sum(
            1 for line in body if _FTRACE_EVENT.match(line) or _LATENCY_EVENT.match(line)
        ),
        "perf": sum(
            1 for line in body if _PERF_EVENT.match(line) and not _FTRACE_EVENT.match(line)
        ),
    }
    best = max(votes, key=lambda k: votes[k])
    if votes[best] == 0:
        garbled = sum(line.count("\ufffd") for line in text)
        why = "binary or non-UTF-8 content" if garbled > 10 else "no line looks like a trace event"
        raise _unknown(lines, path, why)
    return best
