"""Named workloads with ground truth: the stories pinscope must tell apart.

A scenario writes *records* — what happened, not how a format spells it — into a `Story`; the
writers (ingest/writers.py) render records as trace text. Each hazard has a benign twin that
differs only in the ordering that makes it safe, and every scenario's `expected` list names
every finding docs/rules.md produces for it: no more, no fewer. Records carry local pids, pfns
and inode numbers; `mixed` (ingest/simulate.py) replicates whole stories by offsetting them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from ingest.schema import PROBE_KINDS

# Canonical gup flag bits; writers turn them into the traced kernel's raw values.
W, G, L, P = 1, 2, 4, 8

# Record columns (one row per rendered line or block).
RECORD_SCHEMA: dict[str, pl.DataType] = {
    "ev": pl.String(),  # a kind, or dirty_tp / switch / wakeup / func / lost …
    "ts_ns": pl.Int64(),
    "cpu": pl.Int16(),
    "pid": pl.Int32(),
    "tgid": pl.Int32(),
    "comm": pl.String(),
    "pfn": pl.Int64(),
    "order": pl.Int8(),
    "dev_major": pl.Int32(),
    "dev_minor": pl.Int32(),
    "ino": pl.Int64(),
    "index": pl.Int64(),
    "refs": pl.Int32(),
    "bits": pl.Int32(),  # W|G|L|P
    "caller": pl.String(),
    "new_pfn": pl.Int64(),
    "arg_pid": pl.Int32(),  # fork child / switch next / wakeup target
    "arg_comm": pl.String(),
    "count": pl.Int32(),  # page_ref count, lost-event count
    "stack": pl.Boolean(),  # follow the line with a stack trace
}

PAGE_EVS = PROBE_KINDS


@dataclass(frozen=True)
class Task:
    comm: str
    pid: int
    tgid: int
    cpu: int


@dataclass(frozen=True)
class File:
    ino: int
    major: int = 8
    minor: int = 1


Span = tuple[int, int | None]  # (start ts_ns, end ts_ns or None: open at the trace's end)


@dataclass(frozen=True)
class Expect:
    """A finding a correct analysis must produce, with the times that decide `uncertain`.

    docs/rules.md: a finding is uncertain when a lost-events gap overlaps its own span (`span`,
    ends excluded), or when one of the page's pin intervals that start at the finding's start is
    (`pins`, ends included: docs/replay.md). `uncertain` states what the author expects; the
    simulator computes the flag it writes from the times (ingest/simulate.py) and the tests check
    that both agree."""

    rule: str
    pfn: int
    uncertain: bool = False
    span: Span = (0, 0)
    pins: tuple[Span, ...] = ()


def on_span(rule: str, pfn: int, start: int, end: int | None, uncertain: bool = False) -> Expect:
    """A finding about a pin span itself: its span and its interval are the pin's."""
    return Expect(rule, pfn, uncertain, (start, end), ((start, end),))


# System tasks that hold no pins: the background of every trace.
KWORKER = Task("kworker/u16:3", 412, 412, 2)
JBD2 = Task("jbd2/sda1-8", 581, 581, 1)
KSWAPD = Task("kswapd0", 97, 97, 3)
KCOMPACTD = Task("kcompactd0", 96, 96, 0)
SWAPPER = Task("<idle>", 0, 0, 0)
JOURNALD = Task("systemd-journal", 388, 388, 1)
BASH = Task("bash", 2201, 2201, 0)
NOISE_TASKS = (KWORKER, JBD2, JOURNALD, BASH, KSWAPD)
NOISE_FILE = File(1048621, 8, 1)  # /var/log/journal/…/system.journal
FUNCS = (
    ("pin_user_pages_fast", "ib_umem_get"),
    ("__get_user_pages", "__gup_longterm_locked"),
    ("folio_mark_dirty", "set_page_dirty_lock"),
    ("filemap_write_and_wait_range", "ext4_sync_file"),
    ("unpin_user_pages_dirty_lock", "ib_umem_release"),
    ("schedule", "worker_thread"),
)


@dataclass
class Story:
    """A timeline under construction: events advance a clock in microsecond steps."""

    rng: random.Random
    t_us: int = 4_312_000_000
    noise_pfn: int = 0x7F000
    rows: list[dict] = field(default_factory=list)
    quiet: bool = True  # long quiet stretches; mixed packs its stories closer (False)

    def tick(self, us: int | None = None) -> None:
        self.t_us += us if us is not None else 20 + int(self.rng.randrange(180))

    def add(self, ev: str, task: Task, dt: int | None = None, **kw: object) -> int:
        """Append a record; its timestamp (ns) is what an expected finding's span is made of."""
        self.tick(dt)
        row = {"ev": ev, "ts_ns": self.t_us * 1000, "cpu": task.cpu, "pid": task.pid}
        row.update(tgid=task.tgid, comm=task.comm, order=0, **kw)
        self.rows.append(row)
        return self.t_us * 1000

    # page events
    def pin(self, t: Task, pfn: int, bits: int, caller: str, refs: int = 1, **kw: object) -> int:
        return self.add("pin", t, pfn=pfn, bits=bits | P, caller=caller, refs=refs, **kw)

    def unpin(self, t: Task, pfn: int, caller: str, refs: int = 1, **kw: object) -> int:
        return self.add("unpin", t, pfn=pfn, bits=0, caller=caller, refs=refs, **kw)

    def get(self, t: Task, pfn: int, bits: int, caller: str) -> int:
        return self.add("get", t, pfn=pfn, bits=bits | G, caller=caller, refs=1)

    def page(self, ev: str, t: Task, pfn: int, caller: str | None = None, **kw: object) -> int:
        return self.add(ev, t, pfn=pfn, caller=caller, **kw)

    def cache(self, ev: str, t: Task, pfn: int, f: File, index: int) -> int:
        fk = {"dev_major": f.major, "dev_minor": f.minor, "ino": f.ino, "index": index}
        return self.add(ev, t, pfn=pfn, **fk)

    def dirty_tp(self, t: Task, pfn: int, f: File, index: int) -> int:
        """writeback_dirty_folio: the text shows (ino, index); pfn is kept for bpftrace."""
        fk = {"dev_major": f.major, "dev_minor": 0, "ino": f.ino, "index": index}
        return self.add("dirty_tp", t, pfn=pfn, caller="folio_mark_dirty", **fk)

    def fork(self, t: Task, child: Task) -> None:
        self.add("fork", t, arg_pid=child.pid, arg_comm=child.comm)

    def writeback(self, t: Task, pfn: int) -> None:
        """What a flusher does to one dirty page: write-protect, start and end writeback."""
        self.page("mkclean", t, pfn, "folio_clear_dirty_for_io")
        self.page("wb_start", t, pfn, "ext4_bio_write_folio")
        self.page("wb_end", t, pfn, "ext4_end_bio", dt=400 + int(self.rng.randrange(400)))

    def journal(self) -> None:
        """A journal append on an unrelated page: background every format records."""
        self.noise_pfn += 1
        idx = self.noise_pfn & 0xFFFFF
        self.cache("cache_add", JOURNALD, self.noise_pfn, NOISE_FILE, idx)
        self.dirty_tp(JOURNALD, self.noise_pfn, NOISE_FILE, idx)

    def lost(self, cpu: int, n: int) -> None:
        self.add("lost", Task("", 0, 0, cpu), count=n)

    def noise(self, n: int) -> None:
        """Scheduler chatter, function-tracer lines and unrelated page traffic on other pages."""
        for _ in range(n):
            r = int(self.rng.randrange(10))
            t = NOISE_TASKS[int(self.rng.randrange(len(NOISE_TASKS)))]
            if r < 3:
                nxt = NOISE_TASKS[int(self.rng.randrange(len(NOISE_TASKS)))]
                self.add("switch", t, arg_pid=nxt.pid, arg_comm=nxt.comm, dt=7)
            elif r < 5:
                nxt = NOISE_TASKS[int(self.rng.randrange(len(NOISE_TASKS)))]
                self.add("wakeup", t, arg_pid=nxt.pid, arg_comm=nxt.comm, dt=5)
            elif r < 7:
                fn, parent = FUNCS[int(self.rng.randrange(len(FUNCS)))]
                self.add("func", t, caller=fn, arg_comm=parent, dt=3)
            elif r < 8:
                self.journal()
            elif r < 9:
                self.noise_pfn += 1
                self.add("alloc", t, pfn=self.noise_pfn, dt=4)
                self.add("ref", t, pfn=self.noise_pfn, refs=1, count=2, dt=2)
                self.add("free", t, pfn=self.noise_pfn, dt=9)
            else:
                self.add("switch", SWAPPER, arg_pid=t.pid, arg_comm=t.comm, dt=11, stack=False)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=RECORD_SCHEMA)


Builder = Callable[[Story, int], list[Expect]]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    build: Builder
    benign: bool = False


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, summary: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        SCENARIOS[name] = Scenario(name, summary, fn, benign=not summary.startswith("hazard"))
        return fn

    return deco


# Call sites and tasks of the stories.
IB = "ib_umem_get"
DIO = "__iomap_dio_rw"
EXTRACT = "iov_iter_extract_pages"
VFIO = "vfio_pin_pages_remote"
IOU = "io_sqe_buffer_register"


def _t(comm: str, pid: int, cpu: int, tgid: int | None = None) -> Task:
    return Task(comm, pid, tgid if tgid is not None else pid, cpu)


def _buffered_page(s: Story, t: Task, pfn: int, f: File, index: int) -> None:
    """A page written through the page cache: added, buffers attached, dirtied."""
    s.cache("cache_add", t, pfn, f, index)
    s.page("mkwrite", t, pfn, "ext4_da_write_begin")
    s.dirty_tp(t, pfn, f, index)


@scenario(
    "rdma-writeback",
    "hazard: ib_write_bw registers a writable file mapping; kworker writes it back while pinned",
)
def rdma_writeback(s: Story, base: int) -> list[Expect]:
    """An RDMA MR over an mmapped file (no FOLL_LONGTERM: an out-of-tree driver path); the
    flusher cleans and writes the page while the HCA may still write it. The driver dirties
    before it unpins, so only the writeback exposure is reported."""
    app, f, p = _t("ib_write_bw", 4101, 1), File(1835021), base
    _buffered_page(s, app, p, f, 0)
    s.noise(3)
    pin = s.pin(app, p, W, IB, stack=True)
    s.noise(4)
    s.writeback(KWORKER, p)
    s.noise(3)
    s.page("dirty", app, p, "ib_umem_release")
    unpin = s.unpin(app, p, "ib_umem_release")
    s.noise(2)
    return [on_span("PIN_SPANS_WRITEBACK", p, pin, unpin)]


@scenario(
    "rdma-writeback-safe",
    "benign twin of rdma-writeback: the registration happens after writeback completed",
)
def rdma_writeback_safe(s: Story, base: int) -> list[Expect]:
    """Same pages, tasks and calls as rdma-writeback; writeback ends before the pin is taken."""
    app, f, p = _t("ib_write_bw", 4111, 1), File(1835022), base
    _buffered_page(s, app, p, f, 0)
    s.noise(3)
    s.writeback(KWORKER, p)
    s.noise(2)
    s.pin(app, p, W, IB)
    s.noise(4)
    s.page("dirty", app, p, "ib_umem_release")
    s.unpin(app, p, "ib_umem_release")
    s.noise(2)
    return []


@scenario(
    "rdma-buffers-freed",
    "hazard: rdma-writeback, then kswapd frees the buffers and the release path dirties the page",
)
def rdma_buffers_freed(s: Story, base: int) -> list[Expect]:
    """Jan Kara's 2018 crash: writeback cleans the pinned page, try_to_free_buffers detaches its
    buffer heads, and set_page_dirty_lock at MR release leaves a dirty page without buffers."""
    app, f, p = _t("ib_write_bw", 4121, 2), File(1835031), base
    _buffered_page(s, app, p, f, 7)
    pin = s.pin(app, p, W, IB)
    s.noise(3)
    s.writeback(KWORKER, p)
    s.noise(2)
    s.page("free_buffers", KSWAPD, p, "shrink_folio_list")
    s.noise(2)
    dirty = s.page("dirty", app, p, "ib_umem_release", stack=True)
    unpin = s.unpin(app, p, "ib_umem_release")
    s.noise(2)
    return [
        on_span("PIN_SPANS_WRITEBACK", p, pin, unpin),
        Expect("DIRTY_WITHOUT_BUFFERS", p, span=(pin, dirty), pins=((pin, unpin),)),
    ]


@scenario(
    "rdma-anon", "benign: ib_write_bw registers anonymous memory (FOLL_LONGTERM) and releases it"
)
def rdma_anon(s: Story, base: int) -> list[Expect]:
    """The normal RDMA case: anonymous pages have no writeback, so a long-term pin is fine."""
    app = _t("ib_write_bw", 4131, 0)
    for i in range(2):
        s.page("alloc", app, base + i)
    for i in range(2):
        s.pin(app, base + i, W | L, IB)
    s.noise(5)
    s.writeback(KWORKER, base + 0x40)  # unrelated dirty data of someone else
    for i in range(2):
        s.page("dirty", app, base + i, "ib_umem_release")
        s.unpin(app, base + i, "ib_umem_release")
    s.noise(2)
    return []


@scenario("odirect-truncate", "hazard: fio's O_DIRECT write reads a mmapped page that is truncated")
def odirect_truncate(s: Story, base: int) -> list[Expect]:
    """An O_DIRECT write sourced from a MAP_SHARED file page (read-only pin); another task
    truncates the file while the bio is in flight: the page leaves the cache under the pin."""
    fio, tr, f, p = _t("fio", 5101, 1), _t("truncate", 5102, 2), File(2621473), base
    _buffered_page(s, fio, p, f, 3)
    s.writeback(KWORKER, p)
    pin = s.pin(fio, p, 0, EXTRACT)
    s.noise(3)
    s.page("truncate", tr, p, "truncate_inode_pages_range")
    s.cache("cache_del", tr, p, f, 3)
    s.noise(2)
    unpin = s.unpin(fio, p, "bio_release_pages")
    s.page("free", fio, p)
    return [on_span("PIN_SPANS_TRUNCATE", p, pin, unpin)]


@scenario(
    "truncate-after-unpin",
    "benign twin of odirect-truncate: the truncate comes after the O_DIRECT write completed",
)
def truncate_after_unpin(s: Story, base: int) -> list[Expect]:
    """odirect-truncate with the truncate after bio_release_pages."""
    fio, tr, f, p = _t("fio", 5111, 1), _t("truncate", 5112, 2), File(2621474), base
    _buffered_page(s, fio, p, f, 3)
    s.writeback(KWORKER, p)
    s.pin(fio, p, 0, EXTRACT)
    s.noise(3)
    s.unpin(fio, p, "bio_release_pages")
    s.noise(2)
    s.page("truncate", tr, p, "truncate_inode_pages_range")
    s.cache("cache_del", tr, p, f, 3)
    s.page("free", tr, p)
    return []


@scenario(
    "dirty-after-truncate",
    "hazard: an O_DIRECT read into a mmapped page; truncate; the completion dirties the orphan",
)
def dirty_after_truncate(s: Story, base: int) -> list[Expect]:
    """The device writes into a file page that truncate removed: set_page_dirty_lock at
    completion is a no-op and the data is gone. The truncate also spans the pin."""
    pg, tr, f, p = _t("postgres", 5201, 3), _t("truncate", 5202, 0), File(2621481), base
    _buffered_page(s, pg, p, f, 12)
    s.writeback(KWORKER, p)
    pin = s.pin(pg, p, W, DIO)
    s.noise(2)
    s.page("truncate", tr, p, "truncate_inode_pages_range")
    cut = s.cache("cache_del", tr, p, f, 12)  # the latest cut before the dirty starts its span
    s.noise(2)
    dirty = s.page("dirty", pg, p, "bio_set_pages_dirty", stack=True)
    unpin = s.unpin(pg, p, "bio_release_pages")
    return [
        on_span("PIN_SPANS_TRUNCATE", p, pin, unpin),
        Expect("DIRTY_AFTER_TRUNCATE", p, span=(cut, dirty)),
    ]


@scenario(
    "odirect-read", "benign: an O_DIRECT read into a mmapped file page, dirtied before release"
)
def odirect_read(s: Story, base: int) -> list[Expect]:
    """What bio_release_pages does right: the page is dirtied while still pinned."""
    fio, f, p = _t("fio", 5301, 2), File(2621491), base
    for i in range(2):
        _buffered_page(s, fio, p + i, f, i)
        s.writeback(KWORKER, p + i)
    s.noise(2)
    for i in range(2):
        s.pin(fio, p + i, W, DIO)
    s.noise(3)
    for i in range(2):
        s.page("dirty", fio, p + i, "bio_set_pages_dirty")
        s.unpin(fio, p + i, "bio_release_pages")
    s.noise(2)
    return []


@scenario(
    "unpin-without-dirty", "hazard: a writable pin on a file page is released without dirtying it"
)
def unpin_without_dirty(s: Story, base: int) -> list[Expect]:
    """A driver unpins with unpin_user_page instead of unpin_user_pages_dirty_lock: whatever the
    device wrote can be dropped by reclaim."""
    app, f, p = _t("qemu-system-x86", 5401, 1, 5400), File(3145761), base
    _buffered_page(s, app, p, f, 5)
    s.writeback(KWORKER, p)
    pin = s.pin(app, p, W, VFIO)
    s.noise(4)
    unpin = s.unpin(app, p, "vfio_unpin_pages_remote")
    s.noise(2)
    return [on_span("UNPIN_WITHOUT_DIRTY", p, pin, unpin)]


@scenario("dirty-after-unpin", "hazard: a driver dirties an anonymous page after it unpinned it")
def dirty_after_unpin(s: Story, base: int) -> list[Expect]:
    """put_page before set_page_dirty: by then the page may belong to someone else."""
    app, p = _t("qemu-system-x86", 5501, 2, 5500), base
    s.page("alloc", app, p)
    s.pin(app, p, W, VFIO)
    s.noise(3)
    unpin = s.unpin(app, p, "vfio_unpin_pages_remote")
    dirty = s.page("dirty", app, p, "vfio_unpin_pages_remote", stack=True)
    s.noise(2)
    return [Expect("DIRTY_AFTER_UNPIN", p, span=(unpin, dirty))]


@scenario(
    "fork-while-pinned", "hazard: qemu forks while a page is pinned; COW replaces it in the pinner"
)
def fork_while_pinned(s: Story, base: int) -> list[Expect]:
    """Arcangeli's 2009 race: after fork the parent's write takes a COW copy; the device keeps
    the old page, the process the new one."""
    app, child, p = _t("qemu-system-x86", 5601, 0, 5600), _t("qemu-system-x86", 5602, 3), base
    s.page("alloc", app, p)
    pin = s.pin(app, p, W, VFIO)
    s.noise(2)
    s.fork(app, child)
    s.noise(2)
    replace = s.page("replace", app, p, "wp_page_copy", new_pfn=p + 1)
    s.noise(2)
    unpin = s.unpin(app, p, "vfio_unpin_pages_remote")
    return [Expect("FORK_WHILE_PINNED", p, span=(pin, replace), pins=((pin, unpin),))]


@scenario(
    "fork-dontfork",
    "benign twin of fork-while-pinned: MADV_DONTFORK keeps the pinned page; only others COW",
)
def fork_dontfork(s: Story, base: int) -> list[Expect]:
    """The pinned buffer is MADV_DONTFORK: after fork only an unpinned page is copied."""
    app, child, p = _t("qemu-system-x86", 5611, 0, 5610), _t("qemu-system-x86", 5612, 3), base
    s.page("alloc", app, p)
    s.page("alloc", app, p + 2)
    s.pin(app, p, W, VFIO)
    s.noise(2)
    s.fork(app, child)
    s.noise(2)
    s.page("replace", app, p + 2, "wp_page_copy", new_pfn=p + 3)
    s.noise(2)
    s.unpin(app, p, "vfio_unpin_pages_remote")
    return []


@scenario("migrate-while-pinned", "hazard: kcompactd migrates a page that a vfio task holds pinned")
def migrate_while_pinned(s: Story, base: int) -> list[Expect]:
    """Migration (or KSM, or page forking) replaces a pinned page: pin and page tables diverge."""
    app, p = _t("qemu-system-x86", 5701, 1, 5700), base
    s.page("alloc", app, p)
    pin = s.pin(app, p, W, VFIO)
    s.noise(3)
    replace = s.page("replace", KCOMPACTD, p, "migrate_folio", new_pfn=p + 1)
    s.noise(2)
    unpin = s.unpin(app, p, "vfio_unpin_pages_remote")
    return [Expect("PAGE_REPLACED_WHILE_PINNED", p, span=(pin, replace), pins=((pin, unpin),))]


@scenario(
    "longterm-file-pin",
    "hazard: io_uring registers a file mapping as a fixed buffer (FOLL_LONGTERM)",
)
def longterm_file_pin(s: Story, base: int) -> list[Expect]:
    """io_sqe_buffer_register pins a MAP_SHARED file page long-term (refused since 6.5); the
    ring dirties it before unregistering, so nothing else fires."""
    pg, f, p = _t("postgres", 5801, 2), File(3670049), base
    _buffered_page(s, pg, p, f, 0)
    s.writeback(KWORKER, p)
    pin = s.pin(pg, p, W | L, IOU)
    s.noise(4)
    s.page("dirty", pg, p, "io_buffer_unmap")
    unpin = s.unpin(pg, p, "io_buffer_unmap")
    return [on_span("LONGTERM_PIN_FILE_BACKED", p, pin, unpin)]


@scenario(
    "free-while-pinned",
    "hazard: a buggy driver drops one reference too many; the pinned page is freed",
)
def free_while_pinned(s: Story, base: int) -> list[Expect]:
    """The page goes back to the allocator while the device still holds a pin on it."""
    app, p = _t("ib_write_bw", 5901, 3), base
    s.page("alloc", app, p)
    pin = s.pin(app, p, W, IB)
    s.noise(3)
    free = s.page("free", app, p)
    s.noise(2)
    # a free does not close the pin span: it stays open to the trace's end (docs/replay.md)
    return [Expect("PAGE_FREED_WHILE_PINNED", p, span=(pin, free), pins=((pin, None),))]


@scenario(
    "release-mismatch",
    "hazard: a get_user_pages (FOLL_GET) reference released with unpin_user_page",
)
def release_mismatch(s: Story, base: int) -> list[Expect]:
    """A half-converted driver: it takes FOLL_GET references and drops them as pins."""
    app, p = _t("fio", 6001, 0), base
    s.page("alloc", app, p)
    get = s.get(app, p, 0, "process_vm_rw_core")
    s.noise(2)
    unpin = s.unpin(app, p, "process_vm_rw_core", stack=True)
    s.noise(2)
    return [Expect("RELEASE_MISMATCH", p, span=(get, unpin))]  # a read-only get: no pin span


@scenario(
    "pin-leak", "hazard: a pin never released; its holder goes quiet for the rest of the trace"
)
def pin_leak(s: Story, base: int) -> list[Expect]:
    """An error path that forgets unpin_user_pages: the pin outlives its task's activity."""
    app, p = _t("ib_write_bw", 6101, 1), base
    s.page("alloc", app, p)
    s.page("alloc", app, p + 1)
    pin = s.pin(app, p, W, IB)
    s.pin(app, p + 1, W, IB)
    s.noise(2)
    s.page("dirty", app, p + 1, "ib_umem_release")
    s.unpin(app, p + 1, "ib_umem_release")
    s.noise(2)
    return [on_span("PIN_LEAK", p, pin, None)]


@scenario(
    "midtrace", "benign: the trace starts while pages are pinned; their release is not a mismatch"
)
def midtrace(s: Story, base: int) -> list[Expect]:
    """Pins taken before tracing began are released: the replay infers the pin's span."""
    fio, f, p = _t("fio", 6201, 2), File(4194337), base
    s.page("dirty", fio, p, "bio_set_pages_dirty")
    s.unpin(fio, p, "bio_release_pages")
    s.unpin(fio, p + 1, "bio_release_pages")
    s.noise(3)
    _buffered_page(s, fio, p + 2, f, 1)
    s.writeback(KWORKER, p + 2)
    s.pin(fio, p + 2, W, DIO)
    s.page("dirty", fio, p + 2, "bio_set_pages_dirty")
    s.unpin(fio, p + 2, "bio_release_pages")
    return []


@scenario(
    "lost-events",
    "hazard: a pin spanning writeback across a lost-events gap (uncertain); one certain before",
)
def lost_events(s: Story, base: int) -> list[Expect]:
    """The ring buffer overflowed while a page was pinned: that finding is uncertain; an
    unpin-without-dirty that closed long before the gap stays certain."""
    app, f = _t("ib_write_bw", 6301, 1), File(1835041)
    a, b = base, base + 1
    _buffered_page(s, app, a, f, 0)
    s.writeback(KWORKER, a)
    pin_a = s.pin(app, a, W, IB)
    unpin_a = s.unpin(app, a, "ib_umem_release")
    s.noise(4)
    s.tick(200_000 if s.quiet else 5_000)
    _buffered_page(s, app, b, f, 1)
    pin_b = s.pin(app, b, W, IB)
    s.journal()
    s.lost(1, 187)
    s.journal()
    s.writeback(KWORKER, b)
    s.page("dirty", app, b, "ib_umem_release")
    unpin_b = s.unpin(app, b, "ib_umem_release")
    s.noise(2)
    return [
        on_span("UNPIN_WITHOUT_DIRTY", a, pin_a, unpin_a),
        on_span("PIN_SPANS_WRITEBACK", b, pin_b, unpin_b, uncertain=True),
    ]


MIXED = "mixed"
MIXED_SUMMARY = "all scenarios, interleaved many times with background traffic (--events N)"
# One instance's pages, pids and inodes stay below these spans; mixed offsets by multiples.
PFN_SPAN = 0x100
PID_SPAN = 32


def build(
    name: str, seed: int, *, noise: bool = True, base_pfn: int = 0x10A000, quiet_tail: bool = True
) -> tuple[pl.DataFrame, list[Expect]]:
    """One scenario instance: its records (time-ordered) and expected findings."""
    sc = SCENARIOS[name]
    story = Story(random.Random(seed), noise_pfn=base_pfn + 0x80, quiet=quiet_tail)
    if noise:
        story.noise(6)
    expected = sc.build(story, base_pfn)
    if noise:
        story.noise(4)
    if name == "pin-leak" and quiet_tail:
        story.tick(1_500_000)  # the holder stays silent: the pin outlives its task's activity
        story.journal()
        story.noise(3)
    return story.frame(), expected


def listing() -> list[tuple[str, str]]:
    return [(s.name, s.summary) for s in SCENARIOS.values()] + [(MIXED, MIXED_SUMMARY)]
