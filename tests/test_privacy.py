"""Privacy end to end on a small generated bank: no raw PII outside the restricted zones,
and a withdrawn marketing consent keeps a customer out of the next CRM export.

One module fixture generates a bank (with defects) into tmp and runs every step through the
CLI (``c360 run``: ingest, dq_bronze, silver, dq_silver, profile, segments, train, score,
export, with the HTML reports and Data Docs), capturing every log record of every logger at
DEBUG, the CLI's output and the process's own stdout/stderr (file descriptors 1 and 2,
where the engine's native logs go). The day after, a new customers delivery withdraws one
exported customer's consent and the daily steps run again.

The PII scan then collects every name, national id, phone and e-mail the generator wrote
into the landing customers files (read with the contract's reader), and searches for them,
in the variants a system could write them (phones with or without +86 / 0086 and
separators, e-mails in any case, English names in any case), in every file of the lake
outside ``bronze/``, ``restricted/`` and ``quarantine/`` (which hold raw PII by design):
Parquet data decoded row by row (every string, also inside lists, structs and maps),
``_delta_log`` JSON (file statistics hold min/max values), CSV/JSON/HTML exports and
reports, the MLflow tracking database (every row, and its raw bytes) and artifacts, and
every captured log line. A positive control runs the same scan over ``bronze/customers``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from c360 import lake, landing
from c360.contract import SOURCES

# the module fixture runs every step twice on a shared 2-core machine: ~10-15 min
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

D = date(2026, 6, 30)
D1 = D + timedelta(days=1)
CUSTOMERS, DAYS, SEED, DIRTY_RATE = 500, 240, 3, 0.01
RESTRICTED = ("bronze", "restricted", "quarantine")
E2E_PII_KEY = "e2e-Secret-PII-key-7Hq2-0123456789"
REPO_CONF = Path(__file__).resolve().parent.parent / "conf"
# Small, fast models (the shape of conf/models.yaml): enough to train and register both.
# On a bank this small, the customers whose only delivered row is defective (quarantined)
# orphan more than 1% of the other sources' rows: referential checks tolerate 5% here.
LOCAL_CONF = """
quality:
  reference_defaults: {mostly: 0.95}
  # D+1 delivers only the consent withdrawal: no transactions that day (delivery completeness)
  completeness:
    known_missing: [{source: transactions, dates: [2026-07-01], reason: "test bank: D+1 delivers customers only"}]
models:
  next_best_product:
    snapshots: 4
    ranker: {n_estimators: 60, num_leaves: 15, min_child_samples: 20}
    binary: {n_estimators: 60, num_leaves: 15, min_child_samples: 20}
  attrition:
    snapshots: 3
    params: {n_estimators: 60, num_leaves: 15, min_child_samples: 20}
"""


# ---------------------------------------------------------------------------------------
# capturing every log line

class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.name} {record.levelname} {record.getMessage()}"
        except Exception:  # noqa: BLE001 - a bad format string still shows its parts
            text = f"{record.name} {record.levelname} {record.msg!r} {record.args!r}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!r}"
        if record.stack_info:
            text += f" {record.stack_info}"
        self.lines.append(text)


@contextmanager
def capture_logs():
    """Every record of every logger at DEBUG (what caplog does for one test, for the module):
    the root and each existing logger at DEBUG, the handler also on non-propagating ones."""
    handler = _Collect()
    loggers = [logging.getLogger()] + [lg for lg in logging.root.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    levels = {lg: lg.level for lg in loggers}
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    attached = [logging.getLogger()] + [lg for lg in loggers[1:] if not lg.propagate]
    for lg in attached:
        lg.addHandler(handler)
    try:
        yield handler
    finally:
        for lg in attached:
            lg.removeHandler(handler)
        for lg, level in levels.items():
            lg.setLevel(level)


@contextmanager
def capture_fds(path: Path):
    """The process's file descriptors 1 and 2 (native code's output too) into ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with open(path, "wb") as f:
        for fd in (1, 2):
            os.dup2(f.fileno(), fd)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


# ---------------------------------------------------------------------------------------
# the PII of the landing zone, and the scanner

CJK_RUN = re.compile(r"[\u3400-\u9fff]+")
WORD = re.compile(r"[A-Za-z]+")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+")
EMAIL_LOCAL = re.compile(r"(?<![A-Za-z0-9])u\d{8}(?![0-9])")
PHONE_LIKE = re.compile(r"\+?\d[\d \-().]*\d")
NATIONAL_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


@dataclass
class Needles:
    names_cn: set[str] = field(default_factory=set)
    names_en: set[str] = field(default_factory=set)  # lower case, single spaces
    national_ids: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)  # 11 digits
    emails: set[str] = field(default_factory=set)  # lower case
    email_locals: set[str] = field(default_factory=set)
    rows: list[dict] = field(default_factory=list)

    def add(self, row: dict) -> None:
        name = (row.get("full_name") or "").strip()
        if name:
            (self.names_cn if CJK_RUN.fullmatch(name) else self.names_en).add(
                name if CJK_RUN.fullmatch(name) else " ".join(name.lower().split()))
        nid = (row.get("national_id") or "").strip().upper()
        if NATIONAL_ID.fullmatch(nid):
            self.national_ids.add(nid)
        digits = re.sub(r"\D", "", row.get("phone") or "")
        if len(digits) == 11:
            self.phones.add(digits)
        email = (row.get("email") or "").strip().lower()
        if "@" in email:
            self.emails.add(email)
            if EMAIL_LOCAL.fullmatch(email.split("@")[0]):
                self.email_locals.add(email.split("@")[0])

    def counts(self) -> dict[str, int]:
        return {"names": len(self.names_cn) + len(self.names_en), "national_ids": len(self.national_ids),
                "phones": len(self.phones), "emails": len(self.emails)}


def landing_pii(landing_dir: Path) -> Needles:
    """Every customers row delivered to the landing zone, read with the contract's reader;
    rows it rejects (wrong column count) and files it cannot read are parsed from raw text."""
    cols = SOURCES["customers"].column_names
    reader, _, _ = landing.make_reader(cols)  # (mapInArrow function, its DDL, metadata columns)
    needles = Needles()
    for f in landing.discover(landing_dir, ["customers"]):
        if f.problem is None and f.fmt:
            for batch in reader([pa.RecordBatch.from_pydict({"path": [f.path], "fmt": [f.fmt],
                                                             "header": [list(f.header)],
                                                             "delivery_date": [f.delivery_date]})]):
                for r in batch.to_pylist():
                    if r["_file_error"] is None and r["_raw"] is None:
                        needles.add(r)
                        needles.rows.append(r)
                    elif r["_raw"] is not None:
                        needles.add(dict(zip(cols, next(csv.reader([r["_raw"]]), []))))
                    else:
                        _raw_file(Path(f.path), cols, needles)
        else:
            _raw_file(Path(f.path), cols, needles)
    return needles


def _raw_file(path: Path, cols: list[str], needles: Needles) -> None:
    """A file the reader refused (truncated gzip, GBK...): whatever text can be recovered."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as g:
                data = g.read()
        except (EOFError, OSError):
            d, out = gzip.GzipFile(fileobj=io.BytesIO(data)), bytearray()
            try:
                while chunk := d.read(1 << 16):
                    out += chunk
            except (EOFError, OSError):
                pass
            data = bytes(out)
    for enc in ("utf-8", "gbk"):
        try:
            text = data.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        text = data.decode("utf-8", errors="replace")
    for row in csv.reader(io.StringIO(text)):
        if row and row[0] != "customer_id":
            needles.add(dict(zip(cols, row)))


@dataclass
class Scan:
    needles: Needles
    files: int = 0
    strings: int = 0
    log_lines: int = 0
    hits: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, value, where)

    def text(self, s: str, where: str) -> None:
        self.strings += 1
        n = self.needles
        found = []
        for run in CJK_RUN.findall(s):
            for size in (2, 3, 4):
                found += [("name", run[i:i + size]) for i in range(len(run) - size + 1)
                          if run[i:i + size] in n.names_cn]
        words = [w.lower() for w in WORD.findall(s)]
        found += [("name", f"{a} {b}") for a, b in zip(words, words[1:]) if f"{a} {b}" in n.names_en]
        found += [("email", e.lower()) for e in EMAIL.findall(s) if e.lower() in n.emails]
        found += [("email", e) for e in EMAIL_LOCAL.findall(s) if e in n.email_locals]
        found += [("national_id", i.upper()) for i in NATIONAL_ID.findall(s) if i.upper() in n.national_ids]
        for m in PHONE_LIKE.findall(s):
            digits = re.sub(r"\D", "", m)
            for prefix in ("", "86", "0086"):
                if digits.startswith(prefix) and digits[len(prefix):] in n.phones:
                    found.append(("phone", digits[len(prefix):]))
        for kind, value in found:
            self.hits.append((kind, value, where))

    def values(self, values, where: str) -> None:
        for v in values:
            if isinstance(v, str):
                self.text(v, where)
            elif isinstance(v, bytes):
                self.text(v.decode("utf-8", errors="replace"), where)
            elif isinstance(v, dict):
                self.values(v.keys(), where)
                self.values(v.values(), where)
            elif isinstance(v, (list, tuple)):
                self.values(v, where)

    def parquet(self, path: Path, where: str) -> None:
        table = pq.read_table(path)
        for name in table.column_names:
            col = table.column(name)
            t = col.type
            if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) \
                    or pa.types.is_large_binary(t) or pa.types.is_dictionary(t):
                self.values(pc.unique(col).to_pylist(), f"{where}:{name}")
            elif pa.types.is_nested(t):
                self.values(col.to_pylist(), f"{where}:{name}")
        meta = pq.read_metadata(path).metadata or {}
        self.values([k.decode("utf-8", "replace") + " " + v.decode("utf-8", "replace") for k, v in meta.items()],
                    f"{where}:footer")

    def sqlite(self, path: Path, where: str) -> None:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for t in tables:
                for row in con.execute(f'SELECT * FROM "{t}"'):
                    self.values(row, f"{where}:{t}")
        finally:
            con.close()

    def file(self, path: Path, where: str) -> None:
        self.files += 1
        if path.suffix == ".parquet":
            self.parquet(path, where)
            return
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            try:
                data = gzip.decompress(data)
            except (EOFError, OSError):
                pass
        if data[:16] == b"SQLite format 3\x00":
            self.sqlite(path, where)
        # every file also as text (JSON, CSV, HTML, YAML, logs; raw bytes of anything else)
        self.text(data.decode("utf-8", errors="replace"), where)

    def tree(self, root: Path, skip: tuple[str, ...] = ()) -> None:
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and rel.split("/")[0] not in skip:
                self.file(p, rel)

    def logs(self, lines: list[str], where: str) -> None:
        for line in lines:
            self.log_lines += 1
            self.text(line, where)


# ---------------------------------------------------------------------------------------
# the bank, run through the CLI, then a consent withdrawal the next day

def _conf_dir(root: Path) -> Path:
    conf = root / "conf"
    shutil.copytree(REPO_CONF, conf, ignore=shutil.ignore_patterns("local.yaml"))
    (conf / "local.yaml").write_text(LOCAL_CONF, encoding="utf-8")
    return conf


def _cli(runner, args: list[str], env: dict) -> tuple[int, list[str]]:
    from c360.cli import app

    result = runner.invoke(app, args, env=env, catch_exceptions=False)
    out = result.output.splitlines()
    try:
        out += (result.stderr or "").splitlines()
    except ValueError:  # click < 8.2 mixes stderr into output
        pass
    return result.exit_code, out


def _ensure_champions(settings) -> dict[str, str]:
    """A small bank's first model may not beat the popularity baseline (then it stays
    challenger): point ``champion`` at the trained version so score and export run."""
    from models.registry import mlflow_session

    made = {}
    with mlflow_session(settings) as client:
        for name in ("next_best_product", "attrition_risk"):
            aliases = client.get_registered_model(name).aliases
            if "champion" not in aliases:
                client.set_registered_model_alias(name, "champion", aliases["challenger"])
                made[name] = aliases["challenger"]
    return made


def _customer_row(spark, settings, customer_id: str, consent: bool, updated_at: str) -> dict:
    """The customer's current bronze row (typed) as contract text, with a new consent."""
    row = lake.read(spark, lake.table_path(settings.lake, "bronze", "customers")) \
        .where(f"customer_id = '{customer_id}'").first().asDict()
    out = {}
    for c in SOURCES["customers"].columns:
        v = row.get(c.name)
        out[c.name] = "" if v is None else v.isoformat() if isinstance(v, date) else \
            ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out | {"marketing_consent": "true" if consent else "false", "updated_at": updated_at}


def _write_customers(landing_dir: Path, day: date, rows: list[dict]) -> Path:
    folder = landing_dir / "customers" / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"customers_{day:%Y%m%d}_consent.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, SOURCES["customers"].column_names, quoting=csv.QUOTE_ALL, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def bank(settings, spark, tmp_path_factory):
    import time

    from typer.testing import CliRunner

    from c360.synth import generate
    from jobs import export
    from jobs.pipeline import STEPS

    # libraries that configure their own loggers on import (MLflow's does not propagate)
    # are imported before the capture starts, so that it sees their loggers too
    import great_expectations  # noqa: F401
    import lightgbm  # noqa: F401
    import mlflow  # noqa: F401

    import jobs.pipeline  # noqa: F401

    root = tmp_path_factory.mktemp("privacy")
    s = settings.with_paths(landing=root / "landing", lake=root / "lake")
    # production (no C360_ENV) with a secret key, as a bank runs it
    env = {"C360_CONF_DIR": str(_conf_dir(root)), "MLFLOW_TRACKING_URI": None, "SPARK_REMOTE": None,
           "C360_LAKE": None, "C360_LANDING": None, "C360_ENV": None, "C360_PII_KEY": E2E_PII_KEY}
    paths = ["--landing", str(s.landing), "--lake", str(s.lake)]
    runner = CliRunner()
    steps = list(STEPS)  # every step, in order: up to train; the rest; daily (all but train)
    until_train, after_train = steps[:steps.index("train") + 1], steps[steps.index("train") + 1:]
    daily = ",".join(x for x in steps if x != "train")
    timings, cli_out = {}, []
    t0 = time.monotonic()
    generate(customers=CUSTOMERS, days=DAYS, as_of=D, seed=SEED, landing=s.landing, dirty_rate=DIRTY_RATE)
    timings["generate"] = time.monotonic() - t0
    with pytest.MonkeyPatch.context() as mp, capture_logs() as logs, capture_fds(root / "fd.log"):
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        t = time.monotonic()
        code, out = _cli(runner, ["run", "--as-of", D.isoformat(), *paths,
                                  "--steps", ",".join(until_train)], env)
        cli_out += out
        assert code == 0, "\n".join(out[-30:])
        forced = _ensure_champions(s)
        code, out = _cli(runner, ["run", "--as-of", D.isoformat(), *paths, "--steps", ",".join(after_train)], env)
        cli_out += out
        assert code == 0, "\n".join(out[-30:])
        timings["run D"] = time.monotonic() - t

        # D+1: a customer exported on D withdraws marketing consent
        exported_d = export.export_root(s) / D.isoformat() / "recommendations.csv"
        with open(exported_d, encoding="utf-8", newline="") as f:
            exported_ids = sorted({r["customer_id"] for r in csv.DictReader(f)})
        victim = exported_ids[0]
        _write_customers(s.landing, D1, [_customer_row(spark, s, victim, False, f"{D1.isoformat()}T09:30:00")])
        t = time.monotonic()
        code, out = _cli(runner, ["run", "--as-of", D1.isoformat(), *paths, "--steps", daily], env)
        cli_out += out
        assert code == 0, "\n".join(out[-30:])
        timings["run D+1"] = time.monotonic() - t
    fd_lines = (root / "fd.log").read_text(encoding="utf-8", errors="replace").splitlines()
    print("timings (s):", {k: round(v, 1) for k, v in timings.items()}, "champion alias set by the test:", forced,
          "log records:", len(logs.lines))
    return {"settings": s, "root": root, "logs": logs.lines, "cli": cli_out, "fd": fd_lines, "victim": victim,
            "exported_d": exported_ids, "forced_champions": forced, "timings": timings}


@pytest.fixture(scope="module")
def needles(bank) -> Needles:
    n = landing_pii(bank["settings"].landing)
    c = n.counts()
    print("landing PII values:", c)
    assert c["national_ids"] >= CUSTOMERS * 0.9 and c["emails"] >= CUSTOMERS * 0.9, c  # every customer
    assert c["phones"] > c["national_ids"]  # phone changes were delivered as new versions
    assert c["names"] > CUSTOMERS * 0.5, c  # (names can repeat)
    return n


# ---------------------------------------------------------------------------------------
# the tests

def test_no_raw_pii_outside_the_restricted_zones(bank, needles):
    lake_dir = Path(bank["settings"].lake)
    scan = Scan(needles)
    scan.tree(lake_dir, skip=RESTRICTED)
    scan.logs(bank["logs"], "log")
    scan.logs(bank["cli"], "cli")
    scan.logs(bank["fd"], "stdout/stderr")
    leaks = sorted(set(scan.hits))
    assert not leaks, f"{len(leaks)} PII values outside the restricted zones, e.g. {leaks[:20]}"

    # the scan really searched: every zone, the Delta logs, the exports, MLflow, reports, logs
    scanned = {p.relative_to(lake_dir).parts[0] for p in lake_dir.rglob("*") if p.is_file()} - set(RESTRICTED)
    assert {"silver", "gold", "ops", "marketing", "reports", "mlruns", "mlflow.db"} <= scanned
    assert list((lake_dir / "silver" / "customers" / "_delta_log").glob("*.json"))
    assert list(lake_dir.glob("marketing/exports/crm/*/recommendations.csv"))
    assert list(lake_dir.glob("marketing/exports/service/*/service_contacts.csv"))  # the CRM service queue
    assert list(lake_dir.glob("gold/service_recovery/*/*.parquet"))
    assert list(lake_dir.glob("marketing/reports/*/segments.html")) and (lake_dir / "reports/dq/index.html").is_file()
    assert scan.files > 200 and scan.strings > 10_000, (scan.files, scan.strings)
    assert scan.log_lines > 100 and len(bank["logs"]) > 100


def test_positive_control_the_scan_finds_pii_in_bronze(bank, needles):
    scan = Scan(needles)
    scan.tree(Path(bank["settings"].lake) / "bronze" / "customers")
    found = {kind: {v for k, v, _ in scan.hits if k == kind} for kind in ("name", "national_id", "phone", "email")}
    c = needles.counts()
    assert len(found["national_id"]) >= 0.9 * c["national_ids"], (len(found["national_id"]), c)
    assert len(found["email"]) >= 0.5 * c["emails"] and len(found["phone"]) >= 0.5 * c["phones"]
    assert len(found["name"]) >= 0.5 * c["names"]
    # and in logs: a line carrying a phone in another notation is caught
    phone = sorted(needles.phones)[0]
    probe = Scan(needles)
    probe.logs([f"call +86 {phone[:3]}-{phone[3:7]}-{phone[7:]} now"], "probe")
    assert probe.hits == [("phone", phone, "probe")]


def test_the_pii_key_is_in_no_file_and_no_log(bank):
    """The runs' secret key (in any spelling) is in no file of the lake, restricted zones
    included (Delta logs, MLflow, reports), and in no log line, CLI output or process output."""
    import base64

    key = E2E_PII_KEY.encode()
    needles = [key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key).rstrip(b"=")]
    files = [p for p in Path(bank["settings"].lake).rglob("*") if p.is_file()]
    assert len(files) > 200
    for p in files:
        data = p.read_bytes()
        assert not any(n in data for n in needles), f"the PII key is in {p}"
    lines = "\n".join(bank["logs"] + bank["cli"] + bank["fd"]).encode()
    assert len(lines) > 10_000 and not any(n in lines for n in needles), "the PII key is in the logs"


def _export_ids(path: Path) -> set[str]:
    with open(path, encoding="utf-8", newline="") as f:
        return {r["customer_id"] for r in csv.DictReader(f)}


def test_withdrawn_consent_leaves_the_next_export(bank, spark):
    from jobs import export

    s, victim = bank["settings"], bank["victim"]
    root = export.export_root(s)
    assert [d for d, _ in export.exports(s)] == [D, D1]
    assert victim in _export_ids(root / D.isoformat() / "recommendations.csv")
    assert victim not in _export_ids(root / D1.isoformat() / "recommendations.csv")
    assert victim not in pq.read_table(root / D1.isoformat() / "recommendations.parquet") \
        .column("customer_id").to_pylist()
    with open(root / D1.isoformat() / "changes.csv", encoding="utf-8", newline="") as f:
        changes = [r for r in csv.DictReader(f) if r["customer_id"] == victim]
    with open(root / D.isoformat() / "recommendations.csv", encoding="utf-8", newline="") as f:
        before = {r["product_code"] for r in csv.DictReader(f) if r["customer_id"] == victim}
    assert changes and {r["change"] for r in changes} == {"withdrawn"}
    assert {r["product_code"] for r in changes} == before
    manifest = json.loads((root / D1.isoformat() / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["previous_export"] == D.isoformat() and manifest["changes"]["withdrawn"] >= len(before)
    # D+1 still exports the other customers; the victim was recommended but left out
    assert _export_ids(root / D1.isoformat() / "recommendations.csv")
    recs = lake.read(spark, lake.table_path(s.lake, "gold", "recommendations")).where(f"as_of_date = DATE'{D1}'")
    assert recs.where(f"customer_id = '{victim}'").count() > 0
    # the profile knows, and the marketing zone's customer rows follow consent
    c360 = lake.read(spark, lake.table_path(s.lake, "gold", "customer_360"))
    consent = {r.as_of_date: r.marketing_consent for r in c360.where(f"customer_id = '{victim}'")
               .where(f"as_of_date IN (DATE'{D}', DATE'{D1}')").collect()}
    assert consent == {D: True, D1: False}
    mseg = lake.read(spark, lake.table_path(s.lake, "marketing", "customer_segments"))
    assert {r.as_of_date for r in mseg.where(f"customer_id = '{victim}'").collect()} == {D}


def test_marketing_zone_carries_labels_not_features(bank, spark):
    from jobs.segments import MARKETING_TABLES

    s = bank["settings"]
    mdir = Path(s.lake) / "marketing"
    assert {p.name for p in mdir.iterdir()} >= {"customer_segments", "personas", "segment_kpis",
                                                "segment_migration", "recommendation_outcomes", "exports",
                                                "reports"}
    seg = lake.read(spark, lake.table_path(s.lake, "marketing", "customer_segments"))
    # (Delta lists the partition column as_of_date last)
    assert sorted(seg.columns) == sorted(MARKETING_TABLES["customer_segments"].fieldNames()) == sorted(
        ["customer_id", "as_of_date", "value_tier", "lifecycle_stage", "persona_id", "persona_name_zh",
         "persona_name_en", "tags"])
    # only customers with marketing consent at that date; every one of them
    c360 = lake.read(spark, lake.table_path(s.lake, "gold", "customer_360")).where(f"as_of_date = DATE'{D}'")
    consenting = {r.customer_id for r in c360.where("marketing_consent").select("customer_id").collect()}
    got = {r.customer_id for r in seg.where(f"as_of_date = DATE'{D}'").select("customer_id").collect()}
    assert got == consenting and 0 < len(got) < c360.count()
    assert seg.where("persona_name_en IS NULL").count() == 0
    per = lake.read(spark, lake.table_path(s.lake, "marketing", "personas"))
    assert "centroid" not in per.columns and "persona_name_zh" in per.columns
    for name in MARKETING_TABLES:
        assert lake.read(spark, lake.table_path(s.lake, "marketing", name)).count() > 0, name

