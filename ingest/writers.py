"""Render scenario records as the trace text each reader in ingest/ accepts.

The simulator and round-trip tests need traces in every format, spelled exactly as the kernel,
trace-cmd, perf and the shipped bpftrace script spell them (KERNEL.md "Text layouts",
"Tracepoint formats"; the captures in tests/golden/real/). Rendering is vectorized: a loop over
the handful of record types, polars string formatting over the rows of each.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

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
    """Lower-case hex of unsigned integers, vectorized (no zero padding when strip)."""
    x = pl.col("x")
    swapped = (
        pl.DataFrame({"x": values.cast(pl.UInt64).fill_null(0)})
        .select(
            pl.sum_horizontal(
                [
                    ((x // (256**i)) % 256) * pl.lit(256 ** (7 - i), dtype=pl.UInt64)
                    for i in range(8)
                ]
            ).cast(pl.UInt64)
        )
        .to_series()
    )
    arr = swapped.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(8), len(arr), [None, arr.buffers()[1]], offset=arr.offset
    )
    out = pl.from_arrow(fixed).cast(pl.Binary).bin.encode("hex")
    if strip:
        out = out.str.strip_chars_start("0").replace("", "0")
    return out.alias(values.name)


def _ptr(pfn: pl.Series) -> pl.Series:
    """struct page pointer = vmemmap + pfn * sizeof(struct page)."""
    return pfn.cast(pl.UInt64).fill_null(0) * 64 + pl.Series([VMEMMAP], dtype=pl.UInt64)


def _s(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.String)


def _kernel_text(part: pl.DataFrame, ev: str, kernel: str) -> pl.DataFrame:
    """name and body of one record type, as the kernel (kprobe events, tracepoints) prints it."""
    ver = kernel_version(kernel)
    n = part.height
    if ev in KPROBE_EVS:
        sym = probe_symbols(kernel)[ev]
        ptr = hex_series(_ptr(part["pfn"]), strip=False)
        cols = [
            pl.lit(f"({sym}+0x0/0x80) page=0x"),
            pl.lit(ptr),
            pl.lit(f" vmemmap=0x{VMEMMAP_HEX}"),
        ]
        if ev in ("pin", "unpin", "get", "put"):
            flags = hex_series(part.select(raw_flags(pl.col("bits"), kernel)).to_series())
            cols += [pl.lit(" refs="), _s("refs"), pl.lit(" flags=0x"), pl.lit(flags)]
        cols += [pl.lit(" order="), _s("order")]
        if ev == "replace":
            newp = hex_series(_ptr(part["new_pfn"]), strip=False)
            cols += [pl.lit(" new_page=0x"), pl.lit(newp)]
        caller = pl.when(pl.col("caller").is_not_null()).then(pl.lit(" caller=") + pl.col("caller"))
        cols.append(caller.otherwise(pl.lit("")))
        return part.select(name=pl.lit(f"pinscope_{ev}"), body=pl.concat_str(cols))
    if ev == "dirty_tp":
        name = "writeback_dirty_folio" if ver >= (5, 16) else "writeback_dirty_page"
        body = pl.format("bdi {}:{}: ino={} index={}", "dev_major", "dev_minor", "ino", "index")
        return part.select(name=pl.lit(name), body=body)
    if ev in ("cache_add", "cache_del"):
        name = (
            "mm_filemap_add_to_page_cache"
            if ev == "cache_add"
            else "mm_filemap_delete_from_page_cache"
        )
        ino = pl.lit(hex_series(part["ino"]))
        pfnx = pl.lit(hex_series(part["pfn"]))
        head = pl.format("dev {}:{} ino {} ", "dev_major", "dev_minor", ino)
        ofs = (pl.col("index") * 4096).cast(pl.String)
        if ver >= (5, 16):
            body = pl.concat_str(
                [head, pl.lit("pfn=0x"), pfnx, pl.lit(" ofs="), ofs, pl.lit(" order="), _s("order")]
            )
        else:
            phash = pl.lit(_phash(part))
            pfn = pl.lit("0x") + pfnx if ver >= (5, 14) else _s("pfn")
            body = pl.concat_str(
                [head, pl.lit("page="), phash, pl.lit(" pfn="), pfn, pl.lit(" ofs="), ofs]
            )
        return part.select(name=pl.lit(name), body=body)
    if ev in ("alloc", "free"):
        pfn = pl.lit("0x") + pl.lit(hex_series(part["pfn"])) if ver >= (5, 14) else _s("pfn")
        cols = [
            pl.lit("page="),
            pl.lit(_phash(part)),
            pl.lit(" pfn="),
            pfn,
            pl.lit(" order="),
            _s("order"),
        ]
        if ev == "alloc":
            cols.append(pl.lit(" migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO"))
        name = "mm_page_alloc" if ev == "alloc" else "mm_page_free"
        return part.select(name=pl.lit(name), body=pl.concat_str(cols))
    if ev == "fork":
        body = pl.format(
            "comm={} pid={} child_comm={} child_pid={}", "comm", "pid", "arg_comm", "arg_pid"
        )
        return part.select(name=pl.lit("sched_process_fork"), body=body)
    if ev == "ref":
        pfnx = pl.lit(hex_series(part["pfn"]))
        body = pl.concat_str(
            [
                pl.lit("pfn=0x"),
                pfnx,
                pl.format(" flags=uptodate|lru count={} mapcount=1 mapping=", "count"),
                pl.lit("0000000000000000 mt=1 val="),
                _s("refs"),
            ]
        )
        return part.select(name=pl.lit("page_ref_mod"), body=body)
    if ev == "switch":
        state = pl.when(pl.col("pid") == 0).then(pl.lit("R")).otherwise(pl.lit("S"))
        body = pl.format(
            "prev_comm={} prev_pid={} prev_prio=120 prev_state={} ==> next_comm={} next_pid={} "
            "next_prio=120",
            "comm",
            "pid",
            state,
            "arg_comm",
            "arg_pid",
        )
        return part.select(name=pl.lit("sched_switch"), body=body)
    if ev == "wakeup":
        body = pl.format(
            "comm={} pid={} prio=120 target_cpu={}", "arg_comm", "arg_pid", _s("cpu").str.zfill(3)
        )
        return part.select(name=pl.lit("sched_wakeup"), body=body)
    if ev == "func":
        return part.select(
            name=pl.lit(None, pl.String), body=pl.format("{} <-{}", "caller", "arg_comm")
        )
    raise AssertionError(f"no kernel text for {ev} ({n} rows)")


def _phash(part: pl.DataFrame) -> pl.Series:
    """A stand-in for %p's hashed pointer: 16 hex digits, stable per pfn."""
    h = (part["pfn"].cast(pl.UInt64).fill_null(0) * 2654435761 + 0x5BD1E995) % (1 << 32)
    return hex_series(h, strip=False)


def _bpf_text(part: pl.DataFrame, ev: str) -> pl.DataFrame:
    """The shipped bpftrace script's printf line after `<ts> <cpu> <pid> <tgid> `."""
    kind = "dirty" if ev == "dirty_tp" else ev
    cols: list[pl.Expr] = [pl.lit(f"pinscope_{kind}: ")]
    if ev == "fork":
        cols += [pl.format("child_pid={} child_comm={}", "arg_pid", "arg_comm")]
    else:
        cols += [pl.lit("pfn="), _s("pfn")]
        if ev in ("pin", "unpin", "get", "put"):
            cols += [pl.lit(" refs="), _s("refs"), pl.lit(" flags=0x"), pl.lit(part["flags_hex"])]
        if ev in ("cache_add", "cache_del"):
            dev = (pl.col("dev_major").cast(pl.Int64) * (1 << 20) + pl.col("dev_minor")).cast(
                pl.String
            )
            cols += [
                pl.lit(" ino="),
                _s("ino"),
                pl.lit(" index="),
                _s("index"),
                pl.lit(" dev="),
                dev,
            ]
        if ev == "replace":
            cols += [pl.lit(" new_pfn="), _s("new_pfn")]
        cols += [pl.lit(" order="), _s("order")]
        caller = pl.when(pl.col("caller").is_not_null()).then(pl.lit(" caller=") + pl.col("caller"))
        cols.append(caller.otherwise(pl.lit("")))
    cols += [pl.lit(" comm="), pl.col("comm")]
    return part.select(text=pl.concat_str(cols))


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
        df = records.with_row_index("_i")
        if self.bpf:
            df = df.filter(pl.col("ev").is_in([*BPF_EVS, "lost"]))
        elif not self.ftrace:
            df = df.filter(pl.col("ev") != "func")
        parts = []
        for (ev,), part in df.partition_by("ev", as_dict=True, maintain_order=True).items():
            parts.append(part.select("_i").hstack(self._text(part, ev)))
        if not parts:
            return pl.Series("line", [], pl.String)
        texts = pl.concat(parts, how="diagonal_relaxed").sort("_i").drop("_i")
        texts = texts.with_columns(
            pl.lit(None, pl.String).alias(c)
            for c in ("name", "body", "text", "whole")
            if c not in texts.columns
        )
        out = df.select("ts_ns", "cpu", "pid", "tgid", "comm", "ev", "caller", "stack")
        out = out.hstack(texts)
        lines = out.select(self._line()).to_series().alias("line")
        if self.ftrace:  # `<stack trace>` blocks: only on the few rows that carry one
            rows = out.with_row_index("_r").filter(pl.col("stack").fill_null(False))
            if rows.height:
                extra = rows.select(
                    pl.lit("\n")
                    + self._ftrace_prefix()
                    + pl.lit("<stack trace>")
                    + _ftrace_stack(pl.col("ev"), pl.col("caller"))
                ).to_series()
                idx = rows["_r"]
                lines = lines.scatter(idx, lines.gather(idx) + extra)
        return lines

    def _text(self, part: pl.DataFrame, ev: str) -> pl.DataFrame:
        if ev == "lost":
            n = _s("count")
            if self.fmt == "trace-cmd":
                t = pl.format("CPU:{} [{} EVENTS DROPPED]", "cpu", n)
            elif self.fmt == "bpftrace":
                t = pl.format("Lost {} events", n)
            elif self.fmt == "bpftrace-json":
                t = pl.concat_str(
                    [pl.lit('{"type": "lost_events", "data": {"events": '), n, pl.lit("}}")]
                )
            else:
                t = pl.format("CPU:{} [LOST {} EVENTS]", "cpu", n)
            return part.select(whole=t)
        if self.bpf:
            if ev in ("pin", "unpin", "get", "put"):
                flags = hex_series(part.select(raw_flags(pl.col("bits"), self.kernel)).to_series())
                part = part.with_columns(flags_hex=flags)
            return _bpf_text(part, ev)
        return _kernel_text(part, ev, self.kernel)

    def _line(self) -> pl.Expr:
        ts = pl.col("ts_ns")
        secs = (ts // 1_000_000_000).cast(pl.String).str.pad_start(5)
        usecs = ((ts % 1_000_000_000) // 1000).cast(pl.String).str.zfill(6)
        comm, pid, cpu3 = pl.col("comm"), _s("pid"), _s("cpu").str.zfill(3)
        if self.bpf:
            text = pl.format("{} {} {} {} {}", "ts_ns", "cpu", "pid", "tgid", "text")
            if self.fmt == "bpftrace-json":
                text = pl.concat_str(
                    [pl.lit('{"type": "printf", "data": "'), text, pl.lit('\\n"}')]
                )
            return pl.coalesce(pl.col("whole"), text)
        if self.perf:
            width = max(len(n) for n in _perf_names(self.kernel))
            name = _perf_group(pl.col("name")).str.pad_start(width)
            head = pl.concat_str(
                [
                    comm.str.pad_start(16),
                    pl.lit(" "),
                    pid.str.pad_start(5),
                    pl.lit(" ["),
                    cpu3,
                    pl.lit("] "),
                    secs,
                    pl.lit("."),
                    usecs,
                    pl.lit(": "),
                    name,
                    pl.lit(": "),
                    pl.col("body"),
                ]
            )
            if self.fmt == "perf-g":
                head = (
                    head + pl.lit("\n") + _perf_chain(pl.col("ev"), pl.col("caller")) + pl.lit("\n")
                )
            return pl.coalesce(pl.col("whole"), head)
        if self.fmt == "trace-cmd":
            pre = pl.concat_str(
                [
                    comm.str.pad_start(16),
                    pl.lit("-"),
                    pid.str.pad_end(5),
                    pl.lit(" ["),
                    cpu3,
                    pl.lit("] "),
                    secs,
                    pl.lit("."),
                    usecs,
                    pl.lit(": "),
                ]
            )
            line = (
                pre + (pl.col("name") + pl.lit(":")).str.pad_end(21) + pl.lit(" ") + pl.col("body")
            )
            return pl.coalesce(pl.col("whole"), line)
        text = pl.when(pl.col("name").is_not_null())
        text = text.then(pl.col("name") + pl.lit(": ") + pl.col("body")).otherwise(pl.col("body"))
        return pl.coalesce(pl.col("whole"), self._ftrace_prefix() + text)

    def _ftrace_prefix(self) -> pl.Expr:
        """`comm-pid [cpu] flags secs.usecs: ` in the layout of the chosen ftrace variant."""
        ts = pl.col("ts_ns")
        secs = (ts // 1_000_000_000).cast(pl.String).str.pad_start(5)
        usecs = ((ts % 1_000_000_000) // 1000).cast(pl.String).str.zfill(6)
        comm, pid, cpu3 = pl.col("comm"), _s("pid"), _s("cpu").str.zfill(3)
        if self.fmt == "ftrace-latency":
            rel = ((ts - self.t0_ns) // 1000).cast(pl.String).str.pad_start(4)
            return pl.concat_str(
                [
                    comm.str.slice(0, 8).str.pad_start(8),
                    pl.lit("-"),
                    pid.str.pad_end(7),
                    pl.lit(" "),
                    _s("cpu").str.pad_start(3),
                    pl.lit("....."),
                    pl.lit(" "),
                    rel,
                    pl.lit("us"),
                    _latency_mark(ts),
                    pl.lit(": "),
                ]
            )
        flags = {"ftrace-irq4": "....", "ftrace-irq6": "......"}.get(self.fmt, ".....")
        cols = [comm.str.pad_start(16), pl.lit("-"), pid.str.pad_end(7), pl.lit(" ")]
        if self.fmt == "ftrace-tgid":
            cols += [pl.lit("("), _s("tgid").str.pad_start(7), pl.lit(") ")]
        cols += [pl.lit("["), cpu3, pl.lit("] ")]
        cols += [pl.lit(" ")] if self.fmt == "ftrace-noirq" else [pl.lit(flags + " ")]
        cols += [secs, pl.lit("."), usecs, pl.lit(": ")]
        return pl.concat_str(cols)


def _latency_mark(ts: pl.Expr) -> pl.Expr:
    """The delay mark after a latency-format timestamp: the gap to the next line."""
    d = ts.shift(-1) - ts
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
