"""`pinscope ingest` as users run it: a real subprocess, real files, exit codes and messages."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from ingest import dataset as ds
from pinscope import cmd_ingest

GOLDEN = Path(__file__).parent / "golden" / "real"


def pinscope(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pinscope", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_ingest_prints_the_line_accounting(tmp_path: Path) -> None:
    d = tmp_path / "ds"
    gz = tmp_path / "noirq.trace.gz"
    gz.write_bytes(gzip.compress((GOLDEN / "real-noirq.trace").read_bytes()))
    r = pinscope("ingest", str(GOLDEN / "real-default.trace"), str(gz), "-o", str(d))
    assert r.returncode == 0, r.stderr
    traces = {t["trace_id"]: t for t in ds.traces(d)}
    assert set(traces) == {"real-default", "noirq"}
    out = r.stdout
    for tid, t in traces.items():
        row = next(line for line in out.splitlines() if line.strip("│ ").startswith(tid))
        assert f"{t['lines']['total']:,}" in row
        assert f"{t['lines']['events']:,}" in row
    assert "events by kind:" in out and "free 25" in out
    assert "Traceback" not in r.stderr

    again = pinscope("ingest", str(GOLDEN / "real-default.trace"), "-o", str(d))
    assert again.returncode == 0
    assert "already ingested as real-default" in again.stdout

    rep = pinscope(
        "ingest", str(GOLDEN / "real-default.trace"), "-o", str(d), "--replace", "--kernel", "6.1"
    )
    assert rep.returncode == 0, rep.stderr
    assert "replaced" in rep.stdout
    assert {t["trace_id"]: t for t in ds.traces(d)}["real-default"]["kernel"] == "6.1"


def test_trace_id_and_format_options(tmp_path: Path) -> None:
    d = tmp_path / "ds"
    r = pinscope(
        "ingest",
        str(GOLDEN / "real-tracecmd.txt"),
        "-o",
        str(d),
        "--format",
        "trace-cmd",
        "--trace-id",
        "run-1",
    )
    assert r.returncode == 0, r.stderr
    (t,) = ds.traces(d)
    assert (t["trace_id"], t["format"]) == ("run-1", "trace-cmd")


def test_bad_input_exits_2_without_traceback(tmp_path: Path) -> None:
    d = tmp_path / "ds"
    junk = tmp_path / "core.bin"
    junk.write_bytes(b"\x7fELF\x00\x00" * 200)
    unknown = tmp_path / "notes.txt"
    unknown.write_text("dear diary\nnothing traced today\n")
    bad_map = tmp_path / "m.toml"
    bad_map.write_text("this is = = not toml [\n")
    cases = [
        ([str(tmp_path / "missing.trace")], "missing.trace: no such file"),
        ([str(junk)], "core.bin: binary data"),
        ([str(tmp_path)], "is a directory"),
        ([str(GOLDEN / "real-default.trace"), "--format", "xml"], "unknown format 'xml'"),
        ([str(unknown)], "notes.txt"),
        ([str(GOLDEN / "real-default.trace"), "--map", str(bad_map)], "m.toml"),
        ([str(GOLDEN / "real-default.trace"), "--trace-id", "a/b"], "trace id 'a/b'"),
    ]
    for args, needle in cases:
        r = pinscope("ingest", *args, "-o", str(d))
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert needle in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert ds.traces(d) == []


def test_dat_without_trace_cmd_exits_2(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pinscope", "ingest", str(GOLDEN / "real.dat"), "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},  # no trace-cmd on this PATH
        timeout=120,
    )
    assert r.returncode == 2
    assert "is a trace-cmd .dat file; install trace-cmd" in r.stderr
    assert "Traceback" not in r.stderr


def test_progress_bar_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int | None]] = []
    real = cmd_ingest.ingest_files

    def spy(*args: object, **kwargs: object) -> object:
        inner = kwargs["progress"]

        def progress(path: Path, done: int, total: int | None) -> None:
            seen.append((done, total))
            inner(path, done, total)  # type: ignore[operator]

        kwargs["progress"] = progress
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cmd_ingest, "LARGE_FILE", 0)  # every file counts as large: bar shown
    monkeypatch.setattr(cmd_ingest, "ingest_files", spy)
    src = GOLDEN / "real-default.trace"
    res = cmd_ingest.run_ingest([src], tmp_path / "ds")
    assert res[0].entry["lines"]["total"] == 120
    assert seen and seen[-1] == (src.stat().st_size, src.stat().st_size)
