"""Test-only fault injection: crash this process at a named point of a Delta write.

Crash-safety tests run the pipeline in a child process with ``C360_TEST_KILL_AT`` set to
``<point>:<layer>/<name>``; the first write into that table then kills the process with
SIGKILL at that point (no clean-up, no ``finally``: as a power cut or the OOM killer
would), at a point the test names instead of a moment it guesses. The points:

- ``before-commit``: the write's data files are in the table's folder and its Delta commit
  is not in the log. The engine writes data files first and commits last, in one call
  this process cannot stop in between; so here the same engine writes the same rows
  as Parquet files into the table's folder (partitioned like the write) and the process
  dies before the Delta write starts: the files a crash between the two leaves behind.
- ``after-commit``: the write is committed, and nothing after it ran.

Unset (always, outside those tests) the hooks only read one environment variable.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from pyspark.sql import DataFrame

KILL_AT = "C360_TEST_KILL_AT"
POINTS = ("before-commit", "after-commit")


def _armed(point: str, path: str) -> bool:
    wanted = os.environ.get(KILL_AT)
    if not wanted:
        return False
    at, _, table = wanted.partition(":")
    if at not in POINTS or not table:
        raise ValueError(f"{KILL_AT}={wanted!r}: expected <point>:<layer>/<name>, points {', '.join(POINTS)}")
    return at == point and Path(path).as_posix().endswith("/" + table.strip("/"))


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def before_commit(df: DataFrame, path: str, partition_by: list[str] | None = None) -> None:
    """Called by :mod:`c360.lake` just before a write of ``df`` into the table at ``path``."""
    if not _armed("before-commit", path):
        return
    writer = df.write.mode("append")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.parquet(path)
    _die()


def after_commit(path: str) -> None:
    """Called by :mod:`c360.lake` just after a write into the table at ``path`` committed."""
    if _armed("after-commit", path):
        _die()
