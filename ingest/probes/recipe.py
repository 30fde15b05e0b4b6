"""The shipped collection scripts: a tracefs recipe (bash) and the bpftrace script.

Which kernel functions carry each `pinscope_<kind>` changed with folios (KERNEL.md "Functions
to probe"), and so did the FOLL_PIN bit that tells a pin from a get on the same function. The
recipe is generated from the table below: with `--kernel X.Y` it holds only that era's probes
and bits; without, it holds both and picks by `uname -r` when it runs. Functions that only some
builds have (static, maybe inlined) are added only when `available_filter_functions` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from ingest.schema import FOLL_FLAGS_FROM_6_3, FOLL_FLAGS_UP_TO_6_2

PAGE = "page=$arg{n}:x64 vmemmap=@vmemmap_base:x64"


@dataclass(frozen=True)
class Probe:
    kind: str
    func: str
    args: str
    group: str = "pinscope"  # event names repeat across groups: pinscope_pin from two functions
    filt: str = ""  # kprobe filter; {PIN} / {GET} are the era's FOLL_PIN / FOLL_GET values
    optional: bool = False  # only if available_filter_functions lists it
    instead_of: str = ""  # use only when this function is not available


def _page(n: int) -> str:
    return PAGE.format(n=n)


P1, P2 = _page(1), _page(2)
GRAB = f"{P1} refs=$arg2:s32 flags=$arg3:x32"  # fn(page or folio, refs, flags)
GRAB1 = f"{P1} flags=$arg2:x32"  # try_grab_page(page, flags)
COPY = f"{P2} new_page=$arg1:x64"  # fn(dst, src)
IS_PIN, IS_GET = "flags & {PIN}", "flags & {GET}"


# Up to 5.15: struct page everywhere.
PAGE_ERA: tuple[Probe, ...] = (
    Probe("pin", "try_grab_compound_head", GRAB, filt=IS_PIN),
    Probe("get", "try_grab_compound_head", GRAB, filt=IS_GET),
    Probe("pin", "try_grab_page", GRAB1, "pinscope2", IS_PIN, True),
    Probe("get", "try_grab_page", GRAB1, "pinscope2", IS_GET, True),
    Probe("unpin", "put_compound_head", GRAB, filt=IS_PIN, optional=True),
    Probe("unpin", "unpin_user_page", P1, "pinscope2", instead_of="put_compound_head"),
    Probe("put", "__put_page", P1),
    Probe("dirty", "set_page_dirty", P1),
    Probe("mkclean", "page_mkclean", P1),
    Probe("mkclean", "clear_page_dirty_for_io", P1, "pinscope2"),
    Probe("wb_start", "__test_set_page_writeback", P1),
    Probe("wb_end", "end_page_writeback", P1),
    Probe("truncate", "truncate_inode_page", P2),
    Probe("free_buffers", "try_to_free_buffers", P1),
    Probe("mkwrite", "__block_write_begin_int", P1, optional=True),
    Probe("mkwrite", "__block_write_begin", P1, "pinscope2", instead_of="__block_write_begin_int"),
    Probe("replace", "migrate_page_copy", COPY),
)  # fmt: skip

# 5.16 onward: folios (a folio pointer is its head page's struct page pointer).
FOLIO_ERA: tuple[Probe, ...] = (
    Probe("pin", "try_grab_folio", GRAB, filt=IS_PIN),
    Probe("get", "try_grab_folio", GRAB, filt=IS_GET),
    Probe("pin", "try_grab_folio_fast", GRAB, "pinscope2", IS_PIN, True),
    Probe("get", "try_grab_folio_fast", GRAB, "pinscope2", IS_GET, True),
    Probe("pin", "try_grab_page", GRAB1, "pinscope3", IS_PIN, True),
    Probe("get", "try_grab_page", GRAB1, "pinscope3", IS_GET, True),
    Probe("unpin", "gup_put_folio", GRAB, filt=IS_PIN, optional=True),
    Probe("unpin", "unpin_user_page", P1, "pinscope2", instead_of="gup_put_folio"),
    Probe("put", "__folio_put", P1, optional=True),
    Probe("put", "__put_page", P1, "pinscope2", instead_of="__folio_put"),
    Probe("dirty", "folio_mark_dirty", P1),
    Probe("mkclean", "folio_mkclean", P1),
    Probe("mkclean", "folio_clear_dirty_for_io", P1, "pinscope2", optional=True),
    Probe("wb_start", "__folio_start_writeback", P1),
    Probe("wb_end", "folio_end_writeback", P1),
    Probe("truncate", "truncate_inode_folio", P2),
    Probe("truncate", "truncate_inode_partial_folio", P1, "pinscope2", optional=True),
    Probe("free_buffers", "try_to_free_buffers", P1),
    Probe("free_buffers", "filemap_release_folio", P1, "pinscope2", optional=True),
    Probe("mkwrite", "__block_write_begin_int", P1),
    Probe("replace", "folio_copy", COPY),
    Probe("replace", "folio_mc_copy", COPY, "pinscope2", optional=True),
)  # fmt: skip

TRACEPOINTS: tuple[str, ...] = (
    "filemap/mm_filemap_add_to_page_cache",
    "filemap/mm_filemap_delete_from_page_cache",
    "writeback/writeback_dirty_folio",
    "writeback/writeback_dirty_page",
    "writeback/folio_wait_writeback",
    "writeback/wait_on_page_writeback",
    "kmem/mm_page_alloc",
    "kmem/mm_page_free",
    "kmem/mm_page_free_batched",
    "sched/sched_process_fork",
)
GROUPS = ("pinscope", "pinscope2", "pinscope3")


def parse_release(kernel: str) -> tuple[int, int]:
    """`6.8.0-45-generic` → (6, 8); ValueError when it is not a release."""
    parts = kernel.strip().split(".")
    if len(parts) < 2 or not parts[0].isdigit():
        raise ValueError(f"not a kernel release: {kernel!r} (expected e.g. 5.10 or 6.8.0-45)")
    minor = "".join(c for c in parts[1].split("-")[0] if c.isdigit())
    if not minor:
        raise ValueError(f"not a kernel release: {kernel!r} (expected e.g. 5.10 or 6.8.0-45)")
    return int(parts[0]), int(minor)


def foll_bits(release: tuple[int, int]) -> tuple[int, int]:
    """(FOLL_PIN, FOLL_GET) for a kernel release."""
    flags = FOLL_FLAGS_UP_TO_6_2 if release <= (6, 2) else FOLL_FLAGS_FROM_6_3
    return flags["FOLL_PIN"], flags["FOLL_GET"]


def _era_function(name: str, probes: tuple[Probe, ...]) -> str:
    lines = [f"{name}() {{"]
    for p in probes:
        filt = p.filt.replace("{PIN}", "$FOLL_PIN").replace("{GET}", "$FOLL_GET")
        call = f"kp {p.group} pinscope_{p.kind} {p.func} '{p.args}' \"{filt}\""
        if p.optional:
            call = f"have {p.func} && {call}"
        elif p.instead_of:
            call = f"have {p.instead_of} || {call}"
        lines.append(f"    {call}")
    lines.append("}")
    return "\n".join(lines)


_HEAD = r"""#!/bin/bash
# pinscope collection recipe for tracefs: `pinscope probes ftrace{kernel_opt}` printed it.
# Run as root:   bash pinscope-ftrace.sh [OUT]      (Ctrl-C stops; OUT defaults to pinscope.trace)
# Then:          pinscope ingest OUT -o DATASET
#
# It enables the page tracepoints (page_ref_* needs CONFIG_DEBUG_PAGE_REF), creates kprobe
# events pinscope_<kind> (groups pinscope, pinscope2, pinscope3: one function each) printing
# page= with vmemmap= (ingest computes pfn = (page - vmemmap) / 64), refs=, flags= (raw gup
# flags), new_page=; pin and get on one function are told apart by a filter on FOLL_PIN /
# FOLL_GET. The first line of OUT records the kernel release, so that flags decode per version.
#
# With trace-cmd instead of trace_pipe: `SETUP_ONLY=1 bash pinscope-ftrace.sh`, then
#   trace-cmd record {tracecmd_events}
#   trace-cmd report > OUT.txt   (prepend the `# pinscope kernel=...` line), and finally
#   `bash pinscope-ftrace.sh --teardown`.
set -u
OUT=${{1:-pinscope.trace}}
T=${{PINSCOPE_TRACEFS:-/sys/kernel/tracing}}
[ -d "$T/events" ] || T=/sys/kernel/debug/tracing
[ -w "$T/kprobe_events" ] || {{ echo "pinscope: need root and tracefs at $T" >&2; exit 1; }}
KREL=$(uname -r)

warn() {{ echo "pinscope: $*" >&2; }}
have() {{ grep -qE "^$1( |\$)" "$T/available_filter_functions"; }}
# kp GROUP EVENT FUNCTION FETCHARGS [FILTER]
kp() {{
    if ! echo "p:$1/$2 $3 $4" >> "$T/kprobe_events" 2>/dev/null; then
        warn "cannot probe $3 for $2 (not in this kernel?)"; return 0
    fi
    [ -n "$5" ] && echo "$5" > "$T/events/$1/$2/filter"
    echo 1 > "$T/events/$1/$2/enable"
}}
tp() {{ [ -e "$T/events/$1/enable" ] && echo 1 > "$T/events/$1/enable"; return 0; }}
teardown() {{
    echo 0 > "$T/tracing_on"
    for g in {groups}; do [ -d "$T/events/$g" ] && echo 0 > "$T/events/$g/enable"; done
    for g in {groups}; do
        for e in "$T"/events/$g/pinscope_*; do
            [ -d "$e" ] && echo "-:$g/$(basename "$e")" >> "$T/kprobe_events"
        done
    done
    for tpn in {tracepoints} page_ref; do tp_off "$tpn"; done
}}
tp_off() {{ [ -e "$T/events/$1/enable" ] && echo 0 > "$T/events/$1/enable"; return 0; }}
if [ "${{1:-}}" = "--teardown" ]; then teardown; exit 0; fi
"""

_SELECT_RUNTIME = r"""
kver() {
    local v=${1%%%%-*} a b; IFS=. read -r a b _ <<< "$v"; echo $((a * 1000 + ${b%%%%[^0-9]*}))
}
if [ "$(kver "$KREL")" -le 6002 ]; then FOLL_PIN=%(pin_old)s; FOLL_GET=%(get_old)s;
else FOLL_PIN=%(pin_new)s; FOLL_GET=%(get_new)s; fi
if [ "$(kver "$KREL")" -le 5015 ]; then ERA=page_era; else ERA=folio_era; fi
"""

_TAIL = r"""
teardown 2>/dev/null
echo > "$T/trace"
[ -d "$T/events/page_ref" ] && echo 1 > "$T/events/page_ref/enable"
for tpn in {tracepoints}; do tp "$tpn"; done
$ERA
if [ -n "${{SETUP_ONLY:-}}" ]; then echo "pinscope: probes set up; trace-cmd record now"; exit 0; fi
echo "# pinscope kernel=$(uname -r) host=$(hostname)" > "$OUT"
trap 'teardown; echo "pinscope: wrote $OUT" >&2; exit 0' INT TERM
echo 1 > "$T/tracing_on"
echo "pinscope: recording to $OUT, Ctrl-C to stop" >&2
cat "$T/trace_pipe" >> "$OUT"
"""


def ftrace_recipe(kernel: str | None = None) -> str:
    """The bash recipe; with a kernel release, only that era's functions and FOLL_* bits."""
    tps = " ".join(TRACEPOINTS)
    tracecmd = " ".join(["-e page_ref"] + [f"-e {t.replace('/', ':')}" for t in TRACEPOINTS])
    tracecmd += " " + " ".join(f"-e {g}" for g in GROUPS)
    head = _HEAD.format(
        kernel_opt=f" --kernel {kernel}" if kernel else "",
        tracecmd_events=tracecmd,
        groups=" ".join(GROUPS),
        tracepoints=tps,
    )
    parts = [head]
    if kernel:
        release = parse_release(kernel)
        pin, get = foll_bits(release)
        folio = release > (5, 15)
        parts.append(f"# kernel {kernel}: {'folio' if folio else 'page'} functions")
        parts.append(f"FOLL_PIN={pin:#x}; FOLL_GET={get:#x}")
        parts.append(f"ERA={'folio_era' if folio else 'page_era'}")
        parts.append(
            _era_function("folio_era" if folio else "page_era", FOLIO_ERA if folio else PAGE_ERA)
        )
    else:
        pin_old, get_old = foll_bits((6, 2))
        pin_new, get_new = foll_bits((6, 3))
        parts.append(
            _SELECT_RUNTIME
            % {
                "pin_old": hex(pin_old),
                "get_old": hex(get_old),
                "pin_new": hex(pin_new),
                "get_new": hex(get_new),
            }
        )
        parts.append("# up to 5.15: struct page functions")
        parts.append(_era_function("page_era", PAGE_ERA))
        parts.append("# 5.16 onward: folio functions")
        parts.append(_era_function("folio_era", FOLIO_ERA))
    parts.append(_TAIL.format(tracepoints=tps))
    return "\n".join(parts)


def bpftrace_script(kernel: str | None = None) -> str:
    """The shipped bpftrace script; with a kernel release, its FOLL_PIN bit is the default."""
    text = resources.files("ingest.probes").joinpath("pinscope.bt").read_text(encoding="utf-8")
    if kernel:
        pin, _ = foll_bits(parse_release(kernel))
        text = text.replace("@pinbit = $1 ? $1 : 0x80000;", f"@pinbit = $1 ? $1 : {pin:#x};")
    return text
