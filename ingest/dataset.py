"""The dataset on disk: layout, manifest, locking and atomic replacement.

The manifest is the commit point. Table data lives in `DATASET/<table>/trace_id=<id>/`, but a
reader only ever reads the traces the manifest lists, and a writer renames finished directories
into place *before* it rewrites the manifest (atomically, with os.replace). A run killed at any
moment therefore leaves either the old dataset or the new one; directories the manifest does not
list are leftovers of such a run, removed by the next writer.

Locking: writers hold an exclusive flock on DATASET/.lock, readers a shared one. A writer that
finds the dataset locked waits up to LOCK_TIMEOUT seconds, then fails naming the holder's pid.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from ingest.errors import InputError
from ingest.schema import COMPUTED_SQL, FORMAT_VERSION, STORED_TABLES, TABLES, with_computed

MANIFEST = "manifest.json"
LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"
DERIVED = "derived"
LOCK_TIMEOUT = 10.0

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


# ---------------------------------------------------------------------------- manifest


def is_dataset(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def require_dataset(path: Path) -> Path:
    """The dataset directory, or an InputError naming what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such dataset directory")
    if not is_dataset(path):
        raise InputError(f"{path} is not a pinscope dataset (no manifest.json)")
    return path


def empty_manifest() -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "traces": []}


def manifest(dataset: Path) -> dict[str, Any]:
    """The parsed manifest.json; an empty one for a directory that has none yet."""
    p = Path(dataset) / MANIFEST
    if not p.exists():
        return empty_manifest()
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: unreadable manifest ({exc}); expected JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("traces"), list):
        raise InputError(f"{p}: expected an object with a `traces` list")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(
            f"{p}: dataset format version {version}, this pinscope reads version "
            f"{FORMAT_VERSION}: re-ingest the traces"
        )
    return data


def traces(dataset: Path) -> list[dict[str, Any]]:
    """The committed traces, in ingest order."""
    return list(manifest(dataset)["traces"])


def write_manifest(dataset: Path, data: dict[str, Any]) -> None:
    """Replace manifest.json atomically: this is the commit point of every writer."""
    write_json(Path(dataset) / MANIFEST, data)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON file so that a reader sees the old one or the new one, never a torn one."""
    path = Path(path)
    tmp = path.parent / f"{TMP_PREFIX}{path.stem}-{uuid.uuid4().hex}.json"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------- layout


def safe_id(text: str) -> str:
    """A trace id from arbitrary text: [A-Za-z0-9._-], never starting with a dot."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip(".") or "trace"
    return s[:100]


def check_trace_id(trace_id: str) -> str:
    if not _SAFE_ID.match(trace_id) or len(trace_id) > 200:
        raise InputError(
            f"trace id {trace_id!r}: expected letters, digits, `.`, `_` or `-` "
            "(not starting with `.`)"
        )
    return trace_id


def trace_dir(dataset: Path, table: str, trace_id: str) -> Path:
    return Path(dataset) / table / f"trace_id={trace_id}"


def new_tmp_dir(dataset: Path) -> Path:
    """A fresh scratch directory inside the dataset (same filesystem, so renames are atomic)."""
    p = Path(dataset) / f"{TMP_PREFIX}{uuid.uuid4().hex}"
    p.mkdir(parents=True)
    return p


def collect_garbage(dataset: Path) -> list[Path]:
    """Remove leftovers of interrupted writers: scratch dirs and trace dirs not in the manifest.

    Call only under the exclusive lock.
    """
    dataset = Path(dataset)
    removed: list[Path] = []
    if not dataset.is_dir():
        return removed
    known = {t["trace_id"] for t in traces(dataset)}
    for p in dataset.iterdir():
        if p.name.startswith(TMP_PREFIX):
            _remove(p)
            removed.append(p)
    for table in TABLES:
        tdir = dataset / table
        if not tdir.is_dir():
            continue
        for p in tdir.iterdir():
            if not (p.name.startswith("trace_id=") and p.name[9:] in known):
                _remove(p)
                removed.append(p)
    derived = dataset / DERIVED
    if derived.is_dir():
        for p in derived.rglob(f"{TMP_PREFIX}*"):
            _remove(p)
            removed.append(p)
    return removed


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


# ---------------------------------------------------------------------------- disk full

_DISK_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
# polars and DuckDB report the OS error inside their own exception's text
_DISK_TEXT = re.compile(
    rf"os error (?:{'|'.join(map(str, _DISK_ERRNOS))})\b"
    "|No space left on device|File too large|Disk quota exceeded"
)


def is_disk_full(exc: BaseException) -> bool:
    """Whether an exception is the disk (or the file-size limit) refusing a write."""
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        return True
    return bool(_DISK_TEXT.search(str(exc)))


@contextlib.contextmanager
def disk_errors(dataset: Path) -> Iterator[None]:
    """Turn a full disk or a file-size limit during a write into an InputError naming the dataset.

    Writers put everything in scratch dirs and commit by renaming, so the dataset is still as
    it was; the message says so.
    """
    try:
        yield
    except Exception as exc:
        if isinstance(exc, InputError) or not is_disk_full(exc):
            raise
        raise InputError(
            f"dataset {dataset}: cannot write: file too large/disk full ({exc}); nothing was "
            "committed, the dataset is as it was: free space (or raise the limit) and run again"
        ) from None


# ---------------------------------------------------------------------------- locking


def _holder_pid(lock_path: Path) -> str:
    try:
        text = lock_path.read_text().strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "a reader"


# Datasets this process holds the exclusive lock of: a command that must see one consistent
# state from start to end (a report: replay, rules, quotes) holds it around stages that take it
# themselves.
_HELD_EXCLUSIVE: set[Path] = set()


def lock_timeout() -> float:
    """Seconds to wait for another pinscope: PINSCOPE_LOCK_TIMEOUT, else LOCK_TIMEOUT."""
    try:
        return float(os.environ.get("PINSCOPE_LOCK_TIMEOUT", LOCK_TIMEOUT))
    except ValueError:
        return LOCK_TIMEOUT


@contextlib.contextmanager
def lock(dataset: Path, *, shared: bool = False, timeout: float | None = None) -> Iterator[None]:
    """Hold the dataset's flock: exclusive for writers, shared for readers.

    Waits up to `timeout` seconds (default lock_timeout()) for a conflicting holder, then
    raises InputError naming it. The lock directory is created for writers (a new dataset) but
    never for readers. Re-entrant within a process that already holds the exclusive lock.
    """
    dataset = Path(dataset)
    key = dataset.resolve()
    if key in _HELD_EXCLUSIVE:
        yield
        return
    if timeout is None:
        timeout = lock_timeout()
    if not shared:
        dataset.mkdir(parents=True, exist_ok=True)
    elif not dataset.is_dir():
        yield
        return
    lock_path = dataset / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if shared:  # a read-only dataset (e.g. on a CD or shared mount): read without a lock
            yield
            return
        raise
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() >= deadline:
                    raise InputError(
                        f"dataset {dataset} is locked by another pinscope "
                        f"({_holder_pid(lock_path)}); waited {timeout:g}s, try again later"
                    ) from None
                time.sleep(0.05)
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            _HELD_EXCLUSIVE.add(key)
        try:
            yield
        finally:
            if not shared:
                _HELD_EXCLUSIVE.discard(key)
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(dataset: Path, relpath: str) -> Iterator[Path]:
    """Yield an empty scratch dir; on success it replaces DATASET/relpath as a whole.

    For writers of derived tables: readers see the old directory or the new one, never a
    half-written one. On an exception the scratch dir is removed and the old one kept. The
    caller should hold `lock(dataset)`.
    """
    dataset = Path(dataset)
    target = dataset / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{TMP_PREFIX}{target.name}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_into_place(tmp, target)


def swap_into_place(src: Path, target: Path) -> None:
    """Rename src over target, moving any old target aside first and deleting it after."""
    old = None
    if target.exists():
        old = target.parent / f"{TMP_PREFIX}old-{target.name}-{uuid.uuid4().hex}"
        os.rename(target, old)
    os.rename(src, target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------- reading


def _part_globs(dataset: Path, table: str) -> list[str]:
    dataset = Path(dataset).resolve()
    globs = (_trace_glob(dataset, table, t["trace_id"]) for t in traces(dataset))
    return [g for g in globs if g is not None]


def parts_glob(directory: Path, *, recursive: bool = False) -> str:
    """The glob of the Parquet files in `directory` (or under it), for polars and DuckDB,
    which both expand patterns: the directory is escaped, so that a path holding `[`, `*` or
    `?` matches itself."""
    pattern = ("**", "*.parquet") if recursive else ("*.parquet",)
    return os.path.join(glob.escape(str(directory)), *pattern)


def _trace_glob(dataset: Path, table: str, trace_id: str) -> str | None:
    """The glob of one trace's parts of a table; None where it has none."""
    d = trace_dir(dataset, table, trace_id)
    return parts_glob(d) if d.is_dir() and any(d.glob("*.parquet")) else None


def derived_tables(dataset: Path) -> dict[str, Path]:
    """Derived tables present: name → directory holding its Parquet files."""
    root = Path(dataset) / DERIVED
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    for p in sorted(root.iterdir()):
        if p.is_dir() and not p.name.startswith(".") and any(p.rglob("*.parquet")):
            found[p.name] = p
    return found


def scan(
    dataset: Path, table: str, *, schema: dict[str, pl.DataType] | None = None
) -> pl.LazyFrame:
    """A lazy frame over one table of the committed traces; empty with the exact schema if none.

    `table` is a canonical table name or `derived/<name>`. Derived schemas belong to replay
    (ingest cannot import it): pass `schema` to get a typed empty frame when the table is absent.
    """
    dataset = Path(dataset)
    if table.startswith(f"{DERIVED}/"):
        name = table.split("/", 1)[1]
        d = dataset / DERIVED / name
        files = sorted(str(p) for p in d.rglob("*.parquet") if TMP_PREFIX not in str(p))
        if files:
            return pl.scan_parquet(
                files, hive_partitioning=False, missing_columns="insert", glob=False
            )
        if schema is None:
            raise InputError(f"{dataset}: no derived table {name!r} (run `pinscope replay`)")
        return pl.LazyFrame(schema=schema)
    if table not in TABLES:
        raise InputError(
            f"unknown table {table!r}: expected one of {', '.join(TABLES)} or derived/<name>"
        )
    return _scan_parts(_part_globs(dataset, table), table)


def scan_trace(dataset: Path, table: str, trace_id: str) -> pl.LazyFrame:
    """One committed trace's rows of a canonical table: its own parts, which hold no other
    trace's rows. `scan(...).filter(trace_id == …)` evaluates the filter on every row (and
    streaming a 20M-event trace through it without reading trace_id held ~400 MiB more)."""
    parts = _trace_glob(dataset, table, trace_id)
    return _scan_parts([] if parts is None else [parts], table)


def _scan_parts(globs: list[str], table: str) -> pl.LazyFrame:
    """A canonical table's parts with its computed columns (schema.with_computed); a column
    that older parts stored and that is now computed is ignored."""
    if not globs:
        return pl.LazyFrame(schema=TABLES[table])
    parts = pl.scan_parquet(
        globs, hive_partitioning=False, schema=STORED_TABLES[table], extra_columns="ignore"
    )
    return with_computed(parts, table) if table in COMPUTED_SQL else parts


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _empty_arrow(schema: dict[str, pl.DataType]) -> pa.Table:
    # Enums become VARCHAR, as they do when DuckDB reads the Parquet files.
    cols = {
        c: (pl.String() if isinstance(t, pl.Enum | pl.Categorical) else t)
        for c, t in schema.items()
    }
    return pl.DataFrame(schema=cols).to_arrow()


def manifest_frame(dataset: Path) -> pa.Table:
    """The manifest's traces flattened to one row each, for the `manifest_traces` view."""
    rows = []
    for t in traces(dataset):
        lines = t.get("lines") or {}
        rows.append(
            {
                "trace_id": t.get("trace_id"),
                "source": t.get("source"),
                "sha256": t.get("sha256"),
                "size": t.get("size"),
                "format": t.get("format"),
                "kernel": t.get("kernel"),
                "host": t.get("host"),
                "clock": t.get("clock"),
                "first_ts_ns": t.get("first_ts_ns"),
                "last_ts_ns": t.get("last_ts_ns"),
                **{f"lines_{k}": lines.get(k) for k in LINE_KEYS},
                "lost_events": t.get("lost_events"),
                "lost_markers_unknown": t.get("lost_markers_unknown"),
                "events_by_kind": json.dumps(t.get("events_by_kind") or {}),
                "time_backwards": (t.get("warnings") or {}).get("time_backwards_per_cpu"),
                "ingested_at": t.get("ingested_at"),
                "duplicate_lines": (t.get("warnings") or {}).get("duplicate_lines"),
                "overlaps_same_host": (t.get("warnings") or {}).get("overlaps_same_host"),
            }
        )
    return pl.DataFrame(rows, schema=MANIFEST_VIEW_SCHEMA, orient="row").to_arrow()


LINE_KEYS = ("total", "events", "other", "stack", "lost", "comments", "rejected")

MANIFEST_VIEW_SCHEMA: dict[str, pl.DataType] = {
    "trace_id": pl.String(),
    "source": pl.String(),
    "sha256": pl.String(),
    "size": pl.Int64(),
    "format": pl.String(),
    "kernel": pl.String(),
    "host": pl.String(),
    "clock": pl.String(),
    "first_ts_ns": pl.Int64(),
    "last_ts_ns": pl.Int64(),
    **{f"lines_{k}": pl.Int64() for k in LINE_KEYS},
    "lost_events": pl.Int64(),
    "lost_markers_unknown": pl.Int64(),
    "events_by_kind": pl.String(),
    "time_backwards": pl.Int64(),
    "ingested_at": pl.String(),
    "duplicate_lines": pl.Int64(),
    "overlaps_same_host": pl.String(),  # ids of overlapping traces of the same host
}


def connect(
    dataset: Path,
    *,
    read_only: bool = True,
    extra_views: dict[str, str] | None = None,
    derived_schemas: dict[str, dict[str, pl.DataType]] | None = None,
    derived_computed: dict[str, dict[str, str]] | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per table of the dataset.

    Canonical tables read only the traces in the manifest; derived tables every Parquet file
    under derived/<name>/ (an empty typed view for each of `derived_schemas` not built yet),
    with the columns `derived_computed` gives for it (table → column → SQL over the stored
    columns) computed in the view, in the order of its schema in `derived_schemas`;
    `manifest_traces` is the manifest itself. `extra_views` (name → SELECT) are created last,
    so they can build on the others. The database is in memory: tables created on it never
    touch the dataset. `read_only` is kept for callers' intent; statements that write files
    (COPY … TO) are refused by `pinscope sql`, not by DuckDB, which cannot allow reading a
    directory while forbidding writes to it.
    """
    dataset = require_dataset(dataset)
    con = duckdb.connect(":memory:")
    for table, schema in TABLES.items():
        globs = _part_globs(dataset, table)
        _create_view(con, table, globs, schema, COMPUTED_SQL.get(table))
    for name, d in derived_tables(dataset).items():
        parts = parts_glob(d.resolve(), recursive=True)
        computed = (derived_computed or {}).get(name, {})
        schema = (derived_schemas or {}).get(name)
        select = _select(schema, computed) if computed and schema is not None else "*"
        con.execute(
            f"CREATE VIEW {_ident(name)} AS SELECT {select} FROM read_parquet({_sql_str(parts)}, "
            "hive_partitioning=true, union_by_name=true)"
        )
    present = derived_tables(dataset)
    for name, schema in (derived_schemas or {}).items():
        if name not in present:
            _create_view(con, name, [], schema)
    con.register("_manifest_traces", manifest_frame(dataset))
    con.execute("CREATE VIEW manifest_traces AS SELECT * FROM _manifest_traces")
    for name, sql in (extra_views or {}).items():
        try:
            con.execute(f"CREATE OR REPLACE VIEW {_ident(name)} AS {sql}")
        except duckdb.Error as exc:
            raise InputError(f"view {name!r}: {exc}") from None
    return con


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _select(schema: Iterable[str], computed: dict[str, str]) -> str:
    """A view's column list: the schema's columns in order, the computed ones by their SQL."""
    return ", ".join(
        f"{computed[c]} AS {_ident(c)}" if c in computed else _ident(c) for c in schema
    )


def _create_view(
    con: duckdb.DuckDBPyConnection,
    name: str,
    globs: list[str],
    schema: dict[str, pl.DataType],
    computed: dict[str, str] | None = None,
) -> None:
    if globs:
        files = "[" + ", ".join(_sql_str(g) for g in globs) + "]"
        select = _select(schema, computed) if computed else "*"
        con.execute(
            f"CREATE VIEW {_ident(name)} AS SELECT {select} FROM read_parquet({files}, "
            "hive_partitioning=true, union_by_name=true)"
        )
    else:
        con.register(f"_empty_{name}", _empty_arrow(schema))
        con.execute(f"CREATE VIEW {_ident(name)} AS SELECT * FROM _empty_{name}")
