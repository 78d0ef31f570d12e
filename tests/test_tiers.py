"""The test tiers (conftest.py): a unit-tier test that asks for the engine, or starts it,
fails and says why; the other unit tests pass without an engine. And the session's banks
(helpers.Banks): generated once, the same bytes as a module's own ``generate``, copied."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

PROBE = '''
import pytest

@pytest.mark.unit
def test_asks_for_spark(spark):
    pass

@pytest.mark.unit
def test_starts_the_engine(settings):
    from c360.engine import spark_session
    with spark_session(settings):
        pass

@pytest.mark.unit
def test_pure(settings):
    assert settings.engine.remote is None

def test_engine_outside_the_unit_tier_is_fine(settings):
    from c360.engine import _EmbeddedSail, spark_session
    assert _EmbeddedSail.__dict__["acquire"].__func__.__name__ == "acquire"  # the guard is disarmed
    with spark_session(settings) as eng:
        assert eng.spark.range(3).count() == 3
'''


def test_a_unit_test_touching_the_engine_fails_and_says_why(tmp_path):
    """The guard, run on probe tests in a separate pytest (this session's conftest.py and
    helpers.py copied next to them): the two that touch the engine fail, naming the test;
    the Sail engine is not started for them, and a test after them (outside the tier)
    starts and uses it. Not in the unit tier itself: it starts the engine."""
    for name in ("conftest.py", "helpers.py"):
        (tmp_path / name).write_bytes((TESTS / name).read_bytes())
    (tmp_path / "test_probe.py").write_text(PROBE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path), "-c", "/dev/null", str(tmp_path / "test_probe.py")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "1 failed, 2 passed, 1 error" in text, text
    assert "unit-tier test test_probe.py::test_asks_for_spark asks for the Spark engine (fixtures engine, spark)" in text, text
    assert "unit-tier test test_probe.py::test_starts_the_engine started the embedded Sail engine" in text, text


@pytest.mark.unit
def test_a_shared_bank_is_the_bank_generate_writes_and_copies_are_independent(tmp_path):
    """Banks.landing generates once per arguments (the same bytes as a direct generate
    call); a built lake is built once and each copy is its own; writing into a shared
    landing zone is caught."""
    from helpers import Banks, _listing

    from c360.synth import generate

    as_of = date(2026, 6, 30)
    banks = Banks(tmp_path / "banks")
    bank = banks.landing(12, 4, as_of, 3)
    assert banks.landing(12, 4, as_of, 3) is bank
    generate(customers=12, days=4, as_of=as_of, seed=3, landing=tmp_path / "own")
    mine, shared = _listing(tmp_path / "own"), _listing(bank.landing)
    assert sorted(mine) == sorted(shared) and mine
    assert all((tmp_path / "own" / f).read_bytes() == (bank.landing / f).read_bytes() for f in mine)

    builds = []

    def build(lake_dir: Path) -> int:
        builds.append(lake_dir)
        (lake_dir / "t").mkdir(parents=True)
        (lake_dir / "t" / "part-0").write_text("rows", encoding="utf-8")
        return 7

    built = banks.lake("tiny", bank, build)
    assert banks.lake("tiny", bank, build) is built and len(builds) == 1 and built.result == 7
    a, b = banks.copy(built, tmp_path / "a"), banks.copy(built, tmp_path / "b")
    (a / "t" / "part-0").write_text("changed", encoding="utf-8")
    assert (b / "t" / "part-0").read_text(encoding="utf-8") == "rows"
    assert (built.lake / "t" / "part-0").read_text(encoding="utf-8") == "rows"
    with pytest.raises(ValueError, match="was built from"):
        banks.lake("tiny", banks.landing(12, 4, as_of, 4), build)

    banks.check_untouched()
    (bank.landing / "customers" / "extra.csv").write_text("x", encoding="utf-8")
    with pytest.raises(AssertionError, match="wrote into the shared landing zone"):
        banks.check_untouched()
