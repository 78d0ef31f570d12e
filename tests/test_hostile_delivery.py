"""Hostile deliveries at the level of whole files and folders of the landing zone.

Deliveries: nothing lost, nothing blocked, nothing silent. Hypothesis generates landing
zones mixing valid deliveries with every class of hostile entry, all real files, folders,
links and FIFOs on disk:

- a file at a wrong path (a folder that is not a YYYY-MM-DD date, an unsupported
  extension): rejected with its reason, and its checksum never blocks the same bytes
  delivered again at a valid path (only content defects may block content);
- a file that cannot be read (permission denied, vanished between discovery and reading):
  left for the next run, which loads it once it is readable; every other file and source
  loads;
- a link that resolves outside the landing zone (to a file, a folder, a FIFO): never
  followed, listed with its target; a link that stays inside the zone is followed;
- unexpected entries (nested folders, loose files, wrong-case source folders, hidden
  entries, FIFOs, dangling links, a folder named like a file): listed with a reason in the
  run's results and ``ops/landing_issues`` (once per entry), never silently skipped.

The tests run as root, whom ``chmod 000`` does not stop: an unreadable file is made
unreadable for real by reading it in a forked child that dropped its privileges, or by
deleting it between discovery and reading (the ingest's progress callback).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from c360 import lake, landing
from c360.contract import SOURCES
from helpers import hypothesis_settings, write_landing
from jobs import ingest

PURE, WITH_ENGINE = hypothesis_settings(60, 8)

DAY = "2026-06-01"
TXN = SOURCES["transactions"]
TXN_HEADER = ",".join(TXN.column_names)
SOURCE_NAMES = sorted(SOURCES)
BAD_DATES = ["2026-13-01", "2026-02-30", "20260601", "2026-6-1", "latest", "backup"]
BAD_EXTENSIONS = [".json", ".txt", ".csv.bak", ".xlsx", ".csv.zip", ""]


def _txn(txn_id: str) -> str:
    return f"{txn_id},A1,C1,2026-06-01T10:00:00,10.00,debit,CNY,pos,groceries,,"


def _txn_file(*ids: str) -> bytes:
    return (TXN_HEADER + "\n" + "\n".join(_txn(i) for i in ids) + "\n").encode()


def _header_only(source: str, tag: int) -> bytes:
    # a valid delivery of any source; the trailing extra column makes every file's bytes unique
    return (",".join(SOURCES[source].column_names) + f",tag_{tag}\n").encode()


def table(spark, s, layer, name):
    return lake.read(spark, lake.table_path(s.lake, layer, name))


# ---------------------------------------------------------------------------------------
# Generated landing zones (no engine): every entry is either a file to ingest or listed

KINDS = ["valid", "bad_date", "bad_ext", "link_out_file", "link_out_fifo", "link_out_day", "nested_dir",
         "loose_source_file", "loose_root_file", "root_folder", "wrong_case", "hidden_file", "hidden_dir",
         "hidden_root", "fifo", "dangling", "dir_named_file", "link_in_file", "link_in_day"]


@st.composite
def hostile_landings(draw):
    """A list of (kind, source, variant) entries, plus the sources linked out as a whole."""
    linked_sources = draw(st.sets(st.sampled_from(SOURCE_NAMES), max_size=2))
    others = [s for s in SOURCE_NAMES if s not in linked_sources]
    entries = draw(st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(others),
                                      st.integers(0, len(BAD_DATES) * len(BAD_EXTENSIONS))),
                            min_size=1, max_size=14))
    return sorted(linked_sources), entries


def build(root: Path, outside: Path, linked_sources: list[str], entries: list[tuple[str, str, int]]):
    """Make the landing zone on disk; return what a scan must find: the paths of files to
    ingest (with their path problem or None) and the listed entries (path -> kind)."""
    land = root
    land.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | None] = {}
    listed: dict[str, str] = {}

    def put(path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    for src in linked_sources:
        target = outside / f"src_{src}"
        put(target / DAY / "t.csv", _header_only(src, 0))
        (land / src).symlink_to(target, target_is_directory=True)
        listed[str(land / src)] = "outside"
    for i, (kind, src, v) in enumerate(entries):
        day_dir = land / src / DAY
        name = f"f{i}.csv"
        data = _header_only(src, i + 1)
        if kind == "valid":
            files[str(put(day_dir / name, data))] = None
        elif kind == "bad_date":
            p = put(land / src / BAD_DATES[v % len(BAD_DATES)] / name, data)
            files[str(p)] = landing.BAD_DATE_FOLDER
        elif kind == "bad_ext":
            p = put(day_dir / f"f{i}{BAD_EXTENSIONS[v % len(BAD_EXTENSIONS)]}", data)
            files[str(p)] = landing.BAD_FILE_TYPE
        elif kind == "link_out_file":
            day_dir.mkdir(parents=True, exist_ok=True)
            (day_dir / name).symlink_to(put(outside / f"x{i}.csv", data))
            listed[str(day_dir / name)] = "outside"
        elif kind == "link_out_fifo":  # opening it would block the scan for ever
            day_dir.mkdir(parents=True, exist_ok=True)
            os.mkfifo(outside / f"fifo{i}")
            (day_dir / name).symlink_to(outside / f"fifo{i}")
            listed[str(day_dir / name)] = "outside"
        elif kind == "link_out_day":
            target = outside / f"day{i}"
            put(target / name, data)
            link = land / src / f"2026-05-{1 + v % 28:02d}"
            if link.exists() or link.is_symlink():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target, target_is_directory=True)
            listed[str(link)] = "outside"
        elif kind == "nested_dir":
            put(day_dir / f"sub{i}" / name, data)
            listed[str(day_dir / f"sub{i}")] = "unexpected"
        elif kind == "loose_source_file":
            listed[str(put(land / src / name, data))] = "unexpected"
        elif kind == "loose_root_file":
            listed[str(put(land / name, data))] = "unexpected"
        elif kind == "root_folder":
            put(land / f"misc{i}" / DAY / name, data)
            listed[str(land / f"misc{i}")] = "unexpected"
        elif kind == "wrong_case":
            folder = land / (src.upper() if v % 2 else src.title())
            put(folder / DAY / name, data)
            listed[str(folder)] = "unexpected"
        elif kind == "hidden_file":
            listed[str(put(day_dir / f".{name}", data))] = "unexpected"
        elif kind == "hidden_dir":
            put(land / src / f".{DAY}.{i}" / name, data)
            listed[str(land / src / f".{DAY}.{i}")] = "unexpected"
        elif kind == "hidden_root":
            put(land / f".{src}.{i}" / DAY / name, data)
            listed[str(land / f".{src}.{i}")] = "unexpected"
        elif kind == "fifo":
            day_dir.mkdir(parents=True, exist_ok=True)
            os.mkfifo(day_dir / name)
            listed[str(day_dir / name)] = "unexpected"
        elif kind == "dangling":  # a link inside the zone to nothing (yet)
            day_dir.mkdir(parents=True, exist_ok=True)
            (day_dir / name).symlink_to(land / src / DAY / f"missing{i}.csv")
            listed[str(day_dir / name)] = "unexpected"
        elif kind == "dir_named_file":
            put(day_dir / name / "inner.csv", data)
            listed[str(day_dir / name)] = "unexpected"
        elif kind == "link_in_file":  # a link that stays inside the zone is followed
            target = put(day_dir / f"target{i}.csv", data)
            (day_dir / name).symlink_to(target)
            files[str(target)] = None
            files[str(day_dir / name)] = None
        elif kind == "link_in_day":  # a dated folder linked to another one of the zone
            target = put(land / src / f"2026-04-{i + 1:02d}" / name, data).parent
            link = land / src / f"2026-03-{i + 1:02d}"
            link.symlink_to(target, target_is_directory=True)
            files[str(target / name)] = None
            files[str(link / name)] = None
    return files, listed


def _covered(path: str, listed: set[str]) -> bool:
    p = Path(path)
    return any(str(q) in listed for q in [p, *p.parents])


@pytest.mark.timeout(120)
@PURE
@given(hostile_landings())
def test_every_entry_of_a_generated_landing_zone_is_read_rejected_or_listed(case):
    linked_sources, entries = case
    with tempfile.TemporaryDirectory() as tmp:
        root, outside = Path(tmp) / "landing", Path(tmp) / "outside"
        want_files, want_listed = build(root, outside, linked_sources, entries)
        scan = landing.scan(root)

        got_files = {f.path: f for f in scan.files}
        got_listed = {e.path: e for e in scan.unexpected}
        # exactly the expected files, with the expected path problem (fault "path"), or none
        assert set(got_files) == set(want_files)
        for path, problem in want_files.items():
            f = got_files[path]
            assert f.problem == problem, (path, f.problem)
            assert f.fault == ("path" if problem else None)
            assert len(f.sha256) == 64  # a path rejection records the checksum too
        # exactly the expected entries listed, each with its kind and a reason
        assert {p: e.kind for p, e in got_listed.items()} == want_listed
        for e in scan.unexpected:
            assert e.reason and e.reason.endswith(("not read", "not followed")), e.reason
            if e.kind == "outside":
                assert "outside the landing zone" in e.reason and str(outside.resolve()) in e.reason
            assert e.source is None or e.source in SOURCES
        # nothing silent: every entry on disk is a file found or lies under a listed entry
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                assert p in got_files or _covered(p, set(got_listed)) or os.path.isdir(p), p
        # nothing outside the zone is ever read: no file found resolves outside it
        for f in scan.files:
            assert os.path.realpath(f.path).startswith(str(root.resolve()) + os.sep)


def test_wrong_case_source_folders_are_attributed_to_their_source(tmp_path):
    write_landing(tmp_path, "Transactions", DAY, "t.csv", _txn_file("T1"))
    write_landing(tmp_path, "transactions", DAY, "t.csv", _txn_file("T1"))
    scan = landing.scan(tmp_path)
    assert [f.path for f in scan.files] == [str(tmp_path / "transactions" / DAY / "t.csv")]
    [e] = scan.unexpected
    assert (e.path, e.source, e.kind) == (str(tmp_path / "Transactions"), "transactions", "unexpected")
    assert e.reason == "folder name differs from source 'transactions' in case only: not read"


def test_a_landing_root_that_is_itself_a_link_is_read(tmp_path):
    """The root is resolved first: only links from inside it to outside it are refused."""
    real = tmp_path / "mnt" / "landing"
    f = write_landing(real, "transactions", DAY, "t.csv", _txn_file("T1"))
    (tmp_path / "landing").symlink_to(real, target_is_directory=True)
    scan = landing.scan(tmp_path / "landing")
    assert [x.path for x in scan.files] == [str(tmp_path / "landing" / f.relative_to(real))]
    assert scan.files[0].problem is None and scan.unexpected == []


# ---------------------------------------------------------------------------------------
# Unreadable files, for real: read by a forked child without root's privileges

NOBODY = 65534


def _scan_as_nobody(root: Path) -> dict:
    """``landing.scan(root)`` in a forked child running as ``nobody``: what it found, or the
    exception it raised (a permission really denied; no mock)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, scan, report as JSON, exit without cleanup
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                s = landing.scan(root)
                plan = ingest._plan(s.files, set(), None)
                out = {"files": {f.path: [f.problem, f.fault] for f in s.files},
                       "listed": {e.path: [e.kind, e.reason] for e in s.unexpected},
                       "plan": {k: sorted(f.path for f in getattr(plan, k))
                                for k in ("to_read", "quarantine", "rejected", "deferred")}}
            except BaseException as exc:  # noqa: BLE001 (reported to the parent)
                out = {"raised": f"{type(exc).__name__}: {exc}"}
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 1 << 16):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b'{"raised": "child died"}')


@pytest.fixture
def shared_tmp():
    """A folder ``nobody`` may enter (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="c360-hostile-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
@pytest.mark.timeout(120)
@hsettings(max_examples=15, deadline=None, database=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(locked=st.lists(st.booleans(), min_size=2, max_size=6).filter(lambda b: not all(b)),
       locked_dir=st.booleans())
def test_unreadable_files_are_left_for_the_next_run_and_do_not_stop_discovery(shared_tmp, locked, locked_dir):
    root = Path(tempfile.mkdtemp(dir=shared_tmp))
    root.chmod(0o755)
    try:
        paths = []
        for i, lock in enumerate(locked):
            src = SOURCE_NAMES[i % len(SOURCE_NAMES)]
            p = write_landing(root, src, DAY, f"f{i}.csv", _header_only(src, i))
            for d in (p.parent.parent, p.parent):
                d.chmod(0o755)
            p.chmod(0o000 if lock else 0o644)
            paths.append(p)
        closed = None
        if locked_dir:  # a delivery folder nobody may list
            closed = write_landing(root, "events", "2026-06-02", "e.jsonl", b'{"event_id": "E1"}\n').parent
            closed.parent.chmod(0o755)
            closed.chmod(0o000)
        got = _scan_as_nobody(root)
        assert "raised" not in got, got.get("raised")
        for p, lock in zip(paths, locked):
            problem, fault = got["files"][str(p)]
            if lock:
                assert fault == "io" and problem.startswith("could not be read (PermissionError"), problem
                assert problem.endswith("left for the next run")
            else:
                assert (problem, fault) == (None, None)
        if closed is not None:
            kind, reason = got["listed"][str(closed)]
            assert kind == "unreadable" and reason.startswith("folder could not be listed (PermissionError")
        # planned: unreadable files are neither read, nor quarantined, nor recorded
        plan = got["plan"]
        assert plan["deferred"] == sorted(str(p) for p, lk in zip(paths, locked) if lk)
        assert plan["to_read"] == sorted(str(p) for p, lk in zip(paths, locked) if not lk)
        assert plan["quarantine"] == plan["rejected"] == []
    finally:
        for d in root.rglob("*"):
            if not d.is_symlink():
                d.chmod(0o755)


# ---------------------------------------------------------------------------------------
# The ingest job, on real Delta tables

@pytest.mark.parametrize("folder, name", [
    ("2026-13-01", "t.csv"),   # an impossible date
    ("latest", "t.csv"),       # not a date
    (DAY, "t.json"),           # .json instead of .jsonl
    (DAY, "t.csv.txt"),        # an unsupported extension
])
def test_a_path_rejection_never_blocks_the_same_bytes_at_a_valid_path(spark, lake_settings, folder, name):
    s = lake_settings
    data = _txn_file("T1", "T2")
    if name.endswith(".json"):
        data = "".join(json.dumps(dict(zip(TXN.column_names, _txn(t).split(",")))) + "\n"
                       for t in ("T1", "T2")).encode()
    bad = write_landing(s.landing, "transactions", folder, name, data)

    first = ingest.run(spark, s)["transactions"]
    assert (first.files_quarantined, first.rows_loaded) == (1, 0)
    [q] = table(spark, s, "quarantine", "transactions").collect()
    assert q.source_file == str(bad) and q.file_sha256 == landing.sha256_of(bad)
    assert q.reason in (landing.BAD_DATE_FOLDER, landing.BAD_FILE_TYPE)
    [rec] = table(spark, s, "ops", "ingested_files").collect()
    assert (rec.file_path, rec.status, rec.reason) == (str(bad), "rejected", q.reason)

    # a re-run neither quarantines nor records the same bad path again
    again = ingest.run(spark, s)["transactions"]
    assert (again.files_quarantined, again.files_new, again.files_skipped) == (0, 0, 1)
    assert table(spark, s, "quarantine", "transactions").count() == 1
    assert table(spark, s, "ops", "ingested_files").count() == 1

    # the corrected re-delivery: the same bytes at a valid path load
    good = write_landing(s.landing, "transactions", DAY, "t.jsonl" if name.endswith(".json") else "t.csv", data)
    fixed = ingest.run(spark, s)["transactions"]
    assert (fixed.files_new, fixed.rows_loaded, fixed.files_skipped) == (1, 2, 1)
    assert sorted(r.txn_id for r in table(spark, s, "bronze", "transactions").collect()) == ["T1", "T2"]
    status = {r.file_path: r.status for r in table(spark, s, "ops", "ingested_files").collect()}
    assert status == {str(bad): "rejected", str(good): "loaded"}


def test_a_misnamed_copy_in_the_same_delivery_does_not_shadow_the_valid_file(spark, lake_settings):
    """``t.json`` sorts before ``t.jsonl``: the rejected copy must not make the valid one a duplicate."""
    s = lake_settings
    data = "".join(json.dumps(dict(zip(TXN.column_names, _txn(t).split(",")))) + "\n" for t in ("T1", "T2"))
    write_landing(s.landing, "transactions", DAY, "t.json", data)
    write_landing(s.landing, "transactions", DAY, "t.jsonl", data)
    res = ingest.run(spark, s)["transactions"]
    assert (res.files_new, res.files_duplicate, res.files_quarantined, res.rows_loaded) == (1, 0, 1, 2)


def test_a_legacy_path_quarantine_no_longer_blocks_its_bytes(spark, lake_settings):
    """Lakes recorded before path rejections had their own status: a bad-path file's row
    says "quarantined"; its checksum must not block the corrected delivery either."""
    s = lake_settings
    data = _txn_file("T1")
    bad = write_landing(s.landing, "transactions", "latest", "t.csv", data)
    ingest.run(spark, s)
    path = lake.table_path(s.lake, "ops", "ingested_files")
    from c360 import ops

    names = ops.INGESTED_FILES_SCHEMA.fieldNames()
    rows = [tuple((r.asDict() | {"status": "quarantined"})[n] for n in names)
            for r in table(spark, s, "ops", "ingested_files").collect()]
    assert [r[names.index("file_path")] for r in rows] == [str(bad)]
    lake.overwrite(spark.createDataFrame(rows, ops.INGESTED_FILES_SCHEMA), path)
    write_landing(s.landing, "transactions", DAY, "t.csv", data)
    res = ingest.run(spark, s)["transactions"]
    assert (res.files_new, res.rows_loaded, res.files_quarantined) == (1, 1, 0)


def test_a_file_vanishing_mid_run_is_left_for_the_next_run_and_the_rest_loads(spark, lake_settings):
    s = lake_settings
    keep = write_landing(s.landing, "transactions", DAY, "a.csv", _txn_file("T1"))
    gone_bytes = _txn_file("T2", "T3")
    gone = write_landing(s.landing, "transactions", DAY, "b.csv", gone_bytes)
    write_landing(s.landing, "feedback", DAY, "f.csv", ",".join(SOURCES["feedback"].column_names)
                  + "\nR1,C1,nps,9,很好,app,app,2026-06-01T10:00:00,\n")

    def vanish(label, i, n):  # after discovery, before the engine reads the transactions
        if label.startswith("ingest transactions") and gone.exists():
            gone.unlink()

    res = ingest.run(spark, s, progress=vanish)
    txn = res["transactions"]
    assert (txn.files_new, txn.files_deferred, txn.files_quarantined, txn.rows_loaded) == (1, 1, 0, 1)
    assert res["feedback"].rows_loaded == 1 and txn.error is None
    [issue] = [i for i in txn.issues if i["path"] == str(gone)]
    assert issue["kind"] == "unreadable" and issue["reason"].endswith("left for the next run")
    # not quarantined, not recorded: nothing blocks it
    assert not lake.exists(lake.table_path(s.lake, "quarantine", "transactions")) or \
        table(spark, s, "quarantine", "transactions").count() == 0
    assert {r.file_path for r in table(spark, s, "ops", "ingested_files").collect()} >= {str(keep)}
    assert str(gone) not in {r.file_path for r in table(spark, s, "ops", "ingested_files").collect()}
    issues = {r.path: r for r in table(spark, s, "ops", "landing_issues").collect()}
    assert issues[str(gone)].kind == "unreadable"

    # back, with the same bytes: the next run loads it
    gone.write_bytes(gone_bytes)
    nxt = ingest.run(spark, s)["transactions"]
    assert (nxt.files_new, nxt.files_deferred, nxt.rows_loaded) == (1, 0, 2)
    assert sorted(r.txn_id for r in table(spark, s, "bronze", "transactions").collect()) == ["T1", "T2", "T3"]


def test_links_outside_the_zone_and_unexpected_entries_are_listed_once(spark, lake_settings, tmp_path):
    s = lake_settings
    outside = tmp_path / "elsewhere"
    write_landing(outside, "x", DAY, "secret.csv", _txn_file("S1"))
    write_landing(s.landing, "transactions", DAY, "t.csv", _txn_file("T1"))
    day = s.landing / "transactions" / DAY
    (day / "secret.csv").symlink_to(outside / "x" / DAY / "secret.csv")          # a file outside
    (s.landing / "transactions" / "2026-06-02").symlink_to(outside / "x" / DAY)  # a folder outside
    (day / "again.csv").symlink_to(day / "t.csv")                                # inside: followed
    (day / "nested").mkdir()
    (day / "nested" / "n.csv").write_bytes(_txn_file("N1"))
    (day / ".hidden.csv").write_bytes(_txn_file("H1"))
    (s.landing / "transactions" / "loose.csv").write_bytes(_txn_file("L1"))
    write_landing(s.landing, "Customers", DAY, "c.csv", "customer_id\nC1\n")
    (s.landing / "README.txt").write_text("hello")

    res = ingest.run(spark, s)
    txn = res["transactions"]
    assert (txn.files_new, txn.files_duplicate, txn.rows_loaded) == (1, 1, 1)  # again.csv: same bytes
    assert [r.txn_id for r in table(spark, s, "bronze", "transactions").collect()] == ["T1"]
    want = {str(day / "secret.csv"): ("transactions", "outside"),
            str(s.landing / "transactions" / "2026-06-02"): ("transactions", "outside"),
            str(day / "nested"): ("transactions", "unexpected"),
            str(day / ".hidden.csv"): ("transactions", "unexpected"),
            str(s.landing / "transactions" / "loose.csv"): ("transactions", "unexpected"),
            str(s.landing / "Customers"): ("customers", "unexpected"),
            str(s.landing / "README.txt"): (None, "unexpected")}
    ops_rows = table(spark, s, "ops", "landing_issues").collect()
    assert {r.path: (r.source, r.kind) for r in ops_rows} == want
    assert all(r.reason for r in ops_rows)
    secret = next(r for r in ops_rows if r.path.endswith("secret.csv"))
    assert secret.reason == f"link to {outside / 'x' / DAY / 'secret.csv'}, outside the landing zone: not followed"
    # in the run's results: counted per source, each new entry with its reason
    assert txn.entries_not_read == 5 and res["customers"].entries_not_read == 1
    assert res[ingest.LANDING_ROOT].entries_not_read == 1
    assert {i["path"] for r in res.values() for i in r.issues} == set(want)

    # a re-run counts them again but lists none as new, and adds no row to ops
    again = ingest.run(spark, s)
    assert again["transactions"].entries_not_read == 5 and not again["transactions"].issues
    assert table(spark, s, "ops", "landing_issues").count() == len(want)


def test_the_run_summary_shows_entries_not_read_and_files_left_for_the_next_run(spark, lake_settings):
    from rich.console import Console

    from c360.cli import _results_tables
    from jobs.pipeline import run_step

    s = lake_settings
    write_landing(s.landing, "transactions", DAY, "t.csv", _txn_file("T1"))
    (s.landing / "transactions" / DAY / "nested").mkdir()
    write_landing(s.landing, "transactions", "latest", "t.csv", _txn_file("T9"))
    (s.landing / "notes.txt").write_text("hello")
    step = run_step(spark, s, "ingest", date(2026, 6, 1), run_id="summary1")
    console = Console(record=True, width=250)
    for t in _results_tables([step]):
        console.print(t)
    text = console.export_text()
    assert "Landing entries not read" in text
    assert "transactions/2026-06-01/nested" in text and "folder inside a delivery folder: not read" in text
    assert "notes.txt" in text and "file at the landing root" in text
    assert landing.BAD_DATE_FOLDER in text  # the path rejection, under quarantine reasons
    logged = json.loads(table(spark, s, "ops", "run_log").where("run_id = 'summary1'").first().metrics)
    assert logged["transactions"]["entries_not_read"] == 1 and logged[ingest.LANDING_ROOT]["entries_not_read"] == 1


@pytest.mark.timeout(600)
@WITH_ENGINE
@given(kinds=st.lists(st.sampled_from(["bad_date", "bad_ext", "link_out", "nested", "hidden", "fifo", "vanish"]),
                      min_size=1, max_size=5))
def test_generated_hostile_deliveries_never_stop_or_block_the_valid_ones(spark, settings, kinds):
    """Each example: valid transactions and customers deliveries next to generated hostile
    entries. Every valid row loads exactly once, every hostile entry is accounted for,
    and once the hostile files are re-delivered correctly, their rows load too."""
    with tempfile.TemporaryDirectory() as tmp:
        s = settings.with_paths(landing=Path(tmp) / "landing", lake=Path(tmp) / "lake")
        write_landing(s.landing, "transactions", DAY, "ok.csv", _txn_file("OK"))
        write_landing(s.landing, "customers", DAY, "c.csv", ",".join(SOURCES["customers"].column_names) + "\n")
        day = s.landing / "transactions" / DAY
        redeliver, vanishing = {}, []
        for i, kind in enumerate(kinds):
            data = _txn_file(f"K{i}")
            if kind == "bad_date":
                write_landing(s.landing, "transactions", "latest", f"k{i}.csv", data)
                redeliver[f"k{i}.csv"] = data
            elif kind == "bad_ext":
                write_landing(s.landing, "transactions", DAY, f"k{i}.csv.txt", data)
                redeliver[f"k{i}.csv"] = data
            elif kind == "link_out":
                target = Path(tmp) / "outside" / f"k{i}.csv"
                target.parent.mkdir(exist_ok=True)
                target.write_bytes(data)
                (day / f"k{i}.csv").symlink_to(target)
            elif kind == "nested":
                write_landing(day, f"sub{i}", DAY, f"k{i}.csv", data)
            elif kind == "hidden":
                (day / f".k{i}.csv").write_bytes(data)
            elif kind == "fifo":
                os.mkfifo(day / f"k{i}.csv")
            elif kind == "vanish":
                vanishing.append(write_landing(s.landing, "transactions", DAY, f"v{i}.csv", data))
                redeliver[f"v{i}.csv"] = data

        def vanish(label, i, n):
            if label.startswith("ingest transactions"):
                for p in vanishing:
                    p.unlink(missing_ok=True)

        res = ingest.run(spark, s, progress=vanish)
        txn = res["transactions"]
        assert txn.error is None and txn.rows_loaded == 1
        assert txn.files_deferred == len(vanishing)
        assert txn.files_quarantined == sum(k in ("bad_date", "bad_ext") for k in kinds)
        listed = sum(k in ("link_out", "nested", "hidden", "fifo") for k in kinds)
        assert txn.entries_not_read == listed
        # correct re-deliveries (and the vanished files coming back) load
        for p in vanishing:
            p.write_bytes(redeliver[p.name])
        for n, data in redeliver.items():
            (day / n).write_bytes(data)
        nxt = ingest.run(spark, s)["transactions"]
        assert nxt.rows_loaded == len(redeliver) and nxt.files_deferred == 0
        loaded = sorted(r.txn_id for r in table(spark, s, "bronze", "transactions").collect())
        again = [f"K{i}" for i, k in enumerate(kinds) if k in ("bad_date", "bad_ext", "vanish")]
        assert loaded == sorted(["OK"] + again)
