"""`pinscope sql`: ad hoc queries over a dataset, one-shot or at an interactive prompt.

The connection is an in-memory DuckDB with a view per table (ingest.dataset.connect), and only
query statements run on it: a COPY … TO or an ATTACH could otherwise write into the dataset.
"""

from __future__ import annotations

import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

import duckdb
import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from ingest import dataset as ds
from ingest.errors import InputError
from pinscope import api
from pinscope.errors import user_errors
from pinscope.stale import StaleNotice

ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
# PRAGMAs that only read the catalogue (others can set output files).
_READ_PRAGMA = re.compile(
    r"^\s*pragma\s+(table_info|show|show_tables|show_tables_expanded|version|platform|"
    r"database_list|functions|collations|storage_info|database_size|metadata_info)\b",
    re.IGNORECASE,
)
TABLE_ROW_LIMIT = 10_000
TABLES_QUERY = "SELECT name FROM (SHOW TABLES) WHERE NOT starts_with(name, '_') ORDER BY name"


class OutFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def register(app: typer.Typer) -> None:
    @app.command("sql")
    def sql(
        dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
        query: Annotated[
            str | None, typer.Argument(help="One query; none opens an interactive prompt.")
        ] = None,
        format: Annotated[
            OutFormat, typer.Option("--format", "-f", help="Output format.")
        ] = OutFormat.table,
        output: Annotated[
            Path | None, typer.Option("-o", "--output", help="Write the result to FILE.")
        ] = None,
    ) -> None:
        """Query a dataset with DuckDB SQL: tables events, other_events, lost, stacks, rejects,
        manifest_traces, and page_events, intervals, findings once built."""
        with user_errors():
            ds.require_dataset(dataset)
            _check_output(dataset, format, output)
            if query is not None:
                run_query(dataset, query, format, output, notice=StaleNotice())
                return
        failed = repl(dataset, format, output, sys.stdin)
        if failed and not sys.stdin.isatty():
            raise typer.Exit(2)


def _check_output(dataset: Path, fmt: OutFormat, output: Path | None) -> None:
    if fmt is OutFormat.parquet and output is None:
        raise InputError("--format parquet needs -o FILE")
    if output is not None:
        try:
            output.resolve().relative_to(dataset.resolve())
        except ValueError:
            return
        raise InputError(f"{output}: inside the dataset {dataset}; write results elsewhere")


def check_query(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse anything but one query statement."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise InputError(f"bad SQL: {exc}") from None
    if len(statements) != 1:
        raise InputError(
            f"only queries are allowed, one at a time (got {len(statements)} statements)"
        )
    kind = statements[0].type
    if kind in ALLOWED or (kind == duckdb.StatementType.PRAGMA and _READ_PRAGMA.match(query)):
        return
    raise InputError(
        "only queries are allowed (SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN, "
        f"PRAGMA table_info…); got a {kind.name} statement"
    )


def run_query(
    dataset: Path,
    query: str,
    fmt: OutFormat,
    output: Path | None,
    out: TextIO | None = None,
    notice: StaleNotice | None = None,
) -> int:
    """Run one query under a shared lock and print or write its result; returns the row count.
    `notice` says, under that lock, when derived/ is out of date: sql never replays (the
    dataset may be read-only, or read by others meanwhile)."""
    with ds.lock(dataset, shared=True):
        if notice is not None:
            notice.check(dataset)
        con = api.connect(dataset, stale_warning=False)
        try:
            check_query(con, query)
            try:
                rel = con.sql(query)
                if rel is None:
                    return 0
                df = _fetch(rel, flatten=fmt in (OutFormat.table, OutFormat.csv))
            except duckdb.Error as exc:
                raise InputError(f"SQL error: {exc}") from None
        finally:
            con.close()
    _emit(df, fmt, output, out or sys.stdout)
    return df.height


def _fetch(rel: duckdb.DuckDBPyRelation, *, flatten: bool) -> pl.DataFrame:
    """The result as polars; nested values (lists, structs, maps) as DuckDB text when flat."""
    if flatten:
        exprs = []
        for name, typ in zip(rel.columns, rel.types, strict=True):
            quoted = '"' + name.replace('"', '""') + '"'
            t = str(typ)
            nested = t.endswith("]") or t.startswith(("STRUCT", "MAP", "UNION"))
            exprs.append(f"CAST({quoted} AS VARCHAR) AS {quoted}" if nested else quoted)
        rel = rel.project(", ".join(exprs)) if exprs else rel
    return rel.pl()


def _emit(df: pl.DataFrame, fmt: OutFormat, output: Path | None, out: TextIO) -> None:
    if fmt is OutFormat.parquet:
        assert output is not None
        df.write_parquet(output, compression="zstd")
        Console(stderr=True).print(f"{df.height:,} rows written to {output}")
        return
    if fmt is OutFormat.csv:
        text = df.write_csv()
    elif fmt is OutFormat.json:
        text = df.write_json() + "\n"
    else:
        text = None
    if output is not None:
        if text is None:
            with open(output, "w") as f:
                _print_table(df, Console(file=f, width=200, highlight=False))
        else:
            output.write_text(text)
        return
    if text is None:
        c = Console(file=out, highlight=False)
        _print_table(df, c if c.is_terminal else Console(file=out, highlight=False, width=200))
    else:
        out.write(text)
        out.flush()


def _print_table(df: pl.DataFrame, console: Console) -> None:
    table = Table(show_lines=False)
    for name, dtype in df.schema.items():
        table.add_column(name, justify="right" if dtype.is_numeric() else "left")
    shown = df.head(TABLE_ROW_LIMIT)
    for row in shown.iter_rows():  # output only, bounded by TABLE_ROW_LIMIT
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    console.print(table)
    more = df.height - shown.height
    console.print(
        f"{df.height:,} rows" + (f" ({more:,} not shown: use --format csv)" if more else "")
    )


def repl(dataset: Path, fmt: OutFormat, output: Path | None, stdin: TextIO) -> bool:
    """Run each statement ending in `;`; `.tables`, `.help`, `.quit`. True if any failed."""
    err = Console(stderr=True, highlight=False)
    notice = StaleNotice()
    tty = stdin.isatty()
    failed = False
    buf: list[str] = []
    if tty:
        err.print("pinscope sql: end statements with `;`, `.tables` lists views, `.quit` exits")
    while True:
        if tty:
            err.print("pinscope> " if not buf else "     ...> ", end="")
        line = stdin.readline()
        if not line:
            break
        stripped = line.strip()
        if not buf and stripped.startswith("."):
            cmd = stripped.split()[0]
            if cmd in (".quit", ".exit", ".q"):
                break
            if cmd == ".tables":
                with _ReplErrors(err) as ok:
                    run_query(dataset, TABLES_QUERY, fmt, None, notice=notice)
                failed |= not ok[0]
            elif cmd == ".help":
                err.print(".tables  list the views\n.quit    leave\nSQL statements end with `;`")
            else:
                err.print(f"[red]unknown command {cmd}[/] (.tables, .help, .quit)")
                failed = True
            continue
        buf.append(line)
        if stripped.endswith(";"):
            query = "".join(buf).strip()
            buf = []
            with _ReplErrors(err) as ok:
                run_query(dataset, query, fmt, output, notice=notice)
            failed |= not ok[0]
    if "".join(buf).strip():
        with _ReplErrors(err) as ok:
            run_query(dataset, "".join(buf).strip(), fmt, output, notice=notice)
        failed |= not ok[0]
    return failed


class _ReplErrors:
    """Print an error and carry on: one bad statement does not end the session."""

    def __init__(self, err: Console) -> None:
        self.err = err
        self.ok = [True]

    def __enter__(self) -> list[bool]:
        return self.ok

    def __exit__(self, et: type | None, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, InputError | duckdb.Error):
            self.err.print(f"[bold red]pinscope:[/] {exc}")
            self.ok[0] = False
            return True
        return False
