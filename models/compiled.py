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
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
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


def compiled(model_text: str, cache_dir: Path | str | None = None) -> Predictor:
    """A function ``matrix -> predictions`` equal to ``Booster(model_str=model_text).predict``
    (probabilities for binary models, raw scores for rankers), compiled once per cache key.

    The model text and the shared object are written under temporary names and renamed into
    place, so that workers compiling the same model at the same time never load half a file."""
    import lleaves

    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    key = cache_key(model_text)
    model_file, binary = cache / f"{key}.txt", cache / f"{key}.so"
    tag = f".{os.getpid()}.{threading.get_ident()}.tmp"  # engine workers may be threads of one process
    if not model_file.exists():
        tmp = model_file.with_suffix(tag)
        tmp.write_text(model_text, encoding="utf-8")
        os.replace(tmp, model_file)
    model = lleaves.Model(model_file=str(model_file))
    if binary.exists():
        model.compile(cache=str(binary))
    else:
        log.info("compiling model %s (%d trees) with lleaves into %s", key, model.num_trees(), cache)
        tmp = binary.with_suffix(tag)
        model.compile(cache=str(tmp))
        os.replace(tmp, binary)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(x, n_jobs=1), dtype="float64")

    predict.model = model  # keeps the compiled code alive as long as the function
    return predict


def warm(model_text: str, cache_dir: Path | str | None = None) -> bool:
    """Compile ``model_text`` into the cache now (in the driver, before the engine's workers
    ask for it); False, with a warning, when lleaves is missing or compiling fails."""
    if not available():
        log.warning("lleaves is not installed: LightGBM predicts (slower, same scores)")
        return False
    try:
        compiled(model_text, cache_dir)
    except Exception as exc:  # noqa: BLE001 - LightGBM still predicts
        log.warning("compiling the model failed (%s: %s): LightGBM predicts", type(exc).__name__, exc)
        return False
    return True


def predictor(model_text: str, use_compiled: bool, cache_dir: Path | str | None = None) -> Predictor:
    """The compiled predictor when asked for and possible, else LightGBM's (one thread)."""
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


__all__ = ["available", "cache_key", "compiled", "default_cache_dir", "predictor", "warm"]
