"""Secrets at rest: Fernet encryption with ``PORTAL_ENCRYPTION_KEY``.

Fernet (AES-128-CBC with an HMAC-SHA256 tag, from ``cryptography``) both hides
and authenticates a value, so a ciphertext changed in the database fails to
decrypt instead of yielding a wrong secret. The key is read from the app's
config when a value is sealed or opened, never at import time.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app


class SecretUnreadable(RuntimeError):
    """A stored secret cannot be decrypted (the encryption key changed, or the value did)."""


def _fernet(key: str | None = None) -> Fernet:
    key = key or current_app.config["PORTAL_ENCRYPTION_KEY"]
    try:
        return Fernet(key.encode() if isinstance(key, str) else key)
    except (ValueError, TypeError) as exc:
        raise SecretUnreadable(
            "PORTAL_ENCRYPTION_KEY is not a Fernet key (32 url-safe base64-encoded bytes)."
        ) from exc


def encrypt_secret(plaintext: str, *, key: str | None = None) -> str:
    """The ciphertext (ASCII) of ``plaintext`` under the portal's encryption key."""
    return _fernet(key).encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt_secret(ciphertext: str, *, key: str | None = None) -> str:
    """The plaintext of a value sealed by :func:`encrypt_secret`."""
    try:
        return _fernet(key).decrypt(ciphertext.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise SecretUnreadable(
            "A stored secret could not be decrypted: was PORTAL_ENCRYPTION_KEY changed?"
        ) from exc


def keyed_digest(value: str, *, purpose: str, key: str | None = None) -> str:
    """HMAC-SHA256 (hex) of ``value`` under a key derived from the portal's encryption key
    for ``purpose``: a short secret (a recovery code) stored so that neither a copy of the
    database alone nor a digest made for another purpose reveals it."""
    key = key or current_app.config["PORTAL_ENCRYPTION_KEY"]
    raw = key.encode() if isinstance(key, str) else key
    derived = hmac.new(raw, purpose.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(derived, value.encode("utf-8"), hashlib.sha256).hexdigest()
