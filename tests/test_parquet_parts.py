"""The part writer's per-column encodings: what it promises, and that every reader agrees."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq

from ingest import parquet_parts
from ingest.schema import KIND
from replay import run

# 64-bit extremes and nulls: delta encoding wraps around 2^64 and must give them back exactly
_U64 = [0, 2**64 - 1, 2**63, 1, 2**63 - 1, None, 5, 2**64 - 2, 0] * 1000


def _encodings(path: Path) -> dict[str, set[str]]:
    meta = pq.ParquetFile(path).metadata
    out: dict[str, set[str]] = {}
    for g in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            col = meta.row_group(g).column(c)
            out.setdefault(col.path_in_schema, set()).update(col.encodings)
    return out


def test_delta_and_boolean_columns_read_back_the_same_everywhere(tmp_path: Path) -> None:
    n = len(_U64)
    df = pl.DataFrame(
        {
            "ino": pl.Series(_U64, dtype=pl.UInt64),
            "line": pl.int_range(n, dtype=pl.Int64, eager=True),
            "dirty": pl.Series([i % 3 == 0 for i in range(n)]),
            "mismatch": pl.Series([None if i % 7 == 0 else i % 2 == 0 for i in range(n)]),
        }
    )
    path = tmp_path / "part.parquet"
    parquet_parts.write_part(
        df, path, compression="lz4", row_group_rows=4096, delta=["ino", "line"]
    )

    enc = _encodings(path)
    assert "DELTA_BINARY_PACKED" in enc["ino"] and "DELTA_BINARY_PACKED" in enc["line"]
    # booleans bit-packed PLAIN (pyarrow's default, RLE, lists only "RLE": levels use it too)
    assert "PLAIN" in enc["dirty"] and "PLAIN" in enc["mismatch"]
    schema = pq.ParquetFile(path).schema
    assert schema.column(2).max_definition_level == 0  # full: stored REQUIRED
    assert schema.column(3).max_definition_level == 1

    assert pl.read_parquet(path).equals(df)
    assert pq.read_table(path).column("ino").to_pylist() == _U64
    rows = duckdb.sql(f"SELECT ino, dirty, mismatch FROM '{path}' ORDER BY line").fetchall()
    assert [r[0] for r in rows] == _U64
    assert Counter(r[1:] for r in rows) == Counter(
        zip(df["dirty"].to_list(), df["mismatch"].to_list(), strict=True)
    )


def test_replay_parts_delta_encode_their_page_keys(tmp_path: Path) -> None:
    """derived/ parts: pfns, inodes and span starts delta-encoded, booleans plain, and min/max
    statistics on the grouping column only (what lets a `kind = …` scan skip row groups)."""
    n = 3000
    df = pl.DataFrame(
        {
            "kind": pl.Series(["pin", "unpin", "dirty"] * (n // 3), dtype=KIND),
            "seq": pl.int_range(n, dtype=pl.Int64, eager=True),
            "pfn": pl.Series([(i * 7919) % 5000 for i in range(n)], dtype=pl.UInt64),
            "ino": pl.Series([None if i % 5 else i for i in range(n)], dtype=pl.UInt64),
            "start_line": pl.int_range(n, 0, -1, dtype=pl.Int64, eager=True),
            "dirty_before": pl.Series([i % 2 == 0 for i in range(n)]),
        }
    ).sort(pl.col("kind").to_physical(), "seq")
    path = tmp_path / "part.parquet"
    run.write_part(df, path, "kind")

    enc = _encodings(path)
    for col in ("seq", "pfn", "ino", "start_line"):
        assert "DELTA_BINARY_PACKED" in enc[col], col
    assert "PLAIN" in enc["dirty_before"]
    meta = pq.ParquetFile(path).metadata.row_group(0)
    stats = {meta.column(c).path_in_schema: meta.column(c).statistics for c in range(6)}
    assert stats["kind"] is not None and stats["pfn"] is None
    assert pl.read_parquet(path).equals(df)


def test_constant_columns_go_as_one_value_dictionaries_and_read_back_as_strings(
    tmp_path: Path,
) -> None:
    """A part's trace_id is encoded once (a one-value dictionary), yet every reader sees the
    frame's types: the stored Arrow schema is byte for byte what pyarrow itself would store."""
    n = 5000
    df = pl.DataFrame(
        {
            "trace_id": pl.Series(["t-1"] * n),
            "kind": pl.Series(["pin", "unpin"] * (n // 2), dtype=KIND),
            "comm": pl.Series(["a b", None] * (n // 2)),
            "line": pl.int_range(n, dtype=pl.Int64, eager=True),
            "holders": pl.Series([[{"pid": 1, "comm": "x"}]] * n),
        }
    )
    path, plain = tmp_path / "part.parquet", tmp_path / "plain.parquet"
    parquet_parts.write_part(
        df, path, compression="lz4", row_group_rows=2048, dictionary=["kind", "comm"],
        constant=["trace_id", "comm"],
    )  # fmt: skip
    # what pyarrow stores when it is given the frame as it is
    pq.write_table(parquet_parts._required_where_full(parquet_parts.arrow_for_parquet(df)), plain)

    assert "RLE_DICTIONARY" in _encodings(path)["trace_id"]
    meta, want = pq.read_metadata(path), pq.read_metadata(plain)
    key = parquet_parts.ARROW_SCHEMA.encode()
    assert meta.metadata[key] == want.metadata[key]
    assert meta.schema.equals(want.schema)  # the Parquet schema too
    assert pl.read_parquet(path).equals(df)
    assert pl.read_parquet(path).schema == df.schema
    assert pq.read_table(path).equals(pq.read_table(plain))
    rows = duckdb.sql(f"SELECT DISTINCT trace_id, typeof(trace_id) FROM '{path}'").fetchall()
    assert rows == [("t-1", "VARCHAR")]
    # comm has a null: not a constant, whatever the caller said; it stays as it came
    assert pq.read_table(path).column("comm").to_pylist() == df["comm"].to_list()

    empty = tmp_path / "empty.parquet"
    parquet_parts.write_part(
        df.clear(), empty, compression="lz4", row_group_rows=2048, constant=["trace_id"]
    )
    assert pl.read_parquet(empty).equals(df.clear())
