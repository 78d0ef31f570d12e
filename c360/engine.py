"""The one place that owns the Spark session.

By default the embedded Sail engine (``pysail``) is started in this process as a Spark
Connect server on a free loopback port, sized by Sail to the machine's cores, and stopped
when the ``spark_session`` block ends. With a Spark Connect URL (``engine.remote`` in
``conf/`` or ``SPARK_REMOTE``) it connects there instead and starts nothing: the same jobs
then run on a Spark cluster with Delta Lake.

Jobs only ever receive a ``SparkSession`` (Spark Connect flavour) and use the DataFrame and
SQL API: no RDDs, no SparkContext, no JVM calls.

The embedded engine's responses travel uncompressed: the client accepts only the identity
encoding on that loopback channel (:data:`EMBEDDED_CHANNEL_OPTIONS`). Sail otherwise
gzip-compresses every response the client says it accepts, which on a loopback connection
only costs time (a 1M-row result: 16-19 s gzipped against 1.0-1.2 s plain) and puts a
compression layer on both sides of every message.

A response the client cannot decode (gRPC's "Exception deserializing response!", protobuf's
"Wire format was corrupt": issue #25) is a transient engine error
(:func:`is_transient_engine_error`): ``jobs.pipeline`` runs the step again, a bounded number
of times, since every step is idempotent.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql.connect.client import DefaultChannelBuilder
from pyspark.sql.connect.session import SparkSession as ConnectSession

from c360.settings import Settings

log = logging.getLogger(__name__)

# Sessions are always UTC: timestamps are stored as instants and shown in UTC; the bank's
# own time zone is applied explicitly where local time matters (night, weekend, hour).
SESSION_TIMEZONE = "UTC"

_lock = threading.Lock()

# gRPC channel options of the client of the embedded engine: accept only the identity
# encoding (bit 0 of grpc-core's enabled-algorithms set), so Sail sends responses as they are.
EMBEDDED_CHANNEL_OPTIONS = [("grpc.compression_enabled_algorithms_bitset", 1)]

# Marks of a response the client could not decode (gRPC logs "Exception deserializing
# message!" and ends the call with INTERNAL "Exception deserializing response!"). The call
# fails, nothing is read wrongly; a step that failed this way can be run again (issue #25).
TRANSIENT_ENGINE_ERRORS = ("Exception deserializing response", "Exception deserializing message",
                           "Wire format was corrupt")


def is_transient_engine_error(exc: BaseException) -> bool:
    """True when ``exc``, or an exception it was raised from, says that a response of the
    engine could not be decoded (:data:`TRANSIENT_ENGINE_ERRORS`)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        text = str(e)
        if any(mark in text for mark in TRANSIENT_ENGINE_ERRORS):
            return True
        todo += [e.__cause__, e.__context__]
    return False


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
    from c360 import storage

    storage.configure(settings.storage)  # before the engine opens any s3:// path (it reads AWS_*)
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
        channel = DefaultChannelBuilder(url, channelOptions=EMBEDDED_CHANNEL_OPTIONS)
        # What SparkSession.builder.remote() does before it creates a Connect session (which
        # takes no channel options): mark the process as Spark Connect, so that
        # pyspark.sql.functions build Connect columns.
        os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
        spark = _configure(ConnectSession.builder.channelBuilder(channel), settings).create()
        try:
            yield Engine(spark, url, embedded=True)
        finally:
            spark.stop()
    finally:
        _EmbeddedSail.release()
