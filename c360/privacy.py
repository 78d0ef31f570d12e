"""PII keys and tokens.

PII (names, national ids, phones, emails, exact birth dates) is replaced by keyed tokens:
HMAC-SHA256 under a secret key, so that the same value always gives the same token (joins
and deduplication still work) while nobody without the key can test a guess.

The key comes from the environment variable named by ``privacy.key_env`` (default
``C360_PII_KEY``) or from the file ``privacy.key_file``. In the development profile a
built-in key is used with a warning; any other profile refuses to start without a key.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from c360.settings import ConfigError, Settings

log = logging.getLogger(__name__)

DEVELOPMENT_KEY = b"c360-development-key-do-not-use-in-production"
MIN_KEY_BYTES = 16


class DevelopmentKeyWarning(UserWarning):
    pass


def pii_key(settings: Settings, environ: dict[str, str] | None = None) -> bytes:
    environ = os.environ if environ is None else environ
    value = environ.get(settings.privacy.key_env)
    source = f"${settings.privacy.key_env}"
    if not value and settings.privacy.key_file:
        path = Path(settings.privacy.key_file)
        if not path.exists():
            raise ConfigError(f"privacy.key_file: {path} does not exist")
        value = path.read_text(encoding="utf-8").strip()
        source = str(path)
    if value:
        key = value.encode("utf-8")
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"the PII key in {source} is too short: use at least {MIN_KEY_BYTES} bytes")
        if key == DEVELOPMENT_KEY and settings.env != "development":
            raise ConfigError(f"the PII key in {source} is the development key; set a secret key for env={settings.env}")
        return key
    if settings.env != "development":
        raise ConfigError(
            f"no PII key: set ${settings.privacy.key_env} or privacy.key_file "
            f"(the built-in development key is refused when env={settings.env})")
    warnings.warn(f"using the built-in development PII key; set ${settings.privacy.key_env} for real data",
                  DevelopmentKeyWarning, stacklevel=2)
    return DEVELOPMENT_KEY


def hmac_pads(key: bytes) -> tuple[str, str]:
    """The inner and outer HMAC-SHA256 pads of ``key`` as hex (RFC 2104)."""
    import hashlib

    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    k = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in k).hex(), bytes(b ^ 0x5C for b in k).hex()
