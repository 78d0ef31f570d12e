"""Right to erasure: remove one customer from the whole lake, then purge every old copy.

``c360 erase --customer-id ID`` (and :func:`run`) works in four passes, holding the lake's
lock (:mod:`c360.lock`) throughout:

1. **Tables.** Every Delta table of the lake (:func:`c360.lake.tables`, ``layer/name``:
   bronze incl. ``customers_versions`` and staging, silver, restricted, gold, quarantine,
   ops, marketing, scratch) is checked and the customer's rows are deleted:

   - a ``customer_id`` column: rows of that customer;
   - a ``device_id`` column next to it: anonymous rows (``customer_id`` null) of a device
     only this customer ever used (a device shared with another customer is kept);
   - quarantine tables hold the raw delivered line (``raw``), not parsed columns: a line
     is the customer's when one of its field values (split on CSV/JSON separators) is the
     customer id, one of the customer's national ids, phones or e-mails, or one of the
     devices above (whole values only: ``C12`` never matches ``C123``);
   - any other table (no ``customer_id``: bookkeeping, data-quality results, aggregates):
     text columns naming the customer (id, national id, phone, e-mail, device) as a whole
     word are redacted to ``[erased]`` in place (e.g. example values of a failed
     data-quality check). Aggregates (KPIs, outcome counts, persona centroids) hold no
     customer row and are left as they are; the next run recomputes them.

   Deletes are ``MERGE ... WHEN MATCHED THEN DELETE`` against a one-row temporary view
   holding the values: Sail records a ``DELETE``'s predicate (with the literal id) in the
   commit's ``commitInfo``, a MERGE only records ``t.customer_id = s.customer_id``. The
   tables are Delta protocol 1/2 (no deletion vectors), so Sail rewrites every file that
   held a matching row (copy on write); the old files are only unreferenced.

2. **Exports.** Every CRM export folder of the lake, found by its ``manifest.json``
   (wherever it lives: ``exports/crm`` or ``marketing/exports/crm``). An export is
   *delivered* when the CRM has written the marker file ``_DELIVERED`` into it
   (:data:`jobs.export.DELIVERED_MARKER`): delivered exports are the recipient's copy and
   are never modified; those holding the customer are listed for the recipient's own
   erasure. Undelivered exports are rewritten without the customer's rows (CSV and
   Parquet, streamed) and their manifest updated (row counts, sha256, bytes, change
   counts, and the request id under ``erasure_requests``).

3. **Other files.** Text files outside tables and exports (HTML reports, Data Docs) that
   name the customer are redacted the same way. MLflow (``mlruns/``, ``mlflow.db``) is
   never modified: files there naming the customer are listed (training logs a 5-row
   input example of model features, without customer ids).

4. **Purge.** For every table: vacuum (delta-rs, ``full=True``, the retention below even
   when shorter than the table's own default), a checkpoint at the current version, and
   expiry of ``_delta_log`` entries (commit JSON, ``.crc``, older checkpoints) below that
   checkpoint whose commit is older than the retention. Commit files carry per-file
   statistics (min/max of every column: customer ids, names, phones of bronze and
   restricted tables), so the old data files and the old log entries both have to go.
   The retention is ``privacy.erasure_retention_hours`` (``--retention-hours``): with 0
   the bytes are gone when the command returns, and time travel to earlier versions of
   every table ends; with the default (168 h) the old files and log entries stay until a
   later run after that time (``c360 erase`` again, with any id) purges them.

Every run writes an ``ops/audit_log`` row (job ``erase``) keyed by a random request id
that the command prints for the erasure request's file: table versions, rows removed per
table, export folders, counts, never the customer id nor any of its values.

A customer found nowhere is not an error (exit code 0, ``customer_found: false`` in the
audit row): the purge pass still runs, which is how an earlier erasure is finished after
its retention. The landing zone (the bank's deliveries) is outside the lake and is
governed by the bank's delivery retention; it is not touched.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from c360 import csvsafe, lake, lock, ops, storage
from c360.settings import Settings
from jobs.export import sha256

Progress = Callable[[str, int, int], None]

ERASED = "[erased]"
MAX_RETENTION_HOURS = 8760
# What a customer id may look like: letters, digits and _ . : - (no spaces, quotes or
# wildcards, so it can never widen a match).
CUSTOMER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
# Tables that know a customer's identifying values (matched in raw lines and free text).
IDENTITY_TABLES = ("bronze/customers_versions", "bronze/customers", "restricted/customer_pii")
IDENTITY_COLUMNS = ("national_id", "phone", "email")
# Splits a raw delivered line (CSV or JSON) into its values.
SEPARATORS = r"""[\s,;|"'{}\[\]:=]+"""
TEXT_SUFFIXES = {".html", ".htm", ".json", ".jsonl", ".csv", ".txt", ".md", ".yaml", ".yml", ".xml"}
MLFLOW_PATHS = ("mlruns", "mlartifacts", "mlflow.db")
_LOG_FILE = re.compile(r"^(\d{20})\.(?:json|crc|checkpoint\.parquet|checkpoint\.\d+\.\d+\.parquet|\d{20}\.compacted\.json)$")
_view_counter = 0


class ErasureFailed(RuntimeError):
    """The erasure did not complete; the message names the request, never the customer."""


@dataclass
class TableErasure:
    table: str
    rows: int
    action: str  # deleted | redacted
    version_before: int | None
    version_after: int | None


@dataclass
class ExportErasure:
    folder: str  # relative to the lake
    delivered: bool
    rows: dict[str, int]  # file -> rows of the customer (removed unless delivered)


@dataclass
class ErasureResult:
    request_id: str
    customer_found: bool
    retention_hours: int
    tables: list[TableErasure] = field(default_factory=list)
    exports: list[ExportErasure] = field(default_factory=list)  # rewritten (not delivered)
    delivered: list[ExportErasure] = field(default_factory=list)  # left to the recipient
    redacted_files: list[str] = field(default_factory=list)
    mlflow_files: list[str] = field(default_factory=list)  # name the customer; not modified
    tables_purged: int = 0
    files_vacuumed: int = 0
    log_files_expired: int = 0
    purge_failed: dict[str, str] = field(default_factory=dict)
    pending_until: str | None = None  # old files and log entries stay until then (UTC)
    seconds: float = 0.0

    @property
    def rows_removed(self) -> int:
        return sum(t.rows for t in self.tables if t.action == "deleted")

    def as_dict(self) -> dict:
        return {**asdict(self), "rows_removed": self.rows_removed}


def check_customer_id(value: str) -> str:
    v = (value or "").strip()
    if not CUSTOMER_ID.fullmatch(v):
        raise ValueError("--customer-id must be 1-100 characters: letters, digits and _ . : - "
                         "(starting with a letter or digit)")
    return v


def check_retention(hours) -> int:
    try:
        h = int(hours)
    except (TypeError, ValueError):
        raise ValueError(f"--retention-hours must be a whole number of hours, got {hours!r}") from None
    if not 0 <= h <= MAX_RETENTION_HOURS or h != hours:
        raise ValueError(f"--retention-hours must be a whole number between 0 and {MAX_RETENTION_HOURS}, got {hours!r}")
    return h


# ---------------------------------------------------------------------------------------
# the customer's identifying values

@dataclass
class Identity:
    customer_id: str
    values: list[str]  # national ids, phones, e-mails (every delivered version)
    devices: list[str]  # devices nobody else used

    @property
    def needles(self) -> list[str]:
        """Every value that identifies the customer, longest first (for matching)."""
        return sorted({self.customer_id, *self.values, *self.devices}, key=lambda s: (-len(s), s))


def identity(spark: SparkSession, root: Path | str, customer_id: str) -> Identity:
    """The customer's identifying values and exclusive devices (bounded: one customer)."""
    values: set[str] = set()
    for name in IDENTITY_TABLES:
        path = storage.join(root, name)
        if not lake.exists(path):
            continue
        df = lake.read(spark, path)
        cols = [c for c in IDENTITY_COLUMNS if c in df.columns]
        if "customer_id" in df.columns and cols:
            for r in df.where(F.col("customer_id") == customer_id).select(*cols).distinct().limit(10_000).collect():
                values |= {str(v).strip() for v in r if v is not None and str(v).strip()}
    mine: set[str] = set()
    with_devices = []
    for name in lake.tables(root):
        path = storage.join(root, name)
        cols = _columns(path)
        if "customer_id" in cols and "device_id" in cols:
            with_devices.append(path)
            rows = lake.read(spark, path).where((F.col("customer_id") == customer_id) & F.col("device_id").isNotNull()) \
                .select("device_id").distinct().limit(10_000).collect()
            mine |= {r.device_id for r in rows}
    shared: set[str] = set()
    if mine:
        for path in with_devices:
            rows = lake.read(spark, path).where((F.col("customer_id") != customer_id)
                                                & F.col("device_id").isin(sorted(mine))) \
                .select("device_id").distinct().collect()
            shared |= {r.device_id for r in rows}
    return Identity(customer_id, sorted(values), sorted(mine - shared))


def _columns(path: str) -> dict[str, str]:
    """``name -> type`` of the table's top-level columns, from the Delta log (no scan)."""
    schema = json.loads(lake.delta_table(path).schema().to_json())
    return {f["name"]: f["type"] if isinstance(f["type"], str) else f["type"].get("type", "struct")
            for f in schema["fields"]}


# ---------------------------------------------------------------------------------------
# 1. tables

def _rust_escape(s: str) -> str:
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", s)


def _source_view(spark: SparkSession, ident: Identity) -> str:
    """A one-row temporary view ``s`` holding the values the conditions compare with, so
    that no value ever appears in SQL text (which Delta records in commitInfo)."""
    global _view_counter
    _view_counter += 1
    view = f"_erase_src_{_view_counter}"
    alternation = "|".join(_rust_escape(n) for n in ident.needles)
    schema = T.StructType([
        T.StructField("customer_id", T.StringType()), T.StructField("devices", T.ArrayType(T.StringType())),
        T.StructField("needles", T.ArrayType(T.StringType())), T.StructField("sep", T.StringType()),
        T.StructField("word", T.StringType())])
    row = (ident.customer_id, ident.devices, ident.needles, SEPARATORS,
           f"(^|[^0-9A-Za-z])({alternation})([^0-9A-Za-z]|$)")
    spark.createDataFrame([row], schema).createOrReplaceTempView(view)
    return view


def plan(name: str, cols: dict[str, str], has_devices: bool) -> tuple[str, str, list[str]] | None:
    """``(action, condition over t and s, columns to redact)`` for one table, or None."""
    parts = []
    if "customer_id" in cols:
        parts.append("t.customer_id = s.customer_id")
        if "device_id" in cols and has_devices:
            parts.append("(t.customer_id IS NULL AND array_contains(s.devices, t.device_id))")
        return "deleted", " OR ".join(parts), []
    if name.split("/")[0] == "quarantine" and "raw" in cols:
        return "deleted", "arrays_overlap(split(t.raw, s.sep), s.needles)", []
    text = [c for c, t in cols.items() if t == "string"]
    if not text:
        return None
    return "redacted", " OR ".join(f"t.`{c}` RLIKE s.word" for c in text), text


def erase_table(spark: SparkSession, path: str, view: str, action: str, cond: str, text_cols: list[str]) -> int:
    """Delete (or redact) the matching rows of one table; the number of rows matched."""
    target = f"delta.`{path}`"
    n = spark.sql(f"SELECT count(*) AS n FROM {target} t CROSS JOIN {view} s WHERE {cond}").first()["n"]
    if not n:
        return 0
    if action == "deleted":
        clause = "WHEN MATCHED THEN DELETE"
    else:
        # whole words only (C12 never touches C123); twice, for neighbours sharing a separator
        rep = f"'$1{ERASED}$3'"
        sets = ", ".join(f"`{c}` = regexp_replace(regexp_replace(t.`{c}`, s.word, {rep}), s.word, {rep})"
                         for c in text_cols)
        clause = f"WHEN MATCHED THEN UPDATE SET {sets}"
    spark.sql(f"MERGE INTO {target} t USING {view} s ON {cond} {clause}").collect()
    return int(n)


# ---------------------------------------------------------------------------------------
# 2. exports

def export_folders(root: Path | str) -> list[Path | str]:
    """Every CRM export folder under the lake: a folder whose ``manifest.json`` lists files."""
    if storage.is_uri(root):
        found_uris = []
        for item in storage.listdir(root, recursive=True):
            rel = storage.relative(item.path, root).split("/")
            if item.is_dir or rel[-1] != "manifest.json" or "_delta_log" in rel or rel[0] in MLFLOW_PATHS:
                continue
            try:
                manifest = json.loads(storage.read_text(item.path))
            except (OSError, ValueError):
                continue
            if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict):
                found_uris.append(storage.parent(item.path))
        return sorted(found_uris)
    found = []
    for m in root.rglob("manifest.json"):
        rel = m.relative_to(root).parts
        if "_delta_log" in rel or rel[0] in MLFLOW_PATHS:
            continue
        try:
            manifest = json.loads(m.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict):
            found.append(m.parent)
    return sorted(found)


def _filter_csv(path: Path, customer_id: str, out: Path | None) -> tuple[int, int]:
    """Rows of the customer and rows kept; with ``out``, the kept rows are written there
    in the export's own format (:mod:`c360.csvsafe`: the cells as read, quoted as the
    export quotes them, a lone CR included), so the other rows' bytes are unchanged."""
    removed = kept = 0
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or "customer_id" not in header:
            return 0, 0
        i = header.index("customer_id")
        g = None
        if out is not None:
            g = open(out, "w", encoding="utf-8", newline="")
            g.write(csvsafe.line(header))
        try:
            for row in reader:
                if len(row) > i and row[i] == customer_id:
                    removed += 1
                else:
                    kept += 1
                    if g is not None:
                        g.write(csvsafe.line(row))
        finally:
            if g is not None:
                g.close()
    return removed, kept


def _filter_parquet(path: Path, customer_id: str, out: Path | None) -> tuple[int, int]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if "customer_id" not in pf.schema_arrow.names:
        return 0, 0
    removed = kept = 0
    writer = pq.ParquetWriter(out, pf.schema_arrow, compression="zstd", compression_level=3) if out else None
    try:
        for batch in pf.iter_batches(batch_size=100_000):
            hit = pc.fill_null(pc.equal(batch.column("customer_id"), pa.scalar(customer_id)), False)
            n = pc.sum(hit).as_py() or 0
            removed += n
            rest = batch.filter(pc.invert(hit))
            kept += rest.num_rows
            if writer is not None and rest.num_rows:
                writer.write_table(pa.Table.from_batches([rest], schema=pf.schema_arrow))
    finally:
        if writer is not None:
            writer.close()
    return removed, kept


def _filter(path: Path, customer_id: str, out: Path | None) -> tuple[int, int]:
    if path.suffix == ".csv":
        return _filter_csv(path, customer_id, out)
    if path.suffix == ".parquet":
        return _filter_parquet(path, customer_id, out)
    return 0, 0


def erase_export(folder: Path | str, customer_id: str, request_id: str, rewrite: bool) -> dict[str, int]:
    """Rows of the customer per file of one export; with ``rewrite``, removes them and
    rewrites the manifest (counts and checksums). Each file is replaced atomically, the
    manifest last. An export on object storage is worked on in a local copy, and the
    rewritten files are uploaded (one PUT each, the manifest last)."""
    if storage.is_uri(folder):
        with tempfile.TemporaryDirectory(prefix="c360-erase-") as tmp:
            local = Path(tmp)
            for item in storage.listdir(folder):
                if not item.is_dir:
                    (local / storage.name(item.path)).write_bytes(storage.read_bytes(item.path))
            found = erase_export(local, customer_id, request_id, rewrite)
            if rewrite and found:
                for name in [*found, "manifest.json"]:
                    storage.write_bytes(storage.join(folder, name), (local / name).read_bytes())
            return found
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    found = {}
    for name in manifest["files"]:
        p = folder / name
        if p.is_file():
            removed, _ = _filter(p, customer_id, None)
            if removed:
                found[name] = removed
    if not rewrite or not found:
        return found
    kept: dict[str, int] = {}
    for name in found:
        p = folder / name
        tmp = folder / f".erase-{request_id}-{name}"
        _, kept[name] = _filter(p, customer_id, tmp)
        os.replace(tmp, p)
    for name, meta in manifest["files"].items():
        if name in found and isinstance(meta, dict):
            p = folder / name
            meta["sha256"], meta["bytes"] = sha256(p), p.stat().st_size
            if "rows" in meta:
                meta["rows"] = kept[name]
    main = next((n for n in found if n.startswith("recommendations")), None)
    if main and "row_count" in manifest:
        manifest["row_count"] = kept[main]
    if "changes.csv" in found and isinstance(manifest.get("changes"), dict):
        counts = {k: 0 for k in manifest["changes"]}
        with open(folder / "changes.csv", encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                counts[row["change"]] = counts.get(row["change"], 0) + 1
        manifest["changes"] = counts
    manifest["erasure_requests"] = [*manifest.get("erasure_requests", []), request_id]
    tmp = folder / f".erase-{request_id}-manifest.json"
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, manifest_path)
    return found


# ---------------------------------------------------------------------------------------
# 3. other files

def _word_regex(needles: list[str]) -> re.Pattern:
    return re.compile("(?<![0-9A-Za-z])(?:" + "|".join(re.escape(n) for n in needles) + ")(?![0-9A-Za-z])")


def scan_files(root: Path | str, skip: set[Path | str], needles: list[str], redact: bool
               ) -> tuple[list[str], list[str]]:
    """Text files outside tables and exports naming the customer: ``(redacted, mlflow)``;
    files under MLflow's folders are listed, never modified."""
    word = _word_regex(needles)
    redacted, mlflow = [], []
    if storage.is_uri(root):
        skipped = tuple(str(p).rstrip("/") + "/" for p in skip)
        for item in storage.listdir(root, recursive=True):
            rel = storage.relative(item.path, root)
            if item.is_dir or item.path.startswith(skipped) or "_delta_log" in rel.split("/"):
                continue
            in_mlflow = rel.split("/")[0] in MLFLOW_PATHS
            suffix = "." + rel.rsplit(".", 1)[-1].lower() if "." in storage.name(rel) else ""
            if suffix not in TEXT_SUFFIXES and not in_mlflow:
                continue
            try:
                data = storage.read_bytes(item.path)
            except OSError:
                continue
            if in_mlflow:
                if any(n.encode("utf-8") in data for n in needles):
                    mlflow.append(rel)
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if word.search(text):
                if redact:
                    storage.write_text(item.path, word.sub(ERASED, text))  # one PUT replaces the object
                redacted.append(rel)
        return sorted(redacted), sorted(mlflow)
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = [n for n in dirnames if d / n not in skip and n != "_delta_log"]
        for fn in filenames:
            p = d / fn
            rel = p.relative_to(root).as_posix()
            in_mlflow = rel.split("/")[0] in MLFLOW_PATHS
            if p.suffix.lower() not in TEXT_SUFFIXES and not in_mlflow:
                continue
            try:
                data = p.read_bytes()
            except OSError:
                continue
            if in_mlflow:
                if any(n.encode("utf-8") in data for n in needles):
                    mlflow.append(rel)
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if not word.search(text):
                continue
            if redact:
                tmp = p.with_name(f".{p.name}.erase")
                tmp.write_text(word.sub(ERASED, text), encoding="utf-8")
                os.replace(tmp, p)
            redacted.append(rel)
    return sorted(redacted), sorted(mlflow)


# ---------------------------------------------------------------------------------------
# 4. purge: vacuum, checkpoint, expire the log

def expire_log(path: str, checkpoint_version: int, retention_hours: int) -> int:
    """Delete ``_delta_log`` entries (commits, ``.crc``, checkpoints) of versions below
    ``checkpoint_version`` whose commit is older than the retention (a prefix of the log,
    as Delta's own log cleanup does); the number of files deleted."""
    if storage.is_uri(path):
        return _expire_log_objects(path, checkpoint_version, retention_hours)
    log = Path(path) / "_delta_log"
    cutoff = time.time() - retention_hours * 3600
    by_version: dict[int, list[Path]] = {}
    for p in log.iterdir():
        m = _LOG_FILE.match(p.name)
        if m and int(m.group(1)) < checkpoint_version:
            by_version.setdefault(int(m.group(1)), []).append(p)
    def committed_at(files: list[Path]) -> float:
        commits = [f for f in files if f.name.endswith(".json")]
        return min(f.stat().st_mtime for f in (commits or files))

    expired = [v for v, files in by_version.items() if committed_at(files) <= cutoff]
    upto = max(expired, default=-1)
    n = 0
    for v in sorted(by_version):
        if v > upto:
            break
        for f in by_version[v]:
            f.unlink(missing_ok=True)
            n += 1
    return n


def _expire_log_objects(path: str, checkpoint_version: int, retention_hours: int) -> int:
    """:func:`expire_log` on object storage (an object's time is when it was written)."""
    cutoff_ns = (time.time() - retention_hours * 3600) * 1e9
    by_version: dict[int, list[storage.Info]] = {}
    for item in storage.listdir(storage.join(path, "_delta_log")):
        m = _LOG_FILE.match(storage.name(item.path))
        if m and not item.is_dir and int(m.group(1)) < checkpoint_version:
            by_version.setdefault(int(m.group(1)), []).append(item)

    def committed_at(files: list[storage.Info]) -> float:
        commits = [f for f in files if f.path.endswith(".json")]
        return min(f.mtime_ns or 0 for f in (commits or files))

    expired = [v for v, files in by_version.items() if committed_at(files) <= cutoff_ns]
    upto = max(expired, default=-1)
    n = 0
    for v in sorted(by_version):
        if v > upto:
            break
        for f in by_version[v]:
            storage.remove(f.path)
            n += 1
    return n


def purge_table(path: str, retention_hours: int) -> tuple[int, int]:
    """Vacuum (every unreferenced file older than the retention, also when shorter than the
    table's own default), checkpoint, expire the log; ``(files vacuumed, log files deleted)``."""
    dt = lake.delta_table(path)
    vacuumed = dt.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False,
                         full=True)
    dt = lake.delta_table(path)
    dt.create_checkpoint()
    return len(vacuumed), expire_log(path, dt.version(), retention_hours)


# ---------------------------------------------------------------------------------------
# the job

def _scrub(text: str, needles: list[str]) -> str:
    for n in needles:
        text = text.replace(n, ERASED)
    return text


def run(spark: SparkSession, settings: Settings, customer_id: str, *, retention_hours: int | None = None,
        request_id: str | None = None, progress: Progress | None = None) -> ErasureResult:
    """Erase ``customer_id`` from the lake (see the module docstring); records an audit row
    under ``request_id`` (a new uuid by default) whatever happens."""
    cid = check_customer_id(customer_id)
    hours = check_retention(settings.privacy.erasure_retention_hours if retention_hours is None else retention_hours)
    root = settings.lake if storage.is_uri(settings.lake) else Path(settings.lake)
    if not storage.is_dir(root):
        raise ValueError(f"lake {root} does not exist")
    request_id = request_id or str(uuid.uuid4())
    step = progress or (lambda stage, done, total: None)
    started_at, t0 = ops.utcnow(), time.perf_counter()
    res = ErasureResult(request_id=request_id, customer_found=False, retention_hours=hours)
    needles = [cid]
    with lock.for_settings(settings, run_id=request_id, step="erase"):
        before = ops.snapshot_versions(root)
        try:
            ident = identity(spark, root, cid)
            needles = ident.needles
            view = _source_view(spark, ident)
            names = lake.tables(root)
            try:
                for i, name in enumerate(names):
                    step("erase tables", i, len(names))
                    path = storage.join(root, name)
                    todo = plan(name, _columns(path), bool(ident.devices))
                    if todo is None:
                        continue
                    n = erase_table(spark, path, view, *todo)
                    if n:
                        res.tables.append(TableErasure(name, n, todo[0], before.get(name), lake.log_version(path)))
                step("erase tables", len(names), len(names))
            finally:
                spark.catalog.dropTempView(view)

            folders = export_folders(root)
            from jobs.export import is_delivered

            for i, folder in enumerate(folders):
                step("erase exports", i, len(folders))
                delivered = is_delivered(folder)
                found = erase_export(folder, cid, request_id, rewrite=not delivered)
                if found:
                    (res.delivered if delivered else res.exports).append(
                        ExportErasure(storage.relative(folder, root), delivered, found))
            step("erase exports", len(folders), len(folders))

            skip = {storage.join(root, t) if storage.is_uri(root) else root / t for t in names} | set(folders)
            res.redacted_files, res.mlflow_files = scan_files(root, skip, needles, redact=True)
            res.customer_found = bool(res.tables or res.exports or res.redacted_files)  # what we could erase

            names = lake.tables(root)
            for i, name in enumerate(names):
                step("erase purge", i, len(names))
                try:
                    vacuumed, expired = purge_table(storage.join(root, name), hours)
                except Exception as exc:  # noqa: BLE001 - one table's failure must not stop the others
                    res.purge_failed[name] = _scrub(f"{type(exc).__name__}: {exc}", needles)[:300]
                    continue
                res.tables_purged += 1
                res.files_vacuumed += vacuumed
                res.log_files_expired += expired
            step("erase purge", len(names), len(names))
            if hours and res.customer_found:
                res.pending_until = (ops.utcnow() + timedelta(hours=hours)).isoformat(timespec="seconds")
            res.seconds = round(time.perf_counter() - t0, 2)
            failed = sorted(res.purge_failed)
            error = f"purge failed for {', '.join(failed)}" if failed else None
            _audit(spark, settings, res, started_at, before, "failed" if failed else "succeeded", error)
        except Exception as exc:
            error = _scrub(f"{type(exc).__name__}: {exc}", needles)[:2000]
            res.seconds = round(time.perf_counter() - t0, 2)
            _audit(spark, settings, res, started_at, before, "failed", error)
            raise ErasureFailed(f"erasure {request_id} failed: {error.splitlines()[0] if error else ''}") from exc
    if res.purge_failed:
        raise ErasureFailed(f"erasure {request_id}: rows removed, but vacuum failed for "
                            f"{', '.join(sorted(res.purge_failed))}; run it again")
    return res


def _audit(spark: SparkSession, settings: Settings, res: ErasureResult, started_at, before: dict[str, int],
           status: str, error: str | None) -> None:
    """The ``ops/audit_log`` row: table names, versions, counts, folder names; no values."""
    outputs = {t.table: t.version_after for t in res.tables if t.version_after is not None}
    details = {
        "request_id": res.request_id, "customer_found": res.customer_found, "retention_hours": res.retention_hours,
        "rows_removed": res.rows_removed,
        "rows_redacted": {t.table: t.rows for t in res.tables if t.action == "redacted"},
        "exports_rewritten": {e.folder: e.rows for e in res.exports},
        "delivered_exports_for_recipient": {e.folder: e.rows for e in res.delivered},
        "files_redacted": res.redacted_files, "mlflow_files_naming_customer": len(res.mlflow_files),
        "tables_purged": res.tables_purged, "files_vacuumed": res.files_vacuumed,
        "log_files_expired": res.log_files_expired, "pending_until": res.pending_until,
        "purge_failed": sorted(res.purge_failed), "seconds": res.seconds,
    }
    ops.record_audit(spark, settings.lake, run_id=res.request_id, job="erase", as_of=None, status=status,
                     started_at=started_at, inputs={t.table: before[t.table] for t in res.tables if t.table in before},
                     outputs=outputs, row_counts={t.table: t.rows for t in res.tables}, details=details, error=error)


__all__ = ["run", "ErasureResult", "ErasureFailed", "TableErasure", "ExportErasure", "identity", "export_folders",
           "erase_export", "expire_log", "purge_table", "check_customer_id", "check_retention"]
