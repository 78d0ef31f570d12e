"""Vectorised value formatting and deterministic file writers.

Every output column is built as a pyarrow string array (null = empty field) with pyarrow
compute kernels, never with a Python loop over rows:

* dates/timestamps: lookup tables of day strings and of the 86,400 times of day, joined
  (``2026-06-30T14:03:11``, bank time, no offset);
* money: integer cents reinterpreted as ``decimal128(18, 2)`` and cast to text (``12.30``);
* ids: a prefix plus a zero-padded number.

Writers are byte-deterministic: CSV via ``pyarrow.csv`` (RFC 4180), gzip via zlib with a
zero mtime, JSON lines by joining pre-rendered fragments, Parquet via ``pyarrow.parquet``
(its only key-value metadata is the Arrow schema, which is fixed). Parquet columns are all
strings, exactly like CSV text, so that dirty mode can carry malformed values in any source.
"""

from __future__ import annotations

import datetime as dt
import os
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

EPOCH = dt.date(1970, 1, 1)
_SECS = np.arange(86_400, dtype=np.int64)


def _lpad_ints(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pa.array(values).cast(pa.string()), width, "0")


# "HH:MM:SS" for every second of the day.
TIME_OF_DAY = pc.binary_join_element_wise(
    _lpad_ints(_SECS // 3600, 2), _lpad_ints(_SECS // 60 % 60, 2), _lpad_ints(_SECS % 60, 2), ":"
)


class Calendar:
    """Day arithmetic of one generation run.

    Day index 0 is the first day of the history, ``days - 1`` is ``as_of``; negative
    indices are the past (onboarding, historical account openings).
    """

    def __init__(self, as_of: dt.date, days: int, past_years: int = 30):
        self.as_of = as_of
        self.days = days
        self.start = as_of - dt.timedelta(days=days - 1)
        self.min_day = -int(past_years * 366)  # earliest representable day index
        self.max_day = days + 400  # a margin for birth dates etc. is handled separately
        start64 = np.datetime64(self.start.isoformat(), "D")
        self.start64 = start64
        span = np.arange(self.min_day, self.max_day, dtype=np.int64)
        self._day_str = pa.array(np.datetime_as_string(start64 + span, unit="D"))
        dates = start64 + np.arange(days)
        self.weekday = ((dates.astype(np.int64) + 3) % 7).astype(np.int8)  # Monday = 0
        self.month_key = dates.astype("datetime64[M]")
        # Calendar months touched by the history, with the day range of each.
        months, first = np.unique(self.month_key, return_index=True)
        self.months = [(str(m), int(f), int(f + np.sum(self.month_key == m))) for m, f in zip(months, first)]
        self.month_of_day = np.searchsorted(first, np.arange(days), side="right") - 1

    def date(self, day: int) -> dt.date:
        return self.start + dt.timedelta(days=int(day))

    def day_of(self, d: dt.date) -> int:
        return (d - self.start).days

    def date_str(self, day: int) -> str:
        return self.date(day).isoformat()

    def dates(self, days: np.ndarray) -> pa.Array:
        """YYYY-MM-DD strings for day indices."""
        idx = np.asarray(days, dtype=np.int64) - self.min_day
        return self._day_str.take(pa.array(idx))

    def timestamps(self, days: np.ndarray, secs: np.ndarray) -> pa.Array:
        """ISO-8601 local timestamps for (day index, second of day)."""
        secs = np.clip(np.asarray(secs, dtype=np.int64), 0, 86_399)
        return pc.binary_join_element_wise(self.dates(days), TIME_OF_DAY.take(pa.array(secs)), "T")


def birth_dates(start: dt.date, age_days: np.ndarray) -> pa.Array:
    """Birth date strings from an age (days before the start of the history)."""
    d = np.datetime64(start.isoformat(), "D") - age_days.astype("timedelta64[D]")
    return pa.array(np.datetime_as_string(d, unit="D"))


def ymd_int(dates: np.ndarray) -> np.ndarray:
    """datetime64[D] -> YYYYMMDD integers (vectorised, safe on empty arrays)."""
    d = np.asarray(dates, dtype="datetime64[D]")
    months = d.astype("datetime64[M]")
    year = months.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (d - months).astype(np.int64) + 1
    return year * 10_000 + month * 100 + day


def money(cents: np.ndarray) -> pa.Array:
    """Decimal strings with two decimals from integer cents (negatives allowed)."""
    cents = np.ascontiguousarray(cents, dtype=np.int64)
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = np.where(cents < 0, -1, 0)  # two's complement sign extension
    dec = pa.Array.from_buffers(pa.decimal128(18, 2), len(cents), [None, pa.py_buffer(words)])
    return dec.cast(pa.string())


def ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    return pc.binary_join_element_wise(prefix, _lpad_ints(np.asarray(numbers, dtype=np.int64), width), "")


def ints(values: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, dtype=np.int64)).cast(pa.string())


def pick(labels, index: np.ndarray) -> pa.Array:
    """labels[index] as a string array (labels: a sequence or a pyarrow string array)."""
    arr = labels if isinstance(labels, pa.Array) else pa.array(list(labels), pa.string())
    return arr.take(pa.array(np.asarray(index, dtype=np.int64)))


def bools(values: np.ndarray) -> pa.Array:
    return pick(("false", "true"), np.asarray(values, dtype=np.int64))


def const(value: str | None, n: int) -> pa.Array:
    if value is None:
        return pa.nulls(n, pa.string())
    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, dtype=np.int64)))


def mask(arr: pa.Array, null_where: np.ndarray) -> pa.Array:
    """arr with nulls where null_where is true."""
    return pc.if_else(pa.array(np.asarray(null_where, dtype=bool)), pa.scalar(None, pa.string()), arr)


def table(columns: dict[str, pa.Array], order: list[str]) -> pa.Table:
    """A string table in contract column order (every contract column must be given)."""
    missing = [c for c in order if c not in columns]
    if missing:
        raise ValueError(f"missing columns {missing}")
    return pa.table([columns[c].cast(pa.string()) for c in order], names=order)


# ----------------------------------------------------------------------- writers
def _ensure_dir(path: Path) -> None:
    os.makedirs(path.parent, exist_ok=True)


def csv_bytes(tab: pa.Table, header: bool = True, quote: bool = False) -> bytes:
    """RFC 4180 CSV. quote=True quotes every string (needed for free text)."""
    buf = pa.BufferOutputStream()
    opts = pacsv.WriteOptions(include_header=header, quoting_style="needed" if quote else "none")
    pacsv.write_csv(tab, buf, opts)
    return buf.getvalue().to_pybytes()


def gzip_bytes(data: bytes, level: int = 1) -> bytes:
    """gzip with a fixed header (mtime 0), so identical input gives identical bytes."""
    z = zlib.compressobj(level, zlib.DEFLATED, 31)
    return z.compress(data) + z.flush()


def jsonl_lines(tab: pa.Table, numeric: tuple[str, ...] = ()) -> pa.Array:
    """One JSON object per row (each ending in a newline), keys in column order.

    Values are known not to contain quotes, backslashes or control characters (the
    generator controls them), so no escaping is needed. Null values are written as
    ``null``. Columns in ``numeric`` are bare numbers when they are digits (malformed
    values stay quoted strings).
    """
    parts: list = []
    for i, name in enumerate(tab.column_names):
        col = tab.column(name).combine_chunks()
        quoted = pc.binary_join_element_wise('"', col, '"', "")
        if name in numeric:
            is_num = pc.fill_null(pc.match_substring_regex(col, r"^-?[0-9]+$"), False)
            quoted = pc.if_else(is_num, col, quoted)
        parts.append(("{" if i == 0 else ",") + f'"{name}":')
        parts.append(pc.fill_null(quoted, "null"))
    parts.append("}\n")
    return pc.binary_join_element_wise(*parts, "").cast(pa.large_string())


def jsonl_bytes(tab: pa.Table, numeric: tuple[str, ...] = ()) -> bytes:
    if tab.num_rows == 0:
        return b""
    return concat_strings(jsonl_lines(tab, numeric)).to_pybytes()


def concat_strings(arr: pa.Array) -> pa.Buffer:
    """The concatenated bytes of a string array, zero-copy (a slice of its data buffer)."""
    arr = arr if arr.type == pa.large_string() else arr.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    return arr.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def parquet_bytes(tab: pa.Table) -> bytes:
    buf = pa.BufferOutputStream()
    pq.write_table(tab, buf, compression="zstd", write_statistics=False)
    return buf.getvalue().to_pybytes()


def write_bytes(path: Path, data: bytes | pa.Buffer) -> None:
    _ensure_dir(path)
    with open(path, "wb") as f:
        f.write(data)


def encode(tab: pa.Table, ext: str, quote: bool = False, numeric: tuple[str, ...] = ()) -> bytes:
    """Serialize a string table for a file extension."""
    if ext == "csv":
        return csv_bytes(tab, quote=quote)
    if ext == "csv.gz":
        return gzip_bytes(csv_bytes(tab, quote=quote))
    if ext == "jsonl":
        return jsonl_bytes(tab, numeric)
    if ext == "parquet":
        return parquet_bytes(tab)
    raise ValueError(ext)
