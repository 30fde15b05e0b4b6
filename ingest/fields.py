"""Reading `key=value` event bodies with polars, fast.

Regex captures cost about 0.25 s per key per million rows in polars, too slow for a dozen keys
at ≥1M lines/s. But one event name almost always prints its keys in the same order (TP_printk,
or the probe's definition), so `extract_fields` learns the token layout of a group from its
first body, splits every body once (`str.splitn`), checks each row against that layout with
cheap `starts_with` tests, and only sends the rows that do not fit (a comm with spaces, an
optional key) through the per-key regexes. Both paths give the same answer.

A key is either `name=` (`pfn=0x1f`) or a word followed by its value (`dev 8:1`, `ino 3f85d`):
`Key("dev", sep=" ")`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

# Key names as ftrace and bpftrace print them.
KEY_RE = r"[A-Za-z_][A-Za-z0-9_.\[\]]*"


@dataclass(frozen=True)
class Key:
    """A key in an event body: `name=value`, or `name value` when sep is a space."""

    name: str
    sep: str = "="

    @property
    def prefix(self) -> str:
        return self.name + self.sep


def _regex(key: Key) -> str:
    return rf"(?:^|\s){re.escape(key.prefix)}(\S+)"


def _layout(sample: str, keys: Sequence[Key]) -> dict[Key, int]:
    """Token position of each key's value in one body (absent keys left out)."""
    tokens = sample.split(" ")
    pos: dict[Key, int] = {}
    for key in keys:
        for i, tok in enumerate(tokens):
            if key.sep == "=" and tok.startswith(key.prefix):
                pos[key] = i
                break
            if key.sep == " " and tok == key.name and i + 1 < len(tokens):
                pos[key] = i + 1
                break
    return pos


def _slow(df: pl.DataFrame, body: str, keys: Sequence[Key], names: Sequence[str]) -> pl.DataFrame:
    return df.with_columns(
        pl.col(body).str.extract(_regex(k), 1).alias(n) for k, n in zip(keys, names, strict=True)
    )


def extract_fields(
    df: pl.DataFrame, body: str, keys: Sequence[Key], names: Sequence[str]
) -> pl.DataFrame:
    """Add one String column per key (named by `names`), null where the body lacks the key.

    Row order is kept when every row fits the learned layout; otherwise the rows that do not
    fit come after the ones that do.
    """
    if df.height == 0 or not keys:
        return _slow(df, body, keys, names)
    sample = df.get_column(body).drop_nulls()
    if sample.len() == 0:
        return _slow(df, body, keys, names)
    pos = _layout(sample[0], keys)
    if not pos:
        return _slow(df, body, keys, names)
    n = max(pos.values()) + 2  # the last field takes the rest of the line: no value lands there
    tok = pl.col("__tok")
    fits: list[pl.Expr] = []
    values: list[pl.Expr] = []
    for key, name in zip(keys, names, strict=True):
        if key in pos:
            i = pos[key]
            field = tok.struct.field(f"field_{i}")
            # The regex takes the first occurrence: the key must not come earlier in the row.
            if key.sep == "=":
                fits.append(field.str.starts_with(key.prefix))
                fits.append(field.str.len_bytes() > len(key.prefix))
                fits.extend(
                    ~tok.struct.field(f"field_{j}").str.starts_with(key.prefix) for j in range(i)
                )
                values.append(field.str.slice(len(key.prefix)).alias(name))
            else:
                fits.append(tok.struct.field(f"field_{i - 1}") == key.name)
                fits.append(field.str.len_bytes() > 0)
                fits.extend(tok.struct.field(f"field_{j}") != key.name for j in range(i - 1))
                values.append(field.alias(name))
        else:
            values.append(pl.lit(None, pl.String).alias(name))
    missing = [k for k in keys if k not in pos]
    if missing:
        # A key missing from the sample must be missing from the row too. The plain search
        # (literal prefilter, ~5x faster) nearly always finds none in the whole group, which
        # settles it; otherwise the exact regex runs per row.
        alt = "|".join(re.escape(k.prefix) for k in missing)
        if df.get_column(body).str.contains(alt).any():
            fits.append(~pl.col(body).str.contains(rf"(?:^|[^A-Za-z0-9_.])(?:{alt})"))
    split = df.with_columns(pl.col(body).str.splitn(" ", n).alias("__tok"))
    split = split.with_columns(pl.all_horizontal(fits).fill_null(False).alias("__fits"))
    good = split.filter(pl.col("__fits"))
    fast = good.with_columns(values).drop("__tok", "__fits")
    if good.height == split.height:
        return fast
    bad = split.filter(~pl.col("__fits")).drop("__tok", "__fits")
    return pl.concat([fast, _slow(bad, body, keys, names)], how="vertical")


def radix_of(values: pl.Series) -> str:
    """ "hex" / "dec" when every value of a column is one or the other, else "mixed".

    A column's values nearly always share one radix; knowing that halves the parsing work.
    """
    if values.null_count() == values.len():
        return "dec"
    lower = values.str.starts_with("0x")
    if lower.all():
        return "hex"
    upper = values.str.starts_with("0X") | values.str.starts_with("-0")
    if not (lower | upper).any():
        return "dec"
    return "mixed"


def parse_uint(s: pl.Expr, base: int | None = None, radix: str = "mixed") -> pl.Expr:
    """Decimal or 0x-hex text → UInt64; null when malformed, signed with `-`, or ≥ 2^64.

    base=16 reads hex without a prefix (the `ino` of the filemap tracepoints); radix is a
    hint from `radix_of` (a wrong hint gives nulls, never wrong numbers).
    """
    if base is not None:
        return s.str.strip_prefix("0x").str.to_integer(base=base, dtype=pl.UInt64, strict=False)
    hexa = s.str.slice(2).str.to_integer(base=16, dtype=pl.UInt64, strict=False)
    dec = s.str.to_integer(base=10, dtype=pl.UInt64, strict=False)
    if radix == "dec":
        return dec
    if radix == "hex":
        return pl.when(s.str.starts_with("0x")).then(hexa)
    # Two fixed-base parses beat one with a per-row base expression by 2x.
    return pl.when(s.str.starts_with("0x") | s.str.starts_with("0X")).then(hexa).otherwise(dec)


def parse_int(s: pl.Expr, radix: str = "mixed") -> pl.Expr:
    """Signed decimal or 0x-hex (`-5`, `-0x10`) → Int64; null when malformed or out of range."""
    dec = s.str.to_integer(base=10, dtype=pl.Int64, strict=False)
    if radix == "dec":
        return dec
    hexa = s.str.slice(2).str.to_integer(base=16, dtype=pl.Int64, strict=False)
    neg_hex = s.str.slice(3).str.to_integer(base=16, dtype=pl.Int64, strict=False)
    return (
        pl.when(s.str.starts_with("0x") | s.str.starts_with("0X"))
        .then(hexa)
        .when(s.str.starts_with("-0x") | s.str.starts_with("-0X"))
        .then(-neg_hex)
        .otherwise(dec)
    )


def parse_dev(s: pl.Expr) -> pl.Expr:
    """`M:N` → MKDEV(M, N) = M << 20 | N (the kernel's dev_t); a plain number is taken as is."""
    parts = s.str.split_exact(":", 1)
    major = parse_uint(parts.struct.field("field_0"))
    minor = parse_uint(parts.struct.field("field_1"))
    mkdev = pl.when((major < 4096) & (minor < (1 << 20))).then(major * (1 << 20) + minor)
    return pl.when(s.str.contains(":", literal=True)).then(mkdev).otherwise(parse_uint(s))


def kv_list(body: pl.Expr) -> pl.Expr:
    """Every `key=value` token of a body as a list of {key, value} structs (for other_events).

    Values are single tokens: a value with spaces is cut at the first space (the raw body is
    kept beside it).
    """
    el = pl.element()
    return body.str.split(" ").list.eval(
        el.filter(el.str.contains(rf"^{KEY_RE}="))
        .str.split_exact("=", 1)
        .struct.rename_fields(["key", "value"])
    )
