"""c360.settings and c360.privacy: layered configuration, clear errors, key rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from c360.privacy import DEVELOPMENT_KEY, DevelopmentKeyWarning, pii_key
from c360.settings import ConfigError, load_settings

BASE = Path(__file__).resolve().parent.parent / "conf"


def _conf(tmp_path: Path, base: str, local: str | None = None) -> Path:
    (tmp_path / "base.yaml").write_text(base)
    if local is not None:
        (tmp_path / "local.yaml").write_text(local)
    return tmp_path


def test_repository_defaults_load():
    s = load_settings(BASE, environ={})
    assert s.env == "development" and s.engine.remote is None
    assert s.landing == Path("landing") and s.lake == Path("lake")
    assert s.bank.timezone == "Asia/Shanghai"


def test_local_then_environment_override(tmp_path):
    d = _conf(tmp_path, "paths: {lake: /a}\nengine: {shuffle_partitions: 4}\n", "paths: {lake: /b}\n")
    assert load_settings(d, environ={}).lake == Path("/b")
    s = load_settings(d, environ={"C360_LAKE": "/c", "SPARK_REMOTE": "sc://host:15002"})
    assert s.lake == Path("/c") and s.engine.remote == "sc://host:15002" and s.engine.shuffle_partitions == 4


@pytest.mark.parametrize("text, message", [
    ("engine: {shuffle_partitions: many}", "engine.shuffle_partitions"),
    ("engine: {remote: http://x}", "Spark Connect URL"),
    ("bank: {timezone: Mars/Olympus}", "unknown time zone"),
    ("paths: {lakes: /x}", "paths.lakes"),
    ("env: prod", "env"),
    ("models: {prediction: {compiled: sometimes}}", "models.prediction.compiled"),
    ("models: {prediction: {cache: /tmp}}", "models.prediction.cache"),
    ("- a list", "mapping"),
])
def test_invalid_configuration_fails_with_a_clear_message(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(_conf(tmp_path, text), environ={})


def test_development_key_warns_and_production_refuses(tmp_path):
    dev = load_settings(_conf(tmp_path, "env: development"), environ={})
    with pytest.warns(DevelopmentKeyWarning):
        assert pii_key(dev, environ={}) == DEVELOPMENT_KEY
    prod = load_settings(_conf(tmp_path, "env: production"), environ={})
    with pytest.raises(ConfigError, match="no PII key"):
        pii_key(prod, environ={})
    with pytest.raises(ConfigError, match="development key"):
        pii_key(prod, environ={"C360_PII_KEY": DEVELOPMENT_KEY.decode()})
    with pytest.raises(ConfigError, match="too short"):
        pii_key(prod, environ={"C360_PII_KEY": "short"})
    assert pii_key(prod, environ={"C360_PII_KEY": "a-real-secret-of-32-bytes-length"}) == b"a-real-secret-of-32-bytes-length"


def test_key_from_secret_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("file-secret-0123456789\n")
    conf = tmp_path / "conf"
    conf.mkdir()
    s = load_settings(_conf(conf, f"env: production\nprivacy: {{key_file: {secret}}}"), environ={})
    assert pii_key(s, environ={}) == b"file-secret-0123456789"
