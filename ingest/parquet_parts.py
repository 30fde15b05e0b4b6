"""Parquet part files written with per-column choices, for the dataset and derived/.

pyarrow's writer rather than polars': it lets each column have its own encoding and
statistics, and with them a part costs a fifth (ingest's tables) to two fifths (replay's)
less CPU to write than with polars' one setting for all. Ingest writes every row once, replay
every page event once: both writes are floors of their stage.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

# Values go to the encoders this many rows at a time (pyarrow's default is 1024): with version
# 2 data pages, about 20% less CPU for the same bytes.
WRITE_BATCH_ROWS = 65_536


def arrow_for_parquet(df: pl.DataFrame) -> pa.Table:
    """The frame as Arrow without converting its flat strings.

    polars' string views go to the Parquet writer as they are (converting them to offset
    strings was ~1/8 of a write). The enums' dictionaries, of string views, which the writer
    cannot take, become dictionaries of plain strings (a few values each). Nested columns keep
    the offset layout, column by column: the writer cannot slice string views inside lists.
    """
    nested = [c for c, t in df.schema.items() if t.is_nested()]
    flat = df.drop(nested) if nested else df
    table = flat.to_arrow(compat_level=pl.CompatLevel.newest())
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type) and pa.types.is_string_view(f.type.value_type):
            typ = pa.dictionary(f.type.index_type, pa.string(), f.type.ordered)
            table = table.set_column(i, f.with_type(typ), table.column(i).cast(typ))
    if nested:
        old = df.select(nested).to_arrow()
        for c in nested:
            table = table.append_column(old.schema.field(c), old.column(c))
        table = table.select(df.columns)
    return table


def _required_where_full(table: pa.Table) -> pa.Table:
    """The columns without a null in this part declared non-nullable, so that Parquet stores
    them REQUIRED: with no definition levels to compute and write, a part costs ~15% less CPU
    (replay's page_events, where most columns are full). Readers see the same types; only
    the part's Parquet schema says which columns happened to be full."""
    schema = pa.schema(
        [f.with_nullable(table.column(i).null_count > 0) for i, f in enumerate(table.schema)],
        metadata=table.schema.metadata,
    )
    return pa.Table.from_arrays(table.columns, schema=schema)


def write_part(
    df: pl.DataFrame,
    path: Path,
    *,
    compression: str,
    row_group_rows: int,
    dictionary: Iterable[str] = (),
    delta: Iterable[str] = (),
    statistics: Iterable[str] = (),
    constant: Iterable[str] = (),
) -> None:
    """One part file. Columns not named in `dictionary` are written plain, those in `delta`
    DELTA_BINARY_PACKED (integers that rise through the part, or stay within a few bits of the
    value before), and only those in `statistics` carry min/max. Names inside nested columns
    are dotted Parquet paths (`fields.list.element.key`); names not in the frame are ignored.

    `constant` names string columns the caller knows hold one value on every row (a part's
    `trace_id`: every part belongs to one trace). See `_one_value_dictionaries`.

    Booleans are bit-packed PLAIN: with version 2 data pages pyarrow's default for them is
    RLE, which cost a quarter more CPU to write (8 boolean columns of a 500k-row page_events
    part: 26 → 20 ms) for about the same bytes once compressed."""
    table = _required_where_full(arrow_for_parquet(df))
    stored = table.schema
    table = _one_value_dictionaries(table, constant)
    names = set(table.column_names)

    def present(cols: Iterable[str]) -> list[str]:
        return [c for c in cols if c.split(".", 1)[0] in names]

    encoding = dict.fromkeys(present(delta), "DELTA_BINARY_PACKED")
    encoding.update((f.name, "PLAIN") for f in table.schema if pa.types.is_boolean(f.type))

    with pq.ParquetWriter(
        path,
        table.schema,
        compression=compression,
        use_dictionary=present(dictionary) + present(constant),
        write_statistics=present(statistics),
        column_encoding=encoding,
        data_page_version="2.0",
        write_batch_size=min(WRITE_BATCH_ROWS, row_group_rows),
        store_schema=False,
    ) as writer:
        writer.write_table(table, row_group_size=row_group_rows)
        # the schema readers restore types from (polars its enums, pyarrow all of them): the
        # frame's own, whatever went to the encoders; the same bytes as pyarrow stores itself
        writer.add_key_value_metadata({ARROW_SCHEMA: _stored_schema(stored)})


ARROW_SCHEMA = "ARROW:schema"


def _stored_schema(schema: pa.Schema) -> str:
    """What pyarrow's writer stores under ARROW:schema: the schema's IPC message, base64."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def _one_value_dictionaries(table: pa.Table, constant: Iterable[str]) -> pa.Table:
    """The `constant` columns as dictionaries of their one value (and all-zero indices).

    Given a string column, the Parquet writer hashes every row to build its dictionary (7 of
    the ~120 ms a 500k-row page_events part takes, 20 of an intervals part's 210); given a
    dictionary, it encodes the dictionary's one value and runs of zeros. The stored schema
    (`write_part`) keeps the column a string for every reader. A column with a null, or in an
    empty table, stays as it is."""
    for name in constant:
        i = table.schema.get_field_index(name)
        if i < 0 or table.num_rows == 0:
            continue
        col = table.column(i)
        if col.null_count or not (
            pa.types.is_string_view(col.type) or pa.types.is_string(col.type)
        ):
            continue
        value = col[0].as_py()
        indices = pa.array(np.zeros(table.num_rows, np.int8))
        one = pa.DictionaryArray.from_arrays(indices, pa.array([value], pa.string()))
        table = table.set_column(i, table.schema.field(i).with_type(one.type), one)
    return table
