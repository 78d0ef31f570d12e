"""Shared fixtures: one embedded Sail engine for the whole test session."""

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

from c360.engine import spark_session  # noqa: E402
from c360.settings import load_settings  # noqa: E402


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


@pytest.fixture(scope="session")
def s3_store():
    """A real S3 API server (moto) on 127.0.0.1 for this session (tests/objectstore.py)."""
    from objectstore import moto_store

    with moto_store() as store:
        yield store
