"""PII keys and tokens.

PII (names, national ids, phones, emails, exact birth dates) is replaced by keyed tokens:
HMAC-SHA256 under a secret key, so that the same value always gives the same token (joins
and deduplication still work) while nobody without the key can test a guess.

The key comes from the environment variable named by ``privacy.key_env`` (default
``C360_PII_KEY``) or from the file ``privacy.key_file`` (readable by its owner only).
Without either, nothing that makes tokens runs: the built-in development key (public: it
is in this file) is used only when development mode is asked for explicitly
(``C360_ENV=development``, or ``env: development`` in ``conf/local.yaml``; ``c360 demo``
asks for it), and then with a warning.

The key never enters a query plan: :class:`KeyRef` names where the key is (the variable's
name or the file's path) and carries its fingerprint; the engine's Python workers read the
key from there when they compute tokens (:func:`hmac_hex`), and refuse a key whose
fingerprint differs from the driver's. On a remote cluster the executors therefore need
the key in their own environment (or the key file at the same path).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from c360.settings import ConfigError, Settings

DEVELOPMENT_KEY = b"c360-development-key-do-not-use-in-production"
MIN_KEY_BYTES = 16


class DevelopmentKeyWarning(UserWarning):
    pass


def key_fingerprint(key: bytes) -> str:
    """A short name of the PII key that does not reveal it (HMAC of a fixed text): tokens made
    under another key cannot be kept next to new ones."""
    return hmac.new(key, b"c360 pii key fingerprint", hashlib.sha256).hexdigest()[:16]


def _how(key_env: str) -> str:
    return (f"set ${key_env} or privacy.key_file (a file only its owner can read) to a secret of "
            f"{MIN_KEY_BYTES}+ bytes, or ask for development mode (public built-in key): C360_ENV=development")


def read_key_file(path: Path | str) -> bytes:
    """The key in ``path`` (surrounding whitespace removed); refuses a missing, unreadable or
    empty file and one that its group or other users may read or write."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"privacy.key_file: {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"privacy.key_file: {path} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"privacy.key_file: {path} is not a file")
    if mode & 0o077:
        raise ConfigError(f"privacy.key_file: {path} is open to other users (mode {stat.S_IMODE(mode):04o}): "
                          f"chmod 600 it (Kubernetes secret volume: defaultMode 0400)")
    try:
        value = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"privacy.key_file: {path} cannot be read ({exc.strerror})") from None
    if not value:
        raise ConfigError(f"privacy.key_file: {path} is empty")
    return value


def _check(key: bytes, where: str) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"the PII key in {where} is too short: use at least {MIN_KEY_BYTES} bytes")
    return key


@dataclass(frozen=True)
class KeyRef:
    """Where the PII key is, by name, and its fingerprint: never the key itself.

    Safe to put in a query plan (it is pickled into the token UDF). :meth:`load` reads the
    key where it runs: from the environment variable ``name`` (``source="env"``), the file
    at path ``name`` (``"file"``), or the built-in development key (``"development"``), and
    refuses it unless its fingerprint is ``fingerprint``.
    """

    source: Literal["env", "file", "development"]
    name: str
    fingerprint: str

    @classmethod
    def from_env(cls, var: str, environ: dict[str, str] | None = None) -> KeyRef:
        """The key in the environment variable ``var`` (read now, to fingerprint it)."""
        environ = os.environ if environ is None else environ
        value = environ.get(var)
        if not value:
            raise ConfigError(f"no PII key in ${var}")
        return cls("env", var, key_fingerprint(_check(value.encode("utf-8"), f"${var}")))

    def load(self, environ: dict[str, str] | None = None) -> bytes:
        if self.source == "env":
            environ = os.environ if environ is None else environ
            value = environ.get(self.name)
            if not value:
                raise ConfigError(f"no PII key in ${self.name} where the tokens are computed (on a cluster: "
                                  f"give the executors ${self.name} too)")
            key, where = _check(value.encode("utf-8"), f"${self.name}"), f"${self.name}"
        elif self.source == "file":
            key, where = _check(read_key_file(self.name), self.name), self.name
        else:
            key, where = DEVELOPMENT_KEY, "the development key"
        if key_fingerprint(key) != self.fingerprint:
            raise ConfigError(f"the PII key in {where} where the tokens are computed differs from the one "
                              "the job started with")
        return key


def pii_key_ref(settings: Settings, environ: dict[str, str] | None = None) -> KeyRef:
    """Find and check the PII key at start-up (fail closed); returns where it is, not the key.

    ``$<privacy.key_env>`` first, then ``privacy.key_file``; the built-in development key
    only when ``env`` is ``development`` (asked for explicitly), with a
    :class:`DevelopmentKeyWarning`. Anything else raises :class:`ConfigError` with one line
    saying how to give a key.
    """
    environ = os.environ if environ is None else environ
    var = settings.privacy.key_env
    if environ.get(var):
        ref = KeyRef.from_env(var, environ)
        key, where = ref.load(environ), f"${var}"
    elif settings.privacy.key_file:
        path = str(settings.privacy.key_file)
        key = _check(read_key_file(path), path)
        ref, where = KeyRef("file", path, key_fingerprint(key)), path
    elif settings.env == "development":
        warnings.warn(f"development mode: using the built-in development PII key, which is public (tokens are "
                      f"not secret); set ${var} for real data", DevelopmentKeyWarning, stacklevel=2)
        return KeyRef("development", "", key_fingerprint(DEVELOPMENT_KEY))
    else:
        raise ConfigError(f"no PII key (env={settings.env}): {_how(var)}")
    if key == DEVELOPMENT_KEY and settings.env != "development":
        raise ConfigError(f"the PII key in {where} is the public development key; set a secret key "
                          f"for env={settings.env}")
    return ref


def pii_key(settings: Settings, environ: dict[str, str] | None = None) -> bytes:
    """The PII key itself, under the rules of :func:`pii_key_ref` (for checks in this process;
    never put it in a query plan: pass the :class:`KeyRef` to the token functions)."""
    return pii_key_ref(settings, environ).load(environ)


def hmac_hex(values, ref: KeyRef):
    """HMAC-SHA256 hex of each value's UTF-8 text under the key ``ref`` names (None stays None).

    ``values``: a pandas Series of str/None (a pandas UDF's input); returns one of the same
    length. The key is read here, where the tokens are computed, never shipped with them.
    """
    import pandas as pd

    key = ref.load()
    # HMAC-SHA256 (RFC 2104) from the two pads' hash states, computed once per batch and
    # copied per value: twice as fast as hmac.new(key).copy() per value.
    k = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    inner, outer = hashlib.sha256(bytes(b ^ 0x36 for b in k)), hashlib.sha256(bytes(b ^ 0x5C for b in k))
    out = []
    for v in values:
        if isinstance(v, str):
            i = inner.copy()
            i.update(v.encode("utf-8"))
            o = outer.copy()
            o.update(i.digest())
            out.append(o.hexdigest())
        else:
            out.append(None)
    return pd.Series(out, index=values.index, dtype=object)
