"""One run at a time per lake: an exclusive lock file taken with ``fcntl.flock``.

Every pipeline step (``jobs.pipeline.run_step``) and every ``c360 run`` holds the lock of
its lake, ``<lake>/.c360.lock``, while it reads and writes the lake. A second run against
the same lake fails fast with :class:`LakeBusy`, whose one-line message says who holds the
lake (run id, step, pid, host, user, since when).

- The lock is the kernel's ``flock`` on the open file, not the file's existence: when the
  holder ends in any way (exception, ``kill -9``, a crash of the embedded engine, a power
  loss) the kernel releases it, so a stale lock is impossible. The file itself stays (it
  is never deleted, which would race with a new holder); its content is informative only.
- Reentrant within one thread of a process: ``c360 run`` and
  :func:`jobs.pipeline.run_steps` hold it across their steps, and each ``run_step`` inside
  re-enters it (the recorded step is updated, then restored). Another thread of the same
  process gets :class:`LakeBusy` like another process would.
- It protects a lake on one file system (local disk, or a shared POSIX file system with
  working ``flock``). A lake on object storage behind a remote Spark cluster is not locked
  here (:func:`for_settings` skips it): there Delta's optimistic concurrency control keeps
  each table consistent and a single scheduler (the Airflow pool) keeps runs apart.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

LOCK_NAME = ".c360.lock"

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")


class LakeBusy(RuntimeError):
    """Another run holds the lake; the message is one line naming it."""

    def __init__(self, lake: Path | str, holder: dict[str, Any] | None):
        self.lake = str(lake)
        self.holder = holder or {}
        super().__init__(describe(self.lake, self.holder))


def describe(lake: str, holder: dict[str, Any]) -> str:
    h = holder
    if not h.get("pid"):
        who = "another run (it is just starting)"
    else:
        since = h.get("started_at", "")
        try:
            since = datetime.fromisoformat(since).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        except (TypeError, ValueError):
            pass
        who = (f"run {h.get('run_id') or '?'} (step {h.get('step') or '?'}"
               f"{', as_of ' + str(h['as_of']) if h.get('as_of') else ''}, pid {h['pid']} on host "
               f"{h.get('host') or '?'}, user {h.get('user') or '?'}, since {since})")
    return (f"lake {lake} is in use by {who}; wait for it to finish and run again "
            f"(the lock is released as soon as that process ends, even if it is killed)")


@dataclass
class _Held:
    fd: int
    thread: int
    depth: int = 0
    stack: list[dict] = field(default_factory=list)


_held: dict[str, _Held] = {}
_guard = threading.Lock()


def lock_path(lake: Path | str) -> Path:
    return Path(lake) / LOCK_NAME


def _key(lake: Path | str) -> str:
    return os.path.realpath(Path(lake).expanduser())


def _user() -> str:
    from c360.ops import current_user

    return current_user()


def _write(fd: int, info: dict) -> None:
    data = (json.dumps(info, default=str, ensure_ascii=False) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def read_holder(lake: Path | str) -> dict[str, Any]:
    """What the lock file says about its (current or last) holder; {} when unreadable."""
    try:
        text = lock_path(lake).read_text(encoding="utf-8").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


def is_locked(lake: Path | str) -> bool:
    """True when some process (this one included) holds the lake's lock right now."""
    if _key(lake) in _held:
        return True
    path = lock_path(lake)
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the probe's lock
    return False


@contextmanager
def lake_lock(lake: Path | str, *, run_id: str | None = None, step: str | None = None,
              as_of: date | None = None) -> Iterator[dict[str, Any]]:
    """Hold the exclusive lock of ``lake`` (created if missing) or raise :class:`LakeBusy`.

    Never waits: a busy lake fails at once. Yields what is recorded in the lock file."""
    key = _key(lake)
    me = threading.get_ident()
    info = {"run_id": run_id, "step": step, "as_of": as_of.isoformat() if as_of else None}
    busy = False
    with _guard:
        held = _held.get(key)
        if held is not None and held.thread != me:  # another thread of this process
            busy = True
        elif held is None:
            Path(key).mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path(key), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                busy = True
            except BaseException:
                os.close(fd)
                raise
            else:
                record = {**info, "pid": os.getpid(), "host": socket.gethostname(), "user": _user(),
                          "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                held = _held[key] = _Held(fd, me)
        else:  # re-entered by the same thread: record the inner step, keep the rest
            record = {**held.stack[-1], **{k: v for k, v in info.items() if v is not None}}
        if not busy:
            held.depth += 1
            held.stack.append(record)
            _write(held.fd, record)
    if busy:  # outside the guard: the holder's record may take a moment to appear
        raise LakeBusy(lake, _holder_of(lake))
    try:
        yield record
    finally:
        with _guard:
            held.depth -= 1
            held.stack.pop()
            if held.depth == 0:
                del _held[key]
                try:
                    os.ftruncate(held.fd, 0)
                finally:
                    os.close(held.fd)  # releases the flock
            else:
                _write(held.fd, held.stack[-1])


def _holder_of(lake: Path | str) -> dict[str, Any]:
    """The holder's record; it may be a moment late (written right after the flock)."""
    import time

    for _ in range(20):
        holder = read_holder(lake)
        if holder.get("pid"):
            return holder
        time.sleep(0.05)
    return {}


def is_local(lake: Path | str) -> bool:
    """False for URIs (``s3a://...``, ``abfss://...``), which this lock cannot protect."""
    return not _URI.match(str(lake))


def for_settings(settings, *, run_id: str | None = None, step: str | None = None, as_of: date | None = None):
    """The lake lock for ``settings``, or a no-op when the lake is not a local path (a remote
    cluster on object storage relies on Delta's optimistic concurrency and one scheduler)."""
    lake = settings.lake
    if not is_local(lake) or (settings.engine.remote and not Path(lake).is_dir()):
        return nullcontext({})
    return lake_lock(lake, run_id=run_id, step=step, as_of=as_of)


__all__ = ["LakeBusy", "lake_lock", "for_settings", "is_locked", "read_holder", "lock_path", "LOCK_NAME"]
