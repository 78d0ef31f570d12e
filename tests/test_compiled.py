"""models.compiled: lleaves-compiled boosters predict what LightGBM predicts."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from models import compiled


def _data(n: int = 600, seed: int = 3):
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=n), rng.integers(0, 4, n).astype(float), rng.gamma(2.0, 10.0, n)])
    x[rng.random(n) < 0.1, 0] = np.nan  # missing values take the learned default direction
    y = ((x[:, 1] == 2) ^ (np.nan_to_num(x[:, 0]) > 0.3) ^ (x[:, 2] > 25)).astype(int)
    return x, y


def _binary(x, y, trees=30):
    return lgb.train({"objective": "binary", "verbose": -1, "min_data_in_leaf": 5, "num_threads": 1},
                     lgb.Dataset(x, y, categorical_feature=[1]), num_boost_round=trees)


def test_compiled_binary_and_ranker_predict_as_lightgbm(tmp_path):
    x, y = _data()
    test = np.vstack([_data(200, seed=11)[0], [[np.nan, 7.0, np.nan]]])  # an unseen category, all missing
    binary = _binary(x, y)
    ranker = lgb.train({"objective": "lambdarank", "verbose": -1, "min_data_in_leaf": 5, "num_threads": 1},
                       lgb.Dataset(x, y, group=[6] * 100, categorical_feature=[1]), num_boost_round=20)
    for booster in (binary, ranker):
        predict = compiled.compiled(booster.model_to_string(), tmp_path)
        got, want = predict(test), booster.predict(test)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        assert got.dtype == np.float64 and got.shape == (len(test),)
        # LightGBM's model text in, its predictions out; F-ordered matrices as models.frame builds them
        np.testing.assert_allclose(predict(np.asfortranarray(test)), want, rtol=0, atol=1e-12)
    assert 0 < binary.predict(test).min() and binary.predict(test).max() < 1  # probabilities, not raw scores
    assert ranker.predict(test).min() < 0  # raw scores


def test_compiled_models_are_cached_by_model_text(tmp_path):
    x, y = _data()
    text = _binary(x, y, trees=10).model_to_string()
    compiled.compiled(text, tmp_path)
    key = compiled.cache_key(text)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{key}.json", f"{key}.so", f"{key}.txt"]  # no temporaries
    stamp = (tmp_path / f"{key}.so").stat().st_mtime_ns
    again = compiled.compiled(text, tmp_path)  # loaded, not compiled again
    assert (tmp_path / f"{key}.so").stat().st_mtime_ns == stamp
    np.testing.assert_allclose(again(x), lgb.Booster(model_str=text).predict(x), rtol=0, atol=1e-12)
    other = _binary(x, y, trees=11).model_to_string()
    assert compiled.cache_key(other) != key
    compiled.compiled(other, tmp_path)
    assert len(list(tmp_path.glob("*.so"))) == 2


def test_predictor_falls_back_to_lightgbm(tmp_path, monkeypatch):
    x, y = _data()
    booster = _binary(x, y, trees=10)
    text = booster.model_to_string()
    plain = compiled.predictor(text, use_compiled=False, cache_dir=tmp_path)
    np.testing.assert_array_equal(plain(x), booster.predict(x, num_threads=1))
    assert not list(tmp_path.iterdir())  # nothing compiled
    monkeypatch.setattr(compiled, "available", lambda: False)  # as on a worker without lleaves
    assert not compiled.warm(text, tmp_path)
    np.testing.assert_array_equal(compiled.predictor(text, use_compiled=True, cache_dir=tmp_path)(x),
                                  booster.predict(x, num_threads=1))
    assert not list(tmp_path.iterdir())


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("C360_MODEL_CACHE", str(tmp_path / "here"))
    assert compiled.default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv("C360_MODEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compiled.default_cache_dir() == tmp_path / "xdg" / "c360" / "compiled-models"


# ---------------------------------------------------------------------------- a cache that cannot be trusted
#
# Loading a damaged compiled file does not raise: LLVM aborts the process (a truncated
# file) or the first prediction jumps to address 0 (an empty one). So these checks run the
# loading in a fresh interpreter, as an engine worker would, and look at how it ended.

LOAD = """
import logging, sys
import lightgbm as lgb, numpy as np
from models import compiled
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
text = open(sys.argv[1], encoding="utf-8").read()
x = np.load(sys.argv[2])
if sys.argv[4] == "warm":
    print("warm", compiled.warm(text, sys.argv[3]))
predict = compiled.predictor(text, True, sys.argv[3])
got = predict(x)
print("compiled" if hasattr(predict, "model") else "lightgbm")
print("max difference", float(np.abs(got - lgb.Booster(model_str=text).predict(x, num_threads=1)).max()))
"""


def _load_elsewhere(tmp_path, text: str, x, cache, action: str = "predict", fsize_limit: int | None = None):
    """Run :data:`LOAD` in a new interpreter (with an optional file size limit, as on a full
    disk): (exit code, stdout, stderr)."""
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "model.txt").write_text(text, encoding="utf-8")
    np.save(tmp_path / "x.npy", x)
    code = LOAD
    if fsize_limit is not None:
        code = ("import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                f"resource.setrlimit(resource.RLIMIT_FSIZE, ({fsize_limit}, resource.RLIM_INFINITY))\n" + code)
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.txt"), str(tmp_path / "x.npy"),
                           str(cache), action], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    return done.returncode, done.stdout, done.stderr


def test_an_empty_or_truncated_compiled_file_is_not_loaded_lightgbm_predicts(tmp_path):
    x, y = _data()
    text = _binary(x, y, trees=10).model_to_string()
    cache = tmp_path / "cache"
    compiled.compiled(text, cache)
    binary = cache / f"{compiled.cache_key(text)}.so"
    whole = binary.read_bytes()
    for damage in (b"", whole[: len(whole) // 2]):  # empty, cut in half
        binary.write_bytes(damage)
        rc, out, err = _load_elsewhere(tmp_path, text, x, cache)
        assert rc == 0, (len(damage), rc, err[-2000:])  # before: -11 (empty: SIGSEGV), -6 (truncated: LLVM abort)
        assert out.splitlines() == ["lightgbm", "max difference 0.0"], out
        assert f"compiled model {binary.name}" in err and "LightGBM predicts" in err, err
        assert binary.read_bytes() == damage  # a worker leaves the entry alone
    # the driver's warm() replaces the damaged entry, which then loads (the predictor after it)
    rc, out, err = _load_elsewhere(tmp_path, text, x, cache, action="warm")
    assert rc == 0 and out.splitlines()[:2] == ["warm True", "compiled"], (out, err)
    assert float(out.splitlines()[2].split()[-1]) < 1e-12
    assert "is damaged" in err and binary.read_bytes() == whole


def test_a_compiled_file_without_its_record_is_not_loaded(tmp_path):
    """An entry whose size and hash record is missing (an older version's, or one copied in)."""
    x, y = _data()
    text = _binary(x, y, trees=10).model_to_string()
    cache = tmp_path / "cache"
    compiled.compiled(text, cache)
    key = compiled.cache_key(text)
    (cache / f"{key}.json").unlink()
    rc, out, err = _load_elsewhere(tmp_path, text, x, cache)
    assert rc == 0 and out.splitlines() == ["lightgbm", "max difference 0.0"], (out, err)
    assert f"{key}.json" in err


def test_a_disk_full_while_compiling_publishes_nothing(tmp_path):
    """Files limited to 2,000 bytes (the compiled object is about 4,000): lleaves writes the
    object from a callback whose errors LLVM does not see, so only a check of the written
    file finds it short. Before, the half file was renamed into place and the next process
    aborted loading it."""
    x, y = _data()
    text = _binary(x, y, trees=10).model_to_string()
    cache = tmp_path / "cache"
    compiled.compiled(text, cache)  # the model text file is in place; the object is written below
    key = compiled.cache_key(text)
    whole = (cache / f"{key}.so").read_bytes()
    assert len(whole) > 2000
    for p in cache.glob(f"{key}.*"):
        if p.suffix != ".txt":
            p.unlink()
    rc, out, err = _load_elsewhere(tmp_path, text, x, cache, action="warm", fsize_limit=2000)
    assert rc == 0 and out.splitlines()[0] == "warm False", (out, err)
    assert "LightGBM predicts" in err
    assert sorted(p.name for p in cache.iterdir()) == [f"{key}.txt"]  # nothing published, no temporary left
    rc, out, err = _load_elsewhere(tmp_path, text, x, cache)  # the next process compiles it whole
    assert rc == 0 and out.splitlines()[0] == "compiled", (out, err)
    assert (cache / f"{key}.so").read_bytes() == whole


def test_the_cache_entry_is_written_whole_with_its_size_and_hash(tmp_path):
    import hashlib
    import json
    import stat

    x, y = _data()
    text = _binary(x, y, trees=10).model_to_string()
    cache = tmp_path / "new" / "cache"
    compiled.compiled(text, cache)
    key = compiled.cache_key(text)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700  # created private to its owner
    data = (cache / f"{key}.so").read_bytes()
    assert json.loads((cache / f"{key}.json").read_text()) == {
        "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    # a model text file that differs from the model (cut short) is rewritten, not compiled
    (cache / f"{key}.txt").write_text(text[:100], encoding="utf-8")
    predict = compiled.compiled(text, cache)
    assert (cache / f"{key}.txt").read_text(encoding="utf-8") == text
    np.testing.assert_allclose(predict(x), lgb.Booster(model_str=text).predict(x), rtol=0, atol=1e-12)


def test_a_cache_directory_others_can_write_is_refused(tmp_path, caplog):
    x, y = _data()
    booster = _binary(x, y, trees=10)
    text = booster.model_to_string()
    for mode in (0o775, 0o777, 0o1777):  # group-writable, world-writable, world-writable sticky (/tmp)
        cache = tmp_path / f"shared-{mode:o}"
        cache.mkdir()
        cache.chmod(mode)
        caplog.clear()
        assert compiled.warm(text, cache) is False
        assert "writable by group or others" in caplog.text and str(cache) in caplog.text
        predict = compiled.predictor(text, use_compiled=True, cache_dir=cache)
        assert not hasattr(predict, "model")  # LightGBM's
        np.testing.assert_array_equal(predict(x), booster.predict(x, num_threads=1))
        assert not list(cache.iterdir())  # nothing written there, nothing read from there
