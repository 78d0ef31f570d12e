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
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{key}.so", f"{key}.txt"]  # no temporary files left
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
