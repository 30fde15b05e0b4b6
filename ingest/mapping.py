"""Framed events → canonical kinds and columns, driven by a mapping that is data.

Customer traces come with whatever probe names their engineers chose, so which event becomes
which kind, and which body field fills which column, lives in TOML: `builtin_map.toml` (kernel
tracepoints and the shipped `pinscope_<kind>` probes) extended or overridden by a user file
given with `--map`. The format, in full:

    [events.my_gup_probe]            # event name; a `group:` prefix in the trace is ignored
    kind = "pin"                     # a canonical kind, or instead:
    # kind_from_refs_sign = ["get", "put"]   # refs >= 0 → first kind, refs < 0 → second
    expect = "pfn=N nr=N"            # optional: quoted in reject reasons
    [events.my_gup_probe.fields]     # canonical column = field name in the body
    pfn = "pfn"                      # `pfn=…`, decimal or 0x-hex
    refs = "nr"
    gup_flags = "gup_flags"
    caller = "ip"                    # a `+0x1a/0x300` offset is stripped
    ino = { key = "ino", sep = " ", base = 16 }   # `ino 3f85d`: word then value, hex w/o 0x
    index = { key = "ofs", shift = 12 }           # right shift: bytes → pages
    [events.my_gup_probe.compute]    # optional: pfn from a struct page pointer
    pfn_from_page = { page = "pg", vmemmap = "vmemmap" }   # (pg - vmemmap) / 64
    new_pfn_from_page = { page = "newpg", vmemmap = "vmemmap", struct_size = 64 }

Columns: pfn, folio_order, dev (`M:N` → MKDEV), ino, index, refs, count, gup_flags, caller,
new_pfn. `[pinscope_probes]` (same keys, no kind) is the template every `pinscope_<kind>` event
uses. Special cases that are code, not data: `heuristic = "pin_bias"` (page_ref ±1024 → pin /
unpin) and the sign of refs by kind (acquires +, releases −).

`map_events` runs one pass per distinct event name in a chunk (never a loop over rows): every
row lands in exactly one of `events`, `other` or `rejects`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from ingest import schema
from ingest.errors import InputError
from ingest.fields import (
    Key,
    extract_fields,
    parse_dev,
    parse_int,
    parse_uint,
    radix_of,
)

# Canonical column → how its text is read, and the largest value its type holds.
COLUMNS: dict[str, tuple[str, int]] = {
    "pfn": ("uint", 2**64 - 1),
    "folio_order": ("uint", 2**8 - 1),
    "dev": ("dev", 2**32 - 1),
    "ino": ("uint", 2**64 - 1),
    "index": ("uint", 2**64 - 1),
    "refs": ("int", 2**31 - 1),
    "count": ("int", 2**31 - 1),
    "gup_flags": ("uint", 2**32 - 1),
    "caller": ("sym", 0),
    "new_pfn": ("uint", 2**64 - 1),
}
# The type `_column` gives each way of reading, for a column no row of a group has.
_NULL_TYPES: dict[str, pl.DataType] = {
    "uint": pl.UInt64(),
    "dev": pl.UInt64(),
    "int": pl.Int64(),
    "sym": pl.String(),
}
ACQUIRE = frozenset({"pin", "get"})
RELEASE = frozenset({"unpin", "put"})
HEURISTICS = frozenset({"pin_bias"})
PIN_BIAS = 1024  # GUP_PIN_COUNTING_BIAS
PROBE_PREFIX = "pinscope_"
_EVENT_KEYS = {"kind", "kind_from_refs_sign", "expect", "heuristic", "fields", "compute"}
_COMPUTE = {"pfn_from_page": "pfn", "new_pfn_from_page": "new_pfn"}


@dataclass(frozen=True)
class FieldSpec:
    """Where a column's value sits in the body and how to read it."""

    key: str
    sep: str = "="
    base: int | None = None  # None: decimal or 0x-hex; 16: hex without prefix
    shift: int = 0


@dataclass(frozen=True)
class PageSpec:
    """A pfn computed from a struct page pointer: (page - vmemmap) / struct_size."""

    page: str
    vmemmap: str
    struct_size: int = 64


@dataclass(frozen=True)
class EventSpec:
    kind: str | None
    kind_from_refs_sign: tuple[str, str] | None = None
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    compute: dict[str, PageSpec] = field(default_factory=dict)  # target column → page spec
    heuristic: str | None = None
    expect: str | None = None
    origin: str = "built-in"


@dataclass
class Mapping:
    """Event name (group prefix stripped) → how to map it."""

    events: dict[str, EventSpec]
    probe_template: EventSpec

    def spec_for(self, event: str) -> EventSpec | None:
        name = event.rsplit(":", 1)[-1]
        spec = self.events.get(name)
        if spec is not None:
            return spec
        if name.startswith(PROBE_PREFIX) and name[len(PROBE_PREFIX) :] in schema.KINDS:
            t = self.probe_template
            return EventSpec(
                kind=name[len(PROBE_PREFIX) :],
                fields=t.fields,
                compute=t.compute,
                expect=t.expect,
                origin=t.origin,
            )
        return None


@dataclass
class MappedChunk:
    events: pl.DataFrame  # schema.EVENTS_SCHEMA
    other: pl.DataFrame  # schema.OTHER_EVENTS_SCHEMA
    rejects: pl.DataFrame  # schema.REJECTS_SCHEMA


# --------------------------------------------------------------------------- loading the TOML


def _bad(origin: str, where: str, problem: str) -> InputError:
    return InputError(f"{origin}: {where}: {problem}")


def _field_spec(origin: str, where: str, raw: Any) -> FieldSpec:
    if isinstance(raw, str) and raw:
        return FieldSpec(key=raw)
    if not isinstance(raw, dict):
        raise _bad(origin, where, f"expected a field name or a table {{key = ...}}, got {raw!r}")
    unknown = set(raw) - {"key", "sep", "base", "shift"}
    if unknown:
        raise _bad(origin, where, f"unknown option(s) {sorted(unknown)} (key, sep, base, shift)")
    key, sep = raw.get("key"), raw.get("sep", "=")
    base, shift = raw.get("base"), raw.get("shift", 0)
    if not isinstance(key, str) or not key:
        raise _bad(origin, where, "'key' must be a non-empty string")
    if sep not in ("=", " "):
        raise _bad(origin, where, f'\'sep\' must be "=" or " ", got {sep!r}')
    if base not in (None, 10, 16):
        raise _bad(origin, where, f"'base' must be 10 or 16, got {base!r}")
    if not isinstance(shift, int) or isinstance(shift, bool) or not 0 <= shift < 64:
        raise _bad(origin, where, f"'shift' must be an integer 0..63, got {shift!r}")
    return FieldSpec(key=key, sep=sep, base=base, shift=shift)


def _page_spec(origin: str, where: str, raw: Any) -> PageSpec:
    if not isinstance(raw, dict) or set(raw) - {"page", "vmemmap", "struct_size"}:
        raise _bad(origin, where, "expected { page = FIELD, vmemmap = FIELD [, struct_size = N] }")
    page, vmemmap, size = raw.get("page"), raw.get("vmemmap"), raw.get("struct_size", 64)
    if not isinstance(page, str) or not isinstance(vmemmap, str):
        raise _bad(origin, where, "'page' and 'vmemmap' must name body fields")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise _bad(origin, where, f"'struct_size' must be a positive integer, got {size!r}")
    return PageSpec(page=page, vmemmap=vmemmap, struct_size=size)


def _kind(origin: str, where: str, raw: Any) -> str:
    if raw not in schema.KINDS:
        raise _bad(
            origin, where, f"unknown kind {raw!r} (expected one of {', '.join(schema.KINDS)})"
        )
    return raw


def _event_spec(origin: str, where: str, raw: Any, template: bool = False) -> EventSpec:
    if not isinstance(raw, dict):
        raise _bad(origin, where, "expected a table")
    unknown = set(raw) - _EVENT_KEYS
    if unknown:
        raise _bad(
            origin, where, f"unknown key(s) {sorted(unknown)} (expected {sorted(_EVENT_KEYS)})"
        )
    kind = sign = None
    if not template:
        if ("kind" in raw) == ("kind_from_refs_sign" in raw):
            raise _bad(origin, where, "needs exactly one of 'kind' or 'kind_from_refs_sign'")
        if "kind" in raw:
            kind = _kind(origin, where, raw["kind"])
        else:
            pair = raw["kind_from_refs_sign"]
            if not isinstance(pair, list) or len(pair) != 2:
                raise _bad(
                    origin,
                    where,
                    "'kind_from_refs_sign' must be [KIND_IF_POSITIVE, KIND_IF_NEGATIVE]",
                )
            sign = (_kind(origin, where, pair[0]), _kind(origin, where, pair[1]))
    fields_raw = raw.get("fields", {})
    if not isinstance(fields_raw, dict):
        raise _bad(origin, f"{where}.fields", "expected a table of column = field")
    fields: dict[str, FieldSpec] = {}
    for col, spec in fields_raw.items():
        if col not in COLUMNS:
            raise _bad(
                origin,
                f"{where}.fields",
                f"unknown column {col!r} (expected one of {', '.join(COLUMNS)})",
            )
        fields[col] = _field_spec(origin, f"{where}.fields.{col}", spec)
    compute_raw = raw.get("compute", {})
    if not isinstance(compute_raw, dict):
        raise _bad(origin, f"{where}.compute", "expected a table")
    compute: dict[str, PageSpec] = {}
    for name, spec in compute_raw.items():
        if name not in _COMPUTE:
            raise _bad(
                origin,
                f"{where}.compute",
                f"unknown computation {name!r} (expected {', '.join(_COMPUTE)})",
            )
        compute[_COMPUTE[name]] = _page_spec(origin, f"{where}.compute.{name}", spec)
    heuristic = raw.get("heuristic")
    if heuristic is not None and heuristic not in HEURISTICS:
        raise _bad(
            origin,
            where,
            f"unknown heuristic {heuristic!r} (expected {', '.join(sorted(HEURISTICS))})",
        )
    expect = raw.get("expect")
    if expect is not None and not isinstance(expect, str):
        raise _bad(origin, where, "'expect' must be a string")
    return EventSpec(kind, sign, fields, compute, heuristic, expect, origin)


def _parse(origin: str, text: str, mapping: Mapping | None) -> Mapping:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{origin}: not valid TOML: {exc}") from None
    unknown = set(doc) - {"events", "pinscope_probes"}
    if unknown:
        raise _bad(
            origin,
            "top level",
            f"unknown table(s) {sorted(unknown)} (expected [events.NAME] or [pinscope_probes])",
        )
    events = dict(mapping.events) if mapping else {}
    template = mapping.probe_template if mapping else EventSpec(kind=None)
    if "pinscope_probes" in doc:
        template = _event_spec(origin, "[pinscope_probes]", doc["pinscope_probes"], template=True)
    evs = doc.get("events", {})
    if not isinstance(evs, dict):
        raise _bad(origin, "[events]", "expected tables [events.NAME]")
    for name, raw in evs.items():
        events[name.rsplit(":", 1)[-1]] = _event_spec(origin, f"[events.{name}]", raw)
    return Mapping(events=events, probe_template=template)


def load_mapping(user_file: Path | None = None) -> Mapping:
    """The built-in mapping, extended and overridden (by event name) by a user TOML file."""
    text = resources.files("ingest").joinpath("builtin_map.toml").read_text(encoding="utf-8")
    mapping = _parse("built-in mapping (ingest/builtin_map.toml)", text, None)
    if user_file is not None:
        path = Path(user_file)
        try:
            user = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
        mapping = _parse(str(path), user, mapping)
    return mapping


# --------------------------------------------------------------------------- mapping a chunk


def _keys(spec: EventSpec) -> dict[Key, str]:
    """Every body key the spec reads → the temporary column holding its raw text."""
    keys: dict[Key, str] = {}

    def add(k: Key) -> None:
        keys.setdefault(k, f"__k{len(keys)}")

    for fs in spec.fields.values():
        add(Key(fs.key, fs.sep))
    for ps in spec.compute.values():
        add(Key(ps.page))
        add(Key(ps.vmemmap))
    if spec.heuristic == "pin_bias":
        add(Key("flags"))
    return keys


def _column(col: str, raw: pl.Expr, fs: FieldSpec, values: pl.Series) -> pl.Expr:
    how = COLUMNS[col][0]
    if how == "sym":
        return raw.str.strip_chars('"').str.split_exact("+", 1).struct.field("field_0")
    if how == "dev":
        # A trace names a handful of devices: parse those, then look each row up.
        uniq = values.drop_nulls().unique()
        # a frame column, not pl.lit(series): polars 2.1 panics on a literal series here
        # once one value fails to parse (bitmap length assertion)
        parsed = uniq.to_frame("v").select(parse_dev(pl.col("v"))).to_series()
        v = raw.replace_strict(uniq, parsed, default=None, return_dtype=pl.UInt64)
    elif how == "int":
        return parse_int(raw, radix_of(values))
    else:
        v = parse_uint(raw, fs.base, radix_of(values) if fs.base is None else "mixed")
    return v // (1 << fs.shift) if fs.shift else v


def _map_group(
    g: pl.DataFrame, spec: EventSpec, trace_id: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    keys = _keys(spec)
    g = extract_fields(g, "body", list(keys), list(keys.values()))
    # A key no row of the group prints (most of the probe template's, for a given probe) needs
    # no parsing and cannot fail: its column is plain null.
    absent = {n for n in keys.values() if g.get_column(n).null_count() == g.height}
    ev = pl.col("event")
    parsed: list[pl.Expr] = []  # each value parsed once, then checked and kept or nulled
    values: list[pl.Expr] = []
    # (condition, reason): reasons are only formatted for the rows that fail.
    problems: list[tuple[pl.Expr, pl.Expr]] = []
    for col, fs in spec.fields.items():
        if keys[Key(fs.key, fs.sep)] in absent:
            values.append(pl.lit(None, _NULL_TYPES[COLUMNS[col][0]]).alias(col))
            continue
        raw = pl.col(keys[Key(fs.key, fs.sep)])
        parsed.append(_column(col, raw, fs, g.get_column(keys[Key(fs.key, fs.sep)])).alias(col))
        val = pl.col(col)
        how, hi = COLUMNS[col]
        if how != "sym":
            lo = -(hi + 1) if how == "int" else 0
            if how == "uint" and hi == 2**64 - 1:  # a UInt64 parse is in range or null
                bad = raw.is_not_null() & val.is_null()
            else:
                bad = raw.is_not_null() & (val.is_null() | (val > hi) | (val < lo))
            what = "a signed" if how == "int" else "an unsigned"
            problems.append(
                (
                    pl.col(f"__bad_{col}"),
                    pl.format(
                        "{}: {} is not {} number in range (decimal or 0x-hex)",
                        ev,
                        pl.lit(fs.key + fs.sep) + raw,
                        pl.lit(what),
                    ),
                )
            )
            values.append(bad.alias(f"__bad_{col}"))
            val = pl.when(bad).then(None).otherwise(val)
        values.append(val.alias(col))
    lf = g.lazy().with_columns(parsed).with_columns(values)
    for col, ps in spec.compute.items():
        if keys[Key(ps.page)] in absent or keys[Key(ps.vmemmap)] in absent:
            if col not in spec.fields:  # nothing to compute from: the column is null
                lf = lf.with_columns(pl.lit(None, pl.UInt64).alias(col))
            continue
        praw, vraw = pl.col(keys[Key(ps.page)]), pl.col(keys[Key(ps.vmemmap)])
        page = parse_uint(praw, radix=radix_of(g.get_column(keys[Key(ps.page)])))
        vmem = parse_uint(vraw, radix=radix_of(g.get_column(keys[Key(ps.vmemmap)])))
        has = praw.is_not_null() & vraw.is_not_null()
        ok = (page >= vmem).fill_null(False)
        computed = pl.when(has & ok).then((page - vmem) // ps.struct_size)
        cur = pl.col(col) if col in spec.fields else pl.lit(None, pl.UInt64)
        lf = lf.with_columns(
            pl.coalesce(cur, computed).alias(col), (has & ~ok).alias(f"__bad_{col}_page")
        )
        problems.append(
            (
                pl.col(f"__bad_{col}_page"),
                pl.format(
                    "{}: {}={} {}={} is not a struct page pointer at or above vmemmap",
                    ev,
                    pl.lit(ps.page),
                    praw,
                    pl.lit(ps.vmemmap),
                    vraw,
                ),
            )
        )
    lf = _kinds(lf, spec)
    present = set(spec.fields) | set(spec.compute)
    has_col = {c: pl.col(c).is_not_null() if c in present else pl.lit(False) for c in COLUMNS}
    page_ok = has_col["pfn"] | (has_col["ino"] & has_col["index"])
    expect = spec.expect or "'" + " ".join(f"{f.key}{f.sep}N" for f in spec.fields.values()) + "'"
    lf = lf.with_columns(
        ((pl.col("kind") != "fork") & ~page_ok).alias("__no_page"),
        ((pl.col("kind") == "replace") & ~has_col["new_pfn"]).alias("__no_new"),
    )
    problems.append((pl.col("__no_page"), pl.format("{}: expected {}", ev, pl.lit(expect))))
    problems.append(
        (pl.col("__no_new"), pl.format("{}: replace needs new_pfn= or new_page= with vmemmap=", ev))
    )
    g = lf.with_columns(pl.any_horizontal(c for c, _ in problems).alias("__bad")).collect()
    clean = not g.get_column("__bad").any()  # the common case: no row to take out
    good = g if clean else g.filter(~pl.col("__bad"))
    events = schema.conform(
        good.with_columns(pl.lit(trace_id).alias("trace_id"), ev.alias("source_event")), "events"
    )
    if clean:
        return events, schema.empty("rejects")
    bad = g.filter(pl.col("__bad"))
    rejects = schema.conform(
        bad.with_columns(
            pl.lit(trace_id).alias("trace_id"),
            pl.coalesce(pl.when(c).then(msg) for c, msg in problems).alias("reason"),
            pl.coalesce(
                pl.col("text"), pl.format("{}: {}", ev, pl.col("body").fill_null(""))
            ).alias("text"),
        ),
        "rejects",
    )
    return events, rejects


def _kinds(lf: pl.LazyFrame, spec: EventSpec) -> pl.LazyFrame:
    """Kind per row, and refs signed by it (acquires +, releases −, default ±1)."""
    refs = pl.col("refs") if "refs" in spec.fields else pl.lit(None, pl.Int64)
    if spec.kind_from_refs_sign:
        pos, neg = spec.kind_from_refs_sign
        kind = pl.when(refs.fill_null(0) >= 0).then(pl.lit(pos)).otherwise(pl.lit(neg))
    else:
        kind = pl.lit(spec.kind)
    if spec.heuristic == "pin_bias":
        flags = pl.col(_keys(spec)[Key("flags")])
        small = ~flags.fill_null("").str.contains("head", literal=True)
        pin = small & refs.is_in([PIN_BIAS, PIN_BIAS - 1]).fill_null(False)
        unpin = small & (refs == -PIN_BIAS).fill_null(False)
        kind = pl.when(pin).then(pl.lit("pin")).when(unpin).then(pl.lit("unpin")).otherwise(kind)
        refs = pl.when(pin | unpin).then(pl.lit(1)).otherwise(refs)
    lf = lf.with_columns(kind.alias("kind"))
    k = pl.col("kind")
    signed = (
        pl.when(k.is_in(list(ACQUIRE)))
        .then(refs.abs().fill_null(1))
        .when(k.is_in(list(RELEASE)))
        .then(-(refs.abs().fill_null(1)))
        .otherwise(refs)
    )
    return lf.with_columns(signed.alias("refs"))


def _other(df: pl.DataFrame, trace_id: str) -> pl.DataFrame:
    return schema.conform(df.with_columns(pl.lit(trace_id).alias("trace_id")), "other_events")


def map_events(framed: pl.DataFrame, trace_id: str, mapping: Mapping) -> MappedChunk:
    """Map a chunk of framed event rows: every row lands in events, other or rejects, each in
    line order (a trace printed in time order is then stored in replay order)."""
    names = framed.get_column("event").unique().to_list()
    specs: dict[str, EventSpec] = {}
    gid: dict[str, int] = {}
    for name in names:
        spec = mapping.spec_for(name) if name is not None else None
        if spec is not None:
            gid[name] = len(specs)
            specs[name] = spec
    df = framed.with_columns(
        pl.col("event").replace_strict(gid, default=-1, return_dtype=pl.Int32).alias("__gid")
    )
    events, rejects, other = (
        [schema.empty("events")],
        [schema.empty("rejects")],
        [schema.empty("other_events")],
    )
    by_name = dict(zip(gid.values(), specs.values(), strict=True))
    for (g_id,), part in df.partition_by("__gid", as_dict=True, maintain_order=True).items():
        part = part.drop("__gid")
        if g_id == -1:
            other.append(_other(part, trace_id))
            continue
        e, r = _map_group(part, by_name[g_id], trace_id)
        events.append(e)
        rejects.append(r)
    # mapped a name (and within it a layout) at a time: back into line order
    return MappedChunk(
        events=pl.concat(events, how="vertical").sort("line"),
        other=pl.concat(other, how="vertical"),
        rejects=pl.concat(rejects, how="vertical").sort("line"),
    )
