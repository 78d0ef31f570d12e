"""The landing zone: finding delivered files and reading them as text rows.

``<landing>/<source>/<YYYY-MM-DD>/<name>.csv | .csv.gz | .parquet | .jsonl``

Anything else in the landing zone is never read silently (:func:`scan`): a file in a folder
that is not a date, or of an unsupported type, is rejected with its reason (a path problem:
its checksum blocks nothing); every other entry (a nested folder, a loose file, a source
folder in the wrong case, a hidden entry, a FIFO, a dangling link, a link resolving outside
the landing zone) is listed with the reason it was not read. Links that resolve inside the
landing zone are followed; links outside it are never followed, not even to hash a file.

Discovery runs in the driver and only lists files, checksums them and reads their header
(first line, Parquet footer, first JSON lines). Reading the rows runs inside the engine:
a DataFrame of file paths goes through ``mapInArrow``, one task per file, so that a
cluster reads in parallel from shared storage and the driver never holds the data.

Every value is read as text; typing and validation are the contract's job
(``features.bronze.validate``). A file is read whole before any of its rows is emitted, so
a file that breaks halfway (truncated, wrong encoding) is rejected as a whole, never half
loaded. A row the reader can judge alone is rejected alone, as a reader error with its
reason: a field over ``MAX_FIELD_BYTES``, a nested value in a contract column, float money
with more decimals than the contract's (see :func:`make_reader`). Identifier columns are
normalised here (:func:`normalise_identifier`), so that one id is one key.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa

from c360 import storage
from c360.contract import DECIMAL, DECIMAL_SCALE, SOURCES, Source, column_name

_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FORMATS = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".jsonl": "jsonl"}
OUTPUT_CHUNK_ROWS = 65_536
# A field longer than this (in UTF-8 bytes) rejects its row ("field x too large"): no column
# of the contract needs more, and a multi-megabyte value would be carried through bronze,
# silver and every read of them. The quarantine keeps the row's text cut short.
MAX_FIELD_BYTES = 1 << 20
RAW_FIELD_CHARS = 1_000  # of each field, in the raw text kept for a row rejected while reading
RAW_CHARS = 10_000  # of the raw text of such a row (and of a malformed JSON line)


def file_format(path: Path | str) -> str | None:
    name = storage.name(path).lower()
    for ext, fmt in sorted(FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(ext):
            return fmt
    return None


MAX_NAME_LENGTH = 255


def normalise_name(name: str) -> str:
    """A delivered column name as the pipeline names it (:func:`c360.contract.column_name`)."""
    return column_name(name)


BAD_DATE_FOLDER = "folder is not a YYYY-MM-DD delivery date"
BAD_FILE_TYPE = "unsupported file type (expected .csv, .csv.gz, .parquet or .jsonl)"
PATH_PROBLEMS = (BAD_DATE_FOLDER, BAD_FILE_TYPE)  # about where a file is, never about its bytes
LEFT_FOR_NEXT_RUN = "left for the next run"


@dataclass(frozen=True)
class LandingFile:
    source: str
    path: str
    delivery_date: date | None
    fmt: str | None
    size_bytes: int
    sha256: str
    header: tuple[str, ...] = ()
    problem: str | None = None  # set when the file cannot be ingested at all
    modified_ns: int | None = None  # the file's modification time when it was discovered
    known: bool = False  # recorded as ingested with this size and time: not read (nor hashed) again
    # what ``problem`` is about: "path" (the folder or extension: the same bytes at a valid
    # path are fine), "content" (the bytes: the same bytes anywhere are rejected), "io" (the
    # file could not be read now, e.g. permission denied or vanished: left for the next run)
    fault: str | None = None


@dataclass(frozen=True)
class Entry:
    """Something in the landing zone that is not read, and why (never skipped silently)."""

    path: str
    source: str | None  # the source folder it is in (or a wrong-case spelling of); None at the root
    kind: str  # "unexpected" | "outside" (a link resolving outside the landing zone) | "unreadable"
    reason: str


@dataclass(frozen=True)
class Scan:
    files: list[LandingFile]
    unexpected: list[Entry]


def sha256_of(path: Path | str, chunk: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with storage.open_input(path) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _csv_header(path: Path | str) -> list[str]:
    opener = gzip.open if storage.name(path).lower().endswith(".gz") else open
    try:
        if storage.is_uri(path):  # the object read as far as needed, through the same decoder
            with storage.open_input(path) as raw, (gzip.open(raw, "rb") if opener is gzip.open else raw) as f:
                first = f.read(1 << 20)
        else:
            with opener(path, "rb") as f:
                first = f.read(1 << 20)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        if opener is open:
            raise
        raise ValueError(f"truncated or corrupt compressed file ({str(exc)[:120]})") from None
    if not first.strip():
        raise ValueError("empty file: no header row")
    try:
        # incremental: a multi-byte character cut at the end of the chunk is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(first, final=False)
    except UnicodeDecodeError:
        raise ValueError("file is not valid UTF-8 text (wrong encoding?)") from None
    try:
        # a file object with newline="" reads \n, \r\n and lone \r line ends, as the row reader does
        names = next(csv.reader(io.StringIO(text, newline="")))
    except (csv.Error, StopIteration) as exc:
        raise ValueError(f"unreadable CSV header ({str(exc)[:120]})") from None
    if not names:
        raise ValueError("no header row: the first line is empty")
    return names


def _parquet_header(path: Path | str) -> list[str]:
    import pyarrow.parquet as pq

    try:
        if storage.is_uri(path):
            with storage.open_input(path) as f:
                return list(pq.read_schema(f).names)
        return list(pq.read_schema(path).names)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for broken files
        raise ValueError(f"not a readable Parquet file ({type(exc).__name__}: {str(exc)[:120]})") from None


def _jsonl_header(path: Path | str, lines: int = 1000) -> list[str]:
    keys: dict[str, None] = {}
    with storage.open_input(path) as f:
        for i, raw in enumerate(f):
            if i >= lines:
                break
            if i == 0:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise ValueError("file is not valid UTF-8 text (wrong encoding?)") from None
            except json.JSONDecodeError:
                continue  # a bad line is quarantined as a row later
            if isinstance(obj, dict):
                keys.update(dict.fromkeys(obj))
    if not keys:
        raise ValueError("no JSON object found in the first lines")
    return list(keys)


def read_header(path: Path | str, fmt: str) -> list[str]:
    """Normalised column names of a delivered file (raises ValueError with a reason)."""
    names = {"csv": _csv_header, "parquet": _parquet_header, "jsonl": _jsonl_header}[fmt](path)
    names = [normalise_name(n) for n in names]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate column names: {', '.join(d[:60] for d in dupes)}")
    if any(not n for n in names):
        raise ValueError("empty column name in header")
    if any(len(n) > MAX_NAME_LENGTH for n in names):
        raise ValueError(f"column name longer than {MAX_NAME_LENGTH} characters")
    return names


def _io_problem(exc: OSError) -> str:
    return f"could not be read ({type(exc).__name__}: {exc.strerror or exc}): {LEFT_FOR_NEXT_RUN}"


def inspect(path: Path | str, source: Source, delivery_date: date | None,
            known: dict[str, tuple[int, int | None, str]] | None = None) -> LandingFile:
    """Size, checksum and header of one file, or the reason it cannot be ingested.

    ``known``: ``path -> (size, modified_ns, sha256)`` of files already ingested (or
    rejected). A file with the same path, size and modification time is not read again (its
    recorded checksum stands): a daily run must not hash a year of deliveries. A file
    changed in place gets a new time and is inspected (and, with new content, ingested)
    like any new file. A path problem (folder, extension) is set on known files too.

    Never raises for a file that cannot be read (permission denied, vanished): its problem
    then has ``fault="io"``."""
    fmt = file_format(path)
    path_problem = BAD_DATE_FOLDER if delivery_date is None else BAD_FILE_TYPE if fmt is None else None
    base = dict(source=source.name, path=str(path), delivery_date=delivery_date, fmt=fmt)
    try:
        st = storage.info(path)  # a local file's stat() (a link inside the zone followed)
        size, mtime = st.size, st.mtime_ns
        rec = (known or {}).get(str(path))
        if rec is not None and rec[0] == size and rec[1] == mtime:
            return LandingFile(**base, size_bytes=size, sha256=rec[2], modified_ns=mtime, known=True,
                               problem=path_problem, fault="path" if path_problem else None)
        digest = sha256_of(path)
    except OSError as exc:
        return LandingFile(**base, size_bytes=0, sha256="", problem=_io_problem(exc), fault="io")
    base |= dict(size_bytes=size, sha256=digest, modified_ns=mtime)
    if path_problem:
        return LandingFile(**base, problem=path_problem, fault="path")
    if size == 0:
        return LandingFile(**base, problem="empty file", fault="content")
    try:
        header = read_header(path, fmt)
    except OSError as exc:  # opening failed (a broken compressed file is a ValueError)
        return LandingFile(**base, problem=_io_problem(exc), fault="io")
    except (ValueError, EOFError) as exc:
        return LandingFile(**base, problem=str(exc), fault="content")
    except Exception as exc:  # a hostile file must never stop discovery of the others
        return LandingFile(**base, problem=f"unreadable file ({type(exc).__name__}: {str(exc)[:160]})",
                           fault="content")
    missing = [c for c in source.required if c not in header]
    if missing:
        return LandingFile(**base, header=tuple(header),
                           problem=f"missing required column(s): {', '.join(missing)}", fault="content")
    return LandingFile(**base, header=tuple(header))


HASH_THREADS = 4


def discover(landing: Path, sources: list[str] | None = None,
             known: dict[str, tuple[int, int | None, str]] | None = None) -> list[LandingFile]:
    """Every file under the landing zone for the given sources, in delivery order (files
    in ``known`` unchanged are listed without being read: see :func:`inspect`); what is not
    read is left out (:func:`scan` lists it)."""
    return scan(landing, sources, known).files


_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"))


def _kind(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def scan(landing: Path, sources: list[str] | None = None,
         known: dict[str, tuple[int, int | None, str]] | None = None) -> Scan:
    """The files to ingest under ``<landing>/<source>/<date>/`` for the given sources (all
    when None), and every other entry of the landing zone with the reason it is not read.

    - A link is followed only when it resolves inside the landing zone; one resolving
      outside (a file, a folder, a device...) is listed as ``outside`` and never opened.
    - Files in a folder that is not a YYYY-MM-DD date, or of an unsupported type, are
      returned with a path problem (:data:`PATH_PROBLEMS`): rejected, never blocking.
    - Nested folders, loose files (at the root or in a source folder), unknown or
      wrong-case folders at the root, hidden entries (name starting with "."), FIFOs,
      sockets, devices and dangling links are listed as ``unexpected``; a folder that
      cannot be listed, as ``unreadable`` (the next run lists it again).
    A listed folder's contents are not visited. Nothing is listed for a source not asked for.
    """
    if storage.is_uri(landing):
        return _scan_objects(str(landing), sources, known)
    root = Path(landing)
    if not root.is_dir():
        return Scan([], [])
    real_root = os.path.realpath(root)
    wanted = set(sources or SOURCES)
    todo: list[tuple[Path, Source, date | None]] = []
    unexpected: list[Entry] = []

    def note(path: Path, source: str | None, kind: str, reason: str) -> None:
        if source is None or source in wanted:
            unexpected.append(Entry(str(path), source, kind, reason))

    def entries(folder: Path, source: str | None):
        """(path, mode) of the folder's entries, links resolved (those outside noted)."""
        try:
            names = sorted(os.listdir(folder))
        except OSError as exc:
            note(folder, source, "unreadable",
                 f"folder could not be listed ({type(exc).__name__}: {exc.strerror or exc}): {LEFT_FOR_NEXT_RUN}")
            return
        for name in names:
            path = folder / name
            if name.startswith("."):
                note(path, source, "unexpected", "hidden entry: not read")
                continue
            link = False
            try:
                link = path.is_symlink()
                if link:
                    target = os.path.realpath(path)
                    if os.path.commonpath([real_root, target]) != real_root:
                        note(path, source, "outside", f"link to {target}, outside the landing zone: not followed")
                        continue
                mode = path.stat().st_mode  # follows a link inside the zone
            except FileNotFoundError:
                if link:
                    note(path, source, "unexpected", "link to a missing target: not read")
                else:
                    note(path, source, "unreadable", f"vanished while listed: {LEFT_FOR_NEXT_RUN}")
                continue
            except OSError as exc:
                note(path, source, "unreadable",
                     f"could not be read ({type(exc).__name__}: {exc.strerror or exc}): {LEFT_FOR_NEXT_RUN}")
                continue
            yield path, mode

    by_lower = {n.lower(): n for n in SOURCES}
    for path, mode in entries(root, None):
        name = path.name
        if name in SOURCES:
            if name not in wanted:
                continue
            if not stat.S_ISDIR(mode):
                note(path, name, "unexpected", "source entry is not a folder: not read")
                continue
            for day_dir, day_mode in entries(path, name):
                if not stat.S_ISDIR(day_mode):
                    note(day_dir, name, "unexpected",
                         "file outside a delivery folder (expected <source>/<YYYY-MM-DD>/<file>): not read")
                    continue
                day = None
                if _DATE_DIR.match(day_dir.name):
                    try:
                        day = date.fromisoformat(day_dir.name)
                    except ValueError:
                        day = None
                for f, f_mode in entries(day_dir, name):
                    if stat.S_ISREG(f_mode):
                        todo.append((f, SOURCES[name], day))
                    elif stat.S_ISDIR(f_mode):
                        note(f, name, "unexpected", "folder inside a delivery folder: not read")
                    else:
                        note(f, name, "unexpected", f"{_kind(f_mode)}, not a regular file: not read")
        elif name.lower() in by_lower and stat.S_ISDIR(mode):
            src = by_lower[name.lower()]
            note(path, src, "unexpected", f"folder name differs from source '{src}' in case only: not read")
        elif stat.S_ISDIR(mode):
            note(path, None, "unexpected", "folder is not a source: not read")
        else:
            note(path, None, "unexpected",
                 "file at the landing root (expected <source>/<YYYY-MM-DD>/<file>): not read")
    # Checksums are computed in a few threads (hashlib releases the GIL on large buffers):
    # a year of deliveries at 1M customers (10,408 files, 8.3 GB) took 40 s in one.
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        files = list(pool.map(lambda t: inspect(t[0], t[1], t[2], known), todo))
    return Scan(files, unexpected)


def _scan_objects(landing: str, sources: list[str] | None,
                  known: dict[str, tuple[int, int | None, str]] | None) -> Scan:
    """:func:`scan` for a landing zone on object storage (``s3://bucket/prefix``), by the
    same rules. An object store has only objects under keys: no links, FIFOs, devices or
    permissions per folder, so those reasons never occur; a "folder" is a key prefix, and
    empty folders do not exist. Each entry not read is listed once, at the level the rule
    applies (a nested folder as the folder, not each object in it)."""
    wanted = set(sources or SOURCES)
    by_lower = {n.lower(): n for n in SOURCES}
    todo: list[tuple[str, Source, date | None]] = []
    unexpected: dict[str, Entry] = {}

    def note(rel: str, source: str | None, reason: str) -> None:
        if (source is None or source in wanted) and rel not in unexpected:
            unexpected[rel] = Entry(storage.join(landing, rel), source, "unexpected", reason)

    for item in storage.listdir(landing, recursive=True):
        if item.is_dir:
            continue  # folders are prefixes of the objects below; an empty marker holds nothing
        parts = storage.relative(item.path, landing).split("/")
        hidden = next((i for i, p in enumerate(parts) if p.startswith(".")), None)
        top, src = parts[0], parts[0] if parts[0] in SOURCES else None
        if src is not None and src not in wanted:
            continue
        if hidden is not None and (hidden == 0 or (src is not None and hidden <= 2)):
            note("/".join(parts[:hidden + 1]), src, "hidden entry: not read")
        elif src is not None:
            if len(parts) == 2:
                note("/".join(parts), src,
                     "file outside a delivery folder (expected <source>/<YYYY-MM-DD>/<file>): not read")
            elif len(parts) > 3:
                note("/".join(parts[:3]), src, "folder inside a delivery folder: not read")
            else:
                day = None
                if _DATE_DIR.match(parts[1]):
                    try:
                        day = date.fromisoformat(parts[1])
                    except ValueError:
                        day = None
                todo.append((item.path, SOURCES[src], day))
        elif len(parts) == 1:
            note(top, None, "file at the landing root (expected <source>/<YYYY-MM-DD>/<file>): not read")
        elif top.lower() in by_lower:
            note(top, by_lower[top.lower()], f"folder name differs from source '{by_lower[top.lower()]}' in case "
                                             "only: not read")
        else:
            note(top, None, "folder is not a source: not read")
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        files = list(pool.map(lambda t: inspect(t[0], t[1], t[2], known), todo))
    return Scan(files, [unexpected[k] for k in sorted(unexpected)])


# ---------------------------------------------------------------------------------------
# Reading rows (runs inside the engine, one file per call)

class FileError(Exception):
    """The file cannot be read as a whole; the message is the quarantine reason."""


def _explain(exc: Exception) -> str:
    msg = str(exc)
    if "invalid utf8" in msg.lower() or isinstance(exc, UnicodeDecodeError):
        return "file is not valid UTF-8 text (wrong encoding?)"
    if isinstance(exc, (EOFError, gzip.BadGzipFile)) or "gzip" in msg.lower() or "zlib" in msg.lower() \
            or "truncated" in msg.lower():
        return f"truncated or corrupt compressed file ({msg[:120]})"
    return f"unreadable file ({type(exc).__name__}: {msg[:160]})"


def _line_numbers(valid_newlines: np.ndarray, invalid: list[tuple[int, str]]) -> tuple[np.ndarray, list[int]]:
    """Physical line numbers of CSV records.

    pyarrow numbers records (header = 1), skipping the invalid ones it reports. A quoted
    value may span lines, so each record's first line is its ordinal plus the newlines
    inside all records before it.
    """
    n_total = len(valid_newlines) + len(invalid)
    ordinals = np.arange(2, n_total + 2)
    newlines = np.zeros(n_total, dtype=np.int64)
    is_invalid = np.zeros(n_total, dtype=bool)
    for number, text in invalid:
        idx = number - 2
        if 0 <= idx < n_total:
            is_invalid[idx] = True
            newlines[idx] = text.count("\n")
    newlines[~is_invalid] = valid_newlines[: int((~is_invalid).sum())]
    lines = ordinals + np.concatenate([[0], np.cumsum(newlines)[:-1]])
    invalid_lines = [int(lines[number - 2]) if 0 <= number - 2 < n_total else number for number, _ in invalid]
    return lines[~is_invalid], invalid_lines


_PHYSICAL_LINE = re.compile(rb"\r\n|\r|\n")
_LINE_AFTER_HEADER = re.compile(rb"[\r\n][^\r\n]")  # a line end followed by anything but line ends


def _blank_lines(data: bytes, wanted: set[int]) -> set[int]:
    """Which of the ``wanted`` physical lines (1-based) of ``data`` are empty (one pass, no copy of the file)."""
    blank, line, start, last = set(), 1, 0, max(wanted)
    for m in _PHYSICAL_LINE.finditer(data):
        if line in wanted and not data[start:m.start()].strip():
            blank.add(line)
        line, start = line + 1, m.end()
        if line > last:
            return blank
    if line in wanted and not data[start:].strip():
        blank.add(line)
    return blank


def _field_count(text: str) -> int:
    """Fields in one CSV record as delivered (RFC 4180 quoting; never raises)."""
    try:
        return len(next(csv.reader(io.StringIO(text, newline="")), []))
    except csv.Error:
        return text.count(",") + 1


def _read_csv(path: str, header: list[str]) -> tuple[pa.Table, np.ndarray, list[dict]]:
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    invalid: list[tuple[int, str]] = []
    expected = len(header)

    def on_invalid(row):  # wrong column count: keep the raw text for quarantine
        invalid.append((row.number or -1, row.text))
        return "skip"

    def parse(data: bytes, block_size: int) -> pa.Table:
        invalid.clear()
        return pcsv.read_csv(
            pa.BufferReader(data),
            read_options=pcsv.ReadOptions(use_threads=False, column_names=header, skip_rows=1,
                                          block_size=block_size),
            # blank lines are kept as records so that records keep their physical line numbers;
            # they are dropped below
            parse_options=pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid,
                                            ignore_empty_lines=False),
            # only an empty field is null (the contract); pyarrow's default null spellings
            # would turn a delivered "NA", "null", "N/A" or "nan" into null
            convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in header}, null_values=[""],
                                                strings_can_be_null=True, quoted_strings_can_be_null=True),
        )

    try:
        if storage.is_uri(path):  # the object's bytes through the same decompressor
            gz = storage.name(path).lower().endswith(".gz")
            data = pa.input_stream(pa.BufferReader(storage.read_bytes(path)), compression="gzip" if gz else None).read()
        else:
            data = pa.input_stream(path, compression="detect").read()
        if not _LINE_AFTER_HEADER.search(data):
            # a header and nothing else: an empty delivery (the contract's "absent source")
            return pa.table({c: pa.array([], pa.string()) for c in header}), [], []
        try:
            table = parse(data, 8 << 20)
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc):
                raise
            # A record longer than a block (a field of several MB) cannot be split into
            # blocks: the file is read as one block (it is in memory already), and the
            # record is rejected afterwards for its oversized field (make_reader).
            table = parse(data, min(len(data) + 1, (1 << 31) - 1))
    except Exception as exc:
        raise FileError(_explain(exc)) from None
    newlines = np.zeros(table.num_rows, dtype=np.int64)
    all_null = np.ones(table.num_rows, dtype=bool)
    for col in table.columns:
        counts = pc.count_substring(col, "\n").fill_null(0)
        newlines += counts.to_numpy(zero_copy_only=False).astype(np.int64)
        all_null &= pc.is_null(col).to_numpy(zero_copy_only=False)
    lines, invalid_lines = _line_numbers(newlines, invalid)
    if all_null.any():
        # A blank physical line parses as a record with every field null; a record of empty
        # fields (",,,") does too but is not blank, and is kept (and rejected by validation).
        candidates = np.flatnonzero(all_null)
        empty = _blank_lines(data, {int(lines[i]) for i in candidates})
        blank = np.zeros(table.num_rows, dtype=bool)
        blank[candidates] = [int(lines[i]) in empty for i in candidates]
        if blank.any():
            table = table.filter(pa.array(~blank))
            lines = lines[~blank]
    bad = [
        {"_line": line, "_raw": text, "_row_error": f"wrong column count: expected {expected}, got {_field_count(text)}"}
        for line, (_, text) in zip(invalid_lines, invalid)
    ]
    return table, lines, bad


def _to_text(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.cast(t.value_type)
        t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr.cast(pa.string())
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return arr.cast(pa.binary()).cast(pa.string())  # raises on bytes that are not UTF-8
    if pa.types.is_nested(t):
        return pa.chunked_array([pa.array([None if v is None else json.dumps(v, ensure_ascii=False, default=str)
                                           for v in arr.to_pylist()], pa.string())])
    if pa.types.is_timestamp(t):
        # ISO-8601 with a "T"; a zoned timestamp is written as its UTC instant with "Z"
        # (strftime formats a zoned value in its own zone, so convert to UTC first)
        if t.tz:
            return pc.strftime(arr.cast(pa.timestamp(t.unit, tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
        return pc.strftime(arr, format="%Y-%m-%dT%H:%M:%S")
    if pa.types.is_floating(t):
        # The shortest decimal that reads back as the same double (Arrow's rendering: 0.1 is
        # "0.1", 12.0 is "12", 0.1 + 0.2 is "0.30000000000000004"), written without an
        # exponent, which no contract type accepts: 1e+16 is "10000000000000000".
        text = arr.cast(pa.string())
        if pc.any(pc.match_substring(text, "e")).as_py():
            text = pa.chunked_array([pa.array([format(Decimal(v), "f") if v is not None and "e" in v else v
                                               for v in text.to_pylist()], pa.string())])
        return text
    return arr.cast(pa.string())


def _raw_text(rows: pa.Table) -> list[str]:
    """Rows as CSV records for the quarantine: every field cut to RAW_FIELD_CHARS, the
    record to RAW_CHARS (a row rejected for a field of megabytes must not store it)."""
    out = []
    for row in rows.to_pylist():
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(
            ["" if v is None else v if len(v) <= RAW_FIELD_CHARS else v[:RAW_FIELD_CHARS] + "…" for v in row.values()])
        out.append(buf.getvalue()[:RAW_CHARS])
    return out


def _reject(table: pa.Table, lines, reasons: np.ndarray) -> tuple[pa.Table, np.ndarray, list[dict]]:
    """Rows of ``table`` whose ``reasons`` entry is set taken out, as reader errors (with
    their line and raw text); the other rows and their lines."""
    lines = np.asarray(lines, dtype=np.int64)
    idx = np.flatnonzero(reasons != None)  # noqa: E711 (element-wise)
    if not len(idx):
        return table, lines, []
    bad = [{"_line": int(lines[i]), "_raw": raw, "_row_error": reasons[i]}
           for i, raw in zip(idx, _raw_text(table.take(pa.array(idx))))]
    keep = np.ones(table.num_rows, dtype=bool)
    keep[idx] = False
    return table.filter(pa.array(keep)), lines[keep], bad


def _no_reasons(n: int) -> np.ndarray:
    return np.full(n, None, dtype=object)


def _oversized(table: pa.Table, lines) -> tuple[pa.Table, np.ndarray, list[dict]]:
    """Rows with a field over MAX_FIELD_BYTES taken out as reader errors (see :func:`_reject`)."""
    import pyarrow.compute as pc

    reasons = _no_reasons(table.num_rows)
    for name, col in zip(table.column_names, table.columns):
        sizes = pc.binary_length(col)
        biggest = pc.max(sizes).as_py()
        if biggest is None or biggest <= MAX_FIELD_BYTES:
            continue
        sizes = sizes.to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(np.nan_to_num(sizes.astype(np.float64)) > MAX_FIELD_BYTES):
            if reasons[i] is None:
                reasons[i] = f"field {name} too large: {int(sizes[i]):,} bytes (limit {MAX_FIELD_BYTES:,})"
    return _reject(table, lines, reasons)


def normalise_identifier(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Identifier text as one key: Unicode NFKC (full-width "Ｃ１" is "C1", a no-break or
    ideographic space a space), invisible format characters removed wherever they stand
    (zero-width space and joiners, word joiner, BOM, direction marks: category Cf), then
    white space of every kind trimmed at both ends. An id delivered as only such
    characters becomes empty, which validation treats as missing."""
    import pyarrow.compute as pc

    if pc.all(pc.string_is_ascii(arr)).as_py() is not False:  # the common case: 0.05 s per 1M ids
        return pc.ascii_trim_whitespace(arr)
    arr = pc.replace_substring_regex(pc.utf8_normalize(arr, form="NFKC"), r"\p{Cf}", "")
    return pc.utf8_trim_whitespace(arr)


_FRACTION_BEYOND_SCALE = rf"[.][0-9]{{{DECIMAL_SCALE + 1},}}$"


def _read_parquet(path: str, scalar: frozenset[str] = frozenset(), money: frozenset[str] = frozenset()
                  ) -> tuple[pa.Table, np.ndarray, list[dict]]:
    """Rows of text; a row is rejected for a nested value (struct, list, map) in one of the
    ``scalar`` columns, or a float in one of the ``money`` columns whose shortest decimal
    has more decimals than the contract's scale (see :func:`_to_text`)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        if storage.is_uri(path):
            with storage.open_input(path) as f:
                raw = pq.read_table(f)
        else:
            raw = pq.read_table(path)
        cols, rejects = {}, []
        for n in raw.column_names:
            name, col = normalise_name(n), raw.column(n)
            cols[name] = text = _to_text(col)
            if name in scalar and pa.types.is_nested(col.type):
                rejects.append((pc.is_valid(col), f"{name} is a nested Parquet value, not a single value"))
            elif name in money and pa.types.is_floating(col.type):
                rejects.append((pc.match_substring_regex(text, _FRACTION_BEYOND_SCALE), (
                    name, f" has more than {DECIMAL_SCALE} decimals (deliver money as decimal or text)")))
        table = pa.table(cols)
    except FileError:
        raise
    except Exception as exc:
        raise FileError(_explain(exc)) from None
    lines = np.arange(1, table.num_rows + 1, dtype=np.int64)
    reasons = _no_reasons(table.num_rows)
    for mask, reason in rejects:
        for i in np.flatnonzero(mask.fill_null(False).to_numpy(zero_copy_only=False)):
            if reasons[i] is None:
                reasons[i] = reason if isinstance(reason, str) else \
                    f"float money in {reason[0]}: {table.column(reason[0])[int(i)].as_py()}{reason[1]}"
    return _reject(table, lines, reasons)


def _json_text(v) -> str | None:
    """One JSON value as text: strings as they are, numbers with their delivered digits,
    booleans as true/false, nested values as JSON."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, Decimal):
        return str(v)
    return json.dumps(v, ensure_ascii=False, default=lambda o: float(o) if isinstance(o, Decimal) else str(o))


def _read_jsonl(path: str, scalar: frozenset[str] = frozenset()) -> tuple[pa.Table, list[int] | np.ndarray, list[dict]]:
    try:
        data = storage.read_bytes(path)
    except OSError as exc:
        raise FileError(_explain(exc)) from None
    return _parse_jsonl(data, scalar=scalar)


def _parse_jsonl(data: bytes, arrow: bool = True, scalar: frozenset[str] = frozenset()
                 ) -> tuple[pa.Table, list[int] | np.ndarray, list[dict]]:
    """Rows of text (one column per key), their line numbers, and the malformed lines.

    A plain file (every line one flat object; strings, integers, booleans and nulls) is
    parsed by Arrow (:func:`_arrow_jsonl`, about 2x faster than the tuned Python
    path: 0.39 s against 0.83 s for a 1M-bank events file); anything else line by line
    in Python, which keeps what Arrow cannot: decimal digits as delivered, nested values as
    JSON text, blank lines skipped with the numbering kept, a malformed line rejected alone.
    ``arrow=False``: always line by line (the reference the Arrow path is tested against).
    A line with a JSON object or array as the value of one of the ``scalar`` columns is
    rejected (in any other column it is kept as JSON text). Arrow never takes such a file.
    """
    data = data.removeprefix(codecs.BOM_UTF8)  # a leading BOM is not part of the first line
    fast = _arrow_jsonl(data) if arrow else None
    if fast is not None:
        return fast[0], fast[1], []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileError("file is not valid UTF-8 text (wrong encoding?)") from None
    rows: list[dict] = []
    lines: list[int] = []
    bad: list[dict] = []
    # numbers keep their delivered digits: a float would round 1234567890123456.78
    decode = json.JSONDecoder(parse_float=Decimal).decode
    names_seen: dict[str, str] = {}  # delivered key -> pipeline name (a file repeats its keys)
    # Only "\n" ends a JSON Lines record: str.splitlines() would also split on U+2028,
    # U+0085, form feeds... which may stand raw inside a JSON string.
    for i, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            obj = decode(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            bad.append({"_line": i, "_raw": line[:RAW_CHARS], "_row_error": f"malformed JSON line ({str(exc)[:80]})"})
            continue
        row = {}
        for k, v in obj.items():
            name = names_seen.get(k)
            if name is None:
                name = names_seen[k] = normalise_name(k)
            if type(v) in (dict, list) and name in scalar:
                kind = "object" if type(v) is dict else "array"
                bad.append({"_line": i, "_raw": line[:RAW_CHARS], "_row_error": f"{name} is a JSON {kind}, not a single value"})
                break
            row[name] = v if v is None or type(v) is str else _json_text(v)
        else:
            rows.append(row)
            lines.append(i)
    names: dict[str, None] = {}
    for r in rows[:1000]:
        names.update(dict.fromkeys(r))
    for r in rows[1000:]:
        if len(r) != len(names) or any(k not in names for k in r):
            names.update(dict.fromkeys(r))
    table = pa.table({n: pa.array([r.get(n) for r in rows], pa.string()) for n in names}) if rows else pa.table({})
    return table, lines, bad


_BLANK_LINE = re.compile(rb"\n[ \t\r]*\n")
# An integer or boolean standing as an object member's value. Quoting it makes every value
# text, as the line-by-line parser keeps it (a column mixing numbers and text, as dirty
# deliveries do, is then no problem for Arrow). Matched inside a string value, the quotes
# would end that string early and make the line invalid JSON: Arrow fails, never misreads.
# "-0" and fractions are left alone (Python reads -0 as 0; digits of fractions): Arrow then
# fails on them too, and the line-by-line parser takes the file.
_BARE_VALUE = re.compile(rb":([ \t]*)(-?[1-9][0-9]*|0|true|false)([ \t\r]*[,}])")
_SAMPLE_LINES = 200


def _arrow_jsonl(data: bytes) -> tuple[pa.Table, np.ndarray] | None:
    """``data`` (JSON Lines, no BOM) parsed by Arrow, every value as text; None when the
    file is not plain enough to give exactly what :func:`_parse_jsonl`'s line-by-line
    parser gives: a blank line, a malformed line, a key repeated (also after
    :func:`normalise_name`), a number with a fraction, a nested value, or a key first seen
    after the first lines whose values Arrow takes for timestamps.
    """
    import pyarrow.json as pj

    body = data[:-1] if data.endswith(b"\n") else data
    if not body.strip() or _BLANK_LINE.search(b"\n" + body + b"\n"):
        return None
    keys: dict[str, None] = {}
    for line in body.split(b"\n", _SAMPLE_LINES)[:_SAMPLE_LINES]:
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        keys.update(dict.fromkeys(obj))
    # Every value is text now: Arrow is told so (left to itself it makes ISO dates timestamps).
    quoted = _BARE_VALUE.sub(rb':\1"\2"\3', body)
    schema = pa.schema([(k, pa.string()) for k in keys])
    try:
        table = pj.read_json(pa.BufferReader(quoted),
                             read_options=pj.ReadOptions(use_threads=False, block_size=16 << 20),
                             parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None
    n = body.count(b"\n") + 1
    if table.num_rows != n:
        return None
    cols: dict[str, pa.ChunkedArray] = {}
    for raw, col in zip(table.column_names, table.columns):
        name, t = normalise_name(raw), col.type
        if not name or name in cols:
            return None
        if pa.types.is_null(t):
            col = pa.chunked_array([pa.nulls(len(col), pa.string())])
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            col = col.cast(pa.string())
        else:
            return None  # timestamps Arrow inferred for a late key, fractions, nested values
        cols[name] = col
    return pa.table(cols), np.arange(1, n + 1, dtype=np.int64)


def make_reader(output_columns: list[str], source: Source | None = None):
    """A ``mapInArrow`` function: rows (path, fmt, header, delivery_date[, sha256]) -> text rows.

    A row with a field over MAX_FIELD_BYTES is a reader error (``_row_error``, with the
    row's text cut short in ``_raw``). With a ``source``, its contract columns are read as
    single values (a nested JSON or Parquet value rejects the row; so does float money with
    more decimals than the contract's: see :func:`_read_parquet`) and its identifier columns
    are normalised (:func:`normalise_identifier`).

    Output columns: ``output_columns`` (strings; missing ones null) then ``_source_file``,
    ``_delivery_date``, ``_line``, ``_raw``, ``_row_error``, ``_file_error``, ``_file_sha256``
    (the input row's ``sha256``, null without one: carried here rather than joined on
    afterwards, which held every row of the batch in the join's memory)
    A file that cannot be read gives one row with ``_file_error`` set and ``_line`` 0.
    """
    out_names = list(output_columns)
    scalar = frozenset(source.column_names if source else ())
    money = frozenset(c.name for c in source.columns if c.type == DECIMAL) if source else frozenset()
    identifiers = list(source.identifiers if source else ())
    meta = ["_source_file", "_delivery_date", "_line", "_raw", "_row_error", "_file_error", "_file_sha256"]
    schema = pa.schema([pa.field(n, pa.string()) for n in out_names]
                       + [pa.field("_source_file", pa.string()), pa.field("_delivery_date", pa.date32()),
                          pa.field("_line", pa.int64()), pa.field("_raw", pa.string()),
                          pa.field("_row_error", pa.string()), pa.field("_file_error", pa.string()),
                          pa.field("_file_sha256", pa.string())])

    def batches_for(path: str, fmt: str, header: list[str], day, sha: str | None) -> Iterator[pa.RecordBatch]:
        try:
            if fmt == "csv":
                table, lines, bad = _read_csv(path, header)
            elif fmt == "parquet":
                table, lines, bad = _read_parquet(path, scalar, money)
            elif fmt == "jsonl":
                table, lines, bad = _read_jsonl(path, scalar)
            else:
                raise FileError(f"unsupported format {fmt!r}")
            table, lines, big = _oversized(table, lines)
            bad += big
            for name in identifiers:
                if name in table.column_names:
                    table = table.set_column(table.column_names.index(name), name,
                                             normalise_identifier(table.column(name)))
        except Exception as exc:  # never let one hostile file fail the engine task (and the run)
            if not isinstance(exc, FileError):
                exc = FileError(_explain(exc))
            row = {n: [None] for n in out_names} | {"_source_file": [path], "_delivery_date": [day], "_line": [0],
                                                   "_raw": [None], "_row_error": [None], "_file_error": [str(exc)],
                                                   "_file_sha256": [sha]}
            yield pa.RecordBatch.from_pydict(row, schema=schema)
            return
        n = table.num_rows
        cols = {}
        for name in out_names:
            cols[name] = table.column(name).combine_chunks() if name in table.column_names \
                else pa.nulls(n, pa.string())
        # per-file constants are repeated in Arrow, not built from Python lists (millions of rows)
        cols["_source_file"] = pa.repeat(pa.scalar(path, pa.string()), n)
        cols["_delivery_date"] = pa.repeat(pa.scalar(day, pa.date32()), n)
        cols["_line"] = pa.array(lines, pa.int64())
        cols["_raw"] = pa.nulls(n, pa.string())
        cols["_row_error"] = pa.nulls(n, pa.string())
        cols["_file_error"] = pa.nulls(n, pa.string())
        cols["_file_sha256"] = pa.repeat(pa.scalar(sha, pa.string()), n)
        good = pa.table(cols, schema=schema)
        for b in good.to_batches(max_chunksize=OUTPUT_CHUNK_ROWS):
            yield b
        if bad:
            rows = {name: [None] * len(bad) for name in out_names}
            rows |= {"_source_file": [path] * len(bad), "_delivery_date": [day] * len(bad),
                     "_line": [b["_line"] for b in bad], "_raw": [b["_raw"] for b in bad],
                     "_row_error": [b["_row_error"] for b in bad], "_file_error": [None] * len(bad),
                     "_file_sha256": [sha] * len(bad)}
            yield pa.RecordBatch.from_pydict(rows, schema=schema)

    def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            d = batch.to_pydict()
            shas = d.get("sha256") or [None] * len(d["path"])
            for path, fmt, header, day, sha in zip(d["path"], d["fmt"], d["header"], d["delivery_date"], shas):
                yield from batches_for(path, fmt, list(header or []), day, sha)

    ddl = ", ".join(f"`{n}` string" for n in out_names) + \
        ", _source_file string, _delivery_date date, _line bigint, _raw string, _row_error string, _file_error string, _file_sha256 string"
    return read, ddl, meta


__all__ = ["LandingFile", "Entry", "Scan", "scan", "discover", "inspect", "read_header", "make_reader", "FileError",
           "sha256_of"]
