"""Right to erasure (``c360 erase``): on a small generated bank run through ingest, silver,
profile, segments, score and export for two dates, one customer is erased with retention 0
and every byte of the lake is searched for its id and raw PII afterwards; other customers
are intact, exports are rewritten or (delivered) left alone, the audit row names nothing
of the customer. A second copy of the lake shows what the default retention keeps."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import warnings
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F
from typer.testing import CliRunner

from c360 import lake
from c360.cli import app
from c360.settings import ConfigError, load_settings
from c360.synth import generate
from jobs import erase
from jobs.export import DELIVERED_MARKER, export_root
from jobs.ingest import QUARANTINE_SCHEMA
from jobs.pipeline import run_steps

pytestmark = pytest.mark.slow

D1, D2 = date(2026, 6, 20), date(2026, 6, 30)
PII = ("full_name", "national_id", "phone", "email")
REPO_CONF = Path(__file__).resolve().parent.parent / "conf"


# ---------------------------------------------------------------------------------------
# the bank, the customer, the scan

def landing_customers(landing: Path) -> list[dict]:
    rows = []
    for f in sorted((landing / "customers").glob("*/*.csv")):
        with open(f, encoding="utf-8", newline="") as fh:
            rows.extend(csv.DictReader(fh))
    return rows


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def devices_of(spark, root: Path, cid: str) -> list[str]:
    """Devices the customer used and no other customer did."""
    mine, others = set(), set()
    for name in ("bronze/events", "silver/events"):
        for r in lake.read(spark, str(root / name)).where("device_id IS NOT NULL AND customer_id IS NOT NULL") \
                .select("customer_id", "device_id").distinct().collect():
            (mine if r.customer_id == cid else others).add(r.device_id)
    return sorted(mine - others)


def customer_counts(spark, root: Path, cid: str, devices: list[str] = ()) -> dict[str, tuple[int, int]]:
    """``table -> (rows, rows of cid)`` for every table with a customer_id column; the
    customer's rows include anonymous rows (no customer_id) of ``devices``."""
    out = {}
    for name in lake.tables(root):
        df = lake.read(spark, str(root / name))
        if "customer_id" in df.columns:
            mine = F.col("customer_id") == cid
            if "device_id" in df.columns and devices:
                mine = mine | (F.col("customer_id").isNull() & F.col("device_id").isin(list(devices)))
            r = df.agg(F.count(F.lit(1)).alias("n"), F.count_if(mine).alias("c")).first()
            out[name] = (r["n"], r["c"])
    return out


def scan(root: Path, needles: list[str]) -> dict[str, list[str]]:
    """``file -> needles found`` over every file under ``root``: raw bytes (JSON, CSV,
    HTML, the Delta log, Parquet footers with their statistics, SQLite) and, for Parquet
    files (data files and checkpoints), every decoded value."""
    hits = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        found = {n for n in needles if n.encode("utf-8") in data}
        if data[:4] == b"PAR1":
            text = json.dumps(pq.read_table(p).to_pylist(), default=str, ensure_ascii=False)
            found |= {n for n in needles if n in text}
        if found:
            hits[p.relative_to(root).as_posix()] = sorted(found)
    return hits


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(args: list[str]):
    return CliRunner().invoke(app, args, env={"C360_LAKE": None, "C360_LANDING": None, "SPARK_REMOTE": None,
                                              "COLUMNS": "200"})


@pytest.fixture(scope="module")
def bank(settings, spark, tmp_path_factory):
    from test_scoring import register_champion, train_tiny

    root = tmp_path_factory.mktemp("erase")
    s = settings.with_paths(landing=root / "landing", lake=root / "lake")
    generate(customers=60, days=20, as_of=D2, seed=17, landing=s.landing, dirty_rate=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the development PII key
        for d in (D1, D2):
            run_steps(spark, s, d, ["ingest", "silver", "profile", "segments"])
        booster, spec = train_tiny("nbp")
        register_champion(s, "next_best_product", booster, spec)
        for d in (D1, D2):
            run_steps(spark, s, d, ["score", "export"])
    # the CRM imported the first drop: it is the recipient's copy from now on
    (export_root(s) / D1.isoformat() / DELIVERED_MARKER).write_text("imported 2026-06-21\n", encoding="utf-8")
    return s


@pytest.fixture(scope="module")
def victim(bank, spark):
    """A customer in bronze, silver, gold and both exports, with a name no one else's
    name contains; its id, raw PII (every delivered version) and PII tokens."""
    root = Path(bank.lake)
    people = landing_customers(Path(bank.landing))
    names = {r["customer_id"]: r["full_name"] for r in people}
    exported = [{r["customer_id"] for r in read_csv(export_root(bank) / d.isoformat() / "recommendations.csv")}
                for d in (D1, D2)]
    gold = {r.customer_id for r in lake.read(spark, str(root / "gold/customer_360")).select("customer_id").collect()}
    activity = lake.read(spark, str(root / "silver/events")).groupBy("customer_id").count()
    busy = {r["customer_id"]: r["count"] for r in activity.collect()}
    candidates = [c for c in sorted(exported[0] & exported[1] & gold)
                  if not any(names[c] in n for o, n in names.items() if o != c)]
    cid = max(candidates, key=lambda c: (busy.get(c, 0), c))
    values = sorted({r[k] for r in people if r["customer_id"] == cid for k in PII if r[k]})
    pii = lake.read(spark, str(root / "restricted/customer_pii")).where(F.col("customer_id") == cid).first()
    tokens = sorted({pii[c] for c in pii.asDict() if c.endswith("_token") and pii[c]})
    return {"id": cid, "pii": values, "tokens": tokens, "events": busy.get(cid, 0),
            "devices": devices_of(spark, root, cid)}


@pytest.fixture(scope="module")
def before(bank, spark, victim, tmp_path_factory):
    """The state before the erasure, and an untouched copy of the lake for the
    default-retention test."""
    root = Path(bank.lake)
    copy = tmp_path_factory.mktemp("erase_default") / "lake"
    shutil.copytree(root, copy)
    ex = export_root(bank)
    return {
        "counts": customer_counts(spark, root, victim["id"], victim["devices"]),
        "versions": {n: lake.version(str(root / n)) for n in lake.tables(root)},
        "exports": {d: read_csv(ex / d.isoformat() / "recommendations.csv") for d in (D1, D2)},
        "delivered": {p.name: sha(p) for p in (ex / D1.isoformat()).iterdir()},
        "copy": copy,
    }


@pytest.fixture(scope="module")
def erased(bank, victim, before):
    r = run_cli(["erase", "--customer-id", victim["id"], "--lake", str(bank.lake), "--retention-hours", "0"])
    assert r.exit_code == 0, r.output
    request_id = re.search(r"erasure request id: ([0-9a-f-]{36})", r.output).group(1)
    return {"output": r.output, "request_id": request_id}


# ---------------------------------------------------------------------------------------
# retention 0: nothing left

def test_bank_has_the_customer_everywhere_before(bank, spark, victim, before):
    c = before["counts"]
    for t in ("bronze/customers", "bronze/customers_versions", "restricted/customer_pii", "silver/customers",
              "gold/customer_360", "gold/customer_segments", "gold/recommendations"):
        assert c[t][1] > 0, t
    assert c["gold/customer_360"][1] == 2  # both as_of dates
    assert victim["events"] > 0 and c["silver/events"][1] >= victim["events"]
    # anonymous events of a device only this customer used are the customer's too
    own = lake.read(spark, str(Path(bank.lake) / "bronze/events")).where(F.col("customer_id") == victim["id"])
    assert victim["devices"] and c["bronze/events"][1] > own.count()
    assert len(victim["pii"]) >= 4 and len(victim["tokens"]) >= 4


def test_no_byte_of_the_customer_is_left_in_the_lake(bank, victim, erased):
    needles = [victim["id"], *victim["pii"], *victim["tokens"]]
    hits = scan(Path(bank.lake), needles)
    delivered = export_root(bank).relative_to(bank.lake).as_posix() + f"/{D1.isoformat()}/"
    # only the delivered export (the recipient's copy, no PII columns) still names the customer
    assert hits and all(f.startswith(delivered) for f in hits), hits
    assert all(found == [victim["id"]] for found in hits.values()), hits


def test_tables_readable_and_other_customers_intact(bank, spark, victim, before, erased):
    root = Path(bank.lake)
    after = customer_counts(spark, root, victim["id"], victim["devices"])
    assert set(after) == set(before["counts"])
    for t, (n, mine) in before["counts"].items():
        assert after[t] == (n - mine, 0), t
    for name in lake.tables(root):  # every table, with or without customer rows, still reads
        lake.read(spark, str(root / name)).limit(1).collect()
    out = erased["output"]
    assert all(t in out for t, (_, mine) in before["counts"].items() if mine)  # the summary table


def test_time_travel_no_longer_yields_the_customer(bank, spark, victim, before, erased):
    root = Path(bank.lake)
    checked = 0
    for t, (_, mine) in before["counts"].items():
        if not mine:
            continue
        for v in range(before["versions"][t] + 1):
            try:
                rows = lake.read(spark, str(root / t), version=v).where(F.col("customer_id") == victim["id"]).count()
            except Exception as exc:  # noqa: BLE001 - the version's log is gone
                assert "version" in str(exc).lower() or "commit" in str(exc).lower(), exc
                checked += 1
                continue
            assert rows == 0, (t, v)
    assert checked > 0
    # the log starts at a checkpoint: no commit from before the erasure is left
    log = root / "bronze/customers_versions/_delta_log"
    assert (log / "_last_checkpoint").exists()
    assert not (log / "00000000000000000000.json").exists()


def test_undelivered_export_rewritten_with_a_correct_manifest(bank, victim, before, erased):
    folder = export_root(bank) / D2.isoformat()
    rows = read_csv(folder / "recommendations.csv")
    expected = [r for r in before["exports"][D2] if r["customer_id"] != victim["id"]]
    assert rows == expected and len(rows) < len(before["exports"][D2])
    table = pq.read_table(folder / "recommendations.parquet")
    assert table.num_rows == len(rows) and victim["id"] not in table.column("customer_id").to_pylist()
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["row_count"] == len(rows)
    assert manifest["erasure_requests"] == [erased["request_id"]]
    for name, meta in manifest["files"].items():
        assert meta["sha256"] == sha(folder / name) and meta["bytes"] == (folder / name).stat().st_size, name
    assert manifest["files"]["recommendations.csv"]["rows"] == len(rows)
    changes = read_csv(folder / "changes.csv")
    assert manifest["files"]["changes.csv"]["rows"] == len(changes)
    assert manifest["changes"] == {k: sum(r["change"] == k for r in changes) for k in manifest["changes"]}
    assert not any(victim["id"] in r.values() for r in changes)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_delivered_export_left_alone_and_listed(bank, victim, before, erased):
    folder = export_root(bank) / D1.isoformat()
    assert {p.name: sha(p) for p in folder.iterdir()} == before["delivered"]
    out = " ".join(erased["output"].split())
    assert "delivered" in out and "recipient must erase" in out
    assert D1.isoformat() in out


def test_audit_row_names_nothing_of_the_customer(bank, spark, victim, before, erased):
    audit = lake.read(spark, str(Path(bank.lake) / "ops/audit_log")).where(F.col("run_id") == erased["request_id"])
    rows = audit.collect()
    assert len(rows) == 1
    row = rows[0]
    assert (row["job"], row["status"], row["as_of"], row["error"]) == ("erase", "succeeded", None, None)
    expected = {t: mine for t, (_, mine) in before["counts"].items() if mine}
    assert {t: n for t, n in row["row_counts"].items() if t in expected} == expected
    assert set(row["output_versions"]) >= set(expected)
    details = json.loads(row["details"])
    assert details["customer_found"] is True and details["retention_hours"] == 0
    assert details["rows_removed"] == sum(expected.values())
    assert list(details["delivered_exports_for_recipient"]) == [
        export_root(bank).relative_to(bank.lake).as_posix() + f"/{D1.isoformat()}"]
    text = json.dumps(row.asDict(recursive=True), default=str, ensure_ascii=False)
    for needle in [victim["id"], *victim["pii"], *victim["tokens"]]:
        assert needle not in text


# ---------------------------------------------------------------------------------------
# the default retention: the current version is clean at once, old files stay until later

def test_default_retention_keeps_old_files_until_a_later_run(spark, settings, victim, before):
    s = settings.with_paths(lake=before["copy"])
    root = Path(before["copy"])
    assert s.privacy.erasure_retention_hours == 168
    res = erase.run(spark, s, victim["id"])
    assert res.customer_found and res.pending_until and res.retention_hours == 168
    after = customer_counts(spark, root, victim["id"], victim["devices"])
    assert all(mine == 0 for _, mine in after.values())  # the current versions: gone at once
    # ...but the files the MERGEs replaced are still on disk, and still readable by time travel
    t = "silver/customers"
    old = lake.read(spark, str(root / t), version=before["versions"][t])
    assert old.where(F.col("customer_id") == victim["id"]).count() > 0
    hits = scan(root, [victim["id"], *victim["pii"]])
    assert any(f.startswith("restricted/customer_pii/part-") for f in hits)
    assert any(f.startswith("bronze/customers_versions/part-") for f in hits)
    # a later run once the retention has passed finishes the job (here: asked for with 0);
    # the customer is no longer found, which is not an error and is audited too
    r = run_cli(["erase", "--customer-id", victim["id"], "--lake", str(root), "--retention-hours", "0"])
    assert r.exit_code == 0, r.output
    assert "was found in no table" in " ".join(r.output.split())
    second = re.search(r"erasure request id: ([0-9a-f-]{36})", r.output).group(1)
    hits = scan(root, [victim["id"], *victim["pii"], *victim["tokens"]])
    assert all("/exports/crm/" + D1.isoformat() + "/" in f for f in hits), hits
    audit = lake.read(spark, str(root / "ops/audit_log")).where(F.col("job") == "erase").collect()
    by_id = {r["run_id"]: json.loads(r["details"]) for r in audit}
    assert by_id[res.request_id]["customer_found"] is True and by_id[res.request_id]["pending_until"]
    assert by_id[second]["customer_found"] is False and by_id[second]["files_vacuumed"] > 0


# ---------------------------------------------------------------------------------------
# quarantine lines, devices and free text, on a hand-made lake

def test_quarantine_raw_lines_devices_and_free_text(spark, lake_settings):
    root = Path(lake_settings.lake)
    cid = "C0012"
    lake.overwrite(spark.createDataFrame(
        [(cid, "张三", "110101199001011234", "13800138000", "zs@example.cn"),
         ("C00123", "李四", "110101199202021234", "13900139000", "ls@example.cn")],
        "customer_id string, full_name string, national_id string, phone string, email string"),
        str(root / "bronze/customers_versions"))
    lake.overwrite(spark.createDataFrame(
        [("E1", cid, "D1"), ("E2", None, "D1"), ("E3", None, "D2"), ("E4", "C00123", "D2"), ("E5", cid, "D2"),
         ("E6", None, "D3")],
        "event_id string, customer_id string, device_id string"), str(root / "bronze/events"))
    raw = [
        (f'{cid},"Zhang, San",110101199001011234', "customers"),          # CSV line with the id
        ('{"customer_id": "C0012", "amount": "-5"}', "transactions"),     # JSON line
        (',"张三",110101199001011234,13800138000', "customers"),           # no id, but its national id
        ('C00123,"Li Si",110101199202021234', "customers"),                # another customer: C0012 is a prefix
        ('{"customer_id": "C00123", "note": "C0012x"}', "transactions"),  # no whole-value match
        (None, "customers"),                                               # a whole unreadable file
    ]
    q = [(src, "bad row", f"/landing/{src}/f.csv", "sha", i + 2, line, date(2026, 6, 1), "b1", None)
         for i, (line, src) in enumerate(raw)]
    lake.overwrite(spark.createDataFrame(q, QUARANTINE_SCHEMA), str(root / "quarantine/customers"))
    lake.overwrite(spark.createDataFrame(
        [("silver/transactions", '{"unexpected_rows": ["C0012", "C00123"]}'), ("silver/events", "ok")],
        "suite string, details string"), str(root / "ops/dq_results"))

    res = erase.run(spark, lake_settings, cid, retention_hours=0)
    got = {t.table: (t.rows, t.action) for t in res.tables}
    assert got == {"bronze/customers_versions": (1, "deleted"), "bronze/events": (3, "deleted"),
                   "quarantine/customers": (3, "deleted"), "ops/dq_results": (1, "redacted")}
    events = {r.event_id for r in lake.read(spark, str(root / "bronze/events")).collect()}
    assert events == {"E3", "E4", "E6"}  # D1 was only C0012's; D2 is shared with C00123
    lines = sorted(r.line for r in lake.read(spark, str(root / "quarantine/customers")).collect())
    assert lines == [5, 6, 7]
    dq = {r.suite: r.details for r in lake.read(spark, str(root / "ops/dq_results")).collect()}
    assert dq == {"silver/transactions": '{"unexpected_rows": ["[erased]", "C00123"]}', "silver/events": "ok"}
    assert not res.exports and not res.delivered and res.pending_until is None
    assert not scan(root, ["110101199001011234", "13800138000", "zs@example.cn", "张三"])
    for name in lake.tables(root):  # "C0012" is still a prefix of C00123's values, never a value
        values = {v for r in lake.read(spark, str(root / name)).collect() for v in r if isinstance(v, str)}
        assert cid not in values and "D1" not in values, name


def test_invalid_requests_fail_with_one_line(tmp_path):
    (tmp_path / "lake").mkdir()
    for args, message in (
            (["--customer-id", "C1' OR '1'='1"], "--customer-id must be"),
            (["--customer-id", "C1", "--retention-hours", "-1"], "--retention-hours must be"),
            (["--customer-id", "C1", "--lake", str(tmp_path / "nowhere")], "does not exist")):
        lake_args = [] if "--lake" in args else ["--lake", str(tmp_path / "lake")]
        r = run_cli(["erase", *args, *lake_args])
        assert r.exit_code == 2, r.output
        assert r.output.startswith("error:") and message in " ".join(r.output.split())


def test_retention_setting_is_validated(tmp_path):
    for name in ("base.yaml",):
        shutil.copy(REPO_CONF / name, tmp_path / name)
    (tmp_path / "local.yaml").write_text("privacy: {erasure_retention_hours: -3}\n")
    with pytest.raises(ConfigError, match=r"privacy\.erasure_retention_hours"):
        load_settings(tmp_path, environ={})
    (tmp_path / "local.yaml").write_text("privacy: {erasure_retention_hours: 0}\n")
    assert load_settings(tmp_path, environ={}).privacy.erasure_retention_hours == 0
