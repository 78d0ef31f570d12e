"""The one place that owns the Spark session.

By default the embedded Sail engine (``pysail``) is started in this process as a Spark
Connect server on a free loopback port, sized by Sail to the machine's cores, and stopped
when the ``spark_session`` block ends. With a Spark Connect URL (``engine.remote`` in
``conf/`` or ``SPARK_REMOTE``) it connects there instead and starts nothing: the same jobs
then run on a Spark cluster with Delta Lake.

Jobs only ever receive a ``SparkSession`` (Spark Connect flavour) and use the DataFrame and
SQL API: no RDDs, no SparkContext, no JVM calls.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import SparkSession

from c360.settings import Settings

log = logging.getLogger(__name__)

# Sessions are always UTC: timestamps are stored as instants and shown in UTC; the bank's
# own time zone is applied explicitly where local time matters (night, weekend, hour).
SESSION_TIMEZONE = "UTC"

_lock = threading.Lock()


@dataclass
class Engine:
    spark: SparkSession
    url: str
    embedded: bool


class _EmbeddedSail:
    """A Sail Spark Connect server living in this process, shared by nested sessions."""

    server = None
    users = 0
    url: str | None = None

    @classmethod
    def acquire(cls) -> str:
        with _lock:
            if cls.server is None:
                # Sail logs every session at INFO; keep its own log quiet unless asked.
                os.environ.setdefault("RUST_LOG", "warn")
                from pysail.spark import SparkConnectServer

                server = SparkConnectServer(ip="127.0.0.1", port=0)
                server.start(background=True)
                host, port = server.listening_address
                cls.server, cls.url = server, f"sc://{host}:{port}"
                log.info("started embedded Sail engine at %s", cls.url)
            cls.users += 1
            return cls.url  # type: ignore[return-value]

    @classmethod
    def release(cls) -> None:
        with _lock:
            cls.users -= 1
            if cls.users == 0 and cls.server is not None:
                try:
                    cls.server.stop()
                finally:
                    cls.server, cls.url = None, None
                log.info("stopped embedded Sail engine")


def _configure(builder: SparkSession.Builder, settings: Settings) -> SparkSession.Builder:
    builder = builder.config("spark.sql.session.timeZone", SESSION_TIMEZONE)
    builder = builder.config("spark.sql.shuffle.partitions", str(settings.engine.shuffle_partitions))
    for k, v in settings.engine.conf.items():
        builder = builder.config(k, v)
    return builder


@contextmanager
def spark_session(settings: Settings) -> Iterator[Engine]:
    """Yield an :class:`Engine` for the configured engine, and clean up afterwards."""
    remote = settings.engine.remote
    if remote:
        # create(), not getOrCreate(): an active session of this process may be connected to
        # another server (e.g. the embedded engine), and stopping it would break its users.
        spark = _configure(SparkSession.builder.remote(remote), settings).create()
        log.info("connected to Spark Connect at %s", remote)
        try:
            yield Engine(spark, remote, embedded=False)
        finally:
            spark.stop()
        return
    url = _EmbeddedSail.acquire()
    try:
        spark = _configure(SparkSession.builder.remote(url), settings).create()
        try:
            yield Engine(spark, url, embedded=True)
        finally:
            spark.stop()
    finally:
        _EmbeddedSail.release()
