"""Secrets at rest (issue 11 point 9): shop JWT secrets and webhook secrets are stored encrypted with a key
that is not in the database, so a database dump alone does not reveal them.

- `SHARECART_SECRET_KEY`: one or more Fernet keys (`cryptography`'s authenticated AES-128-CBC + HMAC-SHA256
  recipe), comma-separated. The first encrypts; every one decrypts — so the key is rotated by putting a new
  key first, keeping the old one after it until `sharecart reencrypt-secrets` (or simply every secret's next
  write) has moved the rows over. A key is made with `python -c "from cryptography.fernet import Fernet;
  print(Fernet.generate_key().decode())"`.
- Without it, `sharecart serve` on the embedded database keeps a key file beside the data directory
  (`secret.key`, mode 0600, outside the database); against a server without the variable, secrets are
  stored as they are and a warning says so once (development only: docs/security.md).
- A stored value is `fernet:<token>` when encrypted; anything else is a plain value written before the
  key existed, read as it is and encrypted on its next write.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache

from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

KEY_ENV = "SHARECART_SECRET_KEY"
PREFIX = "fernet:"
log = logging.getLogger("sharecart.secrets")


@lru_cache(maxsize=8)
def _fernet(keys: str):
    from cryptography.fernet import Fernet, MultiFernet

    return MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",") if k.strip()])


_warned = False


def _keys() -> str | None:
    global _warned
    from service.settings import settings

    keys = (settings().secret_key or "").strip()
    if keys:
        return keys
    if not _warned:
        _warned = True
        log.warning("%s is not set: shop and webhook secrets are stored unencrypted (development only)", KEY_ENV)
    return None


def embedded_key(data_dir) -> str:
    """The key of an embedded database: `secret.key` next to its data directory, created once (0600)."""
    from cryptography.fernet import Fernet

    path = data_dir.parent / "secret.key" if data_dir.name == "pgdata" else data_dir / "secret.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(Fernet.generate_key().decode())
    return path.read_text().strip()


def seal(value: str | None) -> str | None:
    if value is None or value.startswith(PREFIX):
        return value
    keys = _keys()
    if keys is None:
        return value
    return PREFIX + _fernet(keys).encrypt(value.encode()).decode()


def unseal(stored: str | None) -> str | None:
    if stored is None or not stored.startswith(PREFIX):
        return stored
    keys = _keys()
    if keys is None:
        raise RuntimeError(f"a secret is stored encrypted but {KEY_ENV} is not set")
    return _fernet(keys).decrypt(stored[len(PREFIX) :].encode()).decode()


class SecretText(TypeDecorator):
    """TEXT holding a secret: encrypted on the way in, decrypted on the way out (see the module docstring)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return seal(value)

    def process_result_value(self, value, dialect):
        return unseal(value)
