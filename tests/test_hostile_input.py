"""Hostile deliveries: property-based tests of the landing reader and the bronze validation.

Hypothesis generates transaction deliveries in every format the contract allows (CSV,
gzipped CSV, JSON Lines, Parquet) with columns reordered, renamed in other spellings or
left out when optional, an unknown extra column, a BOM, CRLF line ends, blank lines,
very long and odd Unicode text, timestamps in other zones, huge and tiny numbers, and
defective rows mixed with valid ones. The properties:

- reading and validating never raises;
- every delivered row comes out exactly once, under its physical line number, either
  valid or with a reason from the known set (the exact reason for each planted defect);
- valid rows keep their values (text, decimals, instants converted to UTC);
- a whole-file defect (truncated Parquet or gzip, bytes that are not UTF-8, a missing
  required column, an empty file, duplicate columns) rejects the file as a whole, with a
  reason naming the problem, and emits no row;
- one hostile file does not stop the other files and sources of an ingest run;
- one hostile value rejects its row alone, whatever the format: a field over
  ``MAX_FIELD_BYTES`` (also beyond the CSV reader's block size), a nested JSON or Parquet
  value in a contract column, float money with more decimals than the contract's scale, a
  date with a time of day, a local time that a DST change skips; the other rows load;
- the spellings of one identifier (full-width forms, Unicode spaces and invisible format
  characters around or inside it) are read as that identifier;
- Parquet as pandas writes it (dates as midnight timestamps, money as float64) loads with
  the values meant.

The pure reader (``c360.landing``) is driven directly, without the engine; validation
runs on small DataFrames in the shared Sail session; only the last tests run the ingest job.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import tempfile
import warnings
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from c360 import lake
from c360.contract import SOURCES
from c360.landing import MAX_FIELD_BYTES, _arrow_jsonl, _parse_jsonl, inspect, make_reader, normalise_identifier
from helpers import hypothesis_settings, write_landing
from features.bronze import ValidationRules, validate
from jobs import ingest

TXN = SOURCES["transactions"]
DAY = date(2026, 6, 1)
BANK_TZ = ZoneInfo("Asia/Shanghai")
RULES = ValidationRules(bank_timezone="Asia/Shanghai", max_future_days=1, min_date=date(1900, 1, 1))
FORMATS = ("csv", "csv.gz", "jsonl", "parquet")
EXTRA = "channel_detail"  # an unknown extra column, delivered as "Channel Detail"

PURE, WITH_ENGINE = hypothesis_settings(30, 25)

_Q = r"'.*'"  # a quoted value as delivered (any text)
_ROW_REASON = "|".join([
    r"missing required field \w+",
    rf"(impossible|malformed) (date|timestamp) in \w+: {_Q}",
    rf"unknown value for \w+: {_Q}",
    rf"\w+ is not (a decimal|an integer|a boolean): {_Q}",
    rf"\w+ out of range for [^:]+: {_Q}",
    r"(negative|negative or zero|too small) \w+: -?[0-9.]+",
    r"\w+ too large: [0-9.]+",
    r"\w+ before \w+",
    r"\w+ in the future \(after the delivery date\)",
    r"score out of range for \w+: -?[0-9]+",
    r"birth_date after onboarding_date",
    r"wrong column count: expected [0-9]+, got [0-9]+",
    r"malformed JSON line \(.*\)",
    r"field \w+ too large: [0-9,]+ bytes \(limit [0-9,]+\)",
    r"\w+ is a JSON (object|array), not a single value",
    r"\w+ is a nested Parquet value, not a single value",
    r"float money in \w+: [-0-9.e+]+ has more than 2 decimals \(deliver money as decimal or text\)",
    rf"time of day in date \w+: {_Q}",
    rf"nonexistent local time in \w+: {_Q} \(skipped by a clock change in [\w/]+\)",
])
ROW_REASON = re.compile(rf"^({_ROW_REASON})(; ({_ROW_REASON}))*$", re.S)
FILE_REASONS = ("empty file", "no header row", "file is not valid UTF-8 text (wrong encoding?)", "truncated or corrupt compressed file",
                "not a readable Parquet file", "missing required column(s): ", "duplicate column names: ",
                "empty column name in header", "column name longer than", "no JSON object found",
                "unreadable CSV header", "unreadable file (")


def known_file_reason(reason: str | None) -> bool:
    return bool(reason) and reason.startswith(FILE_REASONS)


# ---------------------------------------------------------------------------------------
# Generating deliveries

# Free text: any Unicode except surrogates, lone CR (a line end of its own) and NUL; Chinese,
# quotes, commas, newlines, U+2028, form feeds, right-to-left marks...
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\x00"), max_size=30)
ODD = st.sampled_from(["NA", "null", "N/A", "nan", "None", "#N/A", '"', '""', ",", "a\nb", "\u2028", "\x0c",
                       "\u200f\u05e9\u05dc\u05d5\u05dd", "😀" * 3, "王小明，您好", "  padded  ", "=1+2"])
LONG = st.integers(1_000, 20_000).map(lambda n: ("长文本 long text, " * (n // 15 + 1))[:n])
FREE = st.one_of(TEXT, ODD, LONG)

OFFSETS = [None, "Z", "+08:00", "-05:00", "+05:30", "+14:00", "-12:00", "+0100", "+09", " +03:00"]


def _utc(local: datetime, offset: str | None) -> datetime:
    if offset is None:
        zone = BANK_TZ  # no offset: the bank's time zone
    elif offset.strip() == "Z":
        zone = timezone.utc
    else:
        o = offset.strip().replace(":", "")
        sign = -1 if o[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=int(o[1:3]), minutes=int(o[3:5] or 0)))
    return local.replace(tzinfo=zone).astimezone(timezone.utc).replace(tzinfo=None)


@st.composite
def timestamps(draw):
    """A valid ISO-8601 text and its UTC instant (naive, as the engine returns it)."""
    local = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2026, 5, 30, 23, 59, 59)))
    if draw(st.booleans()):
        local = local.replace(microsecond=0)
    offset = draw(st.sampled_from(OFFSETS))
    frac = f".{local.microsecond:06d}" if local.microsecond else ""
    text = f"{local:%Y-%m-%d}{draw(st.sampled_from(['T', ' ']))}{local:%H:%M:%S}{frac}{offset or ''}"
    if draw(st.integers(0, 9)) == 0:
        text = text.lower()  # "t" and "z" in lower case are still ISO-8601
    return text, _utc(local, offset)


@st.composite
def amounts(draw):
    """A valid money text (or JSON number) and its value: from 0.01 to the largest DECIMAL(18, 2)."""
    value = draw(st.one_of(
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999999999999999.99"), places=2),
        st.sampled_from([Decimal("0.01"), Decimal("9999999999999999.99"), Decimal("1234567890123456.78")])))
    text = draw(st.sampled_from([str(value), f" {value} ", f"+{value}", f"{value}0", f"{value:f}"]))
    return text, Decimal(text.strip()).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _cased(value: str):
    return st.sampled_from([value, value.upper(), value.title(), f" {value} "])


@st.composite
def valid_rows(draw, txn_id: str):
    """Delivered texts of one valid transaction, and the values validation must give it."""
    ts_text, ts = draw(timestamps())
    amount_text, amount = draw(amounts())
    direction = draw(st.sampled_from(["debit", "credit"]))
    channel = draw(st.sampled_from(TXN.column("channel").enum))
    texts = {"txn_id": txn_id, "account_id": "A1", "customer_id": "C1", "txn_ts": ts_text, "amount": amount_text,
             "direction": draw(_cased(direction)), "currency": "CNY", "channel": draw(_cased(channel)),
             "merchant_category": draw(FREE), "counterparty": draw(FREE), "description": draw(FREE),
             EXTRA: draw(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\x00"),
                                 min_size=1, max_size=20).filter(lambda v: v.strip()))}
    expected = {"txn_id": txn_id, "account_id": "A1", "customer_id": "C1", "txn_ts": ts, "amount": amount,
                "direction": direction, "currency": "CNY", "channel": channel}
    for c in ("merchant_category", "counterparty", "description"):
        expected[c] = texts[c].strip(" ") or None  # text is trimmed of spaces; empty is null
    return texts, expected


# One planted defect per row, with the exact reason validation must give.
VALUE_DEFECTS = [
    ({"txn_id": ""}, "missing required field txn_id"),
    ({"txn_id": "   "}, "missing required field txn_id"),
    ({"amount": "abc"}, "amount is not a decimal: 'abc'"),
    ({"amount": "1e-7"}, "amount is not a decimal: '1e-7'"),
    ({"amount": "-5"}, "negative or zero amount: -5.00"),
    ({"amount": "0.001"}, "negative or zero amount: 0.00"),
    ({"amount": "9" * 25}, f"amount out of range for decimal(18,2): '{'9' * 25}'"),
    ({"amount": "-" + "1" * 30 + ".5"}, f"amount out of range for decimal(18,2): '-{'1' * 30}.5'"),
    ({"channel": "fax"}, "unknown value for channel: 'fax'"),
    ({"direction": "sideways"}, "unknown value for direction: 'sideways'"),
    ({"txn_ts": "2026-13-01T00:00:00"}, "impossible timestamp in txn_ts: '2026-13-01T00:00:00'"),
    ({"txn_ts": "2026-02-30 08:00"}, "impossible timestamp in txn_ts: '2026-02-30 08:00'"),
    ({"txn_ts": "yesterday"}, "malformed timestamp in txn_ts: 'yesterday'"),
    ({"txn_ts": "2026-06-01T10:00:00 Europe/Paris"}, "malformed timestamp in txn_ts: '2026-06-01T10:00:00 Europe/Paris'"),
    ({"txn_ts": "2026-06-01T10:00:00+08:00:00"}, "malformed timestamp in txn_ts: '2026-06-01T10:00:00+08:00:00'"),
    ({"txn_ts": "2026-06-01T10:00:00UTC"}, "malformed timestamp in txn_ts: '2026-06-01T10:00:00UTC'"),
    ({"txn_ts": "1899-12-31T23:59:59Z"}, "impossible timestamp in txn_ts: '1899-12-31T23:59:59Z'"),
    ({"txn_ts": "9999-12-31T23:59:59"}, "txn_ts in the future (after the delivery date)"),
    ({"txn_ts": "2026-06-03T00:00:00Z"}, "txn_ts in the future (after the delivery date)"),
    ({"txn_ts": "2999-01-01T00:00:00-12:00"}, "txn_ts in the future (after the delivery date)"),
]
BROKEN_JSON = ['{"txn_id": "T', "[1, 2, 3]", "not json at all", '"just a string"', "{'single': 'quotes'}"]


@st.composite
def deliveries(draw, fmt: str | None = None, defects: bool = True):
    """A transactions delivery: a dict with ``fmt``, ``columns`` (delivered names, in order),
    ``names`` (as the pipeline names them), ``rows`` (each with its physical ``line``, the
    delivered ``texts`` and either ``expected`` values or the ``reason``) and the file's
    rendering options."""
    fmt = fmt or draw(st.sampled_from(FORMATS))
    dropped = draw(st.sets(st.sampled_from(["currency", "merchant_category", "counterparty", "description"])))
    names = draw(st.permutations([c for c in TXN.column_names if c not in dropped]))
    if draw(st.booleans()):
        names = names + [EXTRA]
    spellings = {c: draw(st.sampled_from([c, c.upper(), c.replace("_", " ").title(), f" {c} "])) for c in names}
    spellings[EXTRA] = "Channel Detail"
    kinds = ["ok", "ok", "ok"] + (["value"] if defects else []) + \
        (["count"] if defects and fmt.startswith("csv") else []) + (["json"] if defects and fmt == "jsonl" else [])
    rows = []
    for i in range(draw(st.integers(0 if defects else 1, 7))):
        texts, expected = draw(valid_rows(f"T{i}"))
        row = {"texts": texts, "expected": expected, "kind": draw(st.sampled_from(kinds))}
        if row["kind"] == "value":
            change, row["reason"] = draw(st.sampled_from(VALUE_DEFECTS))
            if not (change.keys() <= set(names)):
                row["kind"] = "ok"
            else:
                texts.update(change)
        elif row["kind"] == "count":
            row["reason"] = None  # set when rendered
        elif row["kind"] == "json":
            row["json"] = draw(st.sampled_from(BROKEN_JSON))
        rows.append(row)
    return {"fmt": fmt, "names": names, "columns": [spellings[c] for c in names], "rows": rows,
            "bom": draw(st.booleans()), "eol": draw(st.sampled_from(["\n", "\r\n"])),
            "blank_lines": [draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0 for _ in rows],
            "ascii_json": draw(st.booleans()), "json_numbers": draw(st.booleans())}


def render(d: dict) -> bytes:
    """The delivery's bytes; sets each row's physical ``line`` (and the count reason)."""
    fmt, names, rows = d["fmt"], d["names"], d["rows"]
    if fmt == "parquet":
        data = {col: [r["texts"].get(n) for r in rows] for col, n in zip(d["columns"], names)}
        table = pa.table({c: pa.array(v, pa.string()) for c, v in data.items()})
        for i, r in enumerate(rows, start=1):
            r["line"] = i
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()
    eol, out, line = d["eol"], io.StringIO(), 1
    if fmt == "jsonl":
        for r, blanks in zip(rows, d["blank_lines"]):
            out.write(eol * blanks)
            line += blanks
            r["line"] = line
            if r["kind"] == "json":
                out.write(r["json"] + eol)
            else:
                fields = []
                for col, n in zip(d["columns"], names):
                    v = r["texts"][n]
                    number = n == "amount" and d["json_numbers"] and re.fullmatch(r"[0-9]+[.][0-9]+", v or "")
                    fields.append(f"{json.dumps(col)}: {v if number else json.dumps(v, ensure_ascii=d['ascii_json'])}")
                out.write("{" + ", ".join(fields) + "}" + eol)
            line += 1
    else:
        w = csv.writer(out, lineterminator=eol)
        w.writerow(d["columns"])
        for r, blanks in zip(rows, d["blank_lines"]):
            out.write(eol * blanks)
            line += blanks
            values = [r["texts"][n] for n in names]
            if r["kind"] == "count":
                values = values[:-1] if len(r["texts"]["txn_id"]) % 2 else values + ["surplus"]
                r["reason"] = f"wrong column count: expected {len(names)}, got {len(values)}"
            r["line"] = line + 1
            rec = io.StringIO()
            csv.writer(rec, lineterminator=eol).writerow(values)
            out.write(rec.getvalue())
            line += 1 + rec.getvalue()[: -len(eol)].count("\n")
    data = (("\ufeff" if d["bom"] else "") + out.getvalue()).encode("utf-8")
    return gzip.compress(data) if fmt == "csv.gz" else data


def read_delivery(path: Path, source=TXN) -> tuple[object, pa.Table]:
    """What ingestion does with one file before validation: inspect it, then read its rows."""
    lf = inspect(path, source, DAY)
    extras = sorted(set(lf.header) - set(source.column_names))
    reader, ddl, _ = make_reader(source.column_names + extras, source)
    batch = pa.RecordBatch.from_pydict({"path": [str(path)], "fmt": [lf.fmt], "header": [list(lf.header)],
                                        "delivery_date": [DAY]})
    batches = [] if lf.problem else list(reader(iter([batch])))
    schema = batches[0].schema if batches else pa.schema(
        [pa.field(n, pa.string()) for n in source.column_names + extras]
        + [pa.field("_source_file", pa.string()), pa.field("_delivery_date", pa.date32()),
           pa.field("_line", pa.int64()), pa.field("_raw", pa.string()), pa.field("_row_error", pa.string()),
           pa.field("_file_error", pa.string()), pa.field("_file_sha256", pa.string())])
    return lf, pa.Table.from_batches(batches, schema)


def write_file(folder: Path, d: dict, data: bytes) -> Path:
    path = folder / f"delivery.{d['fmt']}"
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------
# Properties of the reader alone (no engine)

# Values a JSON Lines delivery may hold, tricky for the Arrow path: text that looks like a
# member value (":1,", ":true}"), quotes and escapes, integers beyond 64 bits, -0, fractions,
# nested values, and keys that need normalising or collide once normalised.
_JSON_TEXT = st.text(alphabet=st.sampled_from(list('ab:,}{"\\ 0129-.T\té中\u2028')), max_size=10)
_JSON_VALUE = st.one_of(st.none(), _JSON_TEXT, st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.just(-0.0),
                        st.decimals(allow_nan=False, allow_infinity=False, places=2, max_value=10 ** 6,
                                    min_value=-10 ** 6), st.lists(st.integers(0, 9), max_size=2))
_JSON_KEYS = st.sampled_from(["txn_id", "amount", "Customer ID", "customer_id", "flag", "ts"])


@st.composite
def json_lines(draw):
    plain = draw(st.booleans())  # only strings, integers, booleans and nulls: Arrow must take it
    # (text holding ":" may look like a member value to the quoting: Arrow then steps aside)
    value = st.one_of(st.none(), _JSON_TEXT.filter(lambda t: ":" not in t), st.booleans(),
                      st.integers(-(2 ** 70), 2 ** 70)) if plain else _JSON_VALUE
    keys = st.sampled_from(["txn_id", "amount", "Customer ID", "flag", "ts"]) if plain else _JSON_KEYS
    rows = draw(st.lists(st.dictionaries(keys, value, max_size=5), min_size=1, max_size=8))
    sep = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    ascii_only = draw(st.booleans())
    # decimals as JSON numbers with a fraction (the line-by-line parser keeps their digits)
    lines = [json.dumps({k: float(v) if isinstance(v, Decimal) else v for k, v in r.items()},
                        separators=sep, ensure_ascii=ascii_only) for r in rows]
    if not plain and draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "  ", "not json", "[1]"])))
    text = eol.join(lines) + (eol if draw(st.booleans()) else "")
    return plain, text.encode()


@PURE
@given(json_lines())
def test_arrow_json_lines_read_equals_the_line_by_line_read_or_steps_aside(case):
    plain, data = case
    slow, slow_lines, slow_bad = _parse_jsonl(data, arrow=False)
    fast = _arrow_jsonl(data)
    if plain:
        assert fast is not None  # a plain file is Arrow's
    if fast is None:
        return
    table, lines = fast
    assert slow_bad == []
    assert list(lines) == list(slow_lines)
    assert {n: table.column(n).to_pylist() for n in table.column_names} == \
        {n: slow.column(n).to_pylist() for n in slow.column_names}

@PURE
@given(deliveries())
def test_reader_emits_every_row_once_under_its_line_with_its_text(d):
    data = render(d)
    with tempfile.TemporaryDirectory() as tmp:
        lf, out = read_delivery(write_file(Path(tmp), d, data))
    if d["fmt"] == "jsonl" and all(r["kind"] == "json" for r in d["rows"]):
        # JSON Lines have no header: a file without one JSON object has no columns at all
        assert lf.problem in ("empty file", "no JSON object found in the first lines")
        return
    assert lf.problem is None
    assert lf.header == tuple(d["names"])  # reordered, respelled: named as the contract names them
    got = {r["_line"]: r for r in out.to_pylist()}
    assert len(got) == out.num_rows  # no line twice
    assert sorted(got) == sorted(r["line"] for r in d["rows"])
    for r in d["rows"]:
        row = got[r["line"]]
        assert row["_file_error"] is None
        if r["kind"] in ("count", "json"):
            if r["kind"] == "count":
                assert row["_row_error"] == r["reason"]
            else:
                assert row["_row_error"].startswith("malformed JSON line (")
                assert row["_raw"] == r["json"]
            continue
        assert row["_row_error"] is None
        for n in d["names"]:
            sent = r["texts"][n]
            want = None if sent == "" and d["fmt"].startswith("csv") else sent  # an empty CSV field is null
            if n in TXN.identifiers and want is not None:  # trimmed of white space of every kind
                want = normalise_identifier(pa.array([want]))[0].as_py()
            assert row[n] == want, n


# Whole-file defects: each rejects the file as a whole with a reason naming the problem.
WHOLE_FILE = {
    "truncated": ("parquet", "csv.gz"),
    "not_utf8": FORMATS,
    "missing_required": FORMATS,
    "empty": FORMATS,
    "duplicate_column": ("csv", "csv.gz", "parquet"),
}


def _break(d: dict, defect: str, data: bytes, cut: float) -> tuple[bytes, str]:
    """The delivery with ``defect`` applied, and the reason (prefix) it must be rejected with."""
    fmt = d["fmt"]
    if defect == "truncated":
        reason = "not a readable Parquet file" if fmt == "parquet" else "truncated or corrupt compressed file"
        return data[: max(1, min(len(data) - 1, int(len(data) * cut)))], reason
    if defect == "empty":
        return b"", "empty file"
    if defect == "not_utf8":
        if fmt == "parquet":
            table = pq.read_table(io.BytesIO(data))
            table = table.append_column("memo", pa.array([b"\xb9\xa4\xc9\xcc"] * table.num_rows, pa.binary()))
            buf = io.BytesIO()
            pq.write_table(table, buf)
            return buf.getvalue(), "file is not valid UTF-8 text (wrong encoding?)"
        raw = gzip.decompress(data) if fmt == "csv.gz" else data
        at = int(len(raw) * cut)
        while at < len(raw) and (raw[at] & 0xC0) == 0x80:  # not inside a UTF-8 character
            at += 1
        raw = raw[:at] + "工商银行".encode("gbk") + raw[at:]  # a GBK-encoded phrase
        return (gzip.compress(raw) if fmt == "csv.gz" else raw), "file is not valid UTF-8 text (wrong encoding?)"
    if defect == "missing_required":
        gone = TXN.required[int(cut * len(TXN.required)) % len(TXN.required)]
        keep = [i for i, n in enumerate(d["names"]) if n != gone]
        d2 = dict(d, names=[d["names"][i] for i in keep], columns=[d["columns"][i] for i in keep])
        d2["rows"] = [dict(r, texts={k: v for k, v in r["texts"].items() if k != gone}) for r in d["rows"]]
        return render(d2), f"missing required column(s): {gone}"
    if defect == "duplicate_column":
        d2 = dict(d, names=d["names"] + ["txn_id"], columns=d["columns"] + ["TXN_ID "])
        return render(d2), "duplicate column names: txn_id"
    raise AssertionError(defect)


@PURE
@given(st.sampled_from([(k, f) for k, fmts in WHOLE_FILE.items() for f in fmts]).flatmap(
    lambda kf: st.tuples(st.just(kf[0]), deliveries(fmt=kf[1], defects=False), st.floats(0.05, 0.95))))
def test_whole_file_defects_reject_the_file_with_a_reason_naming_the_problem(case):
    defect, d, cut = case
    data, reason = _break(d, defect, render(d), cut)
    with tempfile.TemporaryDirectory() as tmp:
        lf, out = read_delivery(write_file(Path(tmp), d, data))
    if lf.problem:  # found while inspecting the header: quarantined whole, never read
        assert out.num_rows == 0
        got = lf.problem
    else:  # found while reading: exactly one row, the file's error, and no data row
        assert out.num_rows == 1, out.to_pylist()
        (row,) = out.to_pylist()
        assert row["_line"] == 0 and row["_row_error"] is None and row["txn_id"] is None
        got = row["_file_error"]
    assert known_file_reason(got)
    assert got.startswith(reason), (got, reason)


@pytest.mark.unit
@pytest.mark.parametrize("name, data", [
    ("h.csv", ",".join(TXN.column_names).encode()),  # no line end at all
    ("h.csv", (",".join(TXN.column_names) + "\r\n\r\n").encode()),
    ("h.csv", ("\ufeff" + ",".join(TXN.column_names) + "\r").encode()),  # old Mac line end
    ("h.csv.gz", gzip.compress((",".join(TXN.column_names) + "\n").encode(), mtime=0)),
    ("h.parquet", None),
])
def test_a_header_only_file_is_an_empty_delivery_not_an_error(tmp_path, name, data):
    path = tmp_path / name
    if data is None:
        pq.write_table(pa.table({c: pa.array([], pa.string()) for c in TXN.column_names}), path)
    else:
        path.write_bytes(data)
    lf, out = read_delivery(path)
    assert lf.problem is None and lf.header == tuple(TXN.column_names)
    assert out.num_rows == 0


@pytest.mark.unit
@pytest.mark.parametrize("name, data, reason", [
    ("e.jsonl", b"\n\n", "no JSON object found in the first lines"),
    ("h.csv", b"\n" + b"T1,A1\n", "no header row: the first line is empty"),
    ("w.csv", b"  \r\n", "empty file: no header row"),
    ("n.csv", b"txn_id,,amount\n", "empty column name in header"),
    ("u.csv", b"_,txn_id\n", "empty column name in header"),  # "_" only: nothing left of the name
    ("l.csv", (",".join(TXN.column_names) + "," + "x" * 300 + "\n").encode(), "column name longer than 255"),
    ("q.csv", b'"txn_id,amount\n', "missing required column(s): txn_id"),  # an unterminated quote
    ("x.csv.gz", b"not gzip at all", "truncated or corrupt compressed file"),
    ("b.xlsx", b"PK\x03\x04", "unsupported file type"),
])
def test_hostile_headers_get_a_clear_reason(tmp_path, name, data, reason):
    path = tmp_path / name
    path.write_bytes(data)
    lf, out = read_delivery(path)
    assert lf.problem is not None and lf.problem.startswith(reason), lf.problem
    assert out.num_rows == 0


@pytest.mark.unit
def test_parquet_instants_in_any_zone_are_read_as_utc(tmp_path):
    """A zoned Parquet timestamp is one instant whatever its zone: read as UTC with "Z"."""
    instant = datetime(2026, 5, 31, 20, 26, 40, 123456, tzinfo=timezone.utc)
    cols = {c: pa.array(["x"] * 3, pa.string()) for c in TXN.column_names}
    for tz, name in [("UTC", "a"), ("Asia/Shanghai", "b"), ("America/New_York", "c")]:
        table = pa.table(cols | {"txn_ts": pa.array([instant] * 3, pa.timestamp("us", tz=tz)),
                                 "amount": pa.array([Decimal("12.50")] * 3, pa.decimal128(18, 2))})
        pq.write_table(table, tmp_path / f"{name}.parquet")
        lf, out = read_delivery(tmp_path / f"{name}.parquet")
        assert out.column("txn_ts").to_pylist() == ["2026-05-31T20:26:40.123456Z"] * 3, tz
        assert out.column("amount").to_pylist() == ["12.50"] * 3


# ---------------------------------------------------------------------------------------
# Properties of reader + validation (small DataFrames in the shared engine)

def _validated(spark, out: pa.Table) -> dict[int, dict]:
    df = validate(spark.createDataFrame(out), TXN, RULES)
    ok = "_reason IS NULL"
    rows = df.selectExpr("_line", "_reason", "_raw", *[f"CASE WHEN {ok} THEN `{c}` END AS `{c}`" for c in
                                                      TXN.column_names], *[c for c in df.columns if c == EXTRA])
    return {r["_line"]: r.asDict() for r in rows.collect()}


@WITH_ENGINE
@given(d=deliveries())
def test_every_row_ends_valid_with_its_values_or_quarantined_with_its_reason(spark, d):
    data = render(d)
    with tempfile.TemporaryDirectory() as tmp:
        lf, out = read_delivery(write_file(Path(tmp), d, data))
        got = _validated(spark, out) if out.num_rows else {}
    if lf.problem:  # JSON Lines without one JSON object: see the reader property
        assert d["fmt"] == "jsonl" and all(r["kind"] == "json" for r in d["rows"])
        return
    assert sorted(got) == sorted(r["line"] for r in d["rows"])  # each row exactly once
    for r in d["rows"]:
        row = got[r["line"]]
        if r["kind"] == "ok":
            assert row["_reason"] is None and row["_raw"] is None
            # an optional column left out of the delivery is null
            assert {c: row[c] for c in r["expected"]} == {c: v if c in d["names"] else None
                                                          for c, v in r["expected"].items()}
            if EXTRA in d["names"]:
                assert row[EXTRA] == r["texts"][EXTRA]  # an extra column passes unchanged
        else:
            assert row["_reason"] is not None and ROW_REASON.match(row["_reason"]), row["_reason"]
            assert row["_raw"]  # the record as delivered, for the quarantine
            if r["kind"] == "json":
                assert row["_reason"].startswith("malformed JSON line (")
            else:
                assert row["_reason"] == r["reason"]


@WITH_ENGINE
@given(st.lists(st.one_of(FREE, st.text(max_size=5), st.sampled_from(["1e309", "-0", "0x1F", "１２", "12,5", "∞"])),
                min_size=1, max_size=6))
def test_any_text_in_any_typed_column_gives_a_value_or_a_known_reason(spark, values):
    """Arbitrary text in every column of a feedback row (dates, integers, enums, bools):
    validation never fails, and a rejected row has a reason from the known set."""
    src = SOURCES["feedback"]
    from helpers import text_rows

    rows = [{c: values[(i + j) % len(values)] for j, c in enumerate(src.column_names)} | {"_line": i + 2}
            for i in range(len(values))]
    df = validate(text_rows(spark, "feedback", rows), src, RULES)
    for r in df.select("_line", "_reason").collect():
        assert r["_reason"] is None or ROW_REASON.match(r["_reason"]), r["_reason"]


# ---------------------------------------------------------------------------------------
# The ingest job: one hostile file does not stop the others

CUST_HEADER = ",".join(SOURCES["customers"].column_names)
TXN_HEADER = ",".join(TXN.column_names)


def _txn(txn_id, ts="2026-06-01T10:00:00"):
    return f"{txn_id},A1,C1,{ts},10.00,debit,CNY,pos,groceries,,"


def test_hostile_files_are_quarantined_and_every_other_file_and_source_loads(spark, lake_settings):
    s = lake_settings
    day = "2026-06-01"
    good_txn = (TXN_HEADER + "\n" + "\n".join(_txn(f"T{i}") for i in range(3)) + "\n").encode()
    t = s.landing / "transactions" / day
    write_landing(s.landing, "transactions", day, "good.csv", good_txn)
    write_landing(s.landing, "transactions", day, "cut.parquet", b"PAR1\x15\x04\x15")  # truncated Parquet
    write_landing(s.landing, "transactions", day, "cut.csv.gz", gzip.compress(good_txn.replace(b"T", b"G"))[:40])
    write_landing(s.landing, "transactions", day, "gbk.csv", (TXN_HEADER + "\n" + _txn("K1") + "工资").encode("gbk"))
    write_landing(s.landing, "transactions", day, "empty.csv", b"")
    write_landing(s.landing, "transactions", day, "header-only.csv", TXN_HEADER.encode())
    # used to crash the engine task (and so the whole run): reserved and odd column names,
    # lone CR line ends, non-UTF-8 bytes in a Parquet binary column
    write_landing(s.landing, "transactions", day, "names.csv",
                  (TXN_HEADER + ",_line,_source_file,Note (free)\r" + _txn("N1") + ",1,x,hello\r").encode())
    bad_bin = pa.table({c: [v] for c, v in zip(TXN.column_names, _txn("P1").split(","))}
                       | {"memo": pa.array([b"\xff\xfe"], pa.binary())})
    pq.write_table(bad_bin, t / "binary.parquet")
    zoned = pa.table({c: [v] for c, v in zip(TXN.column_names, _txn("Z1").split(","))}
                     | {"txn_ts": pa.array([datetime(2026, 6, 1, 10, tzinfo=timezone.utc)],
                                           pa.timestamp("us", tz="Asia/Shanghai"))})
    pq.write_table(zoned, t / "zoned.parquet")
    write_landing(s.landing, "events", day, "e.jsonl", '{"event_id": "E1", "device_id": "D1", "event_ts": '
                  '"2026-06-01T10:00:00", "channel": "app", "event_type": "page_view", "page": "a\u2028b"}\n')
    write_landing(s.landing, "customers", day, "c.csv", CUST_HEADER + "\n" + (
        "C1,王小明,110101199001011234,13800138000,xm@example.cn,1990-01-15,M,NA,100.00,上海,B01,"
        "2020-03-01,R3,verified,true,zh,2026-06-01T09:00:00") + "\n")

    res = ingest.run(spark, s)  # must not raise

    txn = res["transactions"]
    assert txn.files_quarantined == 5 and txn.error is None
    assert txn.rows_loaded == 5  # T0-T2, N1, Z1
    reasons = {r.source_file.rsplit("/", 1)[1]: r.reason
               for r in lake.read(spark, lake.table_path(s.lake, "quarantine", "transactions")).collect()}
    assert set(reasons) == {"cut.parquet", "cut.csv.gz", "gbk.csv", "empty.csv", "binary.parquet"}
    assert reasons["cut.parquet"].startswith("not a readable Parquet file")
    assert reasons["cut.csv.gz"].startswith("truncated or corrupt compressed file")
    assert reasons["gbk.csv"] == "file is not valid UTF-8 text (wrong encoding?)"
    assert reasons["empty.csv"] == "empty file"
    assert reasons["binary.parquet"] == "file is not valid UTF-8 text (wrong encoding?)"
    bronze = {r.txn_id: r for r in lake.read(spark, lake.table_path(s.lake, "bronze", "transactions")).collect()}
    assert sorted(bronze) == ["N1", "T0", "T1", "T2", "Z1"]
    assert bronze["N1"].line == "1" and bronze["N1"].source_file == "x" and bronze["N1"].note_free == "hello"
    assert bronze["N1"]._source_file.endswith("/names.csv") and bronze["N1"]._line == 2
    assert bronze["Z1"].txn_ts == datetime(2026, 6, 1, 10)  # the instant, not its Shanghai wall time
    assert res["events"].rows_loaded == 1
    ev = lake.read(spark, lake.table_path(s.lake, "bronze", "events")).first()
    assert ev.page == "a\u2028b"
    assert res["customers"].rows_loaded == 1
    assert lake.read(spark, lake.table_path(s.lake, "bronze", "customers")).first().occupation == "NA"


def test_a_source_whose_reading_fails_unexpectedly_does_not_stop_the_others(spark, lake_settings, monkeypatch):
    """Defence in depth: an unforeseen failure inside one source's ingestion is reported
    for that source; the other sources load, and its files are retried by the next run."""
    s = lake_settings
    write_landing(s.landing, "transactions", "2026-06-01", "t.csv", TXN_HEADER + "\n" + _txn("T1") + "\n")
    write_landing(s.landing, "feedback", "2026-06-01", "f.csv",
                  ",".join(SOURCES["feedback"].column_names) + "\nR1,C1,nps,9,ok,app,app,2026-06-01T10:00:00,\n")
    real = ingest.ingest_source

    def flaky(spark_, settings_, source, *args, **kw):
        if source.name == "transactions":
            raise RuntimeError("disk on fire")
        return real(spark_, settings_, source, *args, **kw)

    monkeypatch.setattr(ingest, "ingest_source", flaky)
    with pytest.raises(ingest.IngestError, match="transactions.*disk on fire") as err:
        ingest.run(spark, s)
    assert err.value.results["feedback"].rows_loaded == 1
    assert err.value.results["transactions"].error.startswith("RuntimeError: disk on fire")
    assert lake.read(spark, lake.table_path(s.lake, "bronze", "feedback")).count() == 1
    monkeypatch.setattr(ingest, "ingest_source", real)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = ingest.run(spark, s)
    assert again["transactions"].rows_loaded == 1 and again["feedback"].files_skipped == 1


# ---------------------------------------------------------------------------------------
# Rows and values: one hostile value rejects its row alone; spellings of one id are one key

TEXT_COLUMNS = ("merchant_category", "counterparty", "description", EXTRA)


def _plain_delivery(fmt: str, rows: list[dict], names: list[str] | None = None) -> dict:
    """A delivery of ``rows`` (texts by column) in ``fmt``, no defects, for :func:`render`."""
    names = names or TXN.column_names
    return {"fmt": fmt, "names": names, "columns": names, "bom": False, "eol": "\n",
            "rows": [{"texts": t, "kind": "ok"} for t in rows], "blank_lines": [0] * len(rows),
            "ascii_json": False, "json_numbers": False}


@hsettings(PURE, max_examples=12)
@given(deliveries(defects=False), st.data())
def test_an_oversized_field_rejects_only_its_row_in_every_format(d, data):
    """A field over MAX_FIELD_BYTES (up to 17 MB: beyond the CSV reader's 8 MB blocks, which
    used to reject the whole file) rejects its row with the field's name and size; the raw
    text kept for the quarantine is cut short; every other row reads as delivered."""
    rows = d["rows"]
    victim = data.draw(st.integers(0, len(rows) - 1))
    column = data.draw(st.sampled_from([n for n in d["names"] if n in TEXT_COLUMNS] or ["txn_id"]))
    size = data.draw(st.sampled_from([MAX_FIELD_BYTES + 1, 9 << 20, 17 << 20]))
    rows[victim]["texts"][column] = big = "长" * (size // 3 + 1)
    with tempfile.TemporaryDirectory() as tmp:
        lf, out = read_delivery(write_file(Path(tmp), d, render(d)))
    assert lf.problem is None
    got = {r["_line"]: r for r in out.to_pylist()}
    assert sorted(got) == sorted(r["line"] for r in rows)
    for i, r in enumerate(rows):
        row = got[r["line"]]
        assert row["_file_error"] is None
        if i == victim:
            assert row["_row_error"] == (f"field {column} too large: {len(big.encode()):,} bytes "
                                         f"(limit {MAX_FIELD_BYTES:,})")
            assert 0 < len(row["_raw"]) <= 10_000 and row[column] is None
        else:
            assert row["_row_error"] is None and row["txn_id"] == r["texts"]["txn_id"]
            assert row[column] == (r["texts"][column] or None if d["fmt"].startswith("csv") else r["texts"][column])


def _txn_texts(i: int, **over) -> dict:
    return {"txn_id": f"T{i}", "account_id": "A1", "customer_id": "C1", "txn_ts": "2026-06-01T10:00:00",
            "amount": "10.00", "direction": "debit", "currency": "CNY", "channel": "pos",
            "merchant_category": "m", "counterparty": "c", "description": "d"} | over


@pytest.mark.unit
def test_a_nested_json_value_in_a_contract_column_rejects_its_row_and_an_extra_column_keeps_it(tmp_path):
    lines = [_txn_texts(1), _txn_texts(2, customer_id={"id": "C1"}), _txn_texts(3, account_id=["A1"]),
             _txn_texts(4) | {"meta": {"k": [1, 2]}}]
    path = tmp_path / "n.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    lf, out = read_delivery(path)
    got = {r["_line"]: r for r in out.to_pylist()}
    assert sorted(got) == [1, 2, 3, 4]
    assert got[1]["_row_error"] is None and got[4]["_row_error"] is None
    assert got[2]["_row_error"] == "customer_id is a JSON object, not a single value"
    assert got[3]["_row_error"] == "account_id is a JSON array, not a single value"
    assert json.loads(got[2]["_raw"])["customer_id"] == {"id": "C1"}  # the line as delivered
    assert json.loads(got[4]["meta"]) == {"k": [1, 2]}  # an extra column: the JSON text


@pytest.mark.unit
def test_a_nested_parquet_value_in_a_contract_column_rejects_its_row_and_an_extra_column_keeps_it(tmp_path):
    cols = {c: pa.array([v, v], pa.string()) for c, v in _txn_texts(1).items()}
    cols["txn_id"] = pa.array(["T1", "T2"])
    cols["customer_id"] = pa.array([{"id": "C1"}, None], pa.struct([("id", pa.string())]))
    cols["tags"] = pa.array([["a"], ["b", "c"]], pa.list_(pa.string()))
    pq.write_table(pa.table(cols), tmp_path / "n.parquet")
    lf, out = read_delivery(tmp_path / "n.parquet")
    got = {r["_line"]: r for r in out.to_pylist()}
    assert got[1]["_row_error"] == "customer_id is a nested Parquet value, not a single value"
    assert got[1]["_raw"].startswith("T1,")
    assert got[2]["_row_error"] is None and got[2]["customer_id"] is None  # null: validation's "missing"
    assert json.loads(got[2]["tags"]) == ["b", "c"]


# Around or inside an identifier: spaces of every width, no-break spaces, tabs, and
# invisible format characters (zero-width space and joiners, word joiner, BOM).
SPACES = ["\u00a0", "\u3000", "\u2009", "\u202f", "\t", " ", "\u200b", "\ufeff", "\u2060", "\u200d"]
ASCII_ID = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=10)


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@st.composite
def id_spellings(draw):
    """An ASCII identifier and one of its spellings."""
    ident = draw(ASCII_ID)
    spelled = _fullwidth(ident) if draw(st.booleans()) else ident
    if len(spelled) > 1 and draw(st.booleans()):
        at = draw(st.integers(1, len(spelled) - 1))
        spelled = spelled[:at] + draw(st.sampled_from(["\u200b", "\u2060", "\ufeff"])) + spelled[at:]
    before = "".join(draw(st.lists(st.sampled_from(SPACES), max_size=3)))
    after = "".join(draw(st.lists(st.sampled_from(SPACES), max_size=3)))
    return ident, before + spelled + after


@PURE
@given(st.sampled_from(FORMATS), st.lists(st.tuples(id_spellings(), id_spellings()), min_size=1, max_size=5))
def test_every_spelling_of_an_identifier_reads_as_that_identifier(fmt, ids):
    """Full-width forms (NFKC), Unicode white space at either end and invisible format
    characters anywhere: normalised in identifier columns (keys and references), so one id
    is one key. Free text keeps what was delivered."""
    rows = [_txn_texts(i, txn_id=t[1], customer_id=c[1], description="\u00a0free\u3000") for i, (t, c) in
            enumerate(ids)]
    d = _plain_delivery(fmt, rows)
    with tempfile.TemporaryDirectory() as tmp:
        lf, out = read_delivery(write_file(Path(tmp), d, render(d)))
    got = out.to_pylist()
    assert [(r["txn_id"], r["customer_id"]) for r in got] == [(t[0], c[0]) for t, c in ids]
    assert all(r["description"] == "\u00a0free\u3000" and r["_row_error"] is None for r in got)


def _read_validated(spark, path: Path, source, rules=RULES) -> dict[int, dict]:
    lf, out = read_delivery(path, source)
    assert lf.problem is None, lf.problem
    df = validate(spark.createDataFrame(out), source, rules)
    return {r["_line"]: r.asDict() for r in df.collect()}


def test_parquet_as_pandas_writes_it_dates_as_midnight_timestamps_and_float_money(spark, tmp_path):
    """pandas writes a date column as timestamp[ns] at midnight and money as float64. A
    midnight timestamp is the date; a time of day in a date column is rejected as such.
    Money as float64 is read as the shortest decimal that reads back as the same double
    (no exponent): accepted when it has at most 2 decimals, otherwise rejected as float
    money (0.1 + 0.2 is 0.30000000000000004: which cents were meant is a guess)."""
    cust = SOURCES["customers"]
    ts = pa.timestamp("ns")
    n = 6
    cols = {c: pa.array([v] * n, pa.string()) for c, v in zip(cust.column_names, (
        "C1,王小明,110101199001011234,13800138000,xm@example.cn,1990-01-15,M,engineer,100.00,上海,B01,"
        "2020-03-01,R3,verified,true,zh,2026-06-01T09:00:00").split(","))}
    cols["customer_id"] = pa.array([f"C{i}" for i in range(1, n + 1)])
    cols["birth_date"] = pa.array([datetime(1990, 1, 15), datetime(1990, 1, 15, 10, 30), None, None, None, None], ts)
    cols["onboarding_date"] = pa.array([datetime(2020, 3, 1)] * n, ts)
    cols["annual_income"] = pa.array([250000.5, 12.0, 0.1 + 0.2, 1e16, 1e-05, 1.5e15], pa.float64())
    cols["marketing_consent"] = pa.array([True] * n)
    cols["updated_at"] = pa.array([datetime(2026, 6, 1, 9, 15)] * n, ts)
    pq.write_table(pa.table(cols), tmp_path / "c.parquet")
    got = _read_validated(spark, tmp_path / "c.parquet", cust)
    assert got[1]["_reason"] is None
    assert (got[1]["birth_date"], got[1]["onboarding_date"]) == (date(1990, 1, 15), date(2020, 3, 1))
    assert got[1]["annual_income"] == Decimal("250000.50")
    assert got[1]["updated_at"] == datetime(2026, 6, 1, 1, 15)
    assert got[2]["_reason"].startswith("time of day in date birth_date: '1990-01-15T10:30:00")
    assert got[3]["_reason"] == ("float money in annual_income: 0.30000000000000004 has more than 2 decimals "
                                 "(deliver money as decimal or text)")
    assert got[4]["_reason"] == "annual_income out of range for decimal(18,2): '10000000000000000'"
    assert got[5]["_reason"] == ("float money in annual_income: 0.00001 has more than 2 decimals "
                                 "(deliver money as decimal or text)")
    assert got[6]["_reason"] is None and got[6]["annual_income"] == Decimal("1500000000000000.00")
    assert all(ROW_REASON.match(r["_reason"]) for r in got.values() if r["_reason"])


# Local days on which the clocks change: (zone, day). Spring forward skips an hour (a gap),
# fall back repeats one (ambiguous local times).
DST_DAYS = [("Europe/Berlin", date(2026, 3, 29)), ("Europe/Berlin", date(2026, 10, 25)),
            ("America/New_York", date(2026, 3, 8)), ("America/New_York", date(2026, 11, 1)),
            ("Australia/Sydney", date(2026, 4, 5)), ("Australia/Sydney", date(2026, 10, 4)),
            ("Asia/Shanghai", date(1988, 4, 10)), ("Asia/Shanghai", date(2026, 6, 1))]


def _local_instant(local: datetime, zone: str) -> datetime | None:
    """The UTC instant of a local time in ``zone`` (the earlier one when the time occurs
    twice), or None when the clocks skip it."""
    z = ZoneInfo(zone)
    utc = local.replace(tzinfo=z, fold=0).astimezone(timezone.utc)
    if utc.astimezone(z).replace(tzinfo=None) != local:
        return None
    return utc.replace(tzinfo=None)


@WITH_ENGINE
@given(st.sampled_from(DST_DAYS).flatmap(lambda zd: st.tuples(
    st.just(zd[0]), st.lists(st.integers(0, 6 * 60 - 1).map(
        lambda m: datetime.combine(zd[1], datetime.min.time()) + timedelta(minutes=m)), min_size=1, max_size=12))))
def test_local_times_around_a_clock_change_are_instants_or_rejected_as_nonexistent(spark, case):
    """Documented behaviour: a local time (no offset) that a spring-forward change skips is
    rejected as a nonexistent local time; one that a fall-back change repeats is taken at
    its first occurrence (the earlier instant, daylight-saving offset); the same text with
    an explicit offset is always that instant."""
    zone, locals_ = case
    from helpers import text_rows

    rules = ValidationRules(bank_timezone=zone, max_future_days=1, min_date=date(1900, 1, 1))
    rows = [_txn_texts(i, txn_ts=f"{t:%Y-%m-%dT%H:%M:%S}") for i, t in enumerate(locals_)]
    df = validate(text_rows(spark, "transactions", rows, delivery_date=date(2026, 12, 31)), TXN, rules)
    got = {r["_line"] - 2: r for r in df.select("_line", "txn_ts", "_reason").collect()}
    for i, t in enumerate(locals_):
        want = _local_instant(t, zone)
        if want is None:
            assert got[i]["_reason"] == (f"nonexistent local time in txn_ts: '{t:%Y-%m-%dT%H:%M:%S}' "
                                         f"(skipped by a clock change in {zone})")
            assert ROW_REASON.match(got[i]["_reason"])
        else:
            assert got[i]["_reason"] is None and got[i]["txn_ts"] == want, (t, zone)


@pytest.mark.parametrize("zone, text, utc", [
    ("Europe/Berlin", "2026-10-25T02:30:00", datetime(2026, 10, 25, 0, 30)),  # CEST, not CET
    ("America/New_York", "2026-11-01 01:30", datetime(2026, 11, 1, 5, 30)),  # EDT, not EST
    ("Europe/Berlin", "2026-03-29T02:30:00+01:00", datetime(2026, 3, 29, 1, 30)),  # an offset: no gap
])
def test_an_ambiguous_local_time_is_its_first_occurrence_and_an_offset_is_exact(spark, zone, text, utc):
    from helpers import text_rows

    rules = ValidationRules(bank_timezone=zone, max_future_days=1, min_date=date(1900, 1, 1))
    r = validate(text_rows(spark, "transactions", [_txn_texts(1, txn_ts=text)], delivery_date=date(2026, 12, 31)),
                 TXN, rules).first()
    assert r["_reason"] is None and r["txn_ts"] == utc


@PURE
@given(st.lists(st.tuples(st.sampled_from([c for c in TXN.column_names if c != "txn_id"] + ["meta"]),
                          st.one_of(st.dictionaries(st.sampled_from("abc"), st.integers(), max_size=2),
                                    st.lists(st.integers(), max_size=2)),
                          st.booleans()), min_size=1, max_size=6))
def test_nested_json_values_reject_their_row_only_in_contract_columns(rows):
    """A JSON object or array as the value of any contract column rejects its row (every
    contract column holds one value); in an extra column it is kept as JSON text."""
    lines = []
    for i, (column, value, nested) in enumerate(rows):
        lines.append(_txn_texts(i) | ({column: value} if nested else {}))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "n.jsonl"
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in lines) + "\n")
        lf, out = read_delivery(path)
    got = {r["_line"]: r for r in out.to_pylist()}
    assert sorted(got) == list(range(1, len(rows) + 1))
    for i, (column, value, nested) in enumerate(rows):
        row = got[i + 1]
        if nested and column != "meta":
            kind = "object" if isinstance(value, dict) else "array"
            assert row["_row_error"] == f"{column} is a JSON {kind}, not a single value"
            assert ROW_REASON.match(row["_row_error"]) and json.loads(row["_raw"]) == lines[i]
        else:
            assert row["_row_error"] is None and row["txn_id"] == f"T{i}"
            if nested:
                assert json.loads(row["meta"]) == value


@PURE
@given(st.lists(st.one_of(st.floats(min_value=0.01, max_value=1e17),
                          st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10) ** 14, places=2).map(float),
                          st.sampled_from([0.1 + 0.2, 19.99 * 3, 1e16, 1e-05, 12.0, 1.5e15, float("nan"), float("inf")])),
                min_size=1, max_size=8))
def test_float_money_is_read_as_its_shortest_decimal_or_rejected_as_float_money(values):
    """Money as float64 (pandas): read as the shortest decimal that reads back as the same
    double; with more than 2 decimals the row is rejected as float money (its cents would be
    a guess), otherwise the text is that decimal, without exponent."""
    cols = {c: pa.array([v] * len(values), pa.string()) for c, v in _txn_texts(0).items()}
    cols["txn_id"] = pa.array([f"T{i}" for i in range(len(values))])
    cols["amount"] = pa.array(values, pa.float64())
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(pa.table(cols), Path(tmp) / "f.parquet")
        lf, out = read_delivery(Path(tmp) / "f.parquet")
    got = {r["_line"]: r for r in out.to_pylist()}
    for i, v in enumerate(values):
        row = got[i + 1]
        if v != v or v in (float("inf"),):
            assert row["_row_error"] is None and row["amount"].lower() in ("nan", "inf")  # "not a decimal" later
            continue
        exact = Decimal(repr(v))
        if exact.as_tuple().exponent < -2:
            assert row["_row_error"] == (f"float money in amount: {exact:f} has more than 2 decimals "
                                         "(deliver money as decimal or text)")
        else:
            assert row["_row_error"] is None and "e" not in row["amount"].lower()
            assert Decimal(row["amount"]) == exact


@hsettings(PURE, max_examples=40)
@given(st.integers(0, 40), st.integers(0, 30), st.lists(st.sampled_from(TXN.column_names), unique=True))
def test_a_file_is_held_back_exactly_when_its_new_columns_exceed_the_cap(n_new, cap, known_names):
    """ingest.cap_new_columns: a file is quarantined whole exactly when it has more columns
    than the cap that neither the contract nor bronze has (columns of the contract never
    count), and its reason gives their number and the cap."""
    from c360.landing import LandingFile
    from c360.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        s = load_settings(environ={}).with_paths(lake=Path(tmp) / "lake")  # no bronze yet
        s = s.model_copy(update={"ingest": s.ingest.model_copy(update={"max_new_columns_per_file": cap})})
        header = tuple(TXN.required + [c for c in known_names if c not in TXN.required]
                       + [f"new_{i}" for i in range(n_new)])
        f = LandingFile(source="transactions", path=f"{tmp}/t.csv", delivery_date=DAY, fmt="csv", size_bytes=1,
                        sha256="x", header=header)
        to_read, capped = ingest.cap_new_columns(None, s, [f])
    if n_new > cap:
        assert to_read == [] and len(capped) == 1
        assert capped[0].problem.startswith(f"{n_new} new columns, more than ingest.max_new_columns_per_file ({cap}): new_0")
    else:
        assert to_read == [f] and capped == []


@WITH_ENGINE
@given(st.lists(st.tuples(st.sampled_from(["K1", "K2", "K3", "\uff2b\uff11", "K1\u00a0"]), st.sampled_from(["1.00", "2.00"])),
                min_size=1, max_size=12))
def test_a_key_repeated_in_a_file_keeps_its_last_line_and_only_other_values_conflict(spark, rows):
    """features.bronze.repeated_in_file on generated batches of two files: every line of a
    key but the last of its file comes out, as a conflict exactly when its values differ
    from the last line's; keys in other files never meet. (Spellings of one id are one key
    once read: normalised here as the reader does.)"""
    import pyarrow as _pa
    from pyspark.sql import functions as F

    from features.bronze import repeated_in_file, repeated_keys
    from helpers import text_rows

    ids = normalise_identifier(_pa.array([k for k, _ in rows])).to_pylist()
    texts = [_txn_texts(i, txn_id=k, amount=a) | {"_line": i + 2} for i, (k, a) in enumerate(zip(ids, [a for _, a in rows]))]
    df = validate(text_rows(spark, "transactions", texts), TXN, RULES) \
        .withColumn("_source_file", F.concat(F.lit("f"), (F.col("_line") % 2).cast("string"))).drop("_reason", "_raw")
    out = {r["_line"]: r for r in repeated_in_file(df, TXN, repeated_keys(df, ["txn_id"])).collect()}
    last: dict[tuple, int] = {}
    for i, k in enumerate(ids):
        last[(k, (i + 2) % 2)] = i + 2
    want = {}
    for i, (k, a) in enumerate(zip(ids, [a for _, a in rows])):
        kept = last[(k, (i + 2) % 2)]
        if kept != i + 2:
            want[i + 2] = (kept, a != rows[kept - 2][1])
    assert {line: (r["_kept_line"], r["_conflict"]) for line, r in out.items()} == want
