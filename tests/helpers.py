"""Helpers shared by the test modules: builders of reader-shaped test DataFrames and of
landing files, Hypothesis settings, and the session's generated banks (:class:`Banks`,
served by the ``banks`` fixture of conftest.py). Import them from here (``from helpers
import ...``), never from conftest.py."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pyspark.sql import types as T

from c360.contract import SOURCES

DAY = date(2026, 6, 1)


def write_landing(landing: Path, source: str, day: str, name: str, text: str | bytes) -> Path:
    """Write one delivered file (text is written as UTF-8 unless bytes)."""
    folder = landing / source / day
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def text_rows(spark, source: str, rows: list[dict], delivery_date: date = DAY, extras: tuple[str, ...] = ()):
    """A reader-shaped DataFrame: every contract column as text, plus reader metadata.

    ``rows`` give values by column name; a ``_row_error`` key sets a reader error.
    """
    cols = SOURCES[source].column_names + list(extras)
    fields = [T.StructField(c, T.StringType()) for c in cols] + [
        T.StructField("_source_file", T.StringType()), T.StructField("_delivery_date", T.DateType()),
        T.StructField("_line", T.LongType()), T.StructField("_raw", T.StringType()),
        T.StructField("_row_error", T.StringType())]
    data = [tuple(r.get(c) for c in cols) + (f"/landing/{source}/f.csv", r.get("_delivery_date", delivery_date),
                                             r.get("_line", i + 2), None, r.get("_row_error"))
            for i, r in enumerate(rows)]
    return spark.createDataFrame(data, T.StructType(fields))


def txn(**over) -> dict:
    base = dict(txn_id="T1", account_id="A1", customer_id="C1", txn_ts="2026-06-01T10:00:00", amount="12.50",
                direction="debit", currency="CNY", channel="pos", merchant_category="groceries")
    return base | over


def customer(**over) -> dict:
    base = dict(customer_id="C1", full_name="王小明", national_id="110101199001011234", phone="13800138000",
                email="xm@example.cn", birth_date="1990-01-15", gender="M", occupation="engineer",
                annual_income="250000.00", city="上海", home_branch_id="B01", onboarding_date="2020-03-01",
                risk_tolerance="R3", kyc_status="verified", marketing_consent="Y", preferred_language="zh",
                updated_at="2026-06-01T09:00:00")
    return base | over


def hypothesis_settings(pure_examples: int, engine_examples: int):
    """Hypothesis settings for a module's properties: ``(pure, with_engine)``.

    Nothing is generated inside the repository: no example database, and Hypothesis' home
    is a temporary folder removed at exit. ``with_engine`` also allows the function-scoped
    fixtures (the shared engine, tmp_path) that engine-backed properties take."""
    import atexit
    import shutil
    import tempfile

    from hypothesis import HealthCheck, settings
    from hypothesis.configuration import set_hypothesis_home_dir

    home = tempfile.mkdtemp(prefix="c360-hypothesis-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    set_hypothesis_home_dir(home)
    slow = [HealthCheck.too_slow, HealthCheck.data_too_large]
    return (settings(max_examples=pure_examples, deadline=None, database=None, suppress_health_check=slow),
            settings(max_examples=engine_examples, deadline=None, database=None,
                     suppress_health_check=[*slow, HealthCheck.function_scoped_fixture]))


# ---------------------------------------------------------------------------------------
# the session's generated banks

@dataclass(frozen=True)
class Bank:
    """A generated landing zone of the session (shared: read it, never write into it)."""

    landing: Path
    summary: Any  # c360.synth.GenerationSummary, as generate() returned it


@dataclass(frozen=True)
class BuiltLake:
    """A lake built once from a shared landing zone, and what its build returned."""

    bank: Bank
    lake: Path
    result: Any


class Banks:
    """Generated banks, each generated once per session, and lakes built from them once.

    - :meth:`landing` generates a landing zone for one set of generator arguments the
      first time it is asked for, and returns the same one afterwards (same arguments and
      seed: the same bytes a module's own ``generate`` call wrote).
    - :meth:`lake` builds a lake from such a landing zone once per name, by a function
      the first caller gives (e.g. ingest and silver); :meth:`copy` gives each module its
      own copy of that lake (``shutil.copytree``: seconds, not a pipeline run), with the
      landing zone still the shared one, so the lake's records of ingested files match.

    The landing zones are shared read-only: a test that writes deliveries takes its own
    (``shutil.copytree(bank.landing, ...)``, or its own ``generate``). At the end of the
    session (the ``banks`` fixture's teardown) every landing zone is compared with its
    listing when generated, and a change fails the session's last test. A lake holding
    an MLflow registry is not for copying (the registry records absolute artifact paths).
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self._landings: dict[tuple, Bank] = {}
        self._listings: dict[Path, dict[str, tuple[int, int]]] = {}
        self._lakes: dict[str, BuiltLake] = {}

    def landing(self, customers: int, days: int, as_of: date, seed: int, dirty_rate: float = 0.0) -> Bank:
        """The landing zone of ``generate(customers, days, as_of, seed, dirty_rate=...)``."""
        from c360.synth import generate

        key = (int(customers), int(days), as_of.isoformat(), int(seed), float(dirty_rate))
        if key not in self._landings:
            path = self.root / "landing-{}x{}-{}-s{}-d{}".format(*key)
            summary = generate(customers=customers, days=days, as_of=as_of, seed=seed, landing=path,
                               dirty_rate=dirty_rate)
            self._landings[key] = Bank(path, summary)
            self._listings[path] = _listing(path)
        return self._landings[key]

    def lake(self, name: str, bank: Bank, build: Callable[[Path], Any]) -> BuiltLake:
        """The lake ``name``, built once by ``build(lake_dir)`` from ``bank`` (whatever it
        returns is kept as ``result``). Every caller of one name must mean the same build."""
        if name not in self._lakes:
            lake_dir = self.root / f"lake-{name}"
            result = build(lake_dir)
            self._lakes[name] = BuiltLake(bank, lake_dir, result)
        built = self._lakes[name]
        if built.bank != bank:
            raise ValueError(f"lake {name!r} was built from {built.bank.landing}, not {bank.landing}")
        return built

    @staticmethod
    def copy(built: BuiltLake, dest: Path) -> Path:
        """A copy of a built lake at ``dest`` (which must not exist); returns ``dest``."""
        shutil.copytree(built.lake, dest)
        return Path(dest)

    def check_untouched(self) -> None:
        changed = [str(p) for p, files in self._listings.items() if _listing(p) != files]
        assert not changed, f"a test wrote into the shared landing zone(s) {changed}: copy it first"


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time (ns)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out
