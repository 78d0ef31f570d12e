"""Dirty mode: realistic delivery defects, injected deterministically and counted exactly.

Row-level kinds (each applied to about ``rate / number of applicable kinds`` of the rows
of a file, on disjoint rows):

* ``missing_required``   a required field emptied (customer_id, txn_id, ...)
* ``malformed_value``    an unparsable value: amount ``12,3a``, date ``2026-02-30``, bad time
* ``unknown_enum``       a value outside the enum: direction ``debitt``, channel ``fax``
* ``negative_amount``    a money value that must be positive / non-negative made negative
* ``wrong_column_count`` a CSV line with one field too many or too few (written raw)
* ``duplicate_row``      an exact copy of a row within the same file
* ``late_row``           a valid row moved to a drop 1-5 days after its business date

Valid-but-unusual representations (not defects, counted as ``variants``): timestamps
with an explicit ``+08:00`` or UTC ``Z`` offset, booleans spelled ``Y``/``0``/``yes``...

File-level kinds (``resent_file``, ``resent_file_same_name``, ``truncated_gzip``,
``gbk_encoding``) and ``overlapping_resend`` are produced by ``generator.py``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from c360.contract import BOOL, DATE, DECIMAL, INT, SOURCES, TIMESTAMP

ROW_KINDS = ("missing_required", "malformed_value", "unknown_enum", "negative_amount",
             "wrong_column_count", "duplicate_row", "late_row")
FILE_KINDS = ("resent_file", "resent_file_same_name", "truncated_gzip", "gbk_encoding", "overlapping_resend")
ALL_KINDS = ROW_KINDS + FILE_KINDS

BAD_VALUES = {
    TIMESTAMP: ("2026-13-45T25:61:00", "31/12/2025 10:00", "yesterday", "2026-02-30T10:00:00", "20260115T"),
    DATE: ("2026-02-30", "20260230", "31/02/2026", "not a date", "2026-00-10"),
    DECIMAL: ("12,3a", "1.2.3", "CNY 100", "abc", "5..0"),
    INT: ("12a", "ten", "1e", "3.5.1", "?"),
}
BAD_ENUMS = {
    "direction": ("debitt", "DR", "refund"),
    "channel": ("fax", "telex", "carrier_pigeon"),
    "event_type": ("clik", "loginn", "page-view"),
    "status": ("actve", "closed?", "pending"),
    "gender": ("X", "male", "9"),
    "risk_tolerance": ("R6", "R0", "high"),
    "outcome": ("opend", "accepted", "unknown"),
    "survey_type": ("nps2", "rating", "csat5"),
    "severity": ("critical", "urgent", "meh"),
    "preferred_language": ("fr", "cn", "english"),
    "touchpoint": ("atm_visit", "unknown", "web"),
}
BOOL_VARIANTS = ("Y", "N", "1", "0", "yes", "no", "TRUE", "False")


def _money_columns(source: str) -> list[str]:
    return [c.name for c in SOURCES[source].columns
            if c.type == DECIMAL and c.min_value is not None]


def applicable(source: str, ext: str) -> tuple[str, ...]:
    src = SOURCES[source]
    kinds = ["missing_required", "malformed_value", "duplicate_row", "late_row"]
    if any(c.enum for c in src.columns):
        kinds.append("unknown_enum")
    if _money_columns(source):
        kinds.append("negative_amount")
    if ext in ("csv", "csv.gz"):
        kinds.append("wrong_column_count")
    return tuple(k for k in ROW_KINDS if k in kinds)


@dataclass
class Injected:
    main: pa.Table  # rows that stay in the file (valid or defective)
    raw_lines: list[tuple[int, str]] = field(default_factory=list)  # (insert before row, raw CSV line)
    late: dict[int, pa.Table] = field(default_factory=dict)  # target day -> rows delivered late
    counts: Counter = field(default_factory=Counter)
    variants: Counter = field(default_factory=Counter)


def _replace(tab: pa.Table, col: str, rows: np.ndarray, values: list | pa.Array) -> pa.Table:
    if len(rows) == 0:
        return tab
    i = tab.column_names.index(col)
    arr = tab.column(col).combine_chunks()
    m = np.zeros(len(arr), dtype=bool)
    m[rows] = True
    # replace_with_mask consumes replacements in row order
    vals = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
    new = pc.replace_with_mask(arr, pa.array(m), vals.take(pa.array(np.argsort(np.argsort(rows)))))
    return tab.set_column(i, col, new)


def inject(tab: pa.Table, source: str, ext: str, rate: float, rng: np.random.Generator,
           day: int, last_day: int) -> Injected:
    src = SOURCES[source]
    n = tab.num_rows
    out = Injected(tab)
    if n == 0 or rate <= 0:
        return out
    kinds = applicable(source, ext)
    per_kind = rng.binomial(n, rate / len(kinds), size=len(kinds))
    total = min(int(per_kind.sum()), n)
    chosen = rng.permutation(n)[:total]
    bounds = np.minimum(np.concatenate([[0], np.cumsum(per_kind)]), total)
    rows_of = {k: np.sort(chosen[bounds[i]:bounds[i + 1]]) for i, k in enumerate(kinds)}
    defective = np.zeros(n, dtype=bool)
    defective[chosen] = True

    # --- value defects
    rows = rows_of.get("missing_required", np.array([], int))
    req = src.required
    which = rng.integers(0, len(req), len(rows))
    for j, col in enumerate(req):
        r = rows[which == j]
        tab = _replace(tab, col, r, pa.nulls(len(r), pa.string()))
    out.counts["missing_required"] += len(rows)

    rows = rows_of.get("malformed_value", np.array([], int))
    typed = [c for c in src.columns if c.type in BAD_VALUES]
    which = rng.integers(0, len(typed), len(rows))
    for j, c in enumerate(typed):
        r = rows[which == j]
        bad = BAD_VALUES[c.type]
        tab = _replace(tab, c.name, r, [bad[k] for k in rng.integers(0, len(bad), len(r))])
    out.counts["malformed_value"] += len(rows)

    rows = rows_of.get("unknown_enum", np.array([], int))
    enums = [c.name for c in src.columns if c.enum]
    which = rng.integers(0, len(enums), len(rows))
    for j, col in enumerate(enums):
        r = rows[which == j]
        bad = BAD_ENUMS.get(col, ("unknown",))
        tab = _replace(tab, col, r, [bad[k] for k in rng.integers(0, len(bad), len(r))])
    out.counts["unknown_enum"] += len(rows)

    rows = rows_of.get("negative_amount", np.array([], int))
    money_cols = _money_columns(source)
    which = rng.integers(0, len(money_cols), len(rows))
    for j, col in enumerate(money_cols):
        r = rows[which == j]
        cur = tab.column(col).combine_chunks().take(pa.array(r))
        neg = pc.binary_join_element_wise("-", pc.fill_null(cur, "100.00"), "")
        tab = _replace(tab, col, r, neg)
    out.counts["negative_amount"] += len(rows)

    # --- valid variants on clean rows: explicit offsets, boolean spellings
    clean = np.flatnonzero(~defective)
    for c in src.columns:
        if c.type == TIMESTAMP:
            r = np.sort(clean[rng.random(len(clean)) < rate / 2])
            vals = tab.column(c.name).combine_chunks().take(pa.array(r))
            valid = np.asarray(vals.is_valid())
            r, vals = r[valid], vals.filter(pa.array(valid))
            utc = rng.random(len(r)) < 0.5
            with_offset = pc.binary_join_element_wise(vals, "+08:00", "")
            ts = pc.strptime(vals, format="%Y-%m-%dT%H:%M:%S", unit="s")
            shifted = pc.subtract(ts, pa.scalar(dt.timedelta(hours=8), pa.duration("s")))
            as_utc = pc.strftime(shifted, format="%Y-%m-%dT%H:%M:%SZ")
            tab = _replace(tab, c.name, r, pc.if_else(pa.array(utc), as_utc, with_offset))
            out.variants["timestamp_with_offset"] += len(r)
        elif c.type == BOOL:
            r = np.sort(clean[rng.random(len(clean)) < rate])
            vals = tab.column(c.name).combine_chunks().take(pa.array(r))
            valid = np.asarray(vals.is_valid())
            r, vals = r[valid], vals.filter(pa.array(valid))
            is_false = np.asarray(pc.equal(vals, "false"), dtype=np.int64)
            spelling = is_false + 2 * rng.integers(0, len(BOOL_VARIANTS) // 2, len(r))
            tab = _replace(tab, c.name, r, pa.array(np.array(BOOL_VARIANTS)[spelling]))
            out.variants["bool_spelling"] += len(r)

    # --- structural defects
    keep = np.ones(n, dtype=bool)
    rows = rows_of.get("late_row", np.array([], int))
    delay = rng.integers(1, 6, len(rows))
    target = day + delay
    ok = target <= last_day
    for d in np.unique(target[ok]):
        r = rows[ok & (target == d)]
        out.late[int(d)] = tab.take(pa.array(r))
    keep[rows[ok]] = False
    out.counts["late_row"] += int(ok.sum())

    rows = rows_of.get("wrong_column_count", np.array([], int))
    if len(rows):
        pylist = tab.take(pa.array(rows)).to_pylist()
        for i, (r, rec) in enumerate(zip(rows, pylist)):
            fields = ["" if v is None else v for v in rec.values()]
            fields = fields + ["EXTRA"] if rng.random() < 0.5 else fields[:-1]
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerow(fields)
            out.raw_lines.append((int(r), buf.getvalue()))
        keep[rows] = False
        out.counts["wrong_column_count"] += len(rows)

    rows = rows_of.get("duplicate_row", np.array([], int))
    # duplicates sit right after their original; position bookkeeping for raw lines uses
    # the index of the original row in the final order
    order = np.concatenate([np.flatnonzero(keep), rows[keep[rows]]])
    pos = np.concatenate([np.flatnonzero(keep), rows[keep[rows]]]).astype(np.float64)
    pos[np.count_nonzero(keep):] += 0.5
    order = order[np.argsort(pos, kind="stable")]
    out.counts["duplicate_row"] += int(keep[rows].sum())
    # raw lines: insert before the first kept row whose original index is >= r
    if out.raw_lines:
        out.raw_lines = [(int(np.searchsorted(order, r)), line) for r, line in out.raw_lines]
        # searchsorted needs order sorted: it is (duplicates keep their original index)
    out.main = tab.take(pa.array(order))
    return out
