"""Compiled LightGBM prediction: a booster turned into machine code with lleaves (LLVM).

LightGBM's own ``Booster.predict`` spends most of its time per row outside the trees (it
turns each dense row into its sparse form before walking 250 trees); lleaves compiles the
model text into one function that walks the trees on the row in place. Measured on this
machine for the next-best-product champion (250 trees of 31 leaves, 146 features), one
thread, 249,646 rows: LightGBM 5.45 s, lleaves 2.41 s, largest difference in a
probability 7e-16. Compiling that model takes about 30 s, once per model text: the shared
object is kept in a cache directory under a key of the model text, lleaves, llvmlite and
the CPU it was compiled for, and loaded (in 0.02 s) by every later run and every engine
worker on the same machine.

The score step compiles in the driver before the engine runs (:func:`warm`), so the
engine's workers only load. Workers that do not find the file (a cluster's executors)
compile it themselves into their own cache, or predict with LightGBM when lleaves is not
installed there: the scores are the same either way.

The compiled file is machine code that every later process loads without further checks of
its own (a damaged one aborts or crashes the process, beyond any ``except``), so the cache
is trusted only as far as it is checked:

- the cache directory must belong to this user and be writable by no one else (it is
  created ``0700``); otherwise nothing is read from it or written to it;
- an entry is written under a temporary name in the same directory, flushed to disk,
  checked whole (an ELF object whose sections all lie inside the file: a disk that filled
  up while lleaves wrote it is not reported to us, lleaves writes from an LLVM callback
  whose errors are printed and dropped), recorded in a sidecar ``<key>.json`` (size and
  SHA-256) and only then renamed into place;
- before an entry is loaded, its size and SHA-256 must match that record and the file must
  be a regular file of this user that no one else can write.

On any doubt the predictor is LightGBM's (a warning says why); :func:`warm`, which the
driver runs before the engine, replaces a damaged entry by compiling the model again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

Predictor = Callable[[np.ndarray], np.ndarray]


def default_cache_dir() -> Path:
    """``$C360_MODEL_CACHE``, else ``$XDG_CACHE_HOME/c360/compiled-models`` (``~/.cache``)."""
    if os.environ.get("C360_MODEL_CACHE"):
        return Path(os.environ["C360_MODEL_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "c360" / "compiled-models"


def available() -> bool:
    """True when lleaves (and the llvmlite it needs) import."""
    try:
        import lleaves  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means: use LightGBM
        return False
    return True


def cache_key(model_text: str) -> str:
    """Hex digest naming the compiled file: the model text, the compiler versions and the CPU
    (lleaves compiles for the host CPU's features, so a file is not portable)."""
    from importlib.metadata import version

    import llvmlite.binding as llvm

    h = hashlib.sha256(model_text.encode("utf-8"))
    for part in (version("lleaves"), version("llvmlite"), platform.machine(), llvm.get_host_cpu_name(),
                 llvm.get_host_cpu_features().flatten()):
        h.update(b"\0" + str(part).encode("utf-8"))
    return h.hexdigest()[:32]


class CacheRefused(RuntimeError):
    """The compiled-model cache, or an entry in it, is not to be trusted: LightGBM predicts."""


class CacheEntryDamaged(CacheRefused):
    """A compiled file that does not match its size and hash record (or has none)."""


def private_dir(path: Path) -> Path:
    """``path``, created ``0700`` when missing; :class:`CacheRefused` unless it is a directory
    of this user that neither its group nor others can write (they could plant machine code
    that this process would run)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()  # the directory itself when path is a symbolic link to it
    if not stat.S_ISDIR(st.st_mode):
        raise CacheRefused(f"compiled-model cache {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise CacheRefused(f"compiled-model cache {path} belongs to user id {st.st_uid}, not to this user "
                           f"({os.geteuid()}): set models.prediction.cache_dir to a directory of this user")
    if st.st_mode & 0o022:
        raise CacheRefused(f"compiled-model cache {path} is writable by group or others (mode "
                           f"{stat.S_IMODE(st.st_mode):o}): `chmod go-w` it or set models.prediction.cache_dir "
                           "to a private directory")
    return path


def elf_incomplete(data: bytes) -> str | None:
    """None when ``data`` is a whole ELF object (its header, section table and every section
    with contents lie inside it), else what is wrong. A file cut short by a full disk fails
    here: the header written first says how long the file must be."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return f"not an ELF object ({len(data)} bytes)"
    end = "<" if data[5] == 1 else ">"
    if data[4] == 2:  # 64-bit
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
        fields = end + "IIQQQQ"  # name, type, flags, addr, offset, size
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
        fields = end + "IIIIII"
    if shoff + shentsize * shnum > len(data) or shentsize < struct.calcsize(fields):
        return f"section table ends at byte {shoff + shentsize * shnum}, the file has {len(data)}"
    for i in range(shnum):
        _, kind, _, _, offset, size = struct.unpack_from(fields, data, shoff + i * shentsize)
        if kind != 8 and offset + size > len(data):  # 8: SHT_NOBITS (.bss) has no bytes in the file
            return f"section {i} ends at byte {offset + size}, the file has {len(data)}"
    return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, tag: str) -> None:
    """``data`` into ``path``: a temporary file beside it (``0600``), flushed to disk, renamed."""
    tmp = path.with_name(path.name + tag)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _entry_problem(binary: Path, record: Path) -> str | None:
    """None when the compiled file ``binary`` can be loaded: a regular file of this user that
    others cannot write, whose size and SHA-256 are those of its ``record``; else why not."""
    try:
        st = binary.lstat()
    except FileNotFoundError:
        return "missing"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return f"owned by user id {st.st_uid} or writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    try:
        meta = json.loads(record.read_text(encoding="utf-8"))
        size, digest = int(meta["size"]), str(meta["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its size and hash record {record.name} is missing or unreadable ({type(exc).__name__})"
    data = binary.read_bytes()
    if len(data) != size:
        return f"{len(data)} bytes, its record says {size}"
    if hashlib.sha256(data).hexdigest() != digest:
        return "its SHA-256 differs from its record"
    return elf_incomplete(data)


def _compile_into(model, binary: Path, record: Path, tag: str) -> None:
    """Compile ``model`` (an ``lleaves.Model``) and publish the object as ``binary`` with its
    ``record``; :class:`CacheRefused` (nothing published) when the written file is not whole."""
    tmp = binary.with_name(binary.name + tag)
    try:
        model.compile(cache=str(tmp))  # lleaves writes the object code to tmp
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except FileNotFoundError:
            raise CacheRefused(f"lleaves wrote no compiled file for {binary.name}") from None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        data = tmp.read_bytes()
        problem = elf_incomplete(data)
        if problem:
            raise CacheRefused(f"compiled model {binary.name} was not written whole ({problem}; disk full?)")
        os.chmod(tmp, 0o600)
        meta = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        # the record first: a reader who finds the new file always finds its record
        _write_atomic(record, json.dumps(meta).encode("utf-8"), tag)
        os.replace(tmp, binary)
        _fsync_dir(binary.parent)
    finally:
        tmp.unlink(missing_ok=True)


def compiled(model_text: str, cache_dir: Path | str | None = None, repair: bool = False) -> Predictor:
    """A function ``matrix -> predictions`` equal to ``Booster(model_str=model_text).predict``
    (probabilities for binary models, raw scores for rankers), compiled once per cache key.

    Files ``<key>.txt`` (the model text), ``<key>.so`` (the compiled object) and
    ``<key>.json`` (its size and SHA-256) in the private cache directory (:func:`private_dir`),
    each written under a temporary name and renamed into place, so that workers compiling
    the same model at the same time never load half a file. An existing entry is loaded
    only when it matches its record; otherwise :class:`CacheEntryDamaged`, or, with
    ``repair``, the entry is compiled again. :class:`CacheRefused` when the cache directory
    is not private."""
    import lleaves

    cache = private_dir(Path(cache_dir) if cache_dir else default_cache_dir())
    key = cache_key(model_text)
    model_file, binary, record = cache / f"{key}.txt", cache / f"{key}.so", cache / f"{key}.json"
    tag = f".{os.getpid()}.{threading.get_ident()}.tmp"  # engine workers may be threads of one process
    text = model_text.encode("utf-8")
    try:
        same = model_file.read_bytes() == text
    except FileNotFoundError:
        same = False
    if not same:  # missing, or not this model's text (lleaves reads the model's shape from it)
        _write_atomic(model_file, text, tag)
    model = lleaves.Model(model_file=str(model_file))
    if binary.exists() or binary.is_symlink():
        problem = _entry_problem(binary, record)
        if problem and not repair:
            raise CacheEntryDamaged(f"compiled model {binary.name} in {cache} is not loaded: {problem}")
        if problem:
            log.warning("compiled model %s in %s is damaged (%s): compiling it again", binary.name, cache, problem)
            binary.unlink()
            record.unlink(missing_ok=True)
    if binary.exists():
        model.compile(cache=str(binary))  # checked just above; only this user can change it meanwhile
    else:
        log.info("compiling model %s (%d trees) with lleaves into %s", key, model.num_trees(), cache)
        _compile_into(model, binary, record, tag)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(x, n_jobs=1), dtype="float64")

    predict.model = model  # keeps the compiled code alive as long as the function
    return predict


def warm(model_text: str, cache_dir: Path | str | None = None) -> bool:
    """Compile ``model_text`` into the cache now (in the driver, before the engine's workers
    ask for it), replacing a damaged entry; False, with a warning, when lleaves is missing,
    the cache is refused or compiling fails."""
    if not available():
        log.warning("lleaves is not installed: LightGBM predicts (slower, same scores)")
        return False
    try:
        compiled(model_text, cache_dir, repair=True)
    except Exception as exc:  # noqa: BLE001 - LightGBM still predicts
        log.warning("compiling the model failed (%s: %s): LightGBM predicts", type(exc).__name__, exc)
        return False
    return True


def predictor(model_text: str, use_compiled: bool, cache_dir: Path | str | None = None) -> Predictor:
    """The compiled predictor when asked for and possible, else LightGBM's (one thread): also,
    with a warning, when the cache is refused or its entry does not match its record (a
    worker does not repair the entry; :func:`warm` does)."""
    if use_compiled and available():
        try:
            return compiled(model_text, cache_dir)
        except Exception as exc:  # noqa: BLE001
            log.warning("compiled prediction unavailable (%s: %s): LightGBM predicts", type(exc).__name__, exc)
    import lightgbm as lgb

    booster = lgb.Booster(model_str=model_text)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(x, num_threads=1), dtype="float64")

    return predict


__all__ = ["CacheEntryDamaged", "CacheRefused", "available", "cache_key", "compiled", "default_cache_dir",
           "elf_incomplete", "predictor", "private_dir", "warm"]
