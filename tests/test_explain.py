"""`pinscope explain`: the real command on a dataset laid out as DESIGN.md says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from test_html_report import PFN, png_size, require_chromium, write_dataset

from analysis.explain import decode_flags
from ingest.schema import foll_flags_for

PINSCOPE = Path(sys.executable).with_name("pinscope")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [str(PINSCOPE), "explain", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("explain"))


def table_lines(out: str) -> list[int]:
    """The line numbers in the event table's first column, in printed order."""
    return [int(m) for m in re.findall(r"^\s+(\d+)\s+\d+\.\d{6}\s", out, re.M)]


def lane(out: str, state: str) -> str:
    row = next(r for r in out.splitlines() if r.startswith(state + " ") and "│" in r)
    return row.split("│", 1)[1]


def test_pfn_life_event_by_event(dataset: Path) -> None:
    done = run(str(dataset), "--pfn", hex(PFN))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert table_lines(out) == [10, 12, 15, 20, 21, 25, 27, 30, 31, 40]
    assert "pfn 0x1051df (1069535)" in out and "dev 8:1 ino 12 index 3" in out
    assert "kernel 6.18.0" in out
    pin = next(r for r in out.splitlines() if re.match(r"\s+12\s", r))
    # 6.18: FOLL_WRITE 1<<0 | FOLL_PIN 1<<19, decoded; the hostile comm printed as text.
    assert "WRITE|PIN" in pin and "<script>alert(1)</script>-4242" in pin
    assert re.search(r"\b1\s+1\s+no\s+no\s+no\s*$", pin)  # pins, w-pins, dirty, wb, cached
    wb = next(r for r in out.splitlines() if re.match(r"\s+21\s", r))
    assert re.search(r"\bwb_start\b.*\b1\s+1\s+no\s+yes\s+no\s*$", wb)
    freed = next(r for r in out.splitlines() if re.match(r"\s+27\s", r))
    assert freed.rstrip().endswith("no") and "free_buffers" in freed
    assert "events 1–10 of 10" in out
    # The lane chart: pinned solid, writeback hatched as uncertain, two dirty runs.
    assert "█" in lane(out, "pinned") and "▒" in lane(out, "writeback")
    assert "█" not in lane(out, "writeback") and not lane(out, "longterm_pinned").strip()
    assert len(re.findall(r"█+", lane(out, "dirty"))) == 2
    events = lane(out, "events")
    assert events.index("P") < events.index("B") < events.index("p") < events.index("X")


def test_decimal_pfn_and_subpage_name_the_same_page(dataset: Path) -> None:
    hexed = run(str(dataset), "--pfn", hex(PFN)).stdout
    dec = run(str(dataset), "--pfn", str(PFN), "--trace", "t1")
    assert dec.returncode == 0, dec.stderr
    assert table_lines(dec.stdout) == table_lines(hexed)


def test_file_offset_resolves_to_its_pfn_with_forks_and_open_spans(dataset: Path) -> None:
    done = run(str(dataset), "--ino", "40", "--index", "0")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "pfn 0x2000 (8192)" in out
    assert table_lines(out) == [44, 45, 50]  # the pinner's fork is on the page's life
    pinned, cached = lane(out, "pinned"), lane(out, "cached")
    assert pinned.lstrip().startswith("◀")  # pinned before the trace began
    assert cached.rstrip().endswith("▶")  # still cached at the trace's end
    assert "K" in lane(out, "events")


def test_file_only_page(dataset: Path) -> None:
    done = run(str(dataset), "--ino", "13", "--index", "0")
    assert done.returncode == 0, done.stderr
    assert table_lines(done.stdout) == [60]
    assert "ino 13 index 0" in done.stdout and "lifetimes file:8388609:13/0" in done.stdout


def test_paging(dataset: Path) -> None:
    done = run(str(dataset), "--pfn", hex(PFN), "--skip", "2", "--limit", "3")
    assert done.returncode == 0, done.stderr
    assert table_lines(done.stdout) == [15, 20, 21]
    assert "events 3–5 of 10 (page through with --skip / --limit)" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pfn", "77"], "no events for pfn 77 in "),
        (["--pfn", "0x1051df", "--trace", "other"], "no events for pfn 0x1051df in "),
        (["--ino", "99", "--index", "0"], "no events for ino 99 index 0 in "),
        (["--pfn", "12zz"], "--pfn: expected a number (decimal or 0x hex), got '12zz'"),
        (["--pfn", "1", "--ino", "2", "--index", "3"], "either --pfn PFN or --ino INO"),
        (["--ino", "2"], "--ino INO together with --index N"),
        (["--pfn", hex(PFN), "--plot", "x.txt"], "x.txt: --plot expects a .svg, .html or .png"),
    ],
)
def test_bad_input_exits_2(dataset: Path, args: list[str], message: str) -> None:
    done = run(str(dataset), *args)
    assert done.returncode == 2
    assert message in " ".join(done.stderr.split()), done.stderr
    assert "Traceback" not in done.stderr


def test_missing_dataset_exits_2(tmp_path: Path) -> None:
    done = run(str(tmp_path / "nope"), "--pfn", "1")
    assert done.returncode == 2
    assert "nope" in done.stderr and "Traceback" not in done.stderr


def test_plot_svg_and_html(dataset: Path, tmp_path: Path) -> None:
    svg = tmp_path / "page.svg"
    done = run(str(dataset), "--pfn", hex(PFN), "--plot", str(svg))
    assert done.returncode == 0, done.stderr
    text = svg.read_text()
    assert text.startswith("<?xml") and text.rstrip().endswith("</svg>")
    states = re.findall(r'<rect class="span[^"]*" data-state="(\w+)"', text)
    assert sorted(states) == sorted(
        ["pinned", "writable_pinned", "dirty", "dirty", "writeback", "cached"]
    )
    assert len(re.findall(r'<path class="event', text)) == 10
    assert "&lt;script&gt;" in text and "<script>" not in text
    page = tmp_path / "page.html"
    assert run(str(dataset), "--pfn", hex(PFN), "--plot", str(page)).returncode == 0
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="timeline"' in page.read_text()


def test_plot_png_through_chromium(dataset: Path, tmp_path: Path) -> None:
    require_chromium()
    png = tmp_path / "page.png"
    done = run(str(dataset), "--ino", "40", "--index", "0", "--plot", str(png))
    assert done.returncode == 0, done.stderr
    width, height = png_size(png)
    assert width == 1140 and height > 300
    assert png.stat().st_size > 10_000


def test_flags_decode_per_kernel_era() -> None:
    df = pl.DataFrame(
        {"gup_flags": [0x40005, 0x80001, 0x10000 | 0x800, 0, None]},
        schema={"gup_flags": pl.UInt32()},
    )
    old = decode_flags(df, foll_flags_for("5.15.0")).to_list()
    assert old == ["WRITE|GET|PIN", "WRITE|0x80000", "LONGTERM|0x800", "", ""]
    new = decode_flags(df, foll_flags_for("6.18.0")).to_list()
    assert new == ["WRITE|0x40004", "WRITE|PIN", "0x10800", "", ""]


REAL = Path(__file__).parent / "golden" / "real"


def test_replays_first_when_derived_is_missing_or_out_of_date(tmp_path: Path) -> None:
    """explain reads derived/: a dataset never replayed, or ingested into since its replay,
    is replayed first (as `report` does) instead of showing no events, or the old replay."""
    from ingest.pipeline import ingest_files
    from replay.stamp import is_fresh

    d = tmp_path / "ds"
    ingest_files([REAL / "real-default.trace"], d)
    done = run(str(d), "--pfn", "1", "--limit", "0")  # bad options: refused before replaying
    assert done.returncode == 2 and "--limit must be ≥ 1" in done.stderr
    assert not (d / "derived").exists()
    done = run(str(d), "--pfn", "1127760")
    assert done.returncode == 0, done.stderr
    assert "derived is not built yet: replaying first" in " ".join(done.stderr.split())
    assert "trace real-default · pfn 0x113550 (1127760)" in done.stdout
    assert is_fresh(d)
    ingest_files([REAL / "real-stack.trace"], d)  # a page only this trace has
    assert not is_fresh(d)
    done = run(str(d), "--pfn", "1628499")
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    assert "not built from the dataset's current traces: replaying first" in said
    assert "trace real-stack · pfn 0x18d953 (1628499)" in done.stdout
    assert is_fresh(d)
    done = run(str(d), "--pfn", "1628499")  # fresh now: nothing said, nothing rebuilt
    assert done.returncode == 0 and done.stderr == ""


def test_a_dataset_it_cannot_write_is_shown_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the replay could not be written (a dataset on a read-only mount, or another
    user's lock file), the old derived tables are shown, with the warning `pinscope sql`
    gives; one never replayed is an error that says why. The lock fails as it does there
    (EROFS): the tests run as root, for whom file modes do not."""
    import contextlib
    import errno

    from rich.console import Console

    from ingest.dataset import lock
    from ingest.errors import InputError
    from ingest.pipeline import ingest_files
    from pinscope import cmd_explain
    from replay.run import replay_dataset
    from replay.stamp import is_stale

    @contextlib.contextmanager
    def read_only_lock(dataset: Path, *, shared: bool = False, timeout: float | None = None):
        if not shared:
            raise OSError(errno.EROFS, "Read-only file system", str(dataset / ".lock"))
        with lock(dataset, shared=True, timeout=timeout):
            yield

    monkeypatch.setattr(cmd_explain, "lock", read_only_lock)
    d = tmp_path / "ds"
    ingest_files([REAL / "real-default.trace"], d)
    err = Console(record=True, width=400)
    never = r"derived is not built yet and .* cannot be written"
    with pytest.raises(InputError, match=never), cmd_explain.derived_up_to_date(d, err):
        pass
    replay_dataset(d)
    ingest_files([REAL / "real-stack.trace"], d)
    before = sorted(p.name for p in (d / "derived" / "page_events").iterdir())
    with cmd_explain.derived_up_to_date(d, err):
        said = " ".join(err.export_text().split())
    assert "warning:" in said and "show the old replay" in said
    assert "cannot be written here: replay it where it can" in said
    assert is_stale(d)
    assert sorted(p.name for p in (d / "derived" / "page_events").iterdir()) == before
