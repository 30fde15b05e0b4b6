"""Page buckets: a trace's events split so that each bucket's identity pass and state pass need
nothing of the other buckets' (docs/replay.md "Page buckets").

A page's identity can depend on events of other keys: a subpage pin resolves to its folio
head, a file-only event to the pfn that held its file page at that moment. So pfns are
bucketed by block (pfn >> the trace's largest folio order: a head and its subpages share one),
and a routing pass over the trace first decides each file-only event's bucket: that of the pfn
of its file page's latest cache event where it resolves there, else that of its file identity,
where its bucket's pass must not look it up (the cache events that would mislead it may be in
that bucket). Pageless events go to bucket 0. Each bucket then sees every event that decides
its pages' identity, and resolves them exactly as a pass over the whole trace would.

The routing pass keeps a row per file page cached at that moment (not per file page the trace
ever names) and writes each event's bucket to a scratch file (2 bytes an event), which every
later pass reads back memory-mapped: no pass holds anything per event of the whole trace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from replay import identity
from replay import kernel as K

# Per event: its bucket << 1, | 1 where its bucket's pass must not look it up by file.
_CODE = np.uint16
MAX_BUCKETS = 1 << 15


@dataclass
class Routing:
    """A trace's bucketing, what every pass over one of its buckets reads: each event's
    code, in replay order (2 bytes an event, memory-mapped from a scratch file)."""

    buckets: int
    counts: np.ndarray  # events per bucket
    codes: np.ndarray

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """The buckets of the events start..stop in replay order, and which of them their
        bucket's identity pass may look up by file key (`KeyColumns.lookup`)."""
        codes = np.asarray(self.codes[start:stop])
        if codes.shape[0] != stop - start:
            raise ValueError("more events than the routing pass saw")
        return codes >> 1, (codes & 1) == 0


class Router:
    """The routing pass, fed a trace's KeyColumns in replay order, a batch at a time. It keeps
    the file pages cached at a pfn at that moment, with the pfn's bucket (route_pass), and
    writes each event's code to `sink` (or keeps them, with none)."""

    def __init__(self, buckets: int, shift: int, sink: Path | None = None) -> None:
        if not 1 <= buckets <= MAX_BUCKETS:
            raise ValueError(f"page buckets: expected 1 to {MAX_BUCKETS}, got {buckets}")
        self.buckets, self.shift = buckets, shift
        self.keys, self.vals = K.new_file_map(identity._TABLE_ROWS)
        self.used = self.live = 0
        self.counts = np.zeros(buckets, np.int64)
        self.sink_path = sink
        self.sink: BinaryIO | None = None if sink is None else sink.open("wb")
        self.kept: list[np.ndarray] = []

    def feed(self, c: identity.KeyColumns) -> None:
        n = c.kind.shape[0]
        file_v = c.ino_v & c.index_v
        codes = np.empty(n, _CODE)
        r = 0
        while True:
            r, self.used, self.live = K.route_pass(
                c.kind, c.pfn, c.pfn_v, file_v, c.dev, c.dev_v, c.ino, c.index, self.shift,
                self.buckets, self.keys, self.vals, self.used, self.live, r, codes, self.counts,
            )  # fmt: skip
            if r == n:
                break
            self.keys, self.vals = K.file_map_rebuilt(self.keys, self.vals, self.live)
            self.used = self.live
        if self.sink is not None:
            self.sink.write(codes.tobytes())
        else:
            self.kept.append(codes)

    def finish(self) -> Routing:
        self.close()
        del self.keys, self.vals
        if self.sink_path is not None and self.sink_path.stat().st_size > 0:
            codes = np.memmap(self.sink_path, _CODE, "r")
        else:
            codes = np.concatenate([*self.kept, np.zeros(0, _CODE)])
        self.kept = []
        return Routing(self.buckets, self.counts, codes)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
            self.sink = None


def route(
    keys: Iterable[identity.KeyColumns], buckets: int, shift: int, sink: Path | None = None
) -> Routing:
    """The routing pass over a trace's batches of key columns, in replay order (`Router`)."""
    router = Router(buckets, shift, sink)
    try:
        for c in keys:
            router.feed(c)
    finally:
        router.close()
    return router.finish()


def shift_for(max_order: int | None) -> int:
    """A pfn block's shift: the trace's largest folio order (0 with none)."""
    return min(max(int(max_order or 0), 0), 63)
