"""Shared fixtures: one embedded Sail engine for the whole test session, the generated banks
of the session, and the unit tier's guard.

Fixtures (helpers that are not fixtures live in tests/helpers.py: import them from there,
never from this file):

- ``settings``: the development settings, without the caller's SPARK_REMOTE/C360_LAKE/
  C360_LANDING.
- ``engine`` / ``spark``: the embedded Sail engine, started once per session on first use.
- ``lake_settings``: settings pointing at a fresh landing zone and lake under tmp_path.
- ``banks``: the session's generated banks (:class:`helpers.Banks`): a landing zone is
  generated once per set of arguments, a lake built from it once per name; a module takes
  a copy of the lake (``banks.copy``) instead of generating and running its own. Same
  arguments, same seed: the same bytes, so a shared bank is the bank the module had.

Tiers: ``@pytest.mark.unit`` (or ``pytestmark = pytest.mark.unit``) puts a test in the unit
tier (``make test-unit``): tests that need no Spark engine. A unit test that asks for the
``engine`` or ``spark`` fixture, or that starts an embedded Sail engine by any other way
(``c360.engine.spark_session``, a CLI command run in this process), fails with a message
saying so.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("RUST_LOG", "warn")
# The tests ask for development mode explicitly (the public built-in PII key, unless
# C360_PII_KEY is set); subprocesses (Sail servers, the JVM, Airflow) inherit it.
os.environ["C360_ENV"] = "development"
# compiled models (models/compiled.py) of this session: not the user's cache
os.environ["C360_MODEL_CACHE"] = _MODEL_CACHE = tempfile.mkdtemp(prefix="c360-test-models-")
atexit.register(shutil.rmtree, _MODEL_CACHE, ignore_errors=True)

from c360 import engine as _engine_mod
from c360.engine import spark_session
from c360.settings import load_settings

UNIT = "unit"
ENGINE_FIXTURES = ("engine", "spark")


def pytest_configure(config):
    config.addinivalue_line("markers", f"{UNIT}: the unit tier (make test-unit): no Spark engine, seconds each")


@pytest.fixture(scope="session")
def settings():
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "C360_LAKE", "C360_LANDING")}
    return load_settings(environ=env)


@pytest.fixture(scope="session")
def engine(settings):
    with spark_session(settings) as eng:
        yield eng


@pytest.fixture(scope="session")
def spark(engine):
    return engine.spark


@pytest.fixture
def lake_settings(settings, tmp_path: Path):
    """Settings pointing at a fresh landing zone and lake under tmp_path."""
    return settings.with_paths(landing=tmp_path / "landing", lake=tmp_path / "lake")


@pytest.fixture(scope="session")
def s3_store():
    """A real S3 API server (moto) on 127.0.0.1 for this session (tests/objectstore.py)."""
    from objectstore import moto_store

    with moto_store() as store:
        yield store


@pytest.fixture(scope="session")
def banks(tmp_path_factory):
    """The session's generated banks (see :class:`helpers.Banks`); at the end of the
    session each shared landing zone is checked to be as generated (no test wrote into it)."""
    from helpers import Banks

    cache = Banks(tmp_path_factory.mktemp("banks"))
    yield cache
    cache.check_untouched()


# ---------------------------------------------------------------------------------------
# the unit tier's guard: no Spark engine in a unit test

class _NoEngine:
    """While a unit test runs (setup, call, teardown), starting the embedded engine raises."""

    nodeid: str | None = None
    saved: dict = {}  # the engine's own acquire (as found in its class __dict__) while armed

    @classmethod
    def arm(cls, nodeid: str) -> None:
        if not cls.saved:
            cls.saved["acquire"] = _engine_mod._EmbeddedSail.__dict__["acquire"]
            _engine_mod._EmbeddedSail.acquire = classmethod(_refuse_engine)
        cls.nodeid = nodeid

    @classmethod
    def disarm(cls) -> None:
        if cls.saved:
            _engine_mod._EmbeddedSail.acquire = cls.saved.pop("acquire")
        cls.nodeid = None


def _refuse_engine(_cls) -> str:
    raise RuntimeError(f"unit-tier test {_NoEngine.nodeid} started the embedded Sail engine: a unit test "
                       f"needs no Spark engine (drop @pytest.mark.{UNIT}, or avoid the engine)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker(UNIT) is None:
        return
    asked = [f for f in ENGINE_FIXTURES if f in item.fixturenames]
    if asked:
        pytest.fail(f"unit-tier test {item.nodeid} asks for the Spark engine (fixtures {', '.join(asked)}): "
                    f"a unit test needs no Spark engine (drop @pytest.mark.{UNIT})", pytrace=False)
    _NoEngine.arm(item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    _NoEngine.disarm()
