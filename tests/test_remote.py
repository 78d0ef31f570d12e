"""Beyond one process: the pipeline on a Spark Connect server it did not start.

A Sail server is started as a separate process (``python -m pysail spark server --port
N``, the ``sail`` command line), the engine URL is given the way an operator would
(``SPARK_REMOTE``, read by ``c360.settings``), and the daily steps run on a small bank. The
test checks that the gold tables are written, that the in-process embedded engine was not
started for it, and that the work was done by the server process (its CPU time grows, and
this process holds a connection to its port). The server is killed at the end.

A Spark cluster with Delta Lake is the same thing with another URL; that part is documented
(README, "Running on a Spark cluster"), not tested here: there is no Maven access for the
Delta jars.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import date

import pytest

from c360 import engine as engine_mod
from c360 import lake
from c360.engine import spark_session
from c360.settings import load_settings

pytestmark = pytest.mark.slow

AS_OF = date(2026, 6, 30)
DAILY_STEPS = ("ingest", "silver", "profile", "segments")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Sail server exited with {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the Sail server did not listen on port {port} within {timeout} s")


@pytest.fixture
def sail_server(tmp_path):
    """A Sail Spark Connect server in its own process; yields (url, Popen); killed at the end."""
    port = _free_port()
    env = {**os.environ, "RUST_LOG": "warn"}
    env.pop("SPARK_REMOTE", None)
    log = open(tmp_path / "sail-server.log", "w", encoding="utf-8")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "pysail", "spark", "server", "--ip", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            cwd=tmp_path)
    try:
        _wait_listening(port, proc)
        yield f"sc://127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        log.close()


def _cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def test_daily_steps_on_a_separate_server(sail_server, tmp_path):
    from c360.synth import generate
    from jobs.pipeline import run_step

    url, proc = sail_server
    env = {k: v for k, v in os.environ.items() if k not in ("C360_LAKE", "C360_LANDING")}
    env["SPARK_REMOTE"] = url
    # Absolute paths: the server resolves them, not this process.
    settings = load_settings(environ=env).with_paths(landing=tmp_path / "landing", lake=tmp_path / "lake")
    assert settings.engine.remote == url
    generate(customers=300, days=75, as_of=AS_OF, seed=5, landing=settings.landing)

    embedded_users = engine_mod._EmbeddedSail.users
    embedded_server = engine_mod._EmbeddedSail.server
    cpu_before = _cpu_seconds(proc.pid)
    with spark_session(settings) as eng:
        assert eng.embedded is False and eng.url == url
        # The embedded engine was neither started nor used for this session.
        assert engine_mod._EmbeddedSail.users == embedded_users
        assert engine_mod._EmbeddedSail.server is embedded_server
        results = [run_step(eng.spark, settings, step, AS_OF) for step in DAILY_STEPS]
        assert [r.status for r in results] == ["succeeded"] * len(DAILY_STEPS)
        n_profiles = eng.spark.read.format("delta").load(lake.table_path(settings.lake, "gold", "customer_360")) \
            .where(f"as_of_date = DATE'{AS_OF}'").count()
        cpu_after = _cpu_seconds(proc.pid)

        # The gold tables are on disk (read without the engine, from the Delta logs).
        for name in ("customer_360", "customer_tags", "customer_segments", "personas"):
            path = lake.table_path(settings.lake, "gold", name)
            assert lake.exists(path), f"gold/{name} was not written"
            assert (lake.row_count(path) or 0) > 0, f"gold/{name} is empty"
        assert lake.row_count(lake.table_path(settings.lake, "gold", "customer_360")) == n_profiles > 200
        # The server process did the work, through a connection of this process to its port.
        assert cpu_after - cpu_before > 2.0, f"the server used only {cpu_after - cpu_before:.2f} s of CPU"
        assert _connected_to(int(url.rsplit(":", 1)[1])), "no connection from this process to the server"
    assert proc.poll() is None, "the server process ended during the run"


def _connected_to(port: int) -> bool:
    import psutil

    me = psutil.Process()
    conns = me.net_connections(kind="tcp") if hasattr(me, "net_connections") else me.connections(kind="tcp")
    return any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED for c in conns)
