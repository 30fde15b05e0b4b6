"""Event mapping: built-in tracepoints, the shipped probes, user TOML, rejects and other events."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import schema
from ingest.errors import InputError
from ingest.fields import Key, _slow, extract_fields, parse_int, parse_uint, radix_of
from ingest.framing import conform_framed
from ingest.mapping import load_mapping, map_events

GOLDEN = Path(__file__).parent / "golden"
VMEMMAP = 0xFFFFEA0000000000
MAJOR_SHIFT = schema.MINORBITS


def framed(rows: list[tuple[str, str]], pid: int = 100) -> pl.DataFrame:
    n = len(rows)
    return conform_framed(
        pl.DataFrame(
            {
                "line": list(range(1, n + 1)),
                "cls": ["event"] * n,
                "ts_ns": [1_000 * (i + 1) for i in range(n)],
                "cpu": [1] * n,
                "pid": [pid] * n,
                "comm": ["dd"] * n,
                "event": [e for e, _ in rows],
                "body": [b for _, b in rows],
            }
        )
    )


def run(rows: list[tuple[str, str]], mapping=None):
    chunk = map_events(framed(rows), "t1", mapping or load_mapping())
    # Every input row lands in exactly one of the three tables.
    lines = (
        chunk.events["line"].to_list()
        + chunk.other["line"].to_list()
        + chunk.rejects["line"].to_list()
    )
    assert sorted(lines) == list(range(1, len(rows) + 1))
    assert chunk.events.schema == pl.Schema(schema.EVENTS_SCHEMA)
    assert chunk.other.schema == pl.Schema(schema.STORED_TABLES["other_events"])
    assert chunk.rejects.schema == pl.Schema(schema.REJECTS_SCHEMA)
    return chunk


def by_line(df: pl.DataFrame) -> dict[int, dict]:
    return {r["line"]: r for r in df.to_dicts()}


# ------------------------------------------------------------------------ kernel tracepoints


def test_filemap_three_eras():
    rows = [
        (
            "mm_filemap_add_to_page_cache",
            "dev 8:1 ino 1a2b page=00000000c0ffee00 pfn=1234 ofs=8192",
        ),
        (
            "mm_filemap_add_to_page_cache",
            "dev 8:1 ino 1a2b page=00000000c0ffee00 pfn=0x4d2 ofs=12288",
        ),
        (
            "filemap:mm_filemap_add_to_page_cache",
            "dev 254:0 ino 3f85d pfn=0x10543f ofs=4096 order=2",
        ),
        ("mm_filemap_delete_from_page_cache", "dev 254:0 ino 3f85d pfn=0x10543f ofs=4096 order=2"),
    ]
    ev = by_line(run(rows).events)
    assert ev[1]["kind"] == "cache_add" and ev[1]["pfn"] == 1234 and ev[1]["index"] == 2
    assert ev[1]["dev"] == (8 << MAJOR_SHIFT | 1) and ev[1]["ino"] == 0x1A2B
    assert ev[1]["folio_order"] is None
    assert ev[2]["pfn"] == 0x4D2 and ev[2]["index"] == 3
    assert ev[3]["dev"] == 254 << MAJOR_SHIFT and ev[3]["ino"] == 0x3F85D
    assert ev[3]["pfn"] == 0x10543F and ev[3]["index"] == 1 and ev[3]["folio_order"] == 2
    assert ev[3]["source_event"] == "filemap:mm_filemap_add_to_page_cache"
    assert ev[4]["kind"] == "cache_del"


def test_filemap_bad_body_is_rejected_with_the_expected_layout():
    rows = [
        ("mm_filemap_add_to_page_cache", "dev 8:1 ino zz pfn=12 ofs=0"),
        ("mm_filemap_add_to_page_cache", "something else entirely"),
    ]
    chunk = run(rows)
    assert chunk.events.height == 0
    rej = by_line(chunk.rejects)
    assert "ino zz" in rej[1]["reason"] and rej[1]["reason"].startswith(
        "mm_filemap_add_to_page_cache"
    )
    assert "expected 'dev M:N ino HEX" in rej[2]["reason"]
    assert rej[2]["text"] == "mm_filemap_add_to_page_cache: something else entirely"
    assert rej[2]["trace_id"] == "t1"


def test_writeback_events_carry_file_identity_not_bdi():
    rows = [
        ("writeback_dirty_folio", "bdi 254:0: ino=266338304 index=1016199"),
        ("writeback:writeback_dirty_page", "bdi 8:0: ino=12 index=3"),
        ("folio_wait_writeback", "bdi 254:0: ino=14 index=0"),
        ("wait_on_page_writeback", "bdi 8:0: ino=0x10 index=0x2"),
    ]
    ev = by_line(run(rows).events)
    assert [ev[i]["kind"] for i in (1, 2, 3, 4)] == ["dirty", "dirty", "wb_wait", "wb_wait"]
    assert ev[1]["ino"] == 266338304 and ev[1]["index"] == 1016199
    assert ev[4]["ino"] == 16 and ev[4]["index"] == 2
    assert all(ev[i]["dev"] is None and ev[i]["pfn"] is None for i in ev)


def test_page_ref_and_the_pin_bias_heuristic():
    body = (
        "pfn=0x1000 flags=uptodate|lru count={c} mapcount=0 mapping=0000000000000000 mt=1 val={v}"
    )
    rows = [
        ("page_ref_mod", body.format(c=1025, v=1024)),
        ("page_ref_mod_and_test", body.format(c=1, v=-1024) + " ret=0"),
        ("page_ref_mod", body.format(c=3, v=1)),
        ("page_ref_set", body.format(c=1, v=1)),
        ("page_ref_mod", body.replace("uptodate|lru", "head|uptodate").format(c=1025, v=1024)),
        ("page_ref_freeze", body.format(c=0, v=2) + " ret=1"),
    ]
    ev = by_line(run(rows).events)
    assert (ev[1]["kind"], ev[1]["refs"], ev[1]["count"]) == ("pin", 1, 1025)
    assert (ev[2]["kind"], ev[2]["refs"], ev[2]["count"]) == ("unpin", -1, 1)
    assert (ev[3]["kind"], ev[3]["refs"], ev[3]["count"]) == ("ref", 1, 3)
    assert ev[4]["kind"] == "ref"
    assert (ev[5]["kind"], ev[5]["refs"]) == ("ref", 1024)  # large folio: not the pin bias
    assert (ev[6]["kind"], ev[6]["refs"], ev[6]["count"]) == ("ref", 2, 0)
    assert all(ev[i]["pfn"] == 0x1000 for i in ev)


def test_allocator_and_fork():
    rows = [
        (
            "mm_page_alloc",
            "page=00000000a1b2c3d4 pfn=0x113550 order=2 migratetype=1 gfp_flags=GFP_USER",
        ),
        (
            "mm_page_alloc",
            "page=00000000a1b2c3d4 pfn=1127760 order=0 migratetype=0 gfp_flags=GFP_KERNEL",
        ),
        ("kmem:mm_page_free", "page=00000000ef7fd45a pfn=0x113550 order=2"),
        ("mm_page_free_batched", "page=00000000ef7fd45a pfn=0x113551 order=0"),
        ("sched_process_fork", "comm=bash pid=6623 child_comm=bash child_pid=6630"),
    ]
    ev = by_line(run(rows).events)
    assert (ev[1]["kind"], ev[1]["pfn"], ev[1]["folio_order"]) == ("alloc", 0x113550, 2)
    assert ev[2]["pfn"] == 1127760
    assert (ev[3]["kind"], ev[3]["folio_order"]) == ("free", 2)
    assert (ev[4]["kind"], ev[4]["pfn"]) == ("free", 0x113551)
    assert (ev[5]["kind"], ev[5]["pid"], ev[5]["pfn"]) == ("fork", 100, None)


def test_unknown_events_go_to_other_with_their_fields():
    rows = [
        (
            "sched_switch",
            "prev_comm=bash prev_pid=12 prev_prio=120 prev_state=S ==> "
            "next_comm=swapper/1 next_pid=0 next_prio=120",
        ),
        ("writeback_single_inode", "bdi 8:0: ino=12 state=I_DIRTY_PAGES"),
        ("set_page_dirty", "<-ext4_set_page_dirty"),
    ]
    chunk = run(rows)
    assert chunk.events.height == 0 and chunk.rejects.height == 0
    assert "fields" not in chunk.other.columns  # computed where the table is read
    oth = by_line(schema.with_computed(chunk.other, "other_events"))
    fields = {f["key"]: f["value"] for f in oth[1]["fields"]}
    assert fields["prev_pid"] == "12" and fields["next_comm"] == "swapper/1"
    assert "" not in fields and len(fields) == 7
    assert oth[1]["event"] == "sched_switch" and oth[1]["body"].startswith("prev_comm=bash")
    assert {f["key"]: f["value"] for f in oth[2]["fields"]} == {
        "ino": "12",
        "state": "I_DIRTY_PAGES",
    }
    assert oth[3]["fields"] == []


# ------------------------------------------------------------------------ the shipped probes


@pytest.mark.parametrize("kind", schema.KINDS)
def test_every_pinscope_kind_maps_without_a_mapping_file(kind):
    body = "pfn=0x2a refs=3 flags=0x80001 order=1 new_pfn=99 caller=ib_umem_get+0x1a/0x300"
    chunk = run([(f"pinscope_{kind}", body), (f"probe:pinscope_{kind}", body)])
    ev = chunk.events.sort("line").to_dicts()
    assert [e["kind"] for e in ev] == [kind, kind]
    assert ev[1]["source_event"] == f"probe:pinscope_{kind}"
    e = ev[0]
    assert (e["pfn"], e["folio_order"], e["gup_flags"], e["new_pfn"]) == (42, 1, 0x80001, 99)
    assert e["caller"] == "ib_umem_get"
    expected_refs = {"pin": 3, "get": 3, "unpin": -3, "put": -3}.get(kind, 3)
    assert e["refs"] == expected_refs


def test_kprobe_lines_pfn_from_page_pointer_and_ref_signs():
    page = VMEMMAP + 0x104150 * 64
    rows = [
        (
            "pinscope_pin",
            f"(try_grab_folio+0x0/0x2a0) page={page:#x} vmemmap={VMEMMAP:#x} refs=1 flags=0x80001",
        ),
        ("pinscope_unpin", f"(unpin_user_page+0x0/0x80) page={page:#x} vmemmap={VMEMMAP:#x}"),
        (
            "pinscope_put",
            f"(gup_put_folio+0x0/0x80) page={page:#x} vmemmap={VMEMMAP:#x} refs=-2 flags=0x2",
        ),
        ("pinscope_get", f"pfn={0x104150} flags=0x3"),
        (
            "pinscope_replace",
            f"(folio_copy+0x0/0x80) page={page:#x} vmemmap={VMEMMAP:#x} new_page={page + 64:#x}",
        ),
        ("pinscope_dirty", "pfn=5 ino=0x10 index=7 dev=8:1"),
    ]
    ev = by_line(run(rows).events)
    assert all(ev[i]["pfn"] == 0x104150 for i in (1, 2, 3, 4, 5))
    assert [ev[i]["refs"] for i in (1, 2, 3, 4)] == [1, -1, -2, 1]
    assert ev[1]["caller"] is None  # the probed symbol is not the call site
    assert ev[5]["new_pfn"] == 0x104151
    assert (ev[6]["ino"], ev[6]["index"], ev[6]["dev"]) == (16, 7, 8 << MAJOR_SHIFT | 1)


def test_bad_numbers_and_missing_pages_are_rejected_with_reasons():
    rows = [
        ("pinscope_pin", "pfn=-5 refs=1"),
        ("pinscope_pin", "pfn=18446744073709551616"),
        ("pinscope_pin", "pfn=0xzz"),
        ("pinscope_pin", f"page=0x1000 vmemmap={VMEMMAP:#x}"),
        ("pinscope_pin", "refs=1 flags=0x80001"),
        ("pinscope_replace", "pfn=7"),
        ("pinscope_pin", "pfn=18446744073709551615 refs=99999999999"),
        ("pinscope_pin", "pfn=7 order=300"),
        ("pinscope_fork", ""),
        ("pinscope_pin", "pfn=18446744073709551615"),
    ]
    chunk = run(rows)
    rej = by_line(chunk.rejects)
    assert set(rej) == {1, 2, 3, 4, 5, 6, 7, 8}
    assert "pfn=-5" in rej[1]["reason"] and rej[1]["reason"].startswith("pinscope_pin:")
    assert "pfn=18446744073709551616" in rej[2]["reason"]
    assert "pfn=0xzz" in rej[3]["reason"]
    assert "vmemmap" in rej[4]["reason"]
    assert "expected" in rej[5]["reason"]
    assert "new_pfn" in rej[6]["reason"]
    assert "refs=99999999999" in rej[7]["reason"]
    assert "order=300" in rej[8]["reason"]
    ev = by_line(chunk.events)
    assert ev[9]["kind"] == "fork"
    assert ev[10]["pfn"] == 2**64 - 1


def test_layout_misfits_take_the_slow_path_with_the_same_result():
    # Same event name, keys in different orders and a comm-like value with spaces.
    rows = [
        ("pinscope_pin", "pfn=1 refs=2 flags=0x1"),
        ("pinscope_pin", "refs=3 pfn=4"),
        ("pinscope_pin", "x=a b c pfn=5 order=1"),
        ("pinscope_pin", "pfn=6 refs=1 flags=0x1 caller=foo"),
        ("pinscope_pin", "new_pfn=9 pfn=7"),
    ]
    ev = by_line(run(rows).events)
    assert [ev[i]["pfn"] for i in range(1, 6)] == [1, 4, 5, 6, 7]
    assert [ev[i]["refs"] for i in range(1, 6)] == [2, 3, 1, 1, 1]
    assert ev[3]["folio_order"] == 1 and ev[4]["caller"] == "foo" and ev[5]["new_pfn"] == 9


KEYS = ["pfn", "refs", "flags", "order", "caller", "new_pfn", "page"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.sampled_from([*KEYS, "junk", "xpfn"]),
                st.from_regex(r"[0-9a-fx]{1,6}", fullmatch=True),
            ),
            max_size=6,
        ),
        min_size=1,
        max_size=8,
    )
)
def test_fast_field_extraction_equals_the_regex_path(bodies):
    texts = [" ".join(f"{k}={v}" for k, v in toks) for toks in bodies]
    df = pl.DataFrame({"line": range(len(texts)), "body": texts})
    keys = [Key(k) for k in KEYS]
    names = [f"c_{k}" for k in KEYS]
    fast = extract_fields(df, "body", keys, names).sort("line")
    slow = _slow(df, "body", keys, names).sort("line")
    assert fast.to_dicts() == slow.to_dicts()


def _py_int(text: str) -> int | None:
    neg = text.startswith("-")
    t = text[1:] if neg else text
    if t.startswith("+"):
        t = t[1:]
    try:
        v = int(t[2:], 16) if t[:2] in ("0x", "0X") and t[2:].isalnum() else int(t, 10)
    except ValueError:
        return None
    return -v if neg else v


NUMBER = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(0, 2**70).map(hex),
    st.integers(0, 2**70).map(lambda v: "-" + hex(v)),
    st.from_regex(r"0[xX][0-9a-fA-F]{1,17}", fullmatch=True),
    st.sampled_from(["", "0x", "zz", "12a", "-", "0xg1"]),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(NUMBER, min_size=1, max_size=12))
def test_number_parsing_matches_python_int_whatever_the_radix_mix(texts):
    s = pl.Series("s", texts, dtype=pl.String)
    radix = radix_of(s)
    got = pl.DataFrame({"s": s}).select(
        u=parse_uint(pl.col("s"), radix=radix), i=parse_int(pl.col("s"), radix=radix)
    )
    for text, u, i in zip(texts, got["u"].to_list(), got["i"].to_list(), strict=True):
        want = _py_int(text)
        unsigned = want if want is not None and 0 <= want < 2**64 and text[:1] != "-" else None
        assert u == unsigned, text
        assert i == (want if want is not None and -(2**63) <= want < 2**63 else None), text


# ------------------------------------------------------------------------ user mappings


def test_user_mapping_adds_and_overrides_events():
    mapping = load_mapping(GOLDEN / "mapping" / "user_map.toml")
    page = VMEMMAP + 77 * 64
    rows = [
        (
            "kprobes:my_gup_probe",
            f"pg={page:#x} vmemmap={VMEMMAP:#x} nr=4 gup_flags=0x40001 ip=ib_umem_get+0x10/0x200",
        ),
        ("ref_delta", "pfn=5 delta=2"),
        ("ref_delta", "pfn=5 delta=-2"),
        ("file_touch", "dev=8:2 inode=ff pos=8192"),
        ("mm_page_free_batched", "page=0000000012345678 pfn=0x10 order=3"),
        ("writeback_dirty_folio", "bdi 8:0: ino=1 index=2"),  # built-ins still there
        ("my_gup_probe", "nr=4"),
    ]
    chunk = run(rows, mapping)
    ev = by_line(chunk.events)
    assert (ev[1]["kind"], ev[1]["pfn"], ev[1]["refs"], ev[1]["gup_flags"], ev[1]["caller"]) == (
        "pin",
        77,
        4,
        0x40001,
        "ib_umem_get",
    )
    assert (ev[2]["kind"], ev[2]["refs"]) == ("get", 2)
    assert (ev[3]["kind"], ev[3]["refs"]) == ("put", -2)
    assert (ev[4]["kind"], ev[4]["ino"], ev[4]["index"], ev[4]["dev"]) == (
        "dirty",
        255,
        2,
        8 << MAJOR_SHIFT | 2,
    )
    assert ev[5]["folio_order"] == 3
    assert ev[6]["kind"] == "dirty"
    assert chunk.rejects["reason"].to_list() == [
        "my_gup_probe: expected 'pg=PTR vmemmap=PTR nr=N gup_flags=N ip=SYM'"
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[events.x]\nkind = "pin"\nfields = { pfn = "pfn" \n', "line 3"),
        ('[events.x]\nkind = "pinn"\n', "unknown kind 'pinn'"),
        ('[events.x]\nkind = "pin"\nfields = { pfnn = "pfn" }\n', "unknown column 'pfnn'"),
        ('[events.x]\nkind = "pin"\nfields = { pfn = 3 }\n', "[events.x].fields.pfn"),
        (
            '[events.x]\nkind = "pin"\nfields = { pfn = { key = "p", base = 8 } }\n',
            "'base' must be 10 or 16",
        ),
        ('[events.x]\nfields = { pfn = "pfn" }\n', "exactly one of 'kind'"),
        ('[events.x]\nkind = "pin"\ncompute = { pfn_from_page = { page = "p" } }\n', "vmemmap"),
        ('[events.x]\nkind = "pin"\ncolour = "red"\n', "unknown key(s) ['colour']"),
        ('[event.x]\nkind = "pin"\n', "unknown table(s) ['event']"),
        ('[events.x]\nkind_from_refs_sign = ["get"]\n', "kind_from_refs_sign"),
    ],
)
def test_bad_user_mapping_names_file_and_problem(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        load_mapping(path)
    assert str(path) in str(exc.value)
    assert needle in str(exc.value)


def test_missing_user_mapping_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_mapping(tmp_path / "nope.toml")


# ------------------------------------------------------------------------ real kernel text


REAL_LINE = re.compile(r"^.*?\d+\.\d+: (?P<event>[\w:]+): (?P<body>.*)$")


def test_real_6_18_trace_maps_completely():
    text = (GOLDEN / "real" / "real-default.trace").read_text().splitlines()
    rows = [(m["event"], m["body"]) for m in map(REAL_LINE.match, text) if m]
    assert len(rows) > 100
    chunk = run(rows)
    assert chunk.rejects.height == 0
    assert chunk.other.height == 0
    kinds = set(chunk.events["kind"].cast(pl.String).to_list())
    assert kinds == {"cache_add", "cache_del", "dirty", "wb_wait", "free", "fork"}
    adds = chunk.events.filter(pl.col("kind") == "cache_add")
    assert adds["dev"].unique().to_list() == [254 << MAJOR_SHIFT]
    assert adds["pfn"].null_count() == 0 and adds["index"].null_count() == 0
