"""Opening a trace file, whatever it is wrapped in, as a stream of numbered line chunks.

Containers are recognised by their magic bytes, not their suffix: users rename files, and CI
systems add `.log` to everything. A trace-cmd `.dat` file is turned into text by `trace-cmd
report`, streamed from its stdout so that its size never matters.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

from ingest.errors import InputError

# ~400k lines: per-chunk costs stay small (32 and 64 MiB measured the same CPU per line), and
# with two chunks in work and one queued (ingest/pipeline.py) peak RSS stays < 1.5 GiB.
BLOCK_SIZE = 48 << 20
# The last TAIL_BLOCKS blocks' worth of a file of known size is read in blocks this many times
# smaller: the workers then finish within a small block of each other, where the last whole
# block kept one of them busy alone for ~0.3 s (3% of a 10M-line ingest).
TAIL_BLOCKS = 2
TAIL_SPLIT = 4

MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gz"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bz2"),
    (b"\x28\xb5\x2f\xfd", "zst"),
    (b"\x17\x08\x44tracing", "dat"),
)

TRACE_CMD_HINT = (
    "install trace-cmd (Debian: apt-get install trace-cmd) or run `trace-cmd report` on it"
)

# `trace-cmd report` flags: -t keeps nanoseconds (it otherwise truncates to microseconds).
TRACE_CMD_REPORT = ("report", "-t", "-i")

_SEP = "\x1f"  # a byte no trace line contains; checked per block, with a fallback


@dataclass
class Source:
    """An opened input: a text stream plus what is known about the file it came from."""

    path: Path
    container: str  # plain, gz, xz, bz2, zst, dat
    size: int
    stream: BinaryIO  # decompressed / reported text bytes
    raw: BinaryIO | None  # the file itself, for progress (None for .dat)
    uname: str | None = None  # `trace-cmd report --uname` for .dat files

    def raw_position(self) -> int | None:
        """How far into the file on disk reading has got, for a progress bar."""
        if self.raw is None or self.raw.closed:
            return None
        return self.raw.tell()


def sniff(path: Path) -> str:
    """Which container a file is, from its first bytes; raise for binary junk."""
    _check_file(path)
    with open(path, "rb") as f:
        head = f.read(1024)
    for magic, name in MAGICS:
        if head.startswith(magic):
            return name
    if b"\x00" in head:
        raise InputError(
            f"{path}: binary data (NUL bytes in the first KiB), not a trace: expected text "
            "(ftrace, trace-cmd report, perf script, bpftrace), a .gz/.xz/.bz2/.zst of one, "
            "or a trace-cmd .dat file"
        )
    return "plain"


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a trace file")


def sha256_of(path: Path) -> str:
    """The file's identity in the manifest: re-ingesting the same bytes is a no-op."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def trace_cmd_uname(path: Path) -> str | None:
    """`Linux host release arch` as trace-cmd recorded it, or None."""
    exe = shutil.which("trace-cmd")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "report", "--uname", "-i", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = [ln for ln in out.stdout.splitlines() if ln.startswith("Linux ")]
    return found[0].strip() if found else None


@contextmanager
def open_source(path: Path) -> Iterator[Source]:
    """Open a trace for reading as text bytes, undoing compression or running trace-cmd."""
    path = Path(path)
    container = sniff(path)
    size = path.stat().st_size
    if container == "dat":
        with _trace_cmd_report(path) as src:
            yield src
        return
    raw = open(path, "rb")  # noqa: SIM115 - closed below, wrapped by the decompressor
    try:
        stream: BinaryIO
        if container == "gz":
            stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        elif container == "xz":
            stream = lzma.LZMAFile(raw, mode="rb")  # type: ignore[assignment]  # noqa: SIM115
        elif container == "bz2":
            stream = bz2.BZ2File(raw, mode="rb")  # type: ignore[assignment]
        elif container == "zst":
            stream = _ZstdFrames(raw)  # type: ignore[assignment]
        else:
            stream = raw
        if container != "plain":
            stream = _Guarded(stream, path, container)  # type: ignore[assignment]
        yield Source(path, container, size, stream, raw)
    finally:
        raw.close()


class _ZstdFrames(io.RawIOBase):
    """Every frame of a .zst file, one after another, failing on a frame cut off.

    zstandard's stream_reader returns the text of a truncated file up to the cut without a
    word: the rest of the trace would be lost silently.
    """

    def __init__(self, raw: BinaryIO) -> None:
        import zstandard

        self._new = zstandard.ZstdDecompressor().decompressobj
        self.raw = raw
        self.dobj = self._new()
        self.in_frame = False  # bytes of the current frame fed, its end not seen yet
        self.buf = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        while not self.buf:
            block = self.raw.read(1 << 20)
            if not block:
                if self.in_frame:
                    raise EOFError("the last zstd frame is cut off before its end")
                return b""
            self.buf = self._feed(block)
        if n < 0 or n >= len(self.buf):
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _feed(self, block: bytes) -> bytes:
        out = []
        while block:
            out.append(self.dobj.decompress(block))
            self.in_frame = True
            if not self.dobj.eof:
                break
            block = self.dobj.unused_data  # the next frame starts here
            self.dobj = self._new()
            self.in_frame = False
        return b"".join(out)


class _Guarded(io.RawIOBase):
    """A decompressor whose failures (cut-off or corrupt data) become InputErrors.

    Each library fails its own way (EOFError, zlib.error, LZMAError, OSError, ZstdError), and
    click would turn an EOFError into a silent exit 1: the user gets one message instead.
    """

    def __init__(self, inner: BinaryIO, path: Path, container: str) -> None:
        self.inner = inner
        self.path = path
        self.container = container
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        try:
            data = self.inner.read(n)
        except Exception as exc:
            why = "cut off" if isinstance(exc, EOFError) else "corrupt"
            where = f" after {self.count:,} bytes of text" if self.count else ""
            raise InputError(
                f"{self.path}: the .{self.container} data is {why}{where} "
                f"({type(exc).__name__}: {exc}); expected a complete .{self.container} "
                f"file (to analyze the readable part, decompress it to a text file first)"
            ) from None
        self.count += len(data)
        return data


@contextmanager
def _trace_cmd_report(path: Path) -> Iterator[Source]:
    exe = shutil.which("trace-cmd")
    if exe is None:
        raise InputError(f"{path} is a trace-cmd .dat file; {TRACE_CMD_HINT}")
    uname = trace_cmd_uname(path)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [exe, *TRACE_CMD_REPORT, str(path)], stdout=subprocess.PIPE, stderr=err
        )
        assert proc.stdout is not None
        stream = _CountingReader(proc.stdout)
        try:
            yield Source(path, "dat", path.stat().st_size, stream, None, uname)  # type: ignore[arg-type]
        finally:
            proc.stdout.close()
            rc = proc.wait()
        err.seek(0)
        message = err.read().decode("utf-8", "replace").strip()
        # trace-cmd exits 0 even when it cannot read the file: an empty report with a message
        # on stderr is the failure signal too.
        if rc != 0 or (stream.count == 0 and message):
            raise InputError(
                f"{path}: `trace-cmd report` failed (exit {rc}): {message or 'no output'}"
            )


class _CountingReader(io.RawIOBase):
    """A pipe that remembers how many bytes came through it."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        data = self.inner.read(n)
        self.count += len(data)
        return data


@dataclass
class LineChunk:
    """A run of whole lines: `lines[i]` is line `first_line + i` of the file.

    The chunk keeps its bytes (`data[:end]`, every line `\\n`-terminated): the compiled ftrace
    path reads them directly, and the String series `lines` is only split when asked for.
    """

    data: bytes
    end: int
    first_line: int
    nbytes: int
    n_lines: int

    @cached_property
    def lines(self) -> pl.Series:
        return split_lines(self.data, self.end)


def read_full(stream: BinaryIO, n: int) -> bytes:
    """Read up to n bytes, looping: pipes and decompressors return short reads."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        data = stream.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def iter_line_chunks(
    stream: BinaryIO, block_size: int = BLOCK_SIZE, size: int | None = None
) -> Iterator[LineChunk]:
    """Cut a byte stream into chunks of whole lines, carrying the partial last line forward.

    A final line without a newline is still a line. `\\r\\n` endings lose their `\\r`.
    A seekable stream re-reads the partial last line with the next block instead of copying
    the block behind it (a 48 MiB copy into fresh pages per chunk). With the stream's `size`
    known, its end comes in smaller blocks (TAIL_BLOCKS, TAIL_SPLIT).
    """
    from ingest.ftrace_kernel import count_lines, words_of

    try:
        seekable = stream.seekable()
    except (AttributeError, OSError):
        seekable = False
    first_line = 1
    tail = b""
    consumed = 0  # bytes of the stream in chunks so far
    small = max(block_size // TAIL_SPLIT, 1)
    while True:
        near_end = size is not None and size - consumed <= TAIL_BLOCKS * block_size
        data = read_full(stream, small if near_end else block_size)
        if not data:
            break
        block = tail + data if tail else data
        cut = block.rfind(b"\n")
        if cut < 0:
            tail = block  # one line longer than a block: keep reading
            continue
        tail = block[cut + 1 :]
        if tail and seekable and len(tail) <= len(data):
            stream.seek(-len(tail), io.SEEK_CUR)
            tail = b""
        consumed += cut + 1
        buf = np.frombuffer(block, np.uint8)
        n = count_lines(buf, words_of(buf), cut + 1)
        yield LineChunk(block, cut + 1, first_line, cut + 1, n)
        first_line += n
    if tail:
        block = tail + b"\n"
        yield LineChunk(block, len(block), first_line, len(tail), 1)


def hashed_chunks(chunks: Iterable[LineChunk], h: hashlib._Hash) -> Iterator[LineChunk]:
    """The chunks, each hashed on a worker thread while the next is read (sha256 releases the
    GIL). A plain file's chunks are its bytes, in order: whoever reads it in chunks gets its
    sha256 from the same pass instead of reading it a second time."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: Future[None] | None = None
        for chunk in chunks:
            if pending is not None:
                pending.result()
            pending = pool.submit(h.update, memoryview(chunk.data)[: chunk.nbytes])
            yield chunk
        if pending is not None:
            pending.result()


def head_lines(chunk: LineChunk, n: int) -> list[str]:
    """The chunk's first n lines as text, without splitting the whole chunk."""
    end = 0
    for _ in range(min(n, chunk.n_lines)):  # n is a few hundred
        end = chunk.data.index(b"\n", end) + 1
    return split_lines(chunk.data, end).to_list() if end else []


def split_lines(data: bytes, end: int | None = None) -> pl.Series:
    """Split the newline-terminated bytes `data[:end]` into a String series, one per line.

    polars' CSV reader with a separator that never occurs is the fastest honest splitter
    (multi-threaded, lossy UTF-8, keeps blank lines as nulls); it reads `data` in place and
    stops after the lines before `end`, whose count is checked against the newlines, with a
    plain split as the fallback for the odd block it cannot take.
    """
    end = len(data) if end is None else end
    n = data.count(b"\n", 0, end)
    if data.find(_SEP.encode(), 0, end) < 0:
        try:
            df = pl.read_csv(
                data,
                n_rows=n,
                has_header=False,
                separator=_SEP,
                quote_char=None,
                schema={"line": pl.String()},
                encoding="utf8-lossy",
                eol_char="\n",
            )
            if df.height == n:
                return _strip_cr(df.to_series().fill_null(""), data, end)
        except pl.exceptions.ComputeError:
            pass
    text = data[: end - 1].decode("utf-8", "replace")
    s = pl.Series("line", text.split("\n"), dtype=pl.String())
    return _strip_cr(s, data, end)


def _strip_cr(s: pl.Series, data: bytes, end: int) -> pl.Series:
    if data.find(b"\r", 0, end) >= 0:
        s = s.str.strip_suffix("\r")
    return s


_PINSCOPE_HEADER = re.compile(r"^#\s*pinscope\b(.*)$")
_KV = re.compile(r"(\w+)=(\S+)")


def header_info(head: list[str]) -> dict[str, str]:
    """`kernel` and `host` from the `# pinscope kernel=… host=…` lines the shipped probes write."""
    info: dict[str, str] = {}
    for text in head:
        m = _PINSCOPE_HEADER.match(text.strip())
        if m:
            for k, v in _KV.findall(m.group(1)):
                info.setdefault(k, v)
    return info


def uname_info(uname: str | None) -> dict[str, str]:
    """kernel and host from `Linux host release arch`."""
    if not uname:
        return {}
    parts = uname.split()
    if len(parts) >= 3:
        return {"host": parts[1], "kernel": parts[2]}
    return {}
