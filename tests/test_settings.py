"""c360.settings and c360.privacy: layered configuration, clear errors, key rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from c360.privacy import DEVELOPMENT_KEY, DevelopmentKeyWarning, KeyRef, key_fingerprint, pii_key, pii_key_ref
from c360.settings import ConfigError, load_settings

pytestmark = pytest.mark.unit

BASE = Path(__file__).resolve().parent.parent / "conf"


def _conf(tmp_path: Path, base: str, local: str | None = None) -> Path:
    (tmp_path / "base.yaml").write_text(base)
    if local is not None:
        (tmp_path / "local.yaml").write_text(local)
    return tmp_path


def test_repository_defaults_load():
    s = load_settings(BASE, environ={})
    assert s.env == "production" and s.engine.remote is None
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
    ("quality: {completeness: {sources: {transactions: {cadence: hourly}}}}",
     "quality.yaml: quality.completeness.sources.transactions.cadence: Input should be 'daily', 'weekly' or "
     "'optional'"),
    ("- a list", "mapping"),
])
def test_invalid_configuration_fails_with_a_clear_message(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(_conf(tmp_path, text), environ={})


def test_nothing_set_fails_closed_with_one_line_on_how_to_give_a_key():
    """The repository's conf with no C360_ENV and no key: no key, no run (the public
    development key only when development mode is asked for)."""
    s = load_settings(BASE, environ={})
    with pytest.raises(ConfigError) as err:
        pii_key(s, environ={})
    msg = str(err.value)
    assert "\n" not in msg and "$C360_PII_KEY" in msg and "privacy.key_file" in msg and "C360_ENV=development" in msg
    dev = load_settings(BASE, environ={"C360_ENV": "development"})
    with pytest.warns(DevelopmentKeyWarning, match="development PII key, which is public"):
        assert pii_key(dev, environ={}) == DEVELOPMENT_KEY


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
    secret.chmod(0o600)
    conf = tmp_path / "conf"
    conf.mkdir()
    s = load_settings(_conf(conf, f"env: production\nprivacy: {{key_file: {secret}}}"), environ={})
    assert pii_key(s, environ={}) == b"file-secret-0123456789"


def _file_settings(tmp_path: Path, secret: Path, env: str = "production"):
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    return load_settings(_conf(conf, f"env: {env}\nprivacy: {{key_file: {secret}}}"), environ={})


@pytest.mark.parametrize("content, mode, message", [
    ("", 0o600, "is empty"),
    ("   \n", 0o600, "is empty"),
    ("short-secret", 0o600, "too short"),
    ("file-secret-0123456789", 0o644, r"open to other users \(mode 0644\)"),
    ("file-secret-0123456789", 0o640, r"open to other users \(mode 0640\)"),
    ("file-secret-0123456789", 0o604, r"open to other users \(mode 0604\)"),
    (None, None, "does not exist"),
    ("dir", None, "is not a file"),
])
def test_a_bad_key_file_fails_closed(tmp_path, content, mode, message):
    """Even in development mode: a key file that is given but unusable is an error, never a
    fall-back to the development key."""
    secret = tmp_path / "secret"
    if content == "dir":
        secret.mkdir()
    elif content is not None:
        secret.write_text(content)
        secret.chmod(mode)
    for env in ("production", "development"):
        with pytest.raises(ConfigError, match=message):
            pii_key(_file_settings(tmp_path, secret, env), environ={})


def test_an_unreadable_key_file_fails_closed(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    secret = tmp_path / "secret"
    secret.write_text("file-secret-0123456789")
    secret.chmod(0o000)
    with pytest.raises(ConfigError, match="cannot be read"):
        pii_key(_file_settings(tmp_path, secret), environ={})


def test_the_key_reference_names_the_key_and_never_holds_it(tmp_path):
    """What goes into query plans: the variable's name or the file's path and a fingerprint."""
    import pickle

    key = "env-secret-0123456789-abcdef"
    prod = load_settings(_conf(tmp_path, "env: production"), environ={})
    ref = pii_key_ref(prod, environ={"C360_PII_KEY": key})
    assert ref == KeyRef("env", "C360_PII_KEY", key_fingerprint(key.encode()))
    assert key.encode() not in pickle.dumps(ref) and key not in repr(ref)
    assert ref.load({"C360_PII_KEY": key}) == key.encode()
    with pytest.raises(ConfigError, match="differs"):
        ref.load({"C360_PII_KEY": key + "-other"})
    secret = tmp_path / "secret"
    secret.write_text("file-secret-0123456789")
    secret.chmod(0o400)
    fref = pii_key_ref(_file_settings(tmp_path, secret), environ={})
    assert (fref.source, fref.name) == ("file", str(secret)) and fref.load({}) == b"file-secret-0123456789"


def test_cli_run_without_a_key_stops_before_anything_runs(tmp_path):
    """`c360 run` with no C360_ENV and no key: exit 2, one line on how to give a key or ask
    for development mode, and nothing ingested (the check comes before the first step)."""
    from typer.testing import CliRunner

    from c360.cli import app

    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    (landing / "customers" / "2026-06-30").mkdir(parents=True)
    r = CliRunner().invoke(app, ["run", "--as-of", "2026-06-30", "--landing", str(landing), "--lake", str(lake_dir)],
                           env={"C360_ENV": None, "C360_PII_KEY": None, "C360_CONF_DIR": None})
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no PII key"), r.output
    assert "$C360_PII_KEY" in lines[0] and "C360_ENV=development" in lines[0]
    assert not lake_dir.exists()
