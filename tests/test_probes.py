"""The shipped probes: the tracefs recipe and the bpftrace script, checked against the readers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from ingest.framing import ChunkContext
from ingest.mapping import load_mapping, map_events
from ingest.probes.recipe import bpftrace_script, ftrace_recipe, parse_release
from ingest.read_bpftrace import frame_bpftrace
from ingest.schema import PROBE_KINDS
from pinscope.cli import app

BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash not installed")
PAGE_FUNCS = (
    "try_grab_compound_head",
    "__test_set_page_writeback",
    "end_page_writeback",
    "page_mkclean",
    "truncate_inode_page",
)
FOLIO_FUNCS = (
    "try_grab_folio",
    "__folio_start_writeback",
    "folio_end_writeback",
    "folio_mkclean",
    "truncate_inode_folio",
)


def kprobe_defs(recipe: str) -> list[tuple[str, str, str]]:
    """(group, event, function) of every `kp` call in a recipe."""
    return re.findall(r"kp (pinscope\d?) (pinscope_\w+) (\S+) '", recipe)


@needs_bash
@pytest.mark.parametrize("kernel", [None, "5.10", "5.15.0-91-generic", "6.1", "6.8.0-45-generic"])
def test_recipe_is_valid_bash_and_names_every_kind(kernel):
    recipe = ftrace_recipe(kernel)
    subprocess.run([BASH, "-n"], input=recipe, text=True, check=True)
    events = {e for _, e, _ in kprobe_defs(recipe)}
    assert events == {f"pinscope_{k}" for k in PROBE_KINDS}
    assert 'echo "# pinscope kernel=$(uname -r) host=$(hostname)" > "$OUT"' in recipe
    assert "trace-cmd record -e page_ref" in recipe
    for tp in (
        "mm_filemap_add_to_page_cache",
        "writeback_dirty_folio",
        "mm_page_alloc",
        "sched_process_fork",
    ):
        assert tp in recipe


def test_recipe_picks_functions_and_foll_pin_by_version():
    old, new = ftrace_recipe("5.10"), ftrace_recipe("6.8")
    old_funcs = {f for _, _, f in kprobe_defs(old)}
    new_funcs = {f for _, _, f in kprobe_defs(new)}
    assert set(PAGE_FUNCS) <= old_funcs and not set(FOLIO_FUNCS) & old_funcs
    assert set(FOLIO_FUNCS) <= new_funcs and not set(PAGE_FUNCS) & new_funcs
    assert "FOLL_PIN=0x40000; FOLL_GET=0x4" in old
    assert "FOLL_PIN=0x80000; FOLL_GET=0x2" in new
    assert "FOLL_PIN=0x40000; FOLL_GET=0x4" in ftrace_recipe("6.2")
    both = ftrace_recipe(None)
    assert set(PAGE_FUNCS + FOLIO_FUNCS) <= {f for _, _, f in kprobe_defs(both)}


@needs_bash
@pytest.mark.parametrize(
    ("kernel", "func"), [("6.8", "try_grab_folio"), ("5.10", "try_grab_compound_head")]
)
def test_recipe_writes_kprobe_events_into_tracefs(tmp_path, kernel, func):
    # A stand-in tracefs: the recipe writes the same files it writes in /sys/kernel/tracing.
    t = tmp_path / "tracing"
    (t / "events").mkdir(parents=True)
    for name in ("kprobe_events", "trace", "tracing_on"):
        (t / name).write_text("")
    (t / "available_filter_functions").write_text(
        "gup_put_folio\n__folio_put [x]\nfolio_mark_dirty\n"
    )
    env = {**os.environ, "PINSCOPE_TRACEFS": str(t), "SETUP_ONLY": "1"}
    res = subprocess.run(
        [BASH, "-s"], input=ftrace_recipe(kernel), text=True, env=env, capture_output=True
    )
    assert res.returncode == 0, res.stderr
    defs = (t / "kprobe_events").read_text().splitlines()
    pin = next(d for d in defs if d.startswith("p:pinscope/pinscope_pin "))
    assert (
        pin == f"p:pinscope/pinscope_pin {func} page=$arg1:x64 vmemmap=@vmemmap_base:x64"
        " refs=$arg2:s32 flags=$arg3:x32"
    )
    if kernel == "6.8":
        assert any(d.startswith("p:pinscope/pinscope_unpin gup_put_folio ") for d in defs)
        assert not any("unpin_user_page" in d for d in defs)  # gup_put_folio is available
        assert not any("try_grab_folio_fast" in d for d in defs)  # not available here
    else:
        assert any(d.startswith("p:pinscope2/pinscope_unpin unpin_user_page ") for d in defs)


def test_parse_release():
    assert parse_release("6.8.0-45-generic") == (6, 8)
    assert parse_release("5.15") == (5, 15)
    assert parse_release("6.10-rc3") == (6, 10)
    with pytest.raises(ValueError):
        parse_release("linux")


# ----------------------------------------------------------------- bpftrace script ↔ reader


PRINTF = re.compile(r'printf\("(\S+ \S+ \S+ \S+ pinscope_\w+: [^"]*)\\n"')


def render(fmt: str, comm: str) -> str:
    """Fill one of the script's printf formats the way bpftrace would."""
    py = fmt.replace("%llu", "%d")
    values: list[object] = []
    for conv in re.findall(r"%[a-z]+", py):
        values.append(comm if conv == "%s" else 7)
    specs = re.findall(r"(\w+)=%s", py)
    # caller=%s takes a symbol, comm=%s the task name (to the end of the line).
    it = iter(["ib_umem_get" if s == "caller" else comm for s in specs])
    values = [next(it) if v == comm else v for v in values]
    return py % tuple(values)


def test_every_bpftrace_printf_frames_and_maps():
    script = bpftrace_script()
    formats = PRINTF.findall(script)
    kinds_in_script = {re.search(r"pinscope_(\w+):", f).group(1) for f in formats}
    assert kinds_in_script == set(PROBE_KINDS) | {"fork"}
    lines = ["Attaching 30 probes...", "# pinscope kernel=6.8.0 host=h"]
    lines += [render(f, "kworker/u8:1 flush 254:0") for f in formats]
    ctx = ChunkContext(path="bt.txt", format="bpftrace")
    framed = frame_bpftrace(pl.Series(lines), 1, ctx)
    assert framed["cls"].cast(pl.String).to_list() == ["comment"] * 2 + ["event"] * len(formats)
    ev = framed.filter(pl.col("cls") == "event")
    assert set(ev["comm"].to_list()) == {"kworker/u8:1 flush 254:0"}
    chunk = map_events(ev, "bt", load_mapping())
    assert chunk.rejects.height == 0 and chunk.other.height == 0
    assert chunk.events.height == len(formats)
    out = chunk.events
    assert out.filter(pl.col("kind") != "fork")["pfn"].to_list() == [7] * (len(formats) - 1)
    assert set(out["caller"].drop_nulls().to_list()) == {"ib_umem_get"}
    assert set(out.filter(pl.col("kind").is_in(["unpin", "put"]))["refs"].to_list()) == {-7, -1}
    assert out.filter(pl.col("kind") == "replace")["new_pfn"].to_list() == [7, 7]


def test_bpftrace_script_pin_bit_follows_kernel():
    assert "@pinbit = $1 ? $1 : 0x80000;" in bpftrace_script()
    assert "@pinbit = $1 ? $1 : 0x40000;" in bpftrace_script("6.1")
    assert "@pinbit = $1 ? $1 : 0x80000;" in bpftrace_script("6.8")


_FORK_FORMAT = Path("/sys/kernel/tracing/events/sched/sched_process_fork/format")


@pytest.mark.skipif(shutil.which("bpftrace") is None, reason="bpftrace is not installed")
@pytest.mark.skipif(
    not os.access(_FORK_FORMAT, os.R_OK),
    reason="tracefs is not mounted: bpftrace cannot read the tracepoint formats it checks against",
)
@pytest.mark.skipif(
    not os.access("/sys/kernel/btf/vmlinux", os.R_OK),
    reason="the kernel has no BTF: bpftrace cannot resolve the script's struct folio casts",
)
@pytest.mark.parametrize("kernel", [None, "6.1", "5.10"])
def test_bpftrace_script_passes_bpftrace_semantic_checks(tmp_path, kernel):
    """The real bpftrace parses and type-checks the script against this kernel's tracepoints.

    A dry run (`-d`) stops where it would need kernel symbols or privileges it may not have
    (`vmemmap_base`, locked memory); every error it reports *in the script* is a real bug, such
    as `args.child_pid`, which bpftrace before 0.20 rejects (it wants `args->child_pid`).
    """
    script = tmp_path / "pinscope.bt"
    script.write_text(bpftrace_script(kernel))
    res = subprocess.run(
        ["bpftrace", "-d", str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    out = res.stdout + res.stderr
    assert "Program" in out or "map:" in out, out[-2000:]  # it got as far as the analysed AST
    in_script = [ln for ln in out.splitlines() if f"{script.name}:" in ln and "ERROR" in ln]
    assert not in_script, "\n".join(in_script)


# ----------------------------------------------------------------- the command


def test_cli_probes():
    runner = CliRunner()
    res = runner.invoke(app, ["probes", "ftrace", "--kernel", "5.10"])
    assert res.exit_code == 0 and "try_grab_compound_head" in res.stdout
    res = runner.invoke(app, ["probes", "bpftrace"])
    assert res.exit_code == 0 and "kprobe:try_grab_folio*" in res.stdout
    res = runner.invoke(app, ["probes", "dtrace"])
    assert res.exit_code == 2 and "expected bpftrace or ftrace" in res.output
    res = runner.invoke(app, ["probes", "ftrace", "--kernel", "banana"])
    assert res.exit_code == 2 and "--kernel" in res.output
