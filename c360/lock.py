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
  working ``flock``).
- A lake on S3 (``s3://``, ``s3a://``) has a lock object instead, ``<lake>/.c360.lock``,
  created with a conditional write (``PutObject`` with ``If-None-Match: *``): of two
  takers exactly one creates it, the other gets :class:`LakeBusy` naming the holder. No
  kernel drops it when its holder dies, so the holder refreshes ``heartbeat_at`` in it
  every :data:`HEARTBEAT_S` seconds (a write with ``If-Match`` on its own version); a lock
  whose heartbeat is older than :data:`STALE_AFTER_S`, or whose holder is a process of this
  host that no longer exists, is stale and taken over with ``If-Match`` on the stale
  version (so two takers of one stale lock cannot both win). Released by deleting it.
  Other object stores (``gs://``, ``abfss://``) have no lock here: :func:`lake_lock` raises.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCK_NAME = ".c360.lock"
# object-storage lock (see the module's docstring): refresh period and staleness limit
HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0


class LakeBusy(RuntimeError):
    """Another run holds the lake; the message is one line naming it."""

    def __init__(self, lake: Path | str, holder: dict[str, Any] | None):
        self.lake = str(lake)
        self.holder = holder or {}
        super().__init__(describe(self.lake, self.holder))


def describe(lake: str, holder: dict[str, Any]) -> str:
    from c360 import storage

    if storage.is_uri(lake):
        released = (f"the lock object {lake}/{LOCK_NAME} is deleted when that run ends; one left by a killed run "
                    f"is taken over {int(STALE_AFTER_S)} s after its last heartbeat")
    else:
        released = "the lock is released as soon as that process ends, even if it is killed"
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
    return f"lake {lake} is in use by {who}; wait for it to finish and run again ({released})"


@dataclass
class _Held:
    fd: int | None  # None for a lock object (object storage)
    thread: int
    depth: int = 0
    stack: list[dict] = field(default_factory=list)
    obj: "_ObjectLock | None" = None


_held: dict[str, _Held] = {}
_guard = threading.Lock()


def lock_path(lake: Path | str) -> Path | str:
    from c360 import storage

    return storage.join(lake, LOCK_NAME) if storage.is_uri(lake) else Path(lake) / LOCK_NAME


def _key(lake: Path | str) -> str:
    from c360 import storage

    if storage.is_uri(lake):
        return storage.jvm_uri(str(lake).rstrip("/"))  # s3:// and s3a:// are one lake
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
    from c360 import storage

    if storage.is_uri(lake):
        got = _ObjectLock(str(lake)).get()
        return got[0] if got else {}
    try:
        text = lock_path(lake).read_text(encoding="utf-8").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


def is_locked(lake: Path | str) -> bool:
    """True when some process (this one included) holds the lake's lock right now."""
    if _key(lake) in _held:
        return True
    from c360 import storage

    if storage.is_uri(lake):
        got = _ObjectLock(str(lake)).get()
        return got is not None and not _stale(got[0])
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
        elif held is None and _is_uri(lake):
            record = {**info, "pid": os.getpid(), "host": socket.gethostname(), "user": _user(),
                      "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            obj = _ObjectLock(str(lake))
            busy_holder = obj.take(record)
            if busy_holder is not None:
                raise LakeBusy(lake, busy_holder)
            held = _held[key] = _Held(None, me, obj=obj)
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
            if held.obj is not None:
                if held.depth > 1:
                    held.obj.update(record)
            else:
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
                if held.obj is not None:
                    held.obj.release()
                else:
                    try:
                        os.ftruncate(held.fd, 0)
                    finally:
                        os.close(held.fd)  # releases the flock
            elif held.obj is not None:
                held.obj.update(held.stack[-1])
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


def _is_uri(lake: Path | str) -> bool:
    from c360 import storage

    return storage.is_uri(lake)


def is_local(lake: Path | str) -> bool:
    """False for URIs (``s3://...``, ``abfss://...``): those have a lock object, not a flock."""
    return not _is_uri(lake)


def for_settings(settings, *, run_id: str | None = None, step: str | None = None, as_of: date | None = None):
    """The lake lock for ``settings``: a flock on a local lake, a lock object on S3; a no-op
    for a local path that this machine does not have when the engine is remote (the
    cluster's own disk)."""
    lake = settings.lake
    if is_local(lake) and settings.engine.remote and not Path(lake).is_dir():
        return nullcontext({})
    return lake_lock(lake, run_id=run_id, step=step, as_of=as_of)


def _stale(holder: dict[str, Any]) -> bool:
    """A lock object whose holder stopped refreshing it, or died on this host."""
    beat = holder.get("heartbeat_at") or holder.get("started_at")
    try:
        age = (datetime.now(timezone.utc) - datetime.fromisoformat(beat)).total_seconds()
    except (TypeError, ValueError):
        return True  # unreadable: no run could have written it
    if age > STALE_AFTER_S:
        return True
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


class _ObjectLock:
    """The lock object ``<lake>/.c360.lock`` on S3 (see the module's docstring)."""

    def __init__(self, lake: str):
        from c360 import storage

        if storage.scheme(lake) not in storage.S3_SCHEMES:
            raise storage.StorageError(
                f"lake {lake}: the lake lock is implemented for S3 (s3://, s3a://) and local paths only; "
                f"{storage.scheme(lake)}:// has no conditional-write lock in c360 yet")
        self.uri = storage.join(lake, LOCK_NAME)
        self.etag: str | None = None
        self.record: dict[str, Any] = {}
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._mutex = threading.Lock()
        self.lost = False

    @staticmethod
    def _encode(record: dict[str, Any]) -> bytes:
        return (json.dumps(record, default=str, ensure_ascii=False) + "\n").encode("utf-8")

    def get(self) -> tuple[dict[str, Any], str] | None:
        from c360 import storage

        got = storage.get_with_etag(self.uri)
        if got is None:
            return None
        try:
            holder = json.loads(got[0].decode("utf-8"))
        except ValueError:
            holder = {}
        return (holder if isinstance(holder, dict) else {}), got[1]

    def take(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """Create the lock object; the holder's record when another run holds it."""
        from c360 import storage

        record = {**record, "heartbeat_at": _now()}
        for _ in range(3):
            try:
                self.etag = storage.put_if_absent(self.uri, self._encode(record))
                break
            except storage.PreconditionFailed:
                got = self.get()
                if got is None:
                    continue  # released in between: try again
                holder, etag = got
                if not _stale(holder):
                    return holder
                try:  # take over the stale lock, unless someone else did first
                    self.etag = storage.put_if_match(self.uri, self._encode(record), etag)
                    log.warning("lake lock %s: took over a stale lock of run %s (pid %s on host %s, last heartbeat %s)",
                                self.uri, holder.get("run_id"), holder.get("pid"), holder.get("host"),
                                holder.get("heartbeat_at"))
                    break
                except storage.PreconditionFailed:
                    continue
        else:
            got = self.get()
            return got[0] if got else {}
        self.record = record
        self._beat = threading.Thread(target=self._heartbeat, name="c360-lake-lock", daemon=True)
        self._beat.start()
        return None

    def _refresh(self, record: dict[str, Any]) -> None:
        from c360 import storage

        with self._mutex:
            if self.lost:
                return
            record = {**record, "heartbeat_at": _now()}
            try:
                self.etag = storage.put_if_match(self.uri, self._encode(record), self.etag or "")
                self.record = record
            except storage.PreconditionFailed:
                self.lost = True
                log.error("lake lock %s was taken over by another run (this run's heartbeat stopped for more "
                          "than %d s?)", self.uri, int(STALE_AFTER_S))

    def update(self, record: dict[str, Any]) -> None:
        self._refresh(record)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._refresh(self.record)
            except Exception as exc:  # a network hiccup: the next beat tries again
                log.warning("lake lock %s: heartbeat failed (%s)", self.uri, exc)

    def release(self) -> None:
        from c360 import storage

        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        with self._mutex:
            if self.lost:
                return
            got = self.get()
            if got is not None and got[1] == self.etag:  # still ours
                storage.delete_object(self.uri)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


__all__ = ["LakeBusy", "lake_lock", "for_settings", "is_locked", "read_holder", "lock_path", "LOCK_NAME"]
