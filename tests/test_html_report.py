"""The HTML report, opened in Debian's headless chromium: findings, timelines, escaping, offline."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest

from analysis.findings import FINDINGS_SCHEMA
from analysis.plot import find_chromium, run_chromium, screenshot
from analysis.report_html import render_html
from replay import stamp as replay_stamp
from replay.schema import INTERVALS_SCHEMA, PAGE_EVENTS_SCHEMA

HOSTILE_COMM = "<script>alert(1)</script>"
HOSTILE_CALLER = '"><img src=x onerror=alert(2)>'
PFN = 0x1051DF
DEV = (8 << 20) | 1
WRITE_PIN = 0x1 | (1 << 19)  # FOLL_WRITE | FOLL_PIN on 6.3+
T0 = 100_000_000_000  # 100.000000 s


def ts(us: int) -> int:
    return T0 + us * 1_000


# (line, µs, pid, comm, kind, pfn, ino, index, refs, flags, caller)
EVENTS = [
    (10, 100, 300, "fio", "cache_add", PFN, 12, 3, 0, 0, None),
    (12, 200, 4242, HOSTILE_COMM, "pin", PFN, None, None, 1, WRITE_PIN, HOSTILE_CALLER),
    (15, 300, 4242, HOSTILE_COMM, "dirty", PFN, 12, 3, 0, 0, None),
    (20, 1000, 77, "kworker/u8:2", "mkclean", PFN, None, None, 0, 0, "folio_clear_dirty_for_io"),
    (21, 1010, 77, "kworker/u8:2", "wb_start", PFN, None, None, 0, 0, None),
    (25, 2000, 0, "swapper/0", "wb_end", PFN, None, None, 0, 0, None),
    (27, 3000, 55, "kswapd0", "free_buffers", PFN, None, None, 0, 0, "filemap_release_folio"),
    (30, 4000, 4242, HOSTILE_COMM, "dirty", PFN, None, None, 0, 0, "ib_umem_release"),
    (31, 4100, 4242, HOSTILE_COMM, "unpin", PFN, None, None, 1, 0, "ib_umem_release"),
    (40, 5000, 301, "truncate", "cache_del", PFN, 12, 3, 0, 0, None),
    (44, 5500, 900, "qemu", "cache_add", 0x2000, 40, 0, 0, 0, None),
    (45, 5600, 900, "qemu", "fork", None, None, None, 0, 0, None),
    (50, 6000, 900, "qemu", "unpin", 0x2000, None, None, 1, 0, "vfio_unpin_pages"),
    (60, 7000, 12, "writer", "dirty", None, 13, 0, 0, 0, None),
]

# (pfn, state, start line, end line, open_at_start, open_at_end, uncertain, holder)
HOLDER = {"pid": 4242, "comm": HOSTILE_COMM, "caller": HOSTILE_CALLER}
INTERVALS = [
    (PFN, "pinned", 12, 31, False, False, False, [HOLDER]),
    (PFN, "writable_pinned", 12, 31, False, False, False, [HOLDER]),
    (PFN, "dirty", 15, 20, False, False, False, None),
    (PFN, "dirty", 30, 40, False, False, False, None),
    (PFN, "writeback", 21, 25, False, False, True, None),
    (PFN, "cached", 10, 40, False, False, False, None),
    (0x2000, "pinned", None, 50, True, False, False, []),
    (0x2000, "cached", 44, None, False, True, False, None),
]


def page_events_frame() -> pl.DataFrame:
    cols = list(zip(*EVENTS, strict=True))
    df = pl.DataFrame(
        {
            "trace_id": "t1",
            "line": cols[0],
            "ts_ns": [ts(u) for u in cols[1]],
            "cpu": 1,
            "pid": cols[2],
            "tgid": cols[2],
            "comm": cols[3],
            "kind": cols[4],
            "source_event": [f"pinscope_{k}" for k in cols[4]],
            "pfn": cols[5],
            "event_pfn": cols[5],
            "folio_order": 0,
            "dev": [DEV if i is not None else None for i in cols[6]],
            "ino": cols[6],
            "index": cols[7],
            "refs": cols[8],
            "gup_flags": cols[9],
            "caller": cols[10],
            "generation": 0,
        },
        strict=False,
    )
    page = pl.col("pfn").cast(pl.String)
    sign = pl.when(pl.col("kind") == "pin").then(1).when(pl.col("kind") == "unpin").then(-1)
    df = df.with_columns(
        page_id=pl.when(pl.col("pfn").is_not_null())
        .then(pl.format("pfn:{}/0", page))
        .when(pl.col("ino").is_not_null())
        .then(pl.format("file:{}:{}/{}", pl.col("dev"), pl.col("ino"), pl.col("index"))),
        seq=pl.int_range(pl.len(), dtype=pl.Int64),
        _d=(sign.otherwise(0) * pl.col("refs")).cast(pl.Int32),
    )
    # pfn 0x2000 was pinned before the trace began: its unpin leaves 0, starting from 1.
    init = pl.when(pl.col("pfn") == 0x2000).then(1).otherwise(0)
    df = df.with_columns(
        pins_after=(pl.col("_d").cum_sum().over("page_id") + init).cast(pl.Int32),
        dirty_after=pl.col("kind").is_in(["dirty"]),
        writeback_after=pl.col("kind") == "wb_start",
        cached_after=pl.col("kind") == "cache_add",
    ).with_columns(
        pins_before=(pl.col("pins_after") - pl.col("_d")).cast(pl.Int32),
        writable_pins_after=pl.col("pins_after"),
        writable_pins_before=(pl.col("pins_after") - pl.col("_d")).cast(pl.Int32),
        inferred_initial=pl.col("pfn") == 0x2000,
        buffers_after=pl.when(pl.col("kind") == "free_buffers").then(pl.lit("no")),
    )
    return df.select(
        [
            (pl.col(c) if c in df.columns else pl.lit(None)).cast(t, strict=False).alias(c)
            for c, t in PAGE_EVENTS_SCHEMA.items()
        ]
    )


def intervals_frame(page_events: pl.DataFrame) -> pl.DataFrame:
    at = dict(zip(page_events["line"].to_list(), page_events["ts_ns"].to_list(), strict=True))
    rows = [
        {
            "trace_id": "t1",
            "page_id": f"pfn:{pfn}/0",
            "pfn": pfn,
            "generation": 0,
            "dev": DEV,
            "ino": 12 if pfn == PFN else 40,
            "index": 3 if pfn == PFN else 0,
            "state": state,
            "start_ts_ns": T0 if s is None else at[s],
            "end_ts_ns": None if e is None else at[e],
            "start_line": s,
            "end_line": e,
            "open_at_start": oas,
            "open_at_end": oae,
            "uncertain": unc,
            "holders": holders,
        }
        for pfn, state, s, e, oas, oae, unc, holders in INTERVALS
    ]
    return pl.DataFrame(rows, schema=INTERVALS_SCHEMA)


def findings_frame() -> pl.DataFrame:
    rows = [
        {
            "rule": "PIN_SPANS_WRITEBACK",
            "severity": "critical",
            "confidence": "certain",
            "trace_id": "t1",
            "pfn": PFN,
            "dev": DEV,
            "ino": 12,
            "index": 3,
            "pid": 4242,
            "comm": HOSTILE_COMM,
            "caller": HOSTILE_CALLER,
            "start_ts_ns": ts(200),
            "end_ts_ns": ts(4100),
            "evidence_lines": [12, 20, 21, 25, 31],
            "message": "writable pin held across mkclean and writeback <b>bold?</b>",
            "uncertain": True,
            "kernel_context": "ext4 stops BUG-ing on buffer-less dirty pages in 5.18",
        },
        {
            "rule": "DIRTY_WITHOUT_BUFFERS",
            "severity": "critical",
            "confidence": "certain",
            "trace_id": "t1",
            "pfn": PFN,
            "dev": DEV,
            "ino": 12,
            "index": 3,
            "pid": 4242,
            "comm": HOSTILE_COMM,
            "caller": HOSTILE_CALLER,
            "start_ts_ns": ts(3000),
            "end_ts_ns": ts(4000),
            "evidence_lines": [12, 27, 30],
            "message": "dirty without buffers",
            "uncertain": False,
            "kernel_context": None,
        },
        {
            "rule": "PIN_LEAK",
            "severity": "medium",
            "confidence": "heuristic",
            "trace_id": "t1",
            "pfn": 0x2000,
            "dev": None,
            "ino": None,
            "index": None,
            "pid": 900,
            "comm": "qemu",
            "caller": "vfio_unpin_pages",
            "start_ts_ns": T0,
            "end_ts_ns": ts(6000),
            "evidence_lines": [45, 50],
            "message": "pinned before the trace",
            "uncertain": False,
            "kernel_context": None,
        },
        {
            "rule": "DIRTY_AFTER_TRUNCATE",
            "severity": "high",
            "confidence": "certain",
            "trace_id": "t1",
            "pfn": None,
            "dev": None,
            "ino": 13,
            "index": 0,
            "pid": 12,
            "comm": "writer",
            "caller": None,
            "start_ts_ns": ts(7000),
            "end_ts_ns": None,
            "evidence_lines": [60],
            "message": "<img src=x onerror=alert(3)>",
            "uncertain": False,
            "kernel_context": None,
        },
    ]
    return pl.DataFrame(rows, schema=FINDINGS_SCHEMA)


TRACES = [
    {
        "trace_id": "t1",
        "source": "/cases/<evil>.trace",
        "format": "ftrace",
        "kernel": "6.18.0",
        "first_ts_ns": T0,
        "last_ts_ns": ts(7000),
        "lines": {"total": 70, "events": 14, "other": 0, "comments": 56, "rejected": 0},
    }
]


def write_dataset(root: Path) -> Path:
    """A dataset laid out as DESIGN.md says, with hand-made derived tables, stamped as built
    from its manifest's traces (or `pinscope explain` would replay them away)."""
    ds = root / "case1"
    pe = page_events_frame()
    iv = intervals_frame(pe)
    for name, df in (("page_events", pe), ("intervals", iv)):
        part = ds / "derived" / name / "trace_id=t1"
        part.mkdir(parents=True)
        df.write_parquet(part / "part-0.parquet")
    (ds / "manifest.json").write_text(json.dumps({"format_version": 1, "traces": TRACES}))
    stamp = ds / "derived" / replay_stamp.STAMP
    stamp.write_text(json.dumps({"fingerprint": replay_stamp.fingerprint(TRACES)}))
    return ds


def require_chromium() -> str:
    exe = find_chromium()
    if exe is None:
        pytest.fail(
            "Debian's chromium is required for the HTML report tests (apt-get install chromium;"
            " .ci/run installs it): not found on PATH nor at /usr/bin/chromium"
        )
    return exe


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    require_chromium()
    root = tmp_path_factory.mktemp("html")
    ds = write_dataset(root)
    out = root / "out" / "report.html"
    render_html(ds, findings_frame(), TRACES, out)
    dom = run_chromium(out, "--dump-dom", "--virtual-time-budget=2000")
    return out, out.read_text(encoding="utf-8"), dom


def test_one_timeline_per_finding_with_its_bars(report: tuple[Path, str, str]) -> None:
    _, _, dom = report
    findings = re.findall(r'<details class="finding[^"]*"[^>]*id="finding-(\d+)"', dom)
    assert findings == ["1", "2", "3", "4"]
    svgs = re.findall(r'<svg [^>]*class="timeline" id="tl-f(\d+)"', dom)
    assert svgs == ["1", "2", "3", "4"]
    # Finding 1 (the critical writeback one, sorted first): its own spans and evidence markers.
    one = dom.split('id="tl-f1"', 1)[1].split("</svg>", 1)[0]
    states = re.findall(r'<rect class="span[^"]*" data-state="(\w+)"', one)
    assert sorted(set(states)) == sorted(
        ["pinned", "writable_pinned", "writeback", "dirty", "cached"]
    )
    assert states.count("dirty") == 2
    assert re.search(r'class="span uncertain" data-state="writeback"', one)
    assert 'fill="url(#hatch-f1)"' in one
    lines = re.findall(r'<path class="event evidence" data-kind="(\w+)" data-line="(\d+)"', one)
    assert lines == [
        ("pin", "12"),
        ("mkclean", "20"),
        ("wb_start", "21"),
        ("wb_end", "25"),
        ("unpin", "31"),
    ]
    kinds = re.findall(r'<path class="event[^"]*" data-kind="(\w+)"', one)
    assert {"dirty", "free_buffers", "cache_add"} <= set(kinds)


def test_open_ended_spans_and_forks(report: tuple[Path, str, str]) -> None:
    _, _, dom = report
    leak = dom.split('id="tl-f4"', 1)[1].split("</svg>", 1)[0]
    assert 'class="span open-start" data-state="pinned"' in leak
    assert 'class="open-start"' in leak  # the chevron
    assert 'class="span open-end" data-state="cached"' in leak
    assert 'data-kind="fork" data-line="45"' in leak  # the pinner's fork on the page's lane
    file_only = dom.split('id="tl-f3"', 1)[1].split("</svg>", 1)[0]
    assert 'data-kind="dirty" data-line="60"' in file_only


class Tags(HTMLParser):
    """Every element and attribute of a document, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_hostile_text_is_escaped(report: tuple[Path, str, str]) -> None:
    _, raw, dom = report
    assert HOSTILE_COMM not in raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    parsed = Tags()
    parsed.feed(dom)
    names = [t for t, _ in parsed.tags]
    assert "img" not in names
    assert "writeback &lt;b&gt;bold?&lt;/b&gt;</p>" in dom
    assert names.count("script") == 1  # the report's own filter code, nothing from the trace
    assert not [a for _, attrs in parsed.tags for a in attrs if a.startswith("on")]
    # The hostile strings survive as text the reader can see.
    text = "".join(parsed.text)
    assert HOSTILE_COMM in text and "<img src=x onerror=alert(3)>" in text


def test_offline_single_file(report: tuple[Path, str, str]) -> None:
    out, raw, _ = report
    assert list(out.parent.iterdir()) == [out]
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', raw)
    assert all(not r.startswith(("http:", "https:", "//")) for r in refs), refs
    assert "@import" not in raw and "url(http" not in raw


def test_summary_traces_fields_and_evidence(report: tuple[Path, str, str]) -> None:
    _, _, dom = report
    summary = dom.split('<table class="summary">', 1)[1].split("</table>", 1)[0]
    assert re.search(
        r"PIN_SPANS_WRITEBACK</code></td><td>certain</td><td class=\"num\">1<", summary
    )
    assert summary.index("critical") < summary.index("high") < summary.index("medium")
    info = dom.split('<table class="trace-info">', 1)[1].split("</table>", 1)[0]
    assert "6.18.0" in info and "lines.total" in info and "&lt;evil&gt;" in info
    first = dom.split('id="finding-1"', 1)[1].split('id="finding-2"', 1)[0]
    assert "0x1051df" in first and "100.000200" in first and "100.004100" in first
    assert 'class="uncertain"' in first
    assert "12, 20, 21, 25, 31" in first


def test_screenshot_is_readable(report: tuple[Path, str, str], tmp_path: Path) -> None:
    out, _, _ = report
    png = tmp_path / "report.png"
    screenshot(out, png, 1400, 2000)
    assert png_size(png) == (1400, 2000)
    assert png.stat().st_size > 30_000  # a blank page compresses to a few KB


def test_real_pipeline_report(tmp_path: Path) -> None:
    """Simulated ftrace text → ingest → replay → rules → HTML, checked in chromium."""
    require_chromium()
    from analysis.rules import analyze_dataset
    from analysis.timeline import manifest_traces
    from ingest.pipeline import ingest_files
    from replay.run import replay_dataset

    pinscope = Path(sys.executable).with_name("pinscope")
    trace = tmp_path / "t.trace"
    done = subprocess.run(
        [str(pinscope), "simulate", "rdma-writeback", "--seed", "1", "-o", str(trace)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    truth = json.loads(trace.with_name("t.trace.truth.json").read_text())["expected"]
    ds = tmp_path / "ds"
    ingest_files([trace], ds, format="ftrace")
    replay_dataset(ds)
    findings = analyze_dataset(ds)
    assert findings.select("rule", "pfn").to_dicts() == truth
    out = tmp_path / "r.html"
    render_html(ds, findings, manifest_traces(ds), out)
    dom = run_chromium(out, "--dump-dom")
    svg = dom.split('id="tl-f1"', 1)[1].split("</svg>", 1)[0]
    states = set(re.findall(r'<rect class="span[^"]*" data-state="(\w+)"', svg))
    assert {"pinned", "writable_pinned", "writeback"} <= states
    evidence = re.findall(r'class="event evidence" data-kind="\w+" data-line="(\d+)"', svg)
    assert [int(n) for n in evidence] == findings["evidence_lines"][0].to_list()


def test_the_first_findings_of_each_rule_are_shown_the_rest_counted(tmp_path: Path) -> None:
    """A page of every finding of a big trace is hundreds of MB: like the text report, the
    HTML one shows the first `per_rule` of each rule and says how many more there are."""
    ds = write_dataset(tmp_path)
    findings = pl.concat([findings_frame()] * 3)  # 4 rules, 3 findings each
    out = tmp_path / "capped.html"
    render_html(ds, findings, TRACES, out, per_rule=2)
    page = out.read_text(encoding="utf-8")
    shown = re.findall(r'<details class="finding[^"]*"[^>]*data-rule="(\w+)"', page)
    assert len(shown) == 8 and all(shown.count(r) == 2 for r in set(findings["rule"]))
    assert "12 findings in 1 trace(s)" in page
    assert re.search(r'id="capped">4 more finding\(s\) not shown: the first 2 of each rule', page)
    render_html(ds, findings, TRACES, out, per_rule=None)
    page = out.read_text(encoding="utf-8")
    assert len(re.findall(r'<details class="finding', page)) == 12 and 'id="capped"' not in page
