"""The connection to the engine under repetition and faults (issue #25).

One full run in four of a small bank once died at the end of ingest: gRPC could not decode
an ``ExecutePlanResponse`` ("Wire format was corrupt") and the step failed. These tests
repeat small ingests and count failures, check that the embedded engine's responses are not
gzip-compressed on the loopback channel, and check that a step hit by an undecodable
response is run again (every step is idempotent) a bounded number of times.

The longer stress run is ``bench/stress_engine.py`` (``--runs N``).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from grpc import _common as grpc_common
from pyspark.sql.connect.proto import ExecutePlanResponse

from c360 import lake
from c360.synth import generate
from jobs import ingest, pipeline

AS_OF = date(2026, 6, 30)
CORE = ["customers", "product_catalog", "holdings", "transactions"]
REPETITIONS = 5
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_bank(tmp_path_factory):
    """Core banking deliveries of a small bank (generated once) and rows per source."""
    landing = tmp_path_factory.mktemp("stress") / "landing"
    summary = generate(customers=300, days=20, as_of=AS_OF, seed=7, landing=landing)
    return landing, {s: summary.rows_in_files[s] for s in CORE}


class _DecodeFailures(logging.Handler):
    """gRPC's own log line for a response it could not decode."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record):
        if "deserializing" in record.getMessage():
            self.messages.append(record.getMessage())


def test_repeated_small_ingests_load_every_row(spark, settings, small_bank, tmp_path):
    landing, expected = small_bank
    decode = _DecodeFailures()
    logging.getLogger("grpc").addHandler(decode)
    failures = []
    try:
        for i in range(REPETITIONS):
            s = settings.with_paths(landing=landing, lake=tmp_path / f"lake-{i}")
            try:
                res = ingest.run(spark, s, as_of=AS_OF, sources=CORE)
                loaded = {n: r.rows_loaded for n, r in res.items() if n in CORE}  # not "(landing)": _meta/
                if loaded != expected:
                    failures.append((i, loaded))
            except Exception as exc:  # counted: the assertion below names every failure
                failures.append((i, f"{type(exc).__name__}: {exc}"))
    finally:
        logging.getLogger("grpc").removeHandler(decode)
    assert failures == []
    assert decode.messages == []


def test_embedded_engine_responses_travel_uncompressed(tmp_path):
    """grpc-core traces every message it decompresses with its algorithm (0 identity,
    2 gzip); the embedded engine's responses must all be identity."""
    code = ("from c360.engine import spark_session\n"
            "from c360.settings import load_settings\n"
            "with spark_session(load_settings()) as eng:\n"
            "    print(eng.spark.range(50000).selectExpr('id', 'cast(id as string) s').toArrow().num_rows)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "C360_LAKE", "C360_LANDING")}
    env.update(GRPC_VERBOSITY="debug", GRPC_TRACE="compression", RUST_LOG="warn")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "50000"
    algorithms = re.findall(r"DecompressMessage: len=\d+ max=\d+ alg=(\d+)", proc.stderr)
    assert algorithms, "grpc-core traced no received message: has its trace format changed?"
    assert set(algorithms) == {"0"}


@pytest.fixture
def corrupt_responses(monkeypatch):
    """Real engine, real gRPC: the bytes of chosen ``ExecutePlanResponse`` messages lose
    their last byte before the client parses them, as a damaged message would arrive.
    ``arm(every=False)`` damages the next one only, ``arm(every=True)`` every one after."""
    real = grpc_common.deserialize
    state = {"armed": False, "every": False, "skip": 0, "damaged": 0}

    def deserialize(data, deserializer):
        if state["armed"] and deserializer == ExecutePlanResponse.FromString and data:
            if state["skip"] > 0:
                state["skip"] -= 1
            else:
                state["damaged"] += 1
                state["armed"] = state["every"]
                data = data[:-1]
        return real(data, deserializer)

    monkeypatch.setattr(grpc_common, "deserialize", deserialize)

    def arm(every: bool = False, skip: int = 0):
        state.update(armed=True, every=every, skip=skip)
        return state

    return arm


def _ingest_tables(spark, s):
    return {n: lake.read(spark, lake.table_path(s.lake, "bronze", n)).count() for n in CORE}


def test_an_undecodable_response_fails_the_call_not_silently(spark, corrupt_responses):
    """The damage is detected: the call fails with gRPC's message, classed as transient."""
    from c360.engine import is_transient_engine_error

    corrupt_responses()
    with pytest.raises(Exception) as err:
        spark.range(10).collect()
    assert "Exception deserializing response" in str(err.value)
    assert is_transient_engine_error(err.value)
    assert not is_transient_engine_error(ValueError("column not found"))


def test_a_step_hit_by_an_undecodable_response_runs_again(spark, settings, small_bank, tmp_path,
                                                          corrupt_responses, caplog):
    landing, expected = small_bank
    s = settings.with_paths(landing=landing, lake=tmp_path / "lake")
    state = corrupt_responses(skip=40)  # a response late in the ingest, as in issue #25
    with caplog.at_level(logging.WARNING, logger="jobs.pipeline"):
        result = pipeline.run_step(spark, s, "ingest", AS_OF)
    assert state["damaged"] == 1
    assert result.status == "succeeded" and result.retries == 1
    assert any("transient engine error" in r.getMessage() and "retry 1 of" in r.getMessage()
               for r in caplog.records)
    # every row exactly once, every file recorded once, as after an undisturbed run
    bronze = _ingest_tables(spark, s)
    files = lake.read(spark, lake.table_path(s.lake, "ops", "ingested_files"))
    assert files.count() == files.select("file_path").distinct().count()
    clean = settings.with_paths(landing=landing, lake=tmp_path / "clean")
    ingest.run(spark, clean, as_of=AS_OF)
    assert bronze == _ingest_tables(spark, clean)
    assert files.count() == lake.read(spark, lake.table_path(clean.lake, "ops", "ingested_files")).count()


def test_a_step_that_keeps_failing_is_retried_a_bounded_number_of_times(spark, settings, small_bank, tmp_path,
                                                                        corrupt_responses, caplog, monkeypatch):
    landing, _ = small_bank
    s = settings.with_paths(landing=landing, lake=tmp_path / "lake")
    state = corrupt_responses(every=True)
    state["armed"] = False
    real_step, attempts = pipeline.STEPS["ingest"], []

    def ingest_step(*args, **kwargs):  # every response damaged while the step itself runs
        attempts.append(1)
        state["armed"] = True
        try:
            return real_step(*args, **kwargs)
        finally:
            state["armed"] = False

    monkeypatch.setitem(pipeline.STEPS, "ingest", ingest_step)
    with caplog.at_level(logging.WARNING, logger="jobs.pipeline"), pytest.raises(pipeline.StepFailed) as err:
        pipeline.run_step(spark, s, "ingest", AS_OF)
    assert "Exception deserializing response" in str(err.value)
    assert len(attempts) == 1 + pipeline.TRANSIENT_RETRIES
    retries = [r for r in caplog.records if "transient engine error" in r.getMessage()]
    assert len(retries) == pipeline.TRANSIENT_RETRIES
    run_log = lake.read(spark, lake.table_path(s.lake, "ops", "run_log")).collect()
    assert [(r["step"], r["status"]) for r in run_log] == [("ingest", "failed")]
