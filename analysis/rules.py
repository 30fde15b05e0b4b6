"""Loading the hazard rules (queries/*.sql, plus a user's --rules DIR) and running them.

A rule is plain SQL with a documented header (queries/README.md), so kernel engineers can read,
review and extend the catalogue without touching Python. This module is the only place that
knows how a rule file is shaped: it validates the header and the result columns, names the file
on any error, and adds what no single rule can know — whether a lost-events gap makes a finding
uncertain, and what the traced kernel's version means for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

import queries
from analysis.findings import CONFIDENCES, FINDINGS_SCHEMA, RULE_COLUMNS, SEVERITIES
from ingest import dataset as ds
from ingest.errors import InputError
from ingest.schema import EVENTS_SCHEMA, LOST_SCHEMA, OTHER_EVENTS_SCHEMA
from replay.schema import COMPUTED_SQL, DERIVED_TABLES

BUILTIN_DIR = Path(queries.__file__).resolve().parent
VIEWS_FILE = "views.sql"
FINDINGS_DIR = "derived/findings"
FINDINGS_FILE = "findings.parquet"
STAMP_FILE = "findings.json"  # what the findings were built from (not Parquet: views skip it)

REQUIRED_KEYS: tuple[str, ...] = (
    "id",
    "severity",
    "confidence",
    "means",
    "predicts",
    "cannot_prove",
    "references",
)
OPTIONAL_KEYS: tuple[str, ...] = ("grain", "evidence")
_ID = re.compile(r"^[A-Z][A-Z0-9_]*$")
_KEY_LINE = re.compile(r"^([a-z_]+):\s*(.*)$")


@dataclass(frozen=True)
class Rule:
    """One rule file: its documentation header and its SELECT."""

    id: str
    severity: str
    confidence: str
    means: str
    predicts: str
    cannot_prove: str
    references: str
    sql: str
    path: Path
    builtin: bool
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def view_name(self) -> str:
        return self.id.lower()

    def doc(self) -> dict[str, str]:
        return {
            "id": self.id,
            "severity": self.severity,
            "confidence": self.confidence,
            "means": self.means,
            "predicts": self.predicts,
            "cannot_prove": self.cannot_prove,
            "references": self.references,
            **self.extra,
            "file": str(self.path),
        }


# ---------------------------------------------------------------------------- parsing


def _split_header(text: str, path: Path) -> tuple[list[str], str]:
    """The header's lines (comment markers removed) and the SQL after it."""
    stripped = text.lstrip()
    if stripped.startswith("/*"):
        end = stripped.find("*/")
        if end < 0:
            raise InputError(f"{path}: line 1: header comment `/*` is never closed by `*/`")
        return stripped[2:end].splitlines(), stripped[end + 2 :]
    header: list[str] = []
    lines = stripped.splitlines()
    i = 0
    while i < len(lines) and (lines[i].startswith("--") or not lines[i].strip()):
        header.append(lines[i][2:].removeprefix(" ") if lines[i].startswith("--") else "")
        i += 1
    if not any(h.strip() for h in header):
        raise InputError(
            f"{path}: line 1: expected a header comment (`/* id: … */` or `-- id: …` lines) "
            f"with the keys {', '.join(REQUIRED_KEYS)}"
        )
    return header, "\n".join(lines[i:])


def _line_of(text: str, needle: str) -> int:
    idx = text.find(needle)
    return text.count("\n", 0, idx) + 1 if idx >= 0 else 1


def parse_header(text: str, path: Path) -> tuple[dict[str, str], str]:
    """Header keys → values (continuation lines joined) and the SQL body."""
    header, body = _split_header(text, path)
    values: dict[str, str] = {}
    key: str | None = None
    for raw in header:
        m = _KEY_LINE.match(raw.strip())
        known = m is not None and m.group(1) in REQUIRED_KEYS + OPTIONAL_KEYS
        if m and not known and not raw[:1].isspace():
            raise InputError(
                f"{path}: line {_line_of(text, raw)}: unknown header key {m.group(1)!r}; "
                f"expected {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}"
            )
        if m and known:
            key = m.group(1)
            if key in values:
                raise InputError(f"{path}: line {_line_of(text, raw)}: header key {key!r} twice")
            values[key] = m.group(2).strip()
        elif raw.strip():
            if key is None:
                raise InputError(
                    f"{path}: line {_line_of(text, raw)}: expected `key: value` in the header, "
                    f"got {raw.strip()!r}"
                )
            values[key] = f"{values[key]} {raw.strip()}".strip()
    missing = [k for k in REQUIRED_KEYS if not values.get(k)]
    if missing:
        raise InputError(f"{path}: header lacks {', '.join(missing)} (see queries/README.md)")
    return values, body


def parse_rule(path: Path, *, builtin: bool = False) -> Rule:
    """Read and validate one rule file; every error names the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text, expected a SQL rule file") from None
    values, body = parse_header(text, path)
    rid = values["id"]
    if not _ID.match(rid):
        raise InputError(f"{path}: id {rid!r}: expected upper-case letters, digits and `_`")
    if values["severity"] not in SEVERITIES:
        raise InputError(
            f"{path}: severity {values['severity']!r}: expected one of {', '.join(SEVERITIES)}"
        )
    if values["confidence"] not in CONFIDENCES:
        raise InputError(
            f"{path}: confidence {values['confidence']!r}: expected one of {', '.join(CONFIDENCES)}"
        )
    sql = body.strip().rstrip(";").strip()
    if not sql:
        raise InputError(f"{path}: no SQL after the header; expected one SELECT")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise InputError(f"{path}: SQL does not parse: {exc}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise InputError(f"{path}: expected exactly one SELECT statement after the header")
    return Rule(
        id=rid,
        severity=values["severity"],
        confidence=values["confidence"],
        means=values["means"],
        predicts=values["predicts"],
        cannot_prove=values["cannot_prove"],
        references=values["references"],
        sql=sql,
        path=path,
        builtin=builtin,
        extra={k: values[k] for k in OPTIONAL_KEYS if k in values},
    )


def _rule_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.sql") if p.name != VIEWS_FILE)


def load_rules(rules_dir: Path | None = None) -> list[Rule]:
    """The built-in catalogue, then the user's rules from `rules_dir`; ids must be unique."""
    rules = [parse_rule(p, builtin=True) for p in _rule_files(BUILTIN_DIR)]
    if rules_dir is not None:
        rules_dir = Path(rules_dir)
        if not rules_dir.is_dir():
            raise InputError(f"{rules_dir}: --rules expects a directory of .sql rule files")
        user = _rule_files(rules_dir)
        if not user:
            raise InputError(f"{rules_dir}: no .sql rule files in this directory")
        rules += [parse_rule(p) for p in user]
    seen: dict[str, Path] = {}
    for r in rules:
        if r.id in seen:
            raise InputError(f"{r.path}: rule id {r.id} is already defined by {seen[r.id]}")
        seen[r.id] = r.path
    return rules


def helper_views() -> dict[str, str]:
    """The views of queries/views.sql (`CREATE VIEW name AS SELECT …;` statements)."""
    path = BUILTIN_DIR / VIEWS_FILE
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    # DuckDB 2 keeps the comments before a statement in its text; they are skipped here
    pattern = re.compile(
        r"^(?:\s*(?:--[^\n]*\n|/\*.*?\*/))*\s*CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+(\w+)\s+AS\s+(.*)$",
        re.I | re.S,
    )
    for stmt in duckdb.extract_statements(path.read_text()):
        m = pattern.match(stmt.query)
        if m is None:
            raise InputError(f"{path}: expected only `CREATE VIEW name AS SELECT …` statements")
        out[m.group(1).lower()] = m.group(2).strip().rstrip(";")
    return out


def rule_views(rules_dir: Path | None = None) -> dict[str, str]:
    """{view name: SELECT} for `pinscope sql`: the helper views, then one view per rule."""
    views = helper_views()
    views.update({r.view_name: r.sql for r in load_rules(rules_dir)})
    return views


# ---------------------------------------------------------------------------- kernel context


def kernel_version(kernel: str | None) -> tuple[int, int] | None:
    m = re.match(r"^\s*(\d+)\.(\d+)", kernel or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


_PIN_RULES = frozenset(
    {
        "PIN_SPANS_WRITEBACK",
        "DIRTY_WITHOUT_BUFFERS",
        "PIN_SPANS_TRUNCATE",
        "UNPIN_WITHOUT_DIRTY",
        "LONGTERM_PIN_FILE_BACKED",
        "PAGE_FREED_WHILE_PINNED",
        "RELEASE_MISMATCH",
        "PIN_LEAK",
    }
)

# (rules, the version a change landed in, text before it, text from it on); KERNEL.md's list.
_CONTEXT: tuple[tuple[frozenset[str], tuple[int, int], str, str], ...] = (
    (
        _PIN_RULES,
        (5, 7),
        "{k} predates FOLL_PIN (5.6/5.7): pins here are get_user_pages FOLL_GET references, "
        "invisible to folio_maybe_dma_pinned()",
        "FOLL_PIN exists on {k} (since 5.6/5.7): folio_maybe_dma_pinned() can see FOLL_PIN pins, "
        "not FOLL_GET references",
    ),
    (
        frozenset({"FORK_WHILE_PINNED"}),
        (5, 9),
        "{k} predates 5.9: fork does not copy maybe-pinned anonymous pages, so the parent's next "
        "write moves it off the pinned page",
        "since 5.9 fork copies maybe-pinned anonymous pages for FOLL_PIN: on {k} this points at a "
        "FOLL_GET reference or a pin the kernel could not see",
    ),
    (
        frozenset({"FORK_WHILE_PINNED", "PAGE_REPLACED_WHILE_PINNED"}),
        (5, 19),
        "{k} predates PageAnonExclusive (5.19): COW may replace a pinned anonymous page",
        "PageAnonExclusive (5.19+) should keep a pinned anonymous page from being COW-replaced "
        "on {k}: a replace here is a kernel anomaly or a FOLL_GET reference",
    ),
    (
        frozenset({"DIRTY_WITHOUT_BUFFERS", "PIN_SPANS_WRITEBACK"}),
        (5, 18),
        "on {k} ext4 hits BUG_ON for a dirty page without buffers (a warning since 5.18, "
        "backported to 5.10/5.15 stable): expect a crash",
        "on {k} (5.18+) ext4 warns 'page does not have buffers attached' and drops the dirty "
        "bit: silent data loss rather than a crash",
    ),
    (
        frozenset({"DIRTY_WITHOUT_BUFFERS", "UNPIN_WITHOUT_DIRTY", "PIN_SPANS_WRITEBACK"}),
        (6, 4),
        "before 6.4 reclaim may strip a pinned page's buffers and free it once clean ({k})",
        "reclaim skips maybe-pinned folios since 6.4 ({k}): buffers are stripped by writeback "
        "or invalidation, not by reclaim",
    ),
    (
        frozenset({"LONGTERM_PIN_FILE_BACKED"}),
        (6, 5),
        "{k} predates 6.5: FOLL_LONGTERM pins of file-backed pages are allowed",
        "on {k} (6.5+) FOLL_LONGTERM|FOLL_WRITE on dirty-tracked file mappings is refused: this "
        "pin succeeding means shmem/hugetlbfs, a read-only pin, or a kernel anomaly",
    ),
)


def kernel_context(rule_id: str, kernel: str | None) -> str | None:
    """What the traced kernel's version means for one rule's findings; None when unknown."""
    version = kernel_version(kernel)
    if version is None:
        return None
    texts = [
        (after if version >= since else before).format(k=kernel)
        for rules, since, before, after in _CONTEXT
        if rule_id in rules
    ]
    return "; ".join(texts) or None


# ---------------------------------------------------------------------------- running


def _empty_findings() -> pl.DataFrame:
    return pl.DataFrame(schema=FINDINGS_SCHEMA)


def run_rule(con: duckdb.DuckDBPyConnection, rule: Rule) -> pl.DataFrame:
    """One rule's rows, checked against RULE_COLUMNS and cast to their types."""
    try:
        df = con.sql(rule.sql).pl()
    except duckdb.Error as exc:
        raise InputError(f"{rule.path}: rule {rule.id} failed in DuckDB: {exc}") from None
    expected = list(RULE_COLUMNS)
    if df.columns != expected:
        raise InputError(
            f"{rule.path}: rule {rule.id} returned columns {df.columns}; expected exactly "
            f"{expected} in this order"
        )
    try:
        df = df.cast(RULE_COLUMNS, strict=True)  # type: ignore[arg-type]
    except (pl.exceptions.PolarsError, TypeError) as exc:
        raise InputError(
            f"{rule.path}: rule {rule.id} returned a column of the wrong type ({exc}); expected "
            + ", ".join(f"{c} {t}" for c, t in RULE_COLUMNS.items())
        ) from None
    df = df.with_columns(
        pl.col("rule").fill_null(rule.id),
        pl.col("severity").fill_null(rule.severity),
        pl.col("confidence").fill_null(rule.confidence),
    )
    bad = df.filter(
        (pl.col("rule") != rule.id)
        | ~pl.col("severity").is_in(SEVERITIES)
        | ~pl.col("confidence").is_in(CONFIDENCES)
    )
    if bad.height:
        row = bad.row(0, named=True)
        raise InputError(
            f"{rule.path}: rule {rule.id} returned rule={row['rule']!r} "
            f"severity={row['severity']!r} confidence={row['confidence']!r}; expected rule "
            f"{rule.id}, severity in {SEVERITIES}, confidence in {CONFIDENCES}"
        )
    return df


# A finding is uncertain when a lost-events gap overlaps its time span (the trace may miss an
# event inside it), or when it starts a pin span that replay marked uncertain. The gap test is
# an ASOF join, not an EXISTS over every gap: per trace, the gaps by start with the furthest end
# among those starting at or before it; a gap overlaps (s, e) iff the last gap starting before e
# reaches past s. (EXISTS compared every finding with every gap: 9 s and 7 GB for 226k findings
# and 14k gaps.)
_UNCERTAIN_SQL = """
WITH reach AS (
    SELECT trace_id, g0, max(max(g1)) OVER (PARTITION BY trace_id ORDER BY g0) AS reach
    FROM (
        SELECT trace_id, coalesce(gap_start_ts_ns, -9223372036854775807) AS g0,
               coalesce(gap_end_ts_ns, 9223372036854775807) AS g1
        FROM lost
    )
    GROUP BY trace_id, g0
), uncertain_pins AS (
    SELECT DISTINCT trace_id, pfn, ino, start_ts_ns FROM intervals
    WHERE uncertain AND state IN ('pinned', 'writable_pinned', 'longterm_pinned')
), f AS (
    SELECT *, coalesce(start_ts_ns, -9223372036854775807) AS _s,
           coalesce(end_ts_ns, 9223372036854775807) AS _e
    FROM _findings
)
SELECT f.* EXCLUDE (_s, _e),
    coalesce(r.reach > f._s, false) OR u.trace_id IS NOT NULL AS uncertain
FROM f
ASOF LEFT JOIN reach r ON r.trace_id = f.trace_id AND f._e > r.g0
LEFT JOIN uncertain_pins u
  ON u.trace_id = f.trace_id AND u.start_ts_ns = f.start_ts_ns
 AND u.pfn IS NOT DISTINCT FROM f.pfn AND u.ino IS NOT DISTINCT FROM f.ino
ORDER BY f.trace_id, f.start_ts_ns, f.rule
"""


def make_shareable(con: duckdb.DuckDBPyConnection) -> None:
    """Copy the objects registered on `con` (Python frames) into tables of its database.

    Registered frames are visible only to the connection that registered them, not to its
    cursors; the dataset's registrations (the manifest, empty typed tables) are tiny, so copying
    them lets rules run on cursors in parallel. Not for large in-memory frames.
    """
    names = con.execute(
        "SELECT view_name FROM duckdb_views() WHERE temporary AND NOT internal"
    ).fetchall()
    for (name,) in names:
        ident = '"' + name.replace('"', '""') + '"'
        con.execute(f"CREATE TABLE main.{ident} AS SELECT * FROM temp.{ident}")
        con.unregister(name)


def rule_workers() -> int:
    """Rules run at once: one per core (up to 4), each query on its share of the cores.

    A rule is a few selective scans and small joins that one DuckDB thread runs about as fast
    as several; running whole rules side by side keeps every core busy for less CPU in all.
    """
    return max(1, min(4, os.cpu_count() or 1))


def _tune(con: duckdb.DuckDBPyConnection, workers: int) -> None:
    """Share the cores among the rules run at once; parse each Parquet footer once, not per rule
    (binding a rule otherwise reopens every file of every table it reads)."""
    con.execute(f"SET threads = {max(1, (os.cpu_count() or 1) // max(1, workers))}")
    con.execute("SET parquet_metadata_cache = true")


# Built-in rules that read the most (a second pass over page_events for their candidates' pages,
# or every held dirty against every writable span): started first so that no long rule is left
# running alone at the end.
_LONG_FIRST: tuple[str, ...] = (
    "DIRTY_AFTER_UNPIN",
    "RELEASE_MISMATCH",
    "PIN_SPANS_WRITEBACK",
    "UNPIN_WITHOUT_DIRTY",
)


def _run_all(con: duckdb.DuckDBPyConnection, rules: list[Rule], workers: int) -> list[pl.DataFrame]:
    """Each rule's rows, in catalogue order; the first failing rule (in that order) raises."""
    if workers <= 1 or len(rules) <= 1:
        return [run_rule(con, r) for r in rules]
    rank = {rid: i for i, rid in enumerate(_LONG_FIRST)}
    order = sorted(
        range(len(rules)),
        key=lambda i: rank.get(rules[i].id, len(rank)) if rules[i].builtin else len(rank),
    )
    pending = iter(order)  # shared by the workers: each rule is taken once
    results: dict[int, pl.DataFrame | BaseException] = {}

    def worker() -> None:
        cur = con.cursor()
        try:
            for i in pending:
                try:
                    results[i] = run_rule(cur, rules[i])
                except Exception as exc:  # re-raised below, in catalogue order
                    results[i] = exc
        finally:
            cur.close()

    with ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(worker) for _ in range(workers)]:
            f.result()
    out = []
    for i in range(len(rules)):
        r = results[i]
        if isinstance(r, BaseException):
            raise r
        out.append(r)
    return out


def run_rules(
    con: duckdb.DuckDBPyConnection,
    rules: Iterable[Rule],
    *,
    kernels: dict[str, str | None] | None = None,
    workers: int = 1,
) -> pl.DataFrame:
    """Every rule over a connection with the dataset's views → findings (FINDINGS_SCHEMA).

    `workers` > 1 runs rules at once on cursors of `con`: call make_shareable(con) first.
    """
    rules = list(rules)
    parts = _run_all(con, rules, workers)
    found = pl.concat(parts) if parts else pl.DataFrame(schema=RULE_COLUMNS)
    if found.is_empty():
        return _empty_findings()
    con.register("_findings", found.to_arrow())
    try:
        found = (
            con.sql(_UNCERTAIN_SQL)
            .pl()
            .cast(
                {**RULE_COLUMNS, "uncertain": pl.Boolean()}  # type: ignore[arg-type]
            )
        )
    finally:
        con.unregister("_findings")
    context = pl.DataFrame(
        [
            (t, r.id, kernel_context(r.id, k) if r.builtin else None)
            for t, k in (kernels or {}).items()
            for r in rules
        ],
        schema={"trace_id": pl.String(), "rule": pl.String(), "kernel_context": pl.String()},
        orient="row",
    )
    found = found.join(context, on=["trace_id", "rule"], how="left", nulls_equal=False)
    return found.select([pl.col(c).cast(t) for c, t in FINDINGS_SCHEMA.items()])


def connect_frames(
    page_events: pl.DataFrame,
    intervals: pl.DataFrame,
    *,
    events: pl.DataFrame | None = None,
    lost: pl.DataFrame | None = None,
    other_events: pl.DataFrame | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection over in-memory frames, with the views the rules read."""
    con = duckdb.connect(":memory:")
    if events is None:
        events = page_events.select(list(EVENTS_SCHEMA))
    frames = {
        "page_events": page_events,
        "intervals": intervals,
        "events": events,
        "lost": lost if lost is not None else pl.DataFrame(schema=LOST_SCHEMA),
        "other_events": (
            other_events if other_events is not None else pl.DataFrame(schema=OTHER_EVENTS_SCHEMA)
        ),
    }
    for name, df in frames.items():
        df = df.with_columns(pl.col(pl.Enum, pl.Categorical).cast(pl.String))
        con.register(f"_{name}", df.to_arrow())
        con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "_{name}"')
    return con


def findings_for_frames(
    page_events: pl.DataFrame,
    intervals: pl.DataFrame,
    *,
    events: pl.DataFrame | None = None,
    lost: pl.DataFrame | None = None,
    other_events: pl.DataFrame | None = None,
    kernels: dict[str, str | None] | None = None,
    rules_dir: Path | None = None,
) -> pl.DataFrame:
    """Run the rules over replay output held in memory (tests, the Python API)."""
    con = connect_frames(
        page_events, intervals, events=events, lost=lost, other_events=other_events
    )
    try:
        return run_rules(con, load_rules(rules_dir), kernels=kernels)
    finally:
        con.close()


# ---------------------------------------------------------------------------- the dataset


def _stamp(dataset: Path, rules: list[Rule]) -> str:
    """A digest of what findings depend on: the rules' text, the replay output, the manifest."""
    h = hashlib.sha256()
    for r in rules:
        h.update(f"{r.id}\0{r.builtin}\0{r.path.read_text()}\0".encode())
    for name in DERIVED_TABLES:
        root = dataset / "derived" / name
        for p in sorted(root.rglob("*.parquet")) if root.is_dir() else []:
            st = p.stat()
            h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    h.update(json.dumps(ds.traces(dataset), sort_keys=True, default=str).encode())
    return h.hexdigest()


def read_findings(dataset: Path) -> pl.DataFrame:
    """derived/findings as written by `analyze_dataset` (empty when absent)."""
    path = Path(dataset) / FINDINGS_DIR / FINDINGS_FILE
    if not path.exists():
        return _empty_findings()
    return pl.read_parquet(path, glob=False).cast(FINDINGS_SCHEMA)  # type: ignore[arg-type]


def analyze_dataset(
    dataset: Path, *, rules_dir: Path | None = None, force: bool = False
) -> pl.DataFrame:
    """Findings of a replayed dataset, from derived/findings when still fresh.

    Rebuilt when the rules, the replay output or the manifest changed since they were written;
    written atomically under the dataset's lock so a concurrent reader never sees half a table.
    """
    dataset = ds.require_dataset(Path(dataset))
    if not (dataset / "derived" / "page_events").is_dir():
        raise InputError(
            f"{dataset}: not replayed yet (no derived/page_events): run `pinscope replay` first"
        )
    rules = load_rules(rules_dir)
    stamp = _stamp(dataset, rules)
    stamp_path = dataset / FINDINGS_DIR / STAMP_FILE
    if not force and stamp_path.exists():
        try:
            if json.loads(stamp_path.read_text()).get("stamp") == stamp:
                return read_findings(dataset)
        except (OSError, ValueError):
            pass
    kernels = {t["trace_id"]: t.get("kernel") for t in ds.traces(dataset)}
    con = ds.connect(dataset, derived_schemas=DERIVED_TABLES, derived_computed=COMPUTED_SQL)
    try:
        make_shareable(con)
        workers = rule_workers()
        _tune(con, workers)
        found = run_rules(con, rules, kernels=kernels, workers=workers)
    finally:
        con.close()
    try:
        with ds.lock(dataset), ds.atomic_dir(dataset, FINDINGS_DIR) as tmp:
            found.write_parquet(tmp / FINDINGS_FILE)
            (tmp / STAMP_FILE).write_text(
                json.dumps({"stamp": stamp, "rules": [r.id for r in rules]}, indent=1)
            )
    except OSError:  # a read-only dataset: still report, just don't cache
        pass
    return found
