"""Compiled kernels for the ftrace hot path: raw line bytes → typed columns, one pass each.

polars string expressions cost 20-40 ns a line per operation, and framing plus mapping took a
dozen of them: about 1.5 CPU-s per million lines. These numba kernels read a chunk's bytes once
and hand back numpy arrays (offsets into the same bytes for the strings). They are deliberately
*conservative*: a kernel takes a line or a field only where it is certain to read exactly what
the polars readers (`read_ftrace`, `mapping`) would, and marks everything else for them. So the
polars code stays the definition of the behaviour, and the kernels are only ever faster.

All of them are `nogil`, so the pipeline's two worker threads run them truly in parallel, and
`cache=True`, so only the first run on a machine compiles them (into `__pycache__`).
"""

from __future__ import annotations

import sys

import numba as nb
import numpy as np

_U64_MAX_DIV10 = np.uint64(1844674407370955161)  # (2**64 - 1) // 10
_U64_HEX_LIMIT = np.uint64(0x0FFFFFFFFFFFFFFF)  # one more hex digit would overflow
_U63 = np.uint64(1 << 63)
_I32_MAX = 2147483647
_SECS_MAX = 9_000_000_000  # secs * 1e9 + frac stays inside int64
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_S8 = np.uint64(8)
_S4 = np.uint64(4)
_S29 = np.uint64(29)
_S32 = np.uint64(32)
_NAME_SLOTS = 4096  # open-addressing table of distinct event names per chunk
_MAX_NAMES = 2048  # rows with names beyond this many distinct ones go to the polars path

# Column slots of the mapping plan (ingest/ftrace_fast.py builds it from a Mapping).
PFN, ORDER, DEV, INO, INDEX, REFS, COUNT, FLAGS, CALLER, NEW_PFN = range(10)
N_COLS = 10
# how a column is read: unsigned, dev_t, signed, symbol
HOW_UINT, HOW_DEV, HOW_INT, HOW_SYM = range(4)
# Row status after mapping
ST_OTHER, ST_EVENT, ST_POLARS = range(3)


# --------------------------------------------------------------------------- lines


_L20 = np.uint64(0x2020202020202020)
_H80 = np.uint64(0x8080808080808080)
_O01 = np.uint64(0x0101010101010101)
_M7F = np.uint64(0x7F7F7F7F7F7F7F7F)
_NL = np.uint64(0x0A0A0A0A0A0A0A0A)
_COLONS = np.uint64(0x3A3A3A3A3A3A3A3A)
_DASHES = np.uint64(0x2D2D2D2D2D2D2D2D)
_S7 = np.uint64(7)
_S56 = np.uint64(56)


def words_of(buf: np.ndarray) -> np.ndarray:
    """buf's whole 8-byte words as uint64 (empty when buf is not 8-aligned): the kernels read
    8 bytes at a time through it and fall back to single bytes without it."""
    if sys.byteorder != "little" or buf.ctypes.data % 8 or buf.size < 8:
        return np.zeros(0, np.uint64)
    return buf[: buf.size // 8 * 8].view(np.uint64)


def loads_of(buf: np.ndarray) -> np.ndarray:
    """Every 8-byte load from buf as a uint64 array with a 1-byte stride: element j is the
    little-endian word at buf[j:j + 8] (empty on big-endian machines or under 8 bytes).

    The kernels that read spans at any offset (hashes, string views) load 8 bytes at once
    through it: one unaligned load instead of two aligned ones shifted together.
    """
    if sys.byteorder != "little" or buf.size < 8 or not buf.flags.c_contiguous:
        return np.zeros(0, np.uint64)
    first = buf[:8].view(np.uint64)
    return np.lib.stride_tricks.as_strided(
        first, shape=(buf.size - 7,), strides=(1,), writeable=False
    )


@nb.njit(cache=True, nogil=True)
def count_lines(buf: np.ndarray, words: np.ndarray, end: int) -> int:
    """How many `\\n` bytes buf[:end] holds, 8 at a time."""
    nw = min(end // 8, words.shape[0])
    n = 0
    for i in range(nw):
        y = words[i] ^ _NL
        z = ~((((y & _M7F) + _M7F) | y) & _H80) & _H80  # 0x80 in each zero (newline) byte
        if z:
            n += np.int64((((z >> _S7) * _O01) >> _S56) & np.uint64(0xFF))
    for j in range(nw * 8, end):
        if buf[j] == 10:
            n += 1
    return n


@nb.njit(cache=True, nogil=True)
def scan_lines(buf: np.ndarray, words: np.ndarray, end: int, n: int) -> tuple[np.ndarray, ...]:
    """Start and end (without the `\\n`) of the n lines of buf[:end], and whether each is
    clean: printable ASCII only (the only lines the framing kernel reads)."""
    starts = np.empty(n, np.int64)
    ends = np.empty(n, np.int64)
    clean = np.ones(n, np.bool_)
    k = 0
    s = 0
    nw = min(end // 8, words.shape[0])
    for i in range(nw):
        x = words[i]
        # a byte < 0x20 (newlines too) or > 0x7e somewhere in the word: look at each
        if ((x - _L20) & ~x & _H80) | (((x + _O01) | x) & _H80):
            for q in range(i * 8, i * 8 + 8):
                b = buf[q]
                if b == 10:
                    if k < n:
                        starts[k] = s
                        ends[k] = q
                    k += 1
                    s = q + 1
                elif (b < 32 or b > 126) and k < n:
                    clean[k] = False
    for q in range(nw * 8, end):
        b = buf[q]
        if b == 10:
            if k < n:
                starts[k] = s
                ends[k] = q
            k += 1
            s = q + 1
        elif (b < 32 or b > 126) and k < n:
            clean[k] = False
    if k != n:
        return starts[:0], ends[:0], clean[:0]  # the caller checks the count
    return starts, ends, clean


@nb.njit(cache=True, nogil=True)
def clean_spans(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Whether each span is printable ASCII (what `scan_lines` says of a chunk's lines)."""
    clean = np.ones(starts.shape[0], np.bool_)
    for i in range(starts.shape[0]):
        for j in range(starts[i], ends[i]):
            if buf[j] < 32 or buf[j] > 126:
                clean[i] = False
                break
    return clean


# The kernels below read 8 bytes at a time as `loads[j]` written out in their loops, with
# the rare load near the end of buf through `_bytes8` / `_tail16`: numba compiled the same
# code behind an inlined helper taking `loads` into loops several times slower.


@nb.njit(cache=True, nogil=True)
def _bytes8(buf: np.ndarray, j: int) -> np.uint64:
    """The bytes buf[j:j+8] as a little-endian word, zero past the end of buf."""
    w = np.uint64(0)
    for k in range(min(8, buf.shape[0] - j)):
        w |= np.uint64(buf[j + k]) << np.uint64(8 * k)
    return w


@nb.njit(cache=True, nogil=True)
def hash_spans(
    buf: np.ndarray, loads: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """A 64-bit hash of each span's bytes (duplicate event lines are found by it), in two
    independent lanes of 8 bytes; the same whatever the span's alignment and whether or not
    `loads` (loads_of(buf)) is given."""
    nl = loads.shape[0]
    out = np.empty(starts.shape[0], np.uint64)
    for i in range(starts.shape[0]):
        s = starts[i]
        e = ends[i]
        h1 = _K1 ^ np.uint64(e - s)
        h2 = _K2 ^ np.uint64(e - s)
        j = s
        while j + 16 <= e:
            if j + 8 < nl:
                a = loads[j]
                b = loads[j + 8]
            else:
                a = _bytes8(buf, j)
                b = _bytes8(buf, j + 8)
            h1 = (h1 ^ a) * _K2
            h2 = (h2 ^ b) * _K1
            h1 ^= h1 >> _S29
            h2 ^= h2 >> _S32
            j += 16
        if j + 8 <= e:
            a = loads[j] if j < nl else _bytes8(buf, j)
            h1 = (h1 ^ a) * _K2
            h1 ^= h1 >> _S29
            j += 8
        w = np.uint64(0)
        k = 0
        while j < e:
            w |= np.uint64(buf[j]) << np.uint64(8 * k)
            j += 1
            k += 1
        h2 = (h2 ^ w) * _K1
        h = (h1 ^ (h2 >> _S29)) * _K2
        h ^= h >> _S32
        h = (h ^ h2) * _K1
        h ^= h >> _S29
        out[i] = h
    return out


@nb.njit(cache=True, nogil=True)
def gather_spans(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, newline: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Copy spans into one buffer: Arrow offsets and data (each span `\\n`-ended if newline)."""
    n = starts.shape[0]
    offsets = np.empty(n + 1, np.int64)
    total = 0
    for i in range(n):
        offsets[i] = total
        total += ends[i] - starts[i] + (1 if newline else 0)
    offsets[n] = total
    data = np.empty(total, np.uint8)
    p = 0
    for i in range(n):
        for j in range(starts[i], ends[i]):
            data[p] = buf[j]
            p += 1
        if newline:
            data[p] = 10
            p += 1
    return offsets, data


@nb.njit(cache=True, nogil=True, inline="always")
def _low_bytes(w: np.uint64, k: int) -> np.uint64:
    """The k lowest bytes of w (all of it for k >= 8, none for k <= 0)."""
    if k >= 8:
        return w
    if k <= 0:
        return np.uint64(0)
    return w & ((np.uint64(1) << np.uint64(8 * k)) - np.uint64(1))


@nb.njit(cache=True, nogil=True)
def _tail16(buf: np.ndarray, s: int) -> tuple[np.uint64, np.uint64]:
    """The bytes buf[s:s+16] as two little-endian words, zero past the end of buf.

    A function of its own, not inlined: the byte loop inside view_spans' loop made numba's
    code for the common case about twice as slow."""
    size = buf.shape[0]
    w0 = np.uint64(0)
    w1 = np.uint64(0)
    for k in range(min(16, size - s)):
        if k < 8:
            w0 |= np.uint64(buf[s + k]) << np.uint64(8 * k)
        else:
            w1 |= np.uint64(buf[s + k]) << np.uint64(8 * (k - 8))
    return w0, w1


@nb.njit(cache=True, nogil=True)
def view_spans(
    buf: np.ndarray, loads: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """Arrow string-view structs for the spans, pointing into buf (data buffer 0).

    A view is 16 bytes: the length, then either the string itself (up to 12 bytes) or its
    first 4 bytes, the buffer index and the offset. polars takes such an array without a copy.
    Built as two little-endian words per view, from 8-byte loads.
    """
    n = starts.shape[0]
    v = np.empty((n, 2), np.uint64)
    nl = loads.shape[0]
    for i in range(n):
        s = starts[i]
        m = ends[i] - s
        if s + 8 < nl:
            w0 = loads[s]
            w1 = loads[s + 8]
        else:
            w0, w1 = _tail16(buf, s)
        head = _low_bytes(w0, min(m, 4))
        v[i, 0] = np.uint64(m) | (head << _S32)
        if m <= 12:
            rest = (w0 >> _S32) | (w1 << _S32)
            v[i, 1] = _low_bytes(rest, m - 4)
        else:
            v[i, 1] = np.uint64(s) << _S32
    return v


@nb.njit(cache=True, nogil=True)
def take_views(views: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """views[idx] for (n, 2) string views: building views in line order and gathering them
    costs a third of building them at rows in another order (each a cache miss in buf)."""
    out = np.empty((idx.shape[0], 2), np.uint64)
    for i in range(idx.shape[0]):
        j = idx[i]
        out[i, 0] = views[j, 0]
        out[i, 1] = views[j, 1]
    return out


@nb.njit(cache=True, nogil=True)
def take_valid(
    values: np.ndarray, valid: np.ndarray, idx: np.ndarray, out: np.ndarray, bitmap: np.ndarray
) -> int:
    """out[i] = values[idx[i]] (converted to out's type) and the Arrow validity bitmap of
    valid[idx] in one pass; 0 where not valid. Returns the number of nulls."""
    n = idx.shape[0]
    nulls = 0
    for b in range(bitmap.shape[0]):
        byte = 0
        for k in range(8):
            i = b * 8 + k
            if i >= n:
                break
            j = idx[i]
            if valid[j]:
                out[i] = values[j]
                byte |= 1 << k
            else:
                out[i] = 0
                nulls += 1
        bitmap[b] = byte
    return nulls


# --------------------------------------------------------------------------- framing


@nb.njit(cache=True, nogil=True, inline="always")
def _digit(b: np.uint8) -> bool:
    return 48 <= b <= 57


_NO_HEADER = (False, 0, -1, 0, 0)


@nb.njit(cache=True, nogil=True, inline="always")
def _has_colon(buf: np.ndarray, a: int, b: int) -> bool:
    for k in range(a, b):  # noqa: SIM110 (a loop numba compiles; no generator)
        if buf[k] == 58:
            return True
    return False


@nb.njit(cache=True, nogil=True)
def _next_dash_digit(buf: np.ndarray, loads: np.ndarray, j: int, c1: int) -> int:
    """The first `-digit` at or after j and before c1 (8 bytes at a time to the next `-`);
    -1 if none."""
    nl = loads.shape[0]
    while j + 1 < c1:
        if j + 9 <= c1 and j < nl:
            x = loads[j] ^ _DASHES
            z = ~((((x & _M7F) + _M7F) | x) & _H80) & _H80
            if z == 0:
                j += 8
                continue
            q = 0
            while not (z >> np.uint64(8 * q + 7)) & np.uint64(1):
                q += 1
            j += q
        if buf[j] == 45 and _digit(buf[j + 1]):
            return j
        j += 1
    return -1


@nb.njit(cache=True, nogil=True)
def _header_after_comm(buf: np.ndarray, p: int, c1: int) -> tuple[bool, int, int, int, int]:
    """(ok, pid, tgid or -1, cpu, ts_ns) of `-pid [(tgid)] [cpu] [flags] secs[.frac]` from the
    `-` at p to the `: ` at c1, where _HEAD_OK matches it whole."""
    # pid
    j = p + 1
    v = 0
    nd = 0
    while j < c1 and _digit(buf[j]):
        v = v * 10 + (buf[j] - 48)
        nd += 1
        j += 1
        if nd > 10:
            break
    if nd == 0 or nd > 10 or v > _I32_MAX:
        return _NO_HEADER
    the_pid = v
    if j >= c1 or buf[j] != 32:
        return _NO_HEADER
    while j < c1 and buf[j] == 32:
        j += 1
    # optional (tgid)
    the_tgid = -1
    if j < c1 and buf[j] == 40:
        j += 1
        while j < c1 and buf[j] == 32:
            j += 1
        if j < c1 and _digit(buf[j]):
            v = 0
            nd = 0
            while j < c1 and _digit(buf[j]):
                v = v * 10 + (buf[j] - 48)
                nd += 1
                j += 1
                if nd > 10:
                    break
            if nd > 10 or v > _I32_MAX:
                return _NO_HEADER
            the_tgid = v
        elif j < c1 and buf[j] == 45:
            while j < c1 and buf[j] == 45:
                j += 1
        else:
            return _NO_HEADER
        if j >= c1 or buf[j] != 41:
            return _NO_HEADER
        j += 1
        if j >= c1 or buf[j] != 32:
            return _NO_HEADER
        while j < c1 and buf[j] == 32:
            j += 1
    # [cpu]
    if j >= c1 or buf[j] != 91:
        return _NO_HEADER
    j += 1
    v = 0
    nd = 0
    while j < c1 and _digit(buf[j]):
        v = v * 10 + (buf[j] - 48)
        nd += 1
        j += 1
        if nd > 5:
            break
    if nd == 0 or nd > 5 or v > 32767:
        return _NO_HEADER
    the_cpu = v
    if j >= c1 or buf[j] != 93:
        return _NO_HEADER
    j += 1
    if j >= c1 or buf[j] != 32:
        return _NO_HEADER
    while j < c1 and buf[j] == 32:
        j += 1
    # optional irq flags: [.a-zA-Z] then 3 to 5 more non-space characters, then spaces
    if j < c1:
        b = buf[j]
        if b == 46 or (65 <= b <= 90) or (97 <= b <= 122):
            k = j
            while k < c1 and buf[k] != 32:
                k += 1
            if k - j < 4 or k - j > 6 or k >= c1:
                return _NO_HEADER
            j = k
            while j < c1 and buf[j] == 32:
                j += 1
    # secs[.frac] up to the first `: `
    v = 0
    nd = 0
    while j < c1 and _digit(buf[j]):
        v = v * 10 + (buf[j] - 48)
        nd += 1
        j += 1
        if nd > 18:
            break
    if nd == 0 or nd > 18:
        return _NO_HEADER
    if j == c1:
        the_ts = v  # a bare counter (counter, x86-tsc clocks)
    else:
        if buf[j] != 46 or v > _SECS_MAX:
            return _NO_HEADER
        j += 1
        f = 0
        nf = 0
        while j < c1 and _digit(buf[j]):
            f = f * 10 + (buf[j] - 48)
            nf += 1
            j += 1
            if nf > 9:
                break
        if nf == 0 or nf > 9 or j != c1:
            return _NO_HEADER
        for _ in range(9 - nf):
            f *= 10
        the_ts = v * 1_000_000_000 + f
    return True, the_pid, the_tgid, the_cpu, the_ts


# A stack-trace marker line's row in frame_lines' output (its body runs to the line's end).
MK_ROW, MK_TS, MK_CPU, MK_PID, MK_TGID, MK_COMM_S, MK_COMM_E, MK_BODY_S = range(8)
N_MARK_FIELDS = 8
_STACK_MARKER = np.frombuffer(b"<stack trace>", np.uint8)
_USER_STACK_MARKER = np.frombuffer(b"<user stack trace>", np.uint8)


@nb.njit(cache=True, nogil=True)
def _is_stack_marker(buf: np.ndarray, a: int, b: int) -> bool:
    """buf[a:b] is exactly `<stack trace>` or `<user stack trace>` (read_ftrace._STACK_MARKERS)."""
    for marker in (_STACK_MARKER, _USER_STACK_MARKER):
        if b - a == marker.shape[0]:
            same = True
            for k in range(b - a):
                if buf[a + k] != marker[k]:
                    same = False
                    break
            if same:
                return True
    return False


@nb.njit(cache=True, nogil=True)
def frame_lines(
    buf: np.ndarray, loads: np.ndarray, starts: np.ndarray, ends: np.ndarray, clean: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Frame the plain event lines `comm-pid [(tgid)] [cpu] [flags] secs[.frac]: event: body`,
    the function tracer's `… secs.frac: func <-parent` and stack frames ` => func`.

    Returns ok per line, then per framed line (the ok ones, in order; compact, so that nothing
    is gathered afterwards and no per-line array is zeroed): its index, ts_ns, cpu, pid, tgid
    (-1: none), the comm's start and end (the `-` ending it), the event name's start and end,
    the body's start and end. A line is ok only if `read_ftrace._fast_events` would take it and
    read the same values: clean (printable ASCII), the first `-digit` starts a header that
    _HEAD_OK matches whole, numbers in range, a non-empty event name without spaces, a body not
    starting with a space. A function-tracer line (no `: ` after the timestamp's) is ok with an
    empty name span (its event is `function`) and the rest as its body, where the general
    reader would call it a function: no space, or ` <-`, and no leading `<`, trailing `:` or
    leading space. Then, per line, whether it is a stack frame (` => ` first: the general
    reader's `stack`), and per stack frame its index and its text's start and end (stripped).
    Last, per line, whether it is a stack-trace marker (`… secs.frac: <stack trace>` or
    `<user stack trace>`, on a header the kernel would take for an event line: the general
    reader's `stack` too, with the header's values), and per marker a row of its MK_* fields.
    """
    n = starts.shape[0]
    nl = loads.shape[0]
    ok = np.zeros(n, np.bool_)
    # np.empty: only the first m entries are written (and so touched) and returned
    rows = np.empty(n, np.int64)
    ts = np.empty(n, np.int64)
    cpu = np.empty(n, np.int16)
    pid = np.empty(n, np.int32)
    tgid = np.empty(n, np.int32)
    comm_s = np.empty(n, np.int64)
    comm_e = np.empty(n, np.int64)
    name_s = np.empty(n, np.int64)
    name_e = np.empty(n, np.int64)
    body_s = np.empty(n, np.int64)
    body_e = np.empty(n, np.int64)
    stk = np.zeros(n, np.bool_)
    stk_rows = np.empty(n, np.int64)
    stk_s = np.empty(n, np.int64)
    stk_e = np.empty(n, np.int64)
    mark = np.zeros(n, np.bool_)
    mark_i = np.empty((n, N_MARK_FIELDS), np.int64)
    m = 0
    ms = 0
    mk = 0
    for i in range(n):
        s = starts[i]
        e = ends[i]
        if not clean[i]:
            continue
        if (
            e - s >= 4
            and buf[s] == 32
            and buf[s + 1] == 61
            and buf[s + 2] == 62
            and buf[s + 3] == 32
        ):
            a = s + 4  # ` => frame`: its text, stripped (clean: the only blank is a space)
            b = e
            while a < b and buf[a] == 32:
                a += 1
            while b > a and buf[b - 1] == 32:
                b -= 1
            stk[i] = True
            stk_rows[ms] = i
            stk_s[ms] = a
            stk_e[ms] = b
            ms += 1
            continue
        # the first two `: `, 8 bytes at a time where the line and loads reach
        c1 = -1
        c2 = -1
        j = s
        while j + 1 < e:
            if j + 9 <= e and j + 1 < nl:
                x = loads[j] ^ _COLONS
                y = loads[j + 1] ^ _L20
                z = ~((((x & _M7F) + _M7F) | x) & _H80) & ~((((y & _M7F) + _M7F) | y) & _H80)
                z &= _H80  # 0x80 in each byte that is a `:` before a space
                if z == 0:
                    j += 8
                    continue
                q = 0
                while not (z >> np.uint64(8 * q + 7)) & np.uint64(1):
                    q += 1
                j += q
            elif buf[j] != 58 or buf[j + 1] != 32:
                j += 1
                continue
            if c1 >= 0:
                c2 = j
                break
            c1 = j
            j += 2
        if c1 < 0:
            continue
        # the comm: spaces, then up to a `-digit` after which the header parses, trying each
        # in turn as the reader's lazy `(?P<comm>.*?)-(?P<pid>[0-9]+)` does
        cs = s
        while cs + 8 <= c1 and cs < nl and loads[cs] == _L20:  # the padding, 8 at a time
            cs += 8
        while cs < c1 and buf[cs] == 32:
            cs += 1
        if cs < c1 and buf[cs] == 35:  # '#': a comment
            continue
        if cs + 1 < c1 and buf[cs] == 61 and buf[cs + 1] == 62:  # '=>'
            continue
        p = _next_dash_digit(buf, loads, s, c1)
        first_p = p
        good = False
        the_pid = 0
        the_tgid = -1
        the_cpu = 0
        the_ts = 0
        while p >= 0:
            good, the_pid, the_tgid, the_cpu, the_ts = _header_after_comm(buf, p, c1)
            if good:
                break
            # on to the next `-digit` only past one whose digits run into something other
            # than a space (`jbd2/sda1-8-581`): no reader can take the header from there
            k = p + 1
            while k < c1 and _digit(buf[k]):
                k += 1
            if k < c1 and buf[k] == 32:
                break
            p = _next_dash_digit(buf, loads, p + 1, c1)
        if not good:
            continue
        if p != first_p and _has_colon(buf, p, c1):  # the general reader frames it: it
            continue  # takes flags without `:` only
        if c2 < 0:  # no event name: a function-tracer line `func <-parent`, or not taken here
            r = c1 + 2
            if _is_stack_marker(buf, r, e):
                if _has_colon(buf, p, c1):  # the general reader takes flags without `:` only
                    continue
                mark[i] = True
                mark_i[mk, MK_ROW] = i
                mark_i[mk, MK_TS] = the_ts
                mark_i[mk, MK_CPU] = the_cpu
                mark_i[mk, MK_PID] = the_pid
                mark_i[mk, MK_TGID] = the_tgid
                mark_i[mk, MK_COMM_S] = cs
                mark_i[mk, MK_COMM_E] = p
                mark_i[mk, MK_BODY_S] = r
                mk += 1
                continue
            if r >= e or buf[r] == 32 or buf[r] == 60 or buf[e - 1] == 58:  # ' ', '<', ':'
                continue
            spaces = 0
            arrow = False
            for k in range(r, e):
                if buf[k] == 32:
                    spaces += 1
                    if k + 2 < e and buf[k + 1] == 60 and buf[k + 2] == 45:  # ` <-`
                        arrow = True
            if spaces and not arrow:
                continue
            if _has_colon(buf, p, c1):  # in the irq flags: the general reader, which frames
                continue  # these lines, takes flags without `:` only
            ok[i] = True
            rows[m] = i
            ts[m] = the_ts
            cpu[m] = the_cpu
            pid[m] = the_pid
            tgid[m] = the_tgid
            comm_s[m] = cs
            comm_e[m] = p
            name_s[m] = r
            name_e[m] = r  # empty: the event is `function`
            body_s[m] = r
            body_e[m] = e
            m += 1
            continue
        # event name and body
        if c2 == c1 + 2:
            continue  # empty name
        spaced = False
        k = c1 + 2
        while k + 8 <= c2 and k < nl:
            x = loads[k] ^ _L20
            if ~((((x & _M7F) + _M7F) | x) & _H80) & _H80:
                spaced = True
                break
            k += 8
        while k < c2 and not spaced:
            spaced = buf[k] == 32
            k += 1
        if spaced:
            continue
        if c2 + 2 < e and buf[c2 + 2] == 32:
            continue
        ok[i] = True
        rows[m] = i
        ts[m] = the_ts
        cpu[m] = the_cpu
        pid[m] = the_pid
        tgid[m] = the_tgid
        comm_s[m] = cs
        comm_e[m] = p
        name_s[m] = c1 + 2
        name_e[m] = c2
        body_s[m] = c2 + 2
        body_e[m] = e
        m += 1
    return (
        ok,
        rows[:m],
        ts[:m],
        cpu[:m],
        pid[:m],
        tgid[:m],
        comm_s[:m],
        comm_e[:m],
        name_s[:m],
        name_e[:m],
        body_s[:m],
        body_e[:m],
        stk,
        stk_rows[:ms],
        stk_s[:ms],
        stk_e[:ms],
        mark,
        mark_i[:mk],
    )


@nb.njit(cache=True, nogil=True)
def name_ids(
    buf: np.ndarray, loads: np.ndarray, rows: np.ndarray, name_s: np.ndarray, name_e: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Number the distinct event names in order of first appearance.

    Returns the id of each row's name (-1 past _MAX_NAMES distinct names) and, per id, the
    row where it first appears. A name is hashed from its first and last 8 bytes and its
    length (loads_of(buf)), and compared 8 bytes at a time.
    """
    slots = np.full(_NAME_SLOTS, -1, np.int64)
    first = np.empty(_MAX_NAMES, np.int64)
    head = np.empty(_MAX_NAMES, np.uint64)  # the first and last words of each name
    tail = np.empty(_MAX_NAMES, np.uint64)
    ids = np.full(rows.shape[0], -1, np.int64)
    n_names = 0
    nl = loads.shape[0]
    for r in range(rows.shape[0]):
        s = name_s[rows[r]]
        e = name_e[rows[r]]
        n = e - s
        if n >= 8 and e - 8 < nl:
            a = loads[s]
            b = loads[e - 8]
        elif n >= 8:
            a = _bytes8(buf, s)
            b = _bytes8(buf, e - 8)
        else:
            a = _low_bytes(_bytes8(buf, s), n)
            b = np.uint64(0)
        h = (a * _K1) ^ (b * _K2) ^ np.uint64(n)
        h ^= h >> _S29
        slot = np.int64(h & np.uint64(_NAME_SLOTS - 1))
        while True:
            cur = slots[slot]
            if cur < 0:
                if n_names < _MAX_NAMES:
                    slots[slot] = n_names
                    first[n_names] = r
                    head[n_names] = a
                    tail[n_names] = b
                    ids[r] = n_names
                    n_names += 1
                break
            fr = rows[first[cur]]
            fs = name_s[fr]
            if name_e[fr] - fs == n and head[cur] == a and tail[cur] == b:
                same = True
                for k in range(8, n - 8):  # the middle of names longer than 16 bytes
                    if buf[fs + k] != buf[s + k]:
                        same = False
                        break
                if same:
                    ids[r] = cur
                    break
            slot = (slot + 1) & (_NAME_SLOTS - 1)
    return ids, first[:n_names].copy()


# --------------------------------------------------------------------------- mapping


@nb.njit(cache=True, nogil=True, inline="always")
def _find_key(
    buf: np.ndarray, bs: int, be: int, keys: np.ndarray, ks: int, ke: int
) -> tuple[int, int]:
    """The value of `(?:^|\\s)PREFIX(\\S+)` in buf[bs:be] (printable ASCII): (start, end) or -1s."""
    kl = ke - ks
    t = bs
    while t + kl < be:
        if t == bs or buf[t - 1] == 32:
            same = True
            for k in range(kl):
                if buf[t + k] != keys[ks + k]:
                    same = False
                    break
            if same and buf[t + kl] != 32:
                v = t + kl
                ve = v
                while ve < be and buf[ve] != 32:
                    ve += 1
                return v, ve
        t += 1
    return -1, -1


_KEY_SLOTS = 1024


@nb.njit(cache=True, nogil=True, inline="always")
def _name_hash(buf: np.ndarray, s: int, e: int) -> int:
    h = 0
    for q in range(s, e):
        h = (h * 31 + buf[q]) & 0xFFFFFF
    return h


@nb.njit(cache=True, nogil=True)
def _key_table(
    keys: np.ndarray, key_s: np.ndarray, key_e: np.ndarray, form: np.ndarray
) -> np.ndarray:
    """Open-addressing table of the keys read by token (forms 0 and 1), by name hash."""
    table = np.full(_KEY_SLOTS, -1, np.int64)
    for k in range(key_s.shape[0]):
        if form[k] == 2:
            continue
        ne = key_e[k] - 1  # the name, without its `=` or space
        slot = _name_hash(keys, key_s[k], ne) & (_KEY_SLOTS - 1)
        while table[slot] >= 0:
            slot = (slot + 1) & (_KEY_SLOTS - 1)
        table[slot] = k
    return table


@nb.njit(cache=True, nogil=True, inline="always")
def _lookup(
    table: np.ndarray,
    keys: np.ndarray,
    key_s: np.ndarray,
    key_e: np.ndarray,
    form: np.ndarray,
    want: int,
    buf: np.ndarray,
    s: int,
    e: int,
    h: int,
) -> int:
    """The key of form `want` whose name is buf[s:e] (hash h), or -1."""
    slot = h & (_KEY_SLOTS - 1)
    while table[slot] >= 0:
        k = table[slot]
        if form[k] == want and key_e[k] - 1 - key_s[k] == e - s:
            same = True
            for q in range(e - s):
                if keys[key_s[k] + q] != buf[s + q]:
                    same = False
                    break
            if same:
                return k
        slot = (slot + 1) & (_KEY_SLOTS - 1)
    return -1


@nb.njit(cache=True, nogil=True)
def _find_values(
    buf: np.ndarray,
    bs: int,
    be: int,
    table: np.ndarray,
    keys: np.ndarray,
    key_s: np.ndarray,
    key_e: np.ndarray,
    form: np.ndarray,
    vs: np.ndarray,
    ve: np.ndarray,
) -> None:
    """Every key's value in one pass over the body's tokens, as `_find_key` finds it: the
    first token that is `name=VALUE` (a non-empty value) or the word `name` followed by a
    non-empty token. Keys of form 2 are left at -2 (scanned when asked for)."""
    for k in range(key_s.shape[0]):
        vs[k] = -2 if form[k] == 2 else -1
    pending = -1  # a `name ` key whose value is the next token
    t = bs
    while t <= be:
        h = 0
        eq = -1
        q = t
        while q < be:
            b = buf[q]
            if b == 32:
                break
            if eq < 0:
                if b == 61:
                    eq = q
                else:
                    h = (h * 31 + b) & 0xFFFFFF
            q += 1
        te = q
        if pending >= 0:
            if te > t and vs[pending] < 0:
                vs[pending] = t
                ve[pending] = te
            pending = -1
        if eq >= 0:
            if te > eq + 1:
                k = _lookup(table, keys, key_s, key_e, form, 0, buf, t, eq, h)
                if k >= 0 and vs[k] < 0:
                    vs[k] = eq + 1
                    ve[k] = te
        elif te > t:
            k = _lookup(table, keys, key_s, key_e, form, 1, buf, t, te, h)
            if k >= 0 and vs[k] < 0:
                pending = k
        t = te + 1


@nb.njit(cache=True, nogil=True, inline="always")
def _hexval(b: np.uint8) -> int:
    if 48 <= b <= 57:
        return b - 48
    if 97 <= b <= 102:
        return b - 87
    if 65 <= b <= 70:
        return b - 55
    return -1


@nb.njit(cache=True, nogil=True)
def _dec_u64(buf: np.ndarray, s: int, e: int) -> tuple[bool, np.uint64]:
    v = np.uint64(0)
    if s >= e:
        return False, v
    for j in range(s, e):
        b = buf[j]
        if not (48 <= b <= 57):
            return False, v
        d = np.uint64(b - 48)
        if v > _U64_MAX_DIV10 or (v == _U64_MAX_DIV10 and d > np.uint64(5)):
            return False, v
        v = v * np.uint64(10) + d
    return True, v


@nb.njit(cache=True, nogil=True)
def _hex_u64(buf: np.ndarray, s: int, e: int) -> tuple[bool, np.uint64]:
    v = np.uint64(0)
    if s >= e:
        return False, v
    for j in range(s, e):
        d = _hexval(buf[j])
        if d < 0 or v > _U64_HEX_LIMIT:
            return False, v
        v = (v << _S4) | np.uint64(d)
    return True, v


@nb.njit(cache=True, nogil=True)
def _uint(buf: np.ndarray, s: int, e: int, base: int) -> tuple[bool, np.uint64]:
    """`fields.parse_uint`: base 0 = decimal or 0x/0X-hex; 16 / 10 = that base after `0x`."""
    if base == 0:
        if e - s >= 2 and buf[s] == 48 and (buf[s + 1] == 120 or buf[s + 1] == 88):
            return _hex_u64(buf, s + 2, e)
        return _dec_u64(buf, s, e)
    if e - s >= 2 and buf[s] == 48 and buf[s + 1] == 120:
        s += 2
    if base == 16:
        return _hex_u64(buf, s, e)
    return _dec_u64(buf, s, e)


@nb.njit(cache=True, nogil=True)
def _int32(buf: np.ndarray, s: int, e: int) -> tuple[bool, int]:
    """`fields.parse_int` for values that fit an int32; False where polars must decide."""
    neg = False
    if s < e and buf[s] == 45:
        neg = True
        s += 1
    if e - s >= 2 and buf[s] == 48 and (buf[s + 1] == 120 or buf[s + 1] == 88):
        got, u = _hex_u64(buf, s + 2, e)
    else:
        got, u = _dec_u64(buf, s, e)
    if not got or u > np.uint64(2147483648):
        return False, 0
    v = np.int64(u)
    if neg:
        v = -v
    if v > _I32_MAX:
        return False, 0
    return True, v


@nb.njit(cache=True, nogil=True)
def map_rows(
    buf: np.ndarray,
    body_s: np.ndarray,
    body_e: np.ndarray,
    spec: np.ndarray,
    keys: np.ndarray,
    key_s: np.ndarray,
    key_e: np.ndarray,
    key_form: np.ndarray,
    col_key: np.ndarray,
    col_how: np.ndarray,
    col_base: np.ndarray,
    col_shift: np.ndarray,
    col_hi: np.ndarray,
    comp_page: np.ndarray,
    comp_vmem: np.ndarray,
    comp_size: np.ndarray,
    kind_a: np.ndarray,
    kind_b: np.ndarray,
    pin_bias_key: np.ndarray,
    kind_fork: int,
    kind_replace: int,
    kind_pin: int,
    kind_unpin: int,
    acquire: np.ndarray,
    release: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Map the rows of mapped event names (spec >= 0) as `mapping._map_group` would.

    Per spec: col_key[spec, col] is the key (index into key_s/key_e) that fills the column, -1
    when the spec has no such field; comp_page/comp_vmem[spec, 0 pfn | 1 new_pfn] the keys of a
    pfn computed from a page pointer; kind_a the kind, or with kind_b >= 0 the kinds for
    refs >= 0 / < 0; pin_bias_key the `flags` key of the pin_bias heuristic (-1: none).

    Values come back column-major ([col, row]), and mean something only where valid.
    Returns status (ST_EVENT, or ST_POLARS where polars must map the row: a value it would
    reject or might read differently), kind, uint64 values, int values, validity, and the
    caller's span. Rows with spec < 0 are left as ST_OTHER.
    """
    n = spec.shape[0]
    status = np.zeros(n, np.uint8)
    kind = np.zeros(n, np.int8)
    # values only where valid: np.empty leaves the columns no row fills untouched (unpaged)
    uval = np.empty((N_COLS, n), np.uint64)
    ival = np.empty((N_COLS, n), np.int64)
    valid = np.zeros((N_COLS, n), np.bool_)
    sym = np.zeros((2, n), np.int64)
    table = _key_table(keys, key_s, key_e, key_form)
    n_keys = key_s.shape[0]
    vs = np.empty(n_keys, np.int64)
    ve = np.empty(n_keys, np.int64)
    for r in range(n):
        sp = spec[r]
        if sp < 0:
            continue
        bs = body_s[r]
        be = body_e[r]
        _find_values(buf, bs, be, table, keys, key_s, key_e, key_form, vs, ve)
        fine = True
        for c in range(N_COLS):
            k = col_key[sp, c]
            if k < 0:
                continue
            if vs[k] == -2:
                a, b = _find_key(buf, bs, be, keys, key_s[k], key_e[k])
                vs[k] = a
                ve[k] = b
            a = vs[k]
            b = ve[k]
            if a < 0:
                continue
            how = col_how[c]
            if how == HOW_SYM:
                q = a
                while q < b:
                    if buf[q] == 34:  # '"': polars strips quotes; leave it to polars
                        fine = False
                    if buf[q] == 43:
                        break
                    q += 1
                if not fine:
                    break
                sym[0, r] = a
                sym[1, r] = q
                valid[c, r] = True
            elif how == HOW_INT:
                got, iv = _int32(buf, a, b)
                if not got:
                    fine = False
                    break
                ival[c, r] = iv
                valid[c, r] = True
            else:
                if how == HOW_DEV:
                    colon = -1
                    for q in range(a, b):
                        if buf[q] == 58:
                            if colon >= 0:
                                fine = False
                            colon = q
                    if not fine:
                        break
                    if colon >= 0:
                        g1, major = _uint(buf, a, colon, 0)
                        g2, minor = _uint(buf, colon + 1, b, 0)
                        if not (g1 and g2) or major >= np.uint64(4096):
                            fine = False
                            break
                        if minor >= np.uint64(1 << 20):
                            fine = False
                            break
                        got = True
                        u = (major << np.uint64(20)) + minor
                    else:
                        got, u = _uint(buf, a, b, 0)
                else:
                    got, u = _uint(buf, a, b, col_base[sp, c])
                if not got:
                    fine = False
                    break
                if col_shift[sp, c] > 0:
                    if u >= _U63:  # polars' floor division may not be unsigned there
                        fine = False
                        break
                    u = u >> np.uint64(col_shift[sp, c])
                if u > col_hi[c]:
                    fine = False
                    break
                uval[c, r] = u
                valid[c, r] = True
        if not fine:
            status[r] = ST_POLARS
            continue
        # pfn / new_pfn from a struct page pointer
        for t in range(2):
            kp = comp_page[sp, t]
            kv = comp_vmem[sp, t]
            if kp < 0 or kv < 0:
                continue
            for k in (kp, kv):
                if vs[k] == -2:
                    a, b = _find_key(buf, bs, be, keys, key_s[k], key_e[k])
                    vs[k] = a
                    ve[k] = b
            if vs[kp] < 0 or vs[kv] < 0:
                continue
            g1, page = _uint(buf, vs[kp], ve[kp], 0)
            g2, vmem = _uint(buf, vs[kv], ve[kv], 0)
            if not (g1 and g2) or page < vmem or page - vmem >= _U63:
                fine = False
                break
            c = PFN if t == 0 else NEW_PFN
            if not valid[c, r]:
                uval[c, r] = (page - vmem) // np.uint64(comp_size[sp, t])
                valid[c, r] = True
        if not fine:
            status[r] = ST_POLARS
            continue
        # kind, and refs signed by it
        has_refs = valid[REFS, r]
        refs = ival[REFS, r] if has_refs else 0
        if kind_b[sp] >= 0:
            kd = kind_a[sp] if (not has_refs or refs >= 0) else kind_b[sp]
        else:
            kd = kind_a[sp]
        fk = pin_bias_key[sp]
        if fk >= 0:
            if vs[fk] == -2:
                a, b = _find_key(buf, bs, be, keys, key_s[fk], key_e[fk])
                vs[fk] = a
                ve[fk] = b
            small = True
            a = vs[fk]
            b = ve[fk]
            if a >= 0:
                for q in range(a, b - 3):
                    if (
                        buf[q] == 104
                        and buf[q + 1] == 101
                        and buf[q + 2] == 97
                        and buf[q + 3] == 100
                    ):
                        small = False
                        break
            if small and has_refs and (refs == 1024 or refs == 1023):
                kd = kind_pin
                refs = 1
            elif small and has_refs and refs == -1024:
                kd = kind_unpin
                refs = 1
        if acquire[kd]:
            if not has_refs:
                refs = 1
            elif refs < 0:
                refs = -refs
            if refs > _I32_MAX:
                status[r] = ST_POLARS
                continue
            has_refs = True
        elif release[kd]:
            if not has_refs:
                refs = -1
            elif refs > 0:
                refs = -refs
            has_refs = True
        ival[REFS, r] = refs
        valid[REFS, r] = has_refs
        # a page is needed (all kinds but fork), and replace needs the new page
        has_page = valid[PFN, r] or (valid[INO, r] and valid[INDEX, r])
        if (kd != kind_fork and not has_page) or (kd == kind_replace and not valid[NEW_PFN, r]):
            status[r] = ST_POLARS
            continue
        kind[r] = kd
        status[r] = ST_EVENT
    return status, kind, uval, ival, valid, sym[0], sym[1]
