"""Each hazard rule on a hand-written event sequence and on its benign twin.

Events are canonical `events` rows; the real replay core turns them into page_events and
intervals, and the real rules run over those in DuckDB: nothing here is a hand-made page_events.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from analysis.findings import FINDINGS_SCHEMA
from analysis.rules import (
    findings_for_frames,
    kernel_context,
    load_rules,
    parse_rule,
    rule_views,
)
from ingest.errors import PinscopeError
from ingest.schema import LOST_SCHEMA, conform
from replay.core import replay_events

# gup flags of a 6.3+ kernel (ingest.schema.FOLL_FLAGS_FROM_6_3)
W, LT, PIN, GET = 1, 1 << 8, 1 << 19, 1 << 1
KERNEL = "6.8.0-45-generic"
FILE = {"pfn": 100, "dev": (8 << 20) | 1, "ino": 12, "index": 3}


class Trace:
    """A tiny trace: each call appends one event on its own line, 1 µs apart by default."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def __call__(self, kind: str, **kw) -> int:
        line = len(self.rows) + 1
        kw.setdefault("ts_ns", 1_000_000_000 + line * 1_000)
        kw.setdefault("pid", 200)
        kw.setdefault("comm", "ibv_app")
        kw.setdefault("cpu", 0)
        kw.setdefault("pfn", 100 if kind != "fork" else None)
        self.rows.append(
            {"trace_id": "t", "line": line, "kind": kind, "source_event": f"pinscope_{kind}", **kw}
        )
        return line

    def events(self) -> pl.DataFrame:
        return conform(pl.DataFrame(self.rows, infer_schema_length=None), "events")


def analyze(
    t: Trace, *, kernel: str | None = KERNEL, lost: pl.DataFrame | None = None, rules_dir=None
) -> pl.DataFrame:
    events = t.events()
    res = replay_events(events, lost, kernel=kernel)
    return findings_for_frames(
        res.page_events,
        res.intervals,
        events=events,
        lost=lost,
        kernels={"t": kernel},
        rules_dir=rules_dir,
    )


def of(found: pl.DataFrame, rule: str) -> list[dict]:
    return found.filter(pl.col("rule") == rule).to_dicts()


# ---------------------------------------------------------------------------- the catalogue


def test_catalogue_is_complete_and_documented():
    rules = load_rules()
    ids = {r.id for r in rules}
    assert ids == {
        "PIN_SPANS_WRITEBACK",
        "DIRTY_WITHOUT_BUFFERS",
        "PIN_SPANS_TRUNCATE",
        "DIRTY_AFTER_TRUNCATE",
        "UNPIN_WITHOUT_DIRTY",
        "DIRTY_AFTER_UNPIN",
        "FORK_WHILE_PINNED",
        "PAGE_REPLACED_WHILE_PINNED",
        "LONGTERM_PIN_FILE_BACKED",
        "PAGE_FREED_WHILE_PINNED",
        "RELEASE_MISMATCH",
        "PIN_LEAK",
    }
    for r in rules:
        assert r.means and r.predicts and r.cannot_prove and r.references
        assert r.extra.get("grain") and r.extra.get("evidence")
    views = rule_views()
    assert "pin_spans_writeback" in views and "trace_bounds" in views


def test_empty_trace_gives_typed_empty_findings():
    t = Trace()
    t("alloc")
    found = analyze(t)
    assert found.is_empty()
    assert dict(found.schema) == FINDINGS_SCHEMA


# ---------------------------------------------------------------------------- each rule


def writeback_under_pin(writable: bool) -> Trace:
    t = Trace()
    t("cache_add", **FILE)
    t("pin", refs=1, gup_flags=PIN | (W if writable else 0), caller="ib_umem_get")
    t("mkclean")
    t("wb_start")
    t("wb_end")
    t("dirty")
    t("unpin", refs=1)
    return t


def test_pin_spans_writeback():
    found = analyze(writeback_under_pin(writable=True))
    (f,) = of(found, "PIN_SPANS_WRITEBACK")
    assert f["evidence_lines"] == [2, 3, 4, 5, 7]
    assert (f["pfn"], f["ino"], f["index"], f["pid"], f["caller"]) == (
        100,
        12,
        3,
        200,
        "ib_umem_get",
    )
    assert f["severity"] == "critical" and not f["uncertain"]
    assert "reclaim skips" in f["kernel_context"]
    assert found["rule"].to_list() == ["PIN_SPANS_WRITEBACK"]  # dirtied before unpin: benign


def test_pin_spans_writeback_benign_read_only_pin():
    assert analyze(writeback_under_pin(writable=False)).is_empty()


def test_pin_spans_writeback_benign_writeback_after_unpin():
    t = Trace()
    t("cache_add", **FILE)
    t("pin", refs=1, gup_flags=PIN | W)
    t("dirty")
    t("unpin", refs=1)
    t("mkclean")
    t("wb_start")
    t("wb_end")
    assert analyze(t).is_empty()


def buffers_freed_then_dirty(mkwrite_between: bool) -> Trace:
    t = Trace()
    t("cache_add", **FILE)
    t("mkwrite")
    t("pin", refs=1, gup_flags=PIN | W, caller="ib_umem_get")
    t("wb_start")
    t("wb_end")
    t("free_buffers")
    if mkwrite_between:
        t("mkwrite")
    t("dirty", caller="set_page_dirty_lock")
    t("unpin", refs=1)
    return t


def test_dirty_without_buffers():
    found = analyze(buffers_freed_then_dirty(False), kernel="5.15.0")
    (f,) = of(found, "DIRTY_WITHOUT_BUFFERS")
    assert f["evidence_lines"] == [3, 6, 7]
    assert f["caller"] == "ib_umem_get"
    assert "BUG_ON" in f["kernel_context"]
    (f,) = of(analyze(buffers_freed_then_dirty(False), kernel="6.1.0"), "DIRTY_WITHOUT_BUFFERS")
    assert "silent data loss" in f["kernel_context"]


def test_dirty_without_buffers_benign_mkwrite_reattached():
    assert of(analyze(buffers_freed_then_dirty(True)), "DIRTY_WITHOUT_BUFFERS") == []


def truncate_sequence(truncate_while_pinned: bool) -> Trace:
    t = Trace()
    t("cache_add", **FILE)
    t("pin", refs=1, gup_flags=PIN | W, caller="iov_iter_extract_pages")
    if not truncate_while_pinned:
        t("dirty")
        t("unpin", refs=1)
    t("truncate")
    t("cache_del", **FILE)
    if truncate_while_pinned:
        t("unpin", refs=1)
    return t


def test_pin_spans_truncate_one_finding_for_nested_spans():
    found = analyze(truncate_sequence(True))
    (f,) = of(found, "PIN_SPANS_TRUNCATE")  # pinned and writable_pinned: reported once
    assert f["evidence_lines"] == [2, 3, 4, 5]
    assert f["caller"] == "iov_iter_extract_pages"


def test_pin_spans_truncate_benign():
    assert analyze(truncate_sequence(False)).is_empty()


def test_dirty_after_truncate():
    t = Trace()
    t("cache_add", **FILE)
    t("pin", refs=1, gup_flags=PIN | W)
    t("cache_del", **FILE)
    t("dirty")
    t("unpin", refs=1)
    found = analyze(t)
    (f,) = of(found, "DIRTY_AFTER_TRUNCATE")
    assert f["evidence_lines"] == [3, 4]
    assert set(found["rule"]) == {"DIRTY_AFTER_TRUNCATE", "PIN_SPANS_TRUNCATE"}


def test_dirty_after_truncate_benign_dirty_before():
    t = Trace()
    t("cache_add", **FILE)
    t("pin", refs=1, gup_flags=PIN | W)
    t("dirty")
    t("unpin", refs=1)
    t("cache_del", **FILE)
    assert analyze(t).is_empty()


def test_unpin_without_dirty_and_twin():
    t = Trace()
    t("cache_add", **FILE)
    t("pin", refs=1, gup_flags=PIN | W, caller="ib_umem_get")
    t("unpin", refs=1)
    (f,) = of(analyze(t), "UNPIN_WITHOUT_DIRTY")
    assert f["evidence_lines"] == [2, 3] and f["confidence"] == "heuristic"
    # the same on an anonymous page is not a file page
    t = Trace()
    t("alloc")
    t("pin", refs=1, gup_flags=PIN | W)
    t("unpin", refs=1)
    assert analyze(t).is_empty()


def test_dirty_after_unpin_and_twins():
    t = Trace()
    t("cache_add", **FILE)
    t("pin", refs=1, gup_flags=PIN)
    t("unpin", refs=1)
    t("dirty")
    (f,) = of(analyze(t), "DIRTY_AFTER_UNPIN")
    assert f["evidence_lines"] == [3, 4] and f["pid"] == 200
    # dirtied by another task: not this task's late dirty
    t = Trace()
    t("cache_add", **FILE)
    t("pin", refs=1, gup_flags=PIN)
    t("unpin", refs=1)
    t("dirty", pid=999, comm="kworker/0:1")
    assert of(analyze(t), "DIRTY_AFTER_UNPIN") == []


def fork_sequence(replace: bool, tgid: int = 300) -> Trace:
    t = Trace()
    t("alloc", pfn=500)
    t("pin", pfn=500, refs=1, gup_flags=PIN | W, pid=301, tgid=tgid, caller="vfio_pin_pages")
    t("fork", pid=300, tgid=tgid, comm="qemu")
    if replace:
        t("replace", pfn=500, new_pfn=501, pid=300, tgid=tgid, comm="qemu")
    t("unpin", pfn=500, refs=1, pid=301, tgid=tgid)
    return t


def test_fork_while_pinned_not_double_reported():
    found = analyze(fork_sequence(replace=True))
    (f,) = of(found, "FORK_WHILE_PINNED")
    assert f["evidence_lines"] == [2, 3, 4]
    assert f["pid"] == 301 and f["caller"] == "vfio_pin_pages"
    assert of(found, "PAGE_REPLACED_WHILE_PINNED") == []


def test_fork_while_pinned_benign_without_replace():
    assert analyze(fork_sequence(replace=False)).is_empty()


def test_page_replaced_while_pinned_and_twin():
    t = Trace()
    t("alloc", pfn=500)
    t("pin", pfn=500, refs=1, gup_flags=PIN)
    t("replace", pfn=500, new_pfn=777, pid=55, comm="kcompactd0")
    t("unpin", pfn=500, refs=1)
    (f,) = of(analyze(t), "PAGE_REPLACED_WHILE_PINNED")
    assert f["evidence_lines"] == [2, 3] and f["pid"] == 55
    assert "0x309" in f["message"]  # new pfn 777
    t = Trace()
    t("alloc", pfn=500)
    t("pin", pfn=500, refs=1, gup_flags=PIN)
    t("unpin", pfn=500, refs=1)
    t("replace", pfn=500, new_pfn=777, pid=55, comm="kcompactd0")
    assert analyze(t).is_empty()


def test_longterm_pin_file_backed_and_anon_twin():
    t = Trace()
    t("cache_add", **FILE)
    t("pin", refs=1, gup_flags=PIN | LT, caller="ib_umem_get")
    t("unpin", refs=1)
    found = analyze(t)
    (f,) = of(found, "LONGTERM_PIN_FILE_BACKED")
    assert f["evidence_lines"] == [2, 3]
    assert "6.5+" in f["kernel_context"]
    assert (
        "predates 6.5"
        in of(analyze(t, kernel="6.4.0"), "LONGTERM_PIN_FILE_BACKED")[0]["kernel_context"]
    )
    t = Trace()
    t("alloc")
    t("pin", refs=1, gup_flags=PIN | LT)
    t("unpin", refs=1)
    assert analyze(t).is_empty()


def test_page_freed_while_pinned_and_twin():
    t = Trace()
    t("alloc")
    t("pin", refs=1, gup_flags=PIN)
    t("free", pid=1, comm="kswapd0")
    (f,) = of(analyze(t), "PAGE_FREED_WHILE_PINNED")
    assert f["evidence_lines"] == [2, 3] and f["pid"] == 1
    t = Trace()
    t("alloc")
    t("pin", refs=1, gup_flags=PIN)
    t("unpin", refs=1)
    t("free", pid=1, comm="kswapd0")
    assert analyze(t).is_empty()


def test_release_mismatch_and_twin():
    t = Trace()
    t("alloc")
    t("get", refs=1, gup_flags=GET, caller="get_user_pages_fast")
    t("unpin", refs=1)
    (f,) = of(analyze(t), "RELEASE_MISMATCH")
    assert f["evidence_lines"] == [2, 3]
    assert "FOLL_GET" in f["message"]
    t = Trace()
    t("alloc")
    t("get", refs=1, gup_flags=GET)
    t("put", refs=1)
    assert analyze(t).is_empty()


def test_release_before_known_history_is_not_a_mismatch():
    t = Trace()
    t("unpin", refs=1)  # pinned before the trace began: inferred, not a mismatch
    assert of(analyze(t), "RELEASE_MISMATCH") == []


def leak_sequence(holder_quiet: bool) -> Trace:
    t = Trace()
    t("alloc", ts_ns=1_000_000_000)
    t("pin", refs=1, gup_flags=PIN, pid=400, comm="leaky", ts_ns=1_100_000_000)
    t(
        "alloc",
        pfn=900,
        pid=400,
        comm="leaky",
        ts_ns=1_200_000_000 if holder_quiet else 4_800_000_000,
    )
    t("alloc", pfn=901, pid=7, comm="other", ts_ns=5_000_000_000)
    return t


def test_pin_leak_and_twin():
    (f,) = of(analyze(leak_sequence(True)), "PIN_LEAK")
    assert f["evidence_lines"] == [2, 3] and f["end_ts_ns"] is None and f["pid"] == 400
    assert of(analyze(leak_sequence(False)), "PIN_LEAK") == []


# ---------------------------------------------------------------------------- what the runner adds


def lost_gap(start: int, end: int | None) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "trace_id": "t",
                "line": 99,
                "cpu": 0,
                "lost_events": 10,
                "gap_start_ts_ns": start,
                "gap_end_ts_ns": end,
                "text": "CPU:0 [LOST 10 EVENTS]",
            }
        ],
        schema=LOST_SCHEMA,
    )


def test_lost_gap_inside_a_finding_makes_it_uncertain():
    t = writeback_under_pin(writable=True)
    inside = analyze(t, lost=lost_gap(1_000_003_000, 1_000_004_000))
    assert of(inside, "PIN_SPANS_WRITEBACK")[0]["uncertain"] is True
    after = analyze(t, lost=lost_gap(1_000_010_000, None))
    assert of(after, "PIN_SPANS_WRITEBACK")[0]["uncertain"] is False


def test_unknown_kernel_has_no_context():
    found = analyze(writeback_under_pin(writable=True), kernel=None)
    assert found["kernel_context"].to_list() == [None]


def test_kernel_context_versions():
    assert "predates 5.9" in kernel_context("FORK_WHILE_PINNED", "5.4.0")
    assert "since 5.9" in kernel_context("FORK_WHILE_PINNED", "6.1.0")
    assert kernel_context("PIN_LEAK", "garbage") is None


# ---------------------------------------------------------------------------- user rules


HEADER = """/*
id: {id}
severity: {severity}
confidence: heuristic
means: every dirty event
predicts: nothing
cannot_prove: anything
references: none
*/
"""

GOOD_BODY = """SELECT 'DIRTY_SEEN' AS rule, 'low' AS severity, 'heuristic' AS confidence, trace_id,
    pfn, dev, ino, "index", pid, comm, caller, ts_ns AS start_ts_ns, ts_ns AS end_ts_ns,
    [line] AS evidence_lines, 'dirty' AS message
FROM page_events WHERE kind = 'dirty'
"""


def write_rule(d: Path, name: str, text: str) -> Path:
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text(text)
    return p


def test_user_rule_runs_alongside_the_catalogue(tmp_path):
    write_rule(
        tmp_path / "r", "dirty_seen.sql", HEADER.format(id="DIRTY_SEEN", severity="low") + GOOD_BODY
    )
    found = analyze(writeback_under_pin(writable=True), rules_dir=tmp_path / "r")
    (f,) = of(found, "DIRTY_SEEN")
    assert f["evidence_lines"] == [6] and f["kernel_context"] is None
    assert "dirty_seen" in rule_views(tmp_path / "r")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT 1", "expected a header"),
        (HEADER.format(id="X", severity="urgent") + GOOD_BODY, "severity 'urgent'"),
        (HEADER.format(id="bad id", severity="low") + GOOD_BODY, "id 'bad id'"),
        ("/* id: X\nseverity: low\n*/ SELECT 1", "header lacks"),
        ("/* id: X\n", "never closed"),
        (HEADER.format(id="X", severity="low"), "no SQL"),
        (HEADER.format(id="X", severity="low") + "DELETE FROM events", "one SELECT"),
        (HEADER.format(id="X", severity="low") + "SELECT 1; SELECT 2", "one SELECT"),
        (HEADER.format(id="X", severity="low") + "/*colour: red*/ SELECTT", "parse"),
    ],
)
def test_malformed_user_rule_names_the_file(tmp_path, text, expected):
    p = write_rule(tmp_path, "bad.sql", text)
    with pytest.raises(PinscopeError) as exc:
        parse_rule(p)
    assert str(p) in str(exc.value) and expected in str(exc.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("SELECT 1 AS rule FROM page_events", "returned columns"),
        (GOOD_BODY.replace("FROM page_events", "FROM no_such_table"), "failed in DuckDB"),
        (GOOD_BODY.replace("pid, comm", "'x' AS pid, comm"), "wrong type"),
        (GOOD_BODY.replace("'DIRTY_SEEN' AS rule", "'OTHER' AS rule"), "returned rule='OTHER'"),
    ],
)
def test_user_rule_with_bad_result_names_the_file(tmp_path, body, expected):
    p = write_rule(tmp_path, "r.sql", HEADER.format(id="DIRTY_SEEN", severity="low") + body)
    with pytest.raises(PinscopeError) as exc:
        analyze(writeback_under_pin(writable=True), rules_dir=tmp_path)
    assert str(p) in str(exc.value) and expected in str(exc.value)


def test_user_rule_cannot_shadow_a_builtin(tmp_path):
    write_rule(tmp_path, "x.sql", HEADER.format(id="PIN_LEAK", severity="low") + GOOD_BODY)
    with pytest.raises(PinscopeError, match="already defined"):
        load_rules(tmp_path)


def test_rules_dir_must_exist(tmp_path):
    with pytest.raises(PinscopeError, match="directory"):
        load_rules(tmp_path / "nope")


_TS = st.one_of(st.none(), st.integers(0, 12))  # small: bounds often meet


@settings(max_examples=200, deadline=None)
@example(findings=[("a", 0, 5, 0)], gaps=[("a", 5, 9)], spans=[])  # gap starts as it ends
@example(findings=[("a", 5, 9, 0)], gaps=[("a", 0, 5)], spans=[])  # gap ends as it starts
@example(findings=[("a", 4, 9, 0)], gaps=[("a", 0, 20), ("a", 1, 2)], spans=[])  # nested gaps
@given(
    findings=st.lists(st.tuples(st.sampled_from("ab"), _TS, _TS, st.integers(0, 3)), max_size=25),
    gaps=st.lists(st.tuples(st.sampled_from("ab"), _TS, _TS), max_size=8),
    spans=st.lists(
        st.tuples(st.sampled_from("ab"), st.integers(0, 3), _TS, st.booleans(), st.booleans()),
        max_size=8,
    ),
)
def test_uncertain_is_any_overlapping_gap_or_an_uncertain_pin_span(findings, gaps, spans):
    """The ASOF form of the uncertain flag against its definition, row by row: a lost gap
    (open-ended where a bound is null) overlaps the finding's span (open-ended likewise), or an
    uncertain pin span of the same page starts where the finding starts."""
    import duckdb

    from analysis.rules import _UNCERTAIN_SQL, RULE_COLUMNS

    lo, hi = -(2**63) + 1, 2**63 - 1
    f = pl.DataFrame(
        {
            "trace_id": [t for t, *_ in findings],
            "start_ts_ns": [s for _, s, _, _ in findings],
            "end_ts_ns": [e for _, _, e, _ in findings],
            "pfn": [p for *_, p in findings],
            "rule": [f"R{i:03d}" for i in range(len(findings))],  # a total order for ties
        },
        schema={"trace_id": pl.String, "start_ts_ns": pl.Int64, "end_ts_ns": pl.Int64,
                "pfn": pl.UInt64, "rule": pl.String},
    ).select([
        (pl.col(c) if c in ("trace_id", "start_ts_ns", "end_ts_ns", "pfn", "rule")
         else pl.lit(None)).cast(t).alias(c) for c, t in RULE_COLUMNS.items()
    ])  # fmt: skip
    lost = pl.DataFrame(
        gaps,
        schema={"trace_id": pl.String, "gap_start_ts_ns": pl.Int64, "gap_end_ts_ns": pl.Int64},
        orient="row",
    )
    iv = pl.DataFrame(
        spans,
        schema={"trace_id": pl.String, "pfn": pl.Int64, "start_ts_ns": pl.Int64,
                "uncertain": pl.Boolean, "pin": pl.Boolean},
        orient="row",
    ).select(
        "trace_id", pl.col("pfn").cast(pl.UInt64), "start_ts_ns", "uncertain",
        pl.lit(None, pl.UInt64).alias("ino"),
        pl.when("pin").then(pl.lit("pinned")).otherwise(pl.lit("writeback")).alias("state"),
    )  # fmt: skip
    con = duckdb.connect(":memory:")
    for name, df in (("_findings", f), ("lost", lost), ("intervals", iv)):
        con.register(name, df.to_arrow())
    got = con.sql(_UNCERTAIN_SQL).pl().sort("rule")
    want = []
    for t, s, e, p in findings:
        s0, e0 = lo if s is None else s, hi if e is None else e
        gap = any(
            gt == t and (lo if g0 is None else g0) < e0 and (hi if g1 is None else g1) > s0
            for gt, g0, g1 in gaps
        )
        pin = any(
            it == t and ip == p and ist is not None and ist == s and unc and is_pin
            for it, ip, ist, unc, is_pin in spans
        )
        want.append(gap or pin)
    assert got.height == len(findings)  # no finding lost or repeated by the joins
    assert got["uncertain"].to_list() == want
