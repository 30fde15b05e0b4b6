"""Map the kernel-framed event lines to kinds and columns with the compiled kernel.

A `Mapping` (built in or a user's `--map`) is compiled per chunk into small arrays — which body
key fills which column, how it is read, which kind it gives — for the event names the chunk
holds, and `ftrace_kernel.map_rows` applies them row by row. Where the kernel is not certain to
read what `mapping.map_events` would (a malformed or out-of-range number, a quoted symbol, a
row that would be rejected), the row goes to `map_events` itself, together with the lines the
framing kernel left to polars. Unmapped events become `other_events` rows (their key=value
fields are computed from the body where the table is read: schema.with_computed).

The events of a chunk come out in line order, as `map_events` orders them: a trace printed in
time order is then stored in replay order, and replay reads it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from ingest import arrow_cols as ac
from ingest import ftrace_kernel as K
from ingest import schema
from ingest.fields import Key
from ingest.ftrace_fast import FUNCTION, FastFramed, event_frame
from ingest.mapping import ACQUIRE, COLUMNS, RELEASE, EventSpec, Mapping, map_events

_COLS = list(COLUMNS)  # the kernel's column slots, in this order
assert _COLS == [
    "pfn",
    "folio_order",
    "dev",
    "ino",
    "index",
    "refs",
    "count",
    "gup_flags",
    "caller",
    "new_pfn",
]
_HOW = {"uint": K.HOW_UINT, "dev": K.HOW_DEV, "int": K.HOW_INT, "sym": K.HOW_SYM}
COL_HOW = np.array([_HOW[COLUMNS[c][0]] for c in _COLS], np.int64)
COL_HI = np.array([COLUMNS[c][1] if COLUMNS[c][0] != "sym" else 0 for c in _COLS], np.uint64)
_KIND_CODE = {k: i for i, k in enumerate(schema.KINDS)}
ACQUIRE_MASK = np.array([k in ACQUIRE for k in schema.KINDS], np.bool_)
RELEASE_MASK = np.array([k in RELEASE for k in schema.KINDS], np.bool_)
_ARROW = {"uint": pa.uint64(), "dev": pa.uint64(), "int": pa.int64()}
_KIND_VALUES = pl.Series("kind", list(schema.KINDS), dtype=schema.KIND)
_NP_OF = {pl.UInt8: np.uint8, pl.UInt32: np.uint32, pl.UInt64: np.uint64, pl.Int32: np.int32}
# the events table's type of each numeric mapped column
_NUMPY = {c: _NP_OF[type(schema.EVENTS_SCHEMA[c])] for c in _COLS if COLUMNS[c][0] != "sym"}


@dataclass
class Plan:
    """A mapping compiled for the kernel: one row per distinct EventSpec."""

    keys: np.ndarray
    key_s: np.ndarray
    key_e: np.ndarray
    key_form: np.ndarray  # 0 `name=`, 1 `name value`, 2 a name with a space (scanned)
    col_key: np.ndarray
    col_base: np.ndarray
    col_shift: np.ndarray
    comp_page: np.ndarray
    comp_vmem: np.ndarray
    comp_size: np.ndarray
    kind_a: np.ndarray
    kind_b: np.ndarray
    pin_bias_key: np.ndarray


def compile_specs(specs: list[EventSpec]) -> Plan:
    """The arrays `ftrace_kernel.map_rows` reads, for these specs (in this order)."""
    key_ids: dict[Key, int] = {}

    def key(k: Key) -> int:
        return key_ids.setdefault(k, len(key_ids))

    n = max(len(specs), 1)
    col_key = np.full((n, K.N_COLS), -1, np.int64)
    col_base = np.zeros((n, K.N_COLS), np.int64)
    col_shift = np.zeros((n, K.N_COLS), np.int64)
    comp_page = np.full((n, 2), -1, np.int64)
    comp_vmem = np.full((n, 2), -1, np.int64)
    comp_size = np.ones((n, 2), np.int64)
    kind_a = np.zeros(n, np.int64)
    kind_b = np.full(n, -1, np.int64)
    pin_bias_key = np.full(n, -1, np.int64)
    for i, spec in enumerate(specs):
        for col, fs in spec.fields.items():
            c = _COLS.index(col)
            col_key[i, c] = key(Key(fs.key, fs.sep))
            col_base[i, c] = fs.base or 0
            col_shift[i, c] = fs.shift
        for col, ps in spec.compute.items():
            t = 0 if col == "pfn" else 1
            comp_page[i, t] = key(Key(ps.page))
            comp_vmem[i, t] = key(Key(ps.vmemmap))
            comp_size[i, t] = ps.struct_size
        if spec.kind_from_refs_sign:
            kind_a[i] = _KIND_CODE[spec.kind_from_refs_sign[0]]
            kind_b[i] = _KIND_CODE[spec.kind_from_refs_sign[1]]
        else:
            kind_a[i] = _KIND_CODE[spec.kind or "ref"]
        if spec.heuristic == "pin_bias":
            pin_bias_key[i] = key(Key("flags"))
    prefixes = [k.prefix.encode() for k in key_ids]
    ends = np.cumsum([len(p) for p in prefixes], dtype=np.int64)
    return Plan(
        keys=np.frombuffer(b"".join(prefixes) or b"\0", np.uint8),
        key_s=ends - np.array([len(p) for p in prefixes], np.int64),
        key_e=ends,
        key_form=np.array(
            [2 if " " in k.name or "=" in k.name else (0 if k.sep == "=" else 1) for k in key_ids],
            np.int64,
        ),
        col_key=col_key,
        col_base=col_base,
        col_shift=col_shift,
        comp_page=comp_page,
        comp_vmem=comp_vmem,
        comp_size=comp_size,
        kind_a=kind_a,
        kind_b=kind_b,
        pin_bias_key=pin_bias_key,
    )


@dataclass
class MappedBlock:
    events: pl.DataFrame  # EVENTS_SCHEMA without trace_id
    other: pl.DataFrame  # OTHER_EVENTS_SCHEMA without trace_id
    rejects: pl.DataFrame  # REJECTS_SCHEMA


def map_block(
    f: FastFramed, fb_events: pl.DataFrame, trace_id: str, mapping: Mapping
) -> MappedBlock:
    """Map every event line of a chunk: the kernel's (f) and the polars-framed (fb_events)."""
    n = len(f.rows)
    ids, first = K.name_ids(f.buf, K.loads_of(f.buf), np.arange(n), f.name_s, f.name_e)
    # distinct; the empty name is the function tracer's lines' (ftrace_kernel.frame_lines)
    names = [bytes(f.buf[f.name_s[r] : f.name_e[r]]).decode() or FUNCTION for r in first]
    specs: list[EventSpec] = []
    slot: dict[int, int] = {}
    name_spec = np.full(len(names) + 1, -2, np.int64)  # [-1] (an id of -1): polars maps it
    for i, name in enumerate(names):
        spec = mapping.spec_for(name)
        if spec is None:
            name_spec[i] = -1
        else:
            name_spec[i] = slot.setdefault(id(spec), len(specs))
            if name_spec[i] == len(specs):
                specs.append(spec)
    spec_rows = name_spec[ids]
    plan = compile_specs(specs)
    status, kind, uval, ival, valid, sym_s, sym_e = K.map_rows(
        f.buf,
        f.body_s,
        f.body_e,
        np.where(spec_rows >= 0, spec_rows, -1),
        plan.keys,
        plan.key_s,
        plan.key_e,
        plan.key_form,
        plan.col_key,
        COL_HOW,
        plan.col_base,
        plan.col_shift,
        COL_HI,
        plan.comp_page,
        plan.comp_vmem,
        plan.comp_size,
        plan.kind_a,
        plan.kind_b,
        plan.pin_bias_key,
        _KIND_CODE["fork"],
        _KIND_CODE["replace"],
        _KIND_CODE["pin"],
        _KIND_CODE["unpin"],
        ACQUIRE_MASK,
        RELEASE_MASK,
    )
    name_col = pl.Series("name", names, dtype=pl.String)
    ev_idx = np.flatnonzero(status == K.ST_EVENT)
    other_idx = np.flatnonzero((status == K.ST_OTHER) & (spec_rows == -1))
    slow_idx = np.flatnonzero((status == K.ST_POLARS) | (spec_rows == -2))

    comm = CommViews(f)
    other = _other(f, other_idx, ids, name_col, comm)
    slow = fb_events
    if len(slow_idx):
        slow = pl.concat([schema_framed(event_frame(f, slow_idx)), fb_events], how="vertical")
    events = _events(f, ev_idx, ids, name_col, kind, uval, ival, valid, sym_s, sym_e, comm)
    if not slow.height:  # all mapped here, gathered in line order already
        return MappedBlock(events, other, schema.empty("rejects"))
    m = map_events(slow, trace_id, mapping)
    events = pl.concat([events, m.events.drop("trace_id")], how="vertical").sort("line")
    if m.other.height:
        other = pl.concat([other, m.other.drop("trace_id")], how="vertical").sort("line")
    rejects = m.rejects
    return MappedBlock(events, other, rejects)


def schema_framed(df: pl.DataFrame) -> pl.DataFrame:
    """Kernel-framed event rows in the column types the polars reader gives them."""
    from ingest.framing import conform_framed

    return conform_framed(df)


def _header_columns(f: FastFramed, idx: np.ndarray, comm: CommViews) -> dict[str, pa.Array]:
    """The columns every event line has (its header), for the rows idx."""
    return {
        "line": pa.array(f.rows[idx] + f.first_line),
        "ts_ns": pa.array(f.ts[idx]),
        "cpu": pa.array(f.cpu[idx]),
        "pid": pa.array(f.pid[idx]),
        "tgid": ac.take(f.tgid, idx, f.tgid >= 0),
        "comm": comm.take(idx),
    }


def _events(
    f: FastFramed,
    idx: np.ndarray,
    ids: np.ndarray,
    names: pl.Series,
    kind: np.ndarray,
    uval: np.ndarray,
    ival: np.ndarray,
    valid: np.ndarray,
    sym_s: np.ndarray,
    sym_e: np.ndarray,
    comm: CommViews,
) -> pl.DataFrame:
    cols: dict[str, pa.Array] = _header_columns(f, idx, comm)
    for c, col in enumerate(_COLS):
        # only the columns some row fills are gathered (a chunk's events use few of them),
        # straight into the table's type (map_rows keeps to its range)
        how = COLUMNS[col][0]
        if not valid[c].any():
            cols[col] = pa.nulls(len(idx), pa.string() if how == "sym" else _ARROW[how])
        elif how == "sym":
            cols[col] = ac.strings(f.buf, sym_s[idx], sym_e[idx], valid[c][idx])
        else:
            cols[col] = ac.take(ival[c] if how == "int" else uval[c], idx, valid[c], _NUMPY[col])
    df = pl.from_arrow(pa.table(cols))
    assert isinstance(df, pl.DataFrame)
    id_sel = pl.Series(ids[idx], dtype=pl.Int64)
    df = df.with_columns(
        kind=_KIND_VALUES.gather(pl.Series(kind[idx], dtype=pl.Int64)),
        source_event=names.gather(id_sel),
    )
    return schema.conform(df, "events").drop("trace_id")


class CommViews:
    """The comm of a block's framed lines, as string views built once in line order and
    gathered per table (building them at rows in name order cost twice as much)."""

    def __init__(self, f: FastFramed) -> None:
        self.f = f
        fits = ac.views_fit(f.buf)
        self.views = K.view_spans(f.buf, K.loads_of(f.buf), f.comm_s, f.comm_e) if fits else None

    def take(self, idx: np.ndarray) -> pa.Array:
        if self.views is None:
            return ac.strings(self.f.buf, self.f.comm_s[idx], self.f.comm_e[idx])
        return ac.from_views(self.f.buf, K.take_views(self.views, idx))


def _other(
    f: FastFramed, idx: np.ndarray, ids: np.ndarray, names: pl.Series, comm: CommViews
) -> pl.DataFrame:
    table = pa.table(
        {
            **_header_columns(f, idx, comm),
            "body": ac.strings(f.buf, f.body_s[idx], f.body_e[idx]),
        }
    )
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    df = df.with_columns(event=names.gather(pl.Series(ids[idx], dtype=pl.Int64)))
    return schema.conform(df, "other_events").drop("trace_id")
