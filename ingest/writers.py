"""Render scenario records as the trace text each reader in ingest/ accepts.

The simulator and round-trip tests need traces in every format, spelled exactly as the kernel,
trace-cmd, perf and the shipped bpftrace script spell them (KERNEL.md "Text layouts",
"Tracepoint formats"; the captures in tests/golden/real/). Rendering is vectorized: a loop over
the handful of record types, polars string formatting over the rows of each. A line is a list of
parts, static (rendered once per record by `Renderer.compile`) or dynamic (`D`: the values that
`mixed`'s copies shift, rendered per written line by `Compiled.lines`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ingest.errors import PinscopeError
from ingest.schema import PROBE_KINDS, foll_flags_for

# Writer format → the ingest format that reads it.
FORMATS: dict[str, str] = {
    "ftrace": "ftrace",  # 5-char irq-info flags: the modern default
    "ftrace-tgid": "ftrace",
    "ftrace-irq4": "ftrace",
    "ftrace-irq6": "ftrace",
    "ftrace-noirq": "ftrace",
    "ftrace-latency": "ftrace",
    "trace-cmd": "trace-cmd",
    "perf": "perf",
    "perf-g": "perf",
    "bpftrace": "bpftrace",
    "bpftrace-json": "bpftrace-json",
}
DEFAULT_KERNEL = "6.8.0"
HOST = "pinscope-sim"
VMEMMAP = 0xFFFFEA0000000000
VMEMMAP_HEX = "ffffea0000000000"
KPROBE_EVS = PROBE_KINDS
BPF_EVS = (*KPROBE_EVS, "dirty_tp", "cache_add", "cache_del", "alloc", "free", "fork")


def kernel_version(kernel: str) -> tuple[int, int]:
    parts = kernel.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        raise PinscopeError(f"--kernel {kernel!r}: expected a release like 6.8.0 or 5.10") from None


def probe_symbols(kernel: str) -> dict[str, str]:
    """The function each pinscope_<kind> kprobe sits on in that kernel (KERNEL.md table)."""
    folio = kernel_version(kernel) >= (5, 16)
    old = {
        "pin": "try_grab_compound_head",
        "get": "try_grab_compound_head",
        "unpin": "unpin_user_page",
        "put": "__put_page",
        "dirty": "set_page_dirty_lock",
        "mkclean": "page_mkclean",
        "wb_start": "__test_set_page_writeback",
        "wb_end": "end_page_writeback",
        "truncate": "truncate_inode_page",
        "free_buffers": "try_to_free_buffers",
        "mkwrite": "block_page_mkwrite",
        "replace": "migrate_page_copy",
    }
    new = {
        "pin": "try_grab_folio",
        "get": "try_grab_folio",
        "unpin": "gup_put_folio",
        "put": "__folio_put",
        "dirty": "folio_mark_dirty",
        "mkclean": "folio_mkclean",
        "wb_start": "__folio_start_writeback",
        "wb_end": "folio_end_writeback",
        "truncate": "truncate_inode_folio",
        "free_buffers": "try_to_free_buffers",
        "mkwrite": "block_page_mkwrite",
        "replace": "folio_copy",
    }
    return new if folio else old


def raw_flags(bits: pl.Expr, kernel: str) -> pl.Expr:
    """Canonical W|G|L|P bits (ingest/scenarios.py) → the kernel's raw FOLL_* value."""
    f = foll_flags_for(kernel)
    parts = [("FOLL_WRITE", 1), ("FOLL_GET", 2), ("FOLL_LONGTERM", 4), ("FOLL_PIN", 8)]
    return pl.sum_horizontal(
        [pl.when((bits // b) % 2 == 1).then(f[name]).otherwise(0) for name, b in parts]
    ).cast(pl.Int64)


def hex_series(values: pl.Series, strip: bool = True) -> pl.Series:
    """Lower-case hex of unsigned integers, vectorized (no zero padding when strip).

    The little-endian bytes of each value, reversed by Arrow, are its big-endian bytes: their
    hex encoding is the 16-digit hex of the value."""
    arr = values.cast(pl.UInt64).fill_null(0).rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(8), len(arr), [None, arr.buffers()[1]], offset=arr.offset
    )
    if sys.byteorder == "little":
        fixed = pc.binary_reverse(fixed.cast(pa.binary()))
    out = pl.Series(values.name, fixed, dtype=pl.Binary).bin.encode("hex")
    if strip:
        out = out.str.strip_chars_start("0").str.zfill(1)
    return out.alias(values.name)


def _ptr(pfn: pl.Series) -> pl.Series:
    """struct page pointer = vmemmap + pfn * sizeof(struct page)."""
    return pfn.cast(pl.UInt64).fill_null(0) * 64 + pl.Series([VMEMMAP], dtype=pl.UInt64)


def _s(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.String)


class D(str):
    """A dynamic field of a line: one that `mixed`'s copies shift (ingest/simulate.py).

    A line is a list of parts: polars expressions over columns no copy changes (static: evaluated
    once per template row) and dynamic fields (evaluated per written line)."""


# Columns a copy of a round shifts; everything else in a record is the same in every copy.
DYNAMIC_COLUMNS = ("ts_ns", "pid", "tgid", "arg_pid", "pfn", "new_pfn", "ino")
# Dynamic fields rendered through hex_series (a Series function, not an expression).
_HEX_FIELDS = {
    "ptr": lambda r: hex_series(_ptr(r["pfn"]), strip=False),
    "new_ptr": lambda r: hex_series(_ptr(r["new_pfn"]), strip=False),
    "pfn_hex": lambda r: hex_series(r["pfn"]),
    "ino_hex": lambda r: hex_series(r["ino"]),
    "phash": lambda r: _phash(r),
}
Part = pl.Expr | D


def _dynamic(name: str, t0_ns: int) -> pl.Expr:
    ts = pl.col("ts_ns")
    if name in _HEX_FIELDS:
        return pl.col(f"_{name}")
    if name == "ts":  # secs.usecs
        secs = (ts // 1_000_000_000).cast(pl.String).str.pad_start(5)
        usecs = ((ts % 1_000_000_000) // 1000).cast(pl.String).str.zfill(6)
        return pl.concat_str([secs, pl.lit("."), usecs])
    if name == "rel":  # latency format: microseconds since the trace's first event
        return ((ts - t0_ns) // 1000).cast(pl.String).str.pad_start(4)
    pads = {
        "pid7": _s("pid").str.pad_end(7),
        "pid5": _s("pid").str.pad_end(5),
        "pid5r": _s("pid").str.pad_start(5),
        "tgid7": _s("tgid").str.pad_start(7),
        "mark": pl.col("_mark"),
        "smark": pl.col("_smark"),
    }
    return pads[name] if name in pads else _s(name)


def _kernel_text(part: pl.DataFrame, ev: str, kernel: str) -> tuple[str | None, list[Part]]:
    """Event name and body parts of one record type, as the kernel prints it (kprobe events,
    tracepoints)."""
    ver = kernel_version(kernel)
    if ev in KPROBE_EVS:
        sym = probe_symbols(kernel)[ev]
        parts: list[Part] = [
            pl.lit(f"({sym}+0x0/0x80) page=0x"),
            D("ptr"),
            pl.lit(f" vmemmap=0x{VMEMMAP_HEX}"),
        ]
        if ev in ("pin", "unpin", "get", "put"):
            flags = hex_series(part.select(raw_flags(pl.col("bits"), kernel)).to_series())
            parts += [pl.lit(" refs="), _s("refs"), pl.lit(" flags=0x"), pl.lit(flags)]
        parts += [pl.lit(" order="), _s("order")]
        if ev == "replace":
            parts += [pl.lit(" new_page=0x"), D("new_ptr")]
        caller = pl.when(pl.col("caller").is_not_null()).then(pl.lit(" caller=") + pl.col("caller"))
        parts.append(caller.otherwise(pl.lit("")))
        return f"pinscope_{ev}", parts
    if ev == "dirty_tp":
        name = "writeback_dirty_folio" if ver >= (5, 16) else "writeback_dirty_page"
        head = pl.format("bdi {}:{}: ino=", "dev_major", "dev_minor")
        return name, [head, D("ino"), pl.lit(" index="), _s("index")]
    if ev in ("cache_add", "cache_del"):
        name = (
            "mm_filemap_add_to_page_cache"
            if ev == "cache_add"
            else "mm_filemap_delete_from_page_cache"
        )
        parts = [pl.format("dev {}:{} ino ", "dev_major", "dev_minor"), D("ino_hex"), pl.lit(" ")]
        ofs = (pl.col("index") * 4096).cast(pl.String)
        if ver >= (5, 16):
            parts += [pl.lit("pfn=0x"), D("pfn_hex"), pl.lit(" ofs="), ofs]
            return name, [*parts, pl.lit(" order="), _s("order")]
        pfn: list[Part] = [pl.lit("0x"), D("pfn_hex")] if ver >= (5, 14) else [D("pfn")]
        return name, [
            *parts,
            pl.lit("page="),
            D("phash"),
            pl.lit(" pfn="),
            *pfn,
            pl.lit(" ofs="),
            ofs,
        ]
    if ev in ("alloc", "free"):
        pfn = [pl.lit("0x"), D("pfn_hex")] if ver >= (5, 14) else [D("pfn")]
        parts = [pl.lit("page="), D("phash"), pl.lit(" pfn="), *pfn, pl.lit(" order="), _s("order")]
        if ev == "alloc":
            parts.append(pl.lit(" migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO"))
        return ("mm_page_alloc" if ev == "alloc" else "mm_page_free"), parts
    if ev == "fork":
        return "sched_process_fork", [
            pl.format("comm={} pid=", "comm"),
            D("pid"),
            pl.format(" child_comm={} child_pid=", "arg_comm"),
            D("arg_pid"),
        ]
    if ev == "ref":
        return "page_ref_mod", [
            pl.lit("pfn=0x"),
            D("pfn_hex"),
            pl.format(" flags=uptodate|lru count={} mapcount=1 mapping=", "count"),
            pl.lit("0000000000000000 mt=1 val="),
            _s("refs"),
        ]
    if ev == "switch":
        # pid 0 (the idle task) is a system task: no copy of a round renumbers it
        state = pl.when(pl.col("pid") == 0).then(pl.lit("R")).otherwise(pl.lit("S"))
        return "sched_switch", [
            pl.lit("prev_comm="),
            pl.col("comm"),
            pl.lit(" prev_pid="),
            D("pid"),
            pl.format(" prev_prio=120 prev_state={} ==> next_comm={} next_pid=", state, "arg_comm"),
            D("arg_pid"),
            pl.lit(" next_prio=120"),
        ]
    if ev == "wakeup":
        return "sched_wakeup", [
            pl.format("comm={} pid=", "arg_comm"),
            D("arg_pid"),
            pl.format(" prio=120 target_cpu={}", _s("cpu").str.zfill(3)),
        ]
    if ev == "func":
        return None, [pl.format("{} <-{}", "caller", "arg_comm")]
    raise AssertionError(f"no kernel text for {ev} ({part.height} rows)")


def _phash(part: pl.DataFrame) -> pl.Series:
    """A stand-in for %p's hashed pointer: 16 hex digits, stable per pfn."""
    h = (part["pfn"].cast(pl.UInt64).fill_null(0) * 2654435761 + 0x5BD1E995) % (1 << 32)
    return hex_series(h, strip=False)


def _bpf_text(part: pl.DataFrame, ev: str, kernel: str) -> list[Part]:
    """The shipped bpftrace script's printf text after `<ts> <cpu> <pid> <tgid> `."""
    kind = "dirty" if ev == "dirty_tp" else ev
    parts: list[Part] = [pl.lit(f"pinscope_{kind}: ")]
    if ev == "fork":
        parts += [pl.lit("child_pid="), D("arg_pid"), pl.lit(" child_comm="), pl.col("arg_comm")]
    else:
        parts += [pl.lit("pfn="), D("pfn")]
        if ev in ("pin", "unpin", "get", "put"):
            flags = hex_series(part.select(raw_flags(pl.col("bits"), kernel)).to_series())
            parts += [pl.lit(" refs="), _s("refs"), pl.lit(" flags=0x"), pl.lit(flags)]
        if ev in ("cache_add", "cache_del"):
            dev = (pl.col("dev_major").cast(pl.Int64) * (1 << 20) + pl.col("dev_minor")).cast(
                pl.String
            )
            parts += [
                pl.lit(" ino="),
                D("ino"),
                pl.lit(" index="),
                _s("index"),
                pl.lit(" dev="),
                dev,
            ]
        if ev == "replace":
            parts += [pl.lit(" new_pfn="), D("new_pfn")]
        parts += [pl.lit(" order="), _s("order")]
        caller = pl.when(pl.col("caller").is_not_null()).then(pl.lit(" caller=") + pl.col("caller"))
        parts.append(caller.otherwise(pl.lit("")))
    return [*parts, pl.lit(" comm="), pl.col("comm")]


STACKS: dict[str, tuple[str, ...]] = {
    "pin": (
        "try_grab_folio",
        "follow_page_pte",
        "__get_user_pages",
        "__gup_longterm_locked",
        "pin_user_pages_fast",
    ),
    "dirty": ("folio_mark_dirty", "set_page_dirty_lock"),
    "unpin": ("gup_put_folio", "unpin_user_page"),
}
DEFAULT_STACK = ("trace_event_raw_event_sched_switch", "__schedule", "schedule")


def _frames(ev: str, caller: str | None) -> list[str]:
    frames = list(STACKS.get(ev, DEFAULT_STACK))
    if caller:
        frames.append(caller)
    return [*frames, "do_syscall_64", "entry_SYSCALL_64_after_hwframe"]


@dataclass
class _Group:
    """The rows of one record type (and stack flag): their static text, rendered once."""

    static: pl.DataFrame  # columns _s0, _s1, … one row per template row of the group
    parts: list[int | D]  # line = concatenation of static column i / dynamic field


@dataclass
class Compiled:
    """A template's lines with everything static rendered: `lines` fills in the dynamic fields.

    `records` are the template rows this format writes (bpftrace has no scheduler or function
    lines, perf no function lines), with `_g` (group) and `_li` (row within the group), `_lost`
    (a lost-events marker: no timestamp of its own) and `_stack`; a copy of them with shifted
    DYNAMIC_COLUMNS, in any order, is what `lines` renders."""

    records: pl.DataFrame
    groups: list[_Group]
    renderer: Renderer

    def lines(self, rows: pl.DataFrame) -> pl.Series:
        """One string per row, in the rows' order (stacks and call chains ride along with
        embedded newlines)."""
        if rows.height == 0:
            return pl.Series("line", [], pl.String)
        r = self.renderer
        rows = rows.with_row_index("_pos")
        if r.fmt == "ftrace-latency":
            ts = pl.col("ts_ns")
            next_stack = pl.when(pl.col("_stack")).then(ts).shift(-1).backward_fill()
            rows = rows.with_columns(
                _latency_mark(ts.shift(-1) - ts).alias("_mark"),
                _latency_mark(next_stack - ts).alias("_smark"),
            )
        out = []
        for (g,), sub in rows.partition_by("_g", as_dict=True).items():
            grp = self.groups[g]
            sub = sub.hstack(grp.static.gather(sub["_li"]))
            names = {p for p in grp.parts if isinstance(p, D)}
            hexes = [_HEX_FIELDS[n](sub).alias(f"_{n}") for n in names if n in _HEX_FIELDS]
            if hexes:
                sub = sub.with_columns(hexes)
            exprs = [
                _dynamic(p, r.t0_ns) if isinstance(p, D) else pl.col(f"_s{p}") for p in grp.parts
            ]
            out.append(sub.select("_pos", pl.concat_str(exprs).alias("line")))
        return pl.concat(out).sort("_pos").get_column("line")


class Renderer:
    """Turns record frames into text blocks for one output format and kernel."""

    def __init__(self, fmt: str, kernel: str = DEFAULT_KERNEL, *, t0_ns: int = 0) -> None:
        if fmt not in FORMATS:
            raise PinscopeError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        kernel_version(kernel)
        self.fmt, self.kernel, self.t0_ns = fmt, kernel, t0_ns
        self.ftrace = fmt.startswith("ftrace")
        self.bpf = fmt.startswith("bpftrace")
        self.perf = fmt.startswith("perf")

    # -- headers -----------------------------------------------------------------------------
    def header(self, entries: int, cpus: int = 4) -> list[str]:
        first = f"# pinscope kernel={self.kernel} host={HOST}"
        if self.fmt == "bpftrace":
            return [first, f"Attaching {len(BPF_EVS) + 3} probes..."]
        if self.fmt == "bpftrace-json":
            return [
                first,
                f'{{"type": "attached_probes", "data": {{"probes": {len(BPF_EVS) + 3}}}}}',
            ]
        if self.perf:
            return [first, f"# perf script: {entries} samples"]
        if self.fmt == "trace-cmd":
            return [first, "version = 6", f"cpus={cpus}"]
        head = [first, "# tracer: nop", "#"]
        if self.fmt == "ftrace-latency":
            return [
                *head,
                f"# nop latency trace v1.1.5 on {self.kernel}",
                "# " + "-" * 68,
                f"# latency: 0 us, #{entries}/{entries}, CPU#0 | "
                f"(M:PREEMPT VP:0, KP:0, SP:0 HP:0 #P:{cpus})",
                "#    -----------------",
                "#    | task: -0 (uid:0 nice:0 policy:0 rt_prio:0)",
                "#    -----------------",
                "#",
                "#  cmd     pid     |||||| time  |   caller",
                "#     \\   /        ||||||  \\    |    /",
            ]
        head.append(f"# entries-in-buffer/entries-written: {entries}/{entries}   #P:{cpus}")
        head.append("#")
        if self.fmt == "ftrace-tgid":
            return [
                *head,
                "#           TASK-PID       TGID    CPU#  |||||  TIMESTAMP  FUNCTION",
                "#              | |           |       |   |||||     |         |",
            ]
        if self.fmt == "ftrace-noirq":
            return [
                *head,
                "#           TASK-PID     CPU#     TIMESTAMP  FUNCTION",
                "#              | |         |         |         |",
            ]
        return [
            *head,
            "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION",
            "#              | |         |   |||||     |         |",
        ]

    # -- rows --------------------------------------------------------------------------------
    def render(self, records: pl.DataFrame) -> pl.Series:
        """One string per record (a stack or call chain rides along with embedded newlines)."""
        compiled = self.compile(records)
        return compiled.lines(compiled.records).alias("line")

    def kept(self, records: pl.DataFrame) -> pl.DataFrame:
        """The records this format writes: bpftrace has only its probes, perf no function
        tracer."""
        if self.bpf:
            return records.filter(pl.col("ev").is_in([*BPF_EVS, "lost"]))
        if not self.ftrace:
            return records.filter(pl.col("ev") != "func")
        return records

    def compile(self, records: pl.DataFrame) -> Compiled:
        """Render everything but the dynamic fields, once per record (see `Compiled`)."""
        df = self.kept(records).with_columns(
            (pl.col("stack").fill_null(False) & self.ftrace).alias("_stack"),
            (pl.col("ev") == "lost").alias("_lost"),
        )
        groups: list[_Group] = []
        index = []
        keyed = df.with_row_index("_r").partition_by(["ev", "_stack"], maintain_order=True)
        for g, part in enumerate(keyed):
            parts = self._parts(part, part["ev"][0], bool(part["_stack"][0]))
            static: list[pl.Expr] = []
            layout: list[int | D] = []
            run: list[pl.Expr] = []
            for p in [*parts, D("")]:  # the sentinel flushes the last static run
                if isinstance(p, D):
                    if run:
                        static.append(pl.concat_str(run).alias(f"_s{len(static)}"))
                        layout.append(len(static) - 1)
                        run = []
                    if p:
                        layout.append(p)
                else:
                    run.append(p)
            # _r keeps the height when every static part is a literal
            groups.append(_Group(part.select("_r", *static).drop("_r"), layout))
            index.append(
                part.select(
                    "_r",
                    pl.lit(g, pl.UInt32).alias("_g"),
                    pl.int_range(pl.len(), dtype=pl.UInt32).alias("_li"),
                )
            )
        if index:
            pos = pl.concat(index).sort("_r").drop("_r")
        else:
            pos = pl.DataFrame(schema={"_g": pl.UInt32, "_li": pl.UInt32})
        return Compiled(df.hstack(pos), groups, self)

    def _parts(self, part: pl.DataFrame, ev: str, stack: bool) -> list[Part]:
        if ev == "lost":
            n = _s("count")
            if self.fmt == "trace-cmd":
                return [pl.format("CPU:{} [{} EVENTS DROPPED]", "cpu", n)]
            if self.fmt == "bpftrace":
                return [pl.format("Lost {} events", n)]
            if self.fmt == "bpftrace-json":
                return [pl.lit('{"type": "lost_events", "data": {"events": '), n, pl.lit("}}")]
            return [pl.format("CPU:{} [LOST {} EVENTS]", "cpu", n)]
        comm, cpu3 = pl.col("comm"), _s("cpu").str.zfill(3)
        if self.bpf:
            head: list[Part] = [D("ts_ns"), pl.format(" {} ", "cpu"), D("pid"), pl.lit(" ")]
            line = [*head, D("tgid"), pl.lit(" "), *_bpf_text(part, ev, self.kernel)]
            if self.fmt == "bpftrace-json":
                return [pl.lit('{"type": "printf", "data": "'), *line, pl.lit('\\n"}')]
            return line
        name, body = _kernel_text(part, ev, self.kernel)
        if self.perf:
            width = max(len(n) for n in _perf_names(self.kernel))
            group = _perf_group(pl.lit(name)).str.pad_start(width)
            line = [comm.str.pad_start(16), pl.lit(" "), D("pid5r"), pl.lit(" ["), cpu3]
            line += [pl.lit("] "), D("ts"), pl.lit(": "), group, pl.lit(": "), *body]
            if self.fmt == "perf-g":
                line += [pl.lit("\n"), _perf_chain(pl.col("ev"), pl.col("caller")), pl.lit("\n")]
            return line
        if self.fmt == "trace-cmd":
            line = [comm.str.pad_start(16), pl.lit("-"), D("pid5"), pl.lit(" ["), cpu3]
            line += [pl.lit("] "), D("ts"), pl.lit(": "), pl.lit(f"{name}:".ljust(21) + " ")]
            return [*line, *body]
        named = [pl.lit(f"{name}: ")] if name is not None else []
        line = [*self._ftrace_prefix("mark"), *named, *body]
        if stack:  # `<stack trace>`: an entry of its own, same task and time
            frames = _ftrace_stack(pl.col("ev"), pl.col("caller"))
            line += [pl.lit("\n"), *self._ftrace_prefix("smark"), pl.lit("<stack trace>"), frames]
        return line

    def _ftrace_prefix(self, mark: str) -> list[Part]:
        """`comm-pid [cpu] flags secs.usecs: ` in the layout of the chosen ftrace variant."""
        comm, cpu3 = pl.col("comm"), _s("cpu").str.zfill(3)
        if self.fmt == "ftrace-latency":
            return [
                comm.str.slice(0, 8).str.pad_start(8),
                pl.lit("-"),
                D("pid7"),
                pl.lit(" "),
                _s("cpu").str.pad_start(3),
                pl.lit("..... "),
                D("rel"),
                pl.lit("us"),
                D(mark),
                pl.lit(": "),
            ]
        flags = {"ftrace-irq4": "....", "ftrace-irq6": "......"}.get(self.fmt, ".....")
        parts: list[Part] = [comm.str.pad_start(16), pl.lit("-"), D("pid7"), pl.lit(" ")]
        if self.fmt == "ftrace-tgid":
            parts += [pl.lit("("), D("tgid7"), pl.lit(") ")]
        parts += [pl.lit("["), cpu3, pl.lit("] ")]
        parts += [pl.lit(" ")] if self.fmt == "ftrace-noirq" else [pl.lit(flags + " ")]
        return [*parts, D("ts"), pl.lit(": ")]


def _latency_mark(d: pl.Expr) -> pl.Expr:
    """The delay mark after a latency-format timestamp, from the gap `d` to the next line."""
    marks = [
        (1_000_000_000, "$"),
        (100_000_000, "@"),
        (10_000_000, "*"),
        (1_000_000, "#"),
        (100_000, "!"),
        (10_000, "+"),
    ]
    expr = pl.lit(" ")
    for limit, m in reversed(marks):
        expr = pl.when(d > limit).then(pl.lit(m)).otherwise(expr)
    return expr


def _ftrace_stack(ev: pl.Expr, caller: pl.Expr) -> pl.Expr:
    out = pl.lit("".join(f"\n => {f}" for f in _frames("", None)))
    for name in STACKS:
        frames = STACKS[name]
        text = pl.lit("".join(f"\n => {f}" for f in frames))
        tail = pl.lit("\n => do_syscall_64\n => entry_SYSCALL_64_after_hwframe")
        body = (
            text
            + pl.when(caller.is_not_null()).then(pl.lit("\n => ") + caller).otherwise(pl.lit(""))
            + tail
        )
        out = pl.when(ev == name).then(body).otherwise(out)
    return out


def _perf_chain(ev: pl.Expr, caller: pl.Expr) -> pl.Expr:
    def chain(frames: tuple[str, ...]) -> str:
        return "\n".join(
            f"\tffffffff81{0x356000 + 0x1F3 * i:06x} {f}+0x{0x40 + 0x11 * i:x} ([kernel.kallsyms])"
            for i, f in enumerate(frames)
        )

    out = pl.lit(chain(DEFAULT_STACK))
    for name, frames in STACKS.items():
        out = pl.when(ev == name).then(pl.lit(chain(frames))).otherwise(out)
    tail = pl.when(caller.is_not_null()).then(
        pl.lit("\n\tffffffff81a2b3c4 ") + caller + pl.lit("+0x9c ([kernel.kallsyms])")
    )
    return out + tail.otherwise(pl.lit(""))


PERF_GROUPS = {
    "pinscope_": "probe",
    "mm_filemap_": "filemap",
    "writeback_": "writeback",
    "mm_page_": "kmem",
    "sched_": "sched",
    "page_ref_": "page_ref",
}


def _perf_group(name: pl.Expr) -> pl.Expr:
    out = name
    for prefix, group in reversed(PERF_GROUPS.items()):
        out = pl.when(name.str.starts_with(prefix)).then(pl.lit(group + ":") + name).otherwise(out)
    return out


def _perf_names(kernel: str) -> list[str]:
    dirty = "writeback_dirty_folio" if kernel_version(kernel) >= (5, 16) else "writeback_dirty_page"
    names = [f"pinscope_{e}" for e in KPROBE_EVS] + [
        dirty,
        "mm_filemap_add_to_page_cache",
        "mm_filemap_delete_from_page_cache",
        "mm_page_alloc",
        "mm_page_free",
        "sched_process_fork",
        "sched_switch",
        "sched_wakeup",
        "page_ref_mod",
    ]
    groups = [next(g for p, g in PERF_GROUPS.items() if n.startswith(p)) for n in names]
    return [f"{g}:{n}" for g, n in zip(groups, names, strict=True)]
