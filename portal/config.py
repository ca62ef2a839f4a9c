"""Settings from ``PORTAL_*`` environment variables, read when the app is created.

Nothing here runs at import time: :func:`load_config` is called by
:func:`portal.create_app` with the environment of that moment, so tests and
commands can set variables before they build an app.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

ENVIRONMENTS = ("development", "production", "test")


class ConfigError(RuntimeError):
    """A required setting is missing or malformed."""


def _instance_secret(instance_path: str, name: str, factory) -> str:
    """Read a development secret kept in the instance folder, creating it once."""
    path = Path(instance_path) / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = factory()
    path.write_text(value)
    path.chmod(0o600)
    return value


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from exc


def load_config(instance_path: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from the environment.

    ``PORTAL_ENV`` is ``production`` unless told otherwise: secrets are then
    required and cookies are ``Secure``. In ``development`` and ``test`` missing
    secrets are generated once and kept in the instance folder.
    """
    env = dict(os.environ if env is None else env)
    portal_env = env.get("PORTAL_ENV", "production")
    if portal_env not in ENVIRONMENTS:
        raise ConfigError(
            f"PORTAL_ENV must be one of {', '.join(ENVIRONMENTS)}, not {portal_env!r}"
        )
    production = portal_env == "production"

    secret_key = env.get("PORTAL_SECRET_KEY")
    encryption_key = env.get("PORTAL_ENCRYPTION_KEY")
    if production and not secret_key:
        raise ConfigError("PORTAL_SECRET_KEY is required in production")
    if production and not encryption_key:
        raise ConfigError("PORTAL_ENCRYPTION_KEY is required in production")
    if not secret_key:
        secret_key = _instance_secret(instance_path, "secret_key", lambda: secrets.token_hex(32))
    if not encryption_key:
        from cryptography.fernet import Fernet

        encryption_key = _instance_secret(
            instance_path, "encryption_key", lambda: Fernet.generate_key().decode()
        )

    database_url = env.get("PORTAL_DATABASE_URL") or (
        "sqlite:///" + str(Path(instance_path) / "portal.sqlite3")
    )
    if database_url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; accept the bare scheme people paste.
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]

    redis_url = env.get("PORTAL_REDIS_URL") or None
    return {
        "PORTAL_ENV": portal_env,
        "SECRET_KEY": secret_key,
        "PORTAL_ENCRYPTION_KEY": encryption_key,
        "SQLALCHEMY_DATABASE_URI": database_url,
        # No pool_pre_ping: portal.db checks only connections that sat idle in the pool.
        "SQLALCHEMY_ENGINE_OPTIONS": {},
        "PORTAL_REDIS_URL": redis_url,
        "PORTAL_BASE_URL": env.get("PORTAL_BASE_URL", "http://127.0.0.1:5000").rstrip("/"),
        "PORTAL_STRIPE_API_KEY": env.get("PORTAL_STRIPE_API_KEY"),
        "PORTAL_STRIPE_WEBHOOK_SECRET": env.get("PORTAL_STRIPE_WEBHOOK_SECRET"),
        "PORTAL_STRIPE_API_BASE": env.get("PORTAL_STRIPE_API_BASE"),
        "PORTAL_USAGE_MAX_AGE_DAYS": _int(env, "PORTAL_USAGE_MAX_AGE_DAYS", 35),
        # Mail: SMTP when a host is given, otherwise the development outbox folder.
        "PORTAL_SMTP_HOST": env.get("PORTAL_SMTP_HOST") or None,
        "PORTAL_SMTP_PORT": _int(env, "PORTAL_SMTP_PORT", 25),
        "PORTAL_SMTP_USERNAME": env.get("PORTAL_SMTP_USERNAME") or None,
        "PORTAL_SMTP_PASSWORD": env.get("PORTAL_SMTP_PASSWORD") or None,
        "PORTAL_SMTP_STARTTLS": env.get("PORTAL_SMTP_STARTTLS", "") in ("1", "true", "yes"),
        "PORTAL_MAIL_FROM": env.get(
            "PORTAL_MAIL_FROM", "Business Council Portal <portal@localhost>"
        ),
        "PORTAL_OUTBOX_DIR": env.get("PORTAL_OUTBOX_DIR") or str(Path(instance_path) / "outbox"),
        "PORTAL_COUNCIL_NAME": env.get("PORTAL_COUNCIL_NAME", "Business Council"),
        "PORTAL_INVITATION_DAYS": _int(env, "PORTAL_INVITATION_DAYS", 7),
        "PORTAL_PASSWORD_RESET_MINUTES": _int(env, "PORTAL_PASSWORD_RESET_MINUTES", 60),
        "PORTAL_LOGIN_RATE_LIMIT": env.get("PORTAL_LOGIN_RATE_LIMIT", "5 per minute"),
        # Single sign-on: the council's own provider for its staff (optional), and the
        # clock skew allowed when checking ID tokens' times.
        "PORTAL_COUNCIL_OIDC_ISSUER": env.get("PORTAL_COUNCIL_OIDC_ISSUER") or None,
        "PORTAL_COUNCIL_OIDC_CLIENT_ID": env.get("PORTAL_COUNCIL_OIDC_CLIENT_ID") or None,
        "PORTAL_COUNCIL_OIDC_CLIENT_SECRET": env.get("PORTAL_COUNCIL_OIDC_CLIENT_SECRET") or None,
        "PORTAL_COUNCIL_OIDC_DOMAINS": tuple(
            d.strip().lower().lstrip("@")
            for d in env.get("PORTAL_COUNCIL_OIDC_DOMAINS", "").split(",")
            if d.strip()
        ),
        "PORTAL_SSO_CLOCK_SKEW_SECONDS": _int(env, "PORTAL_SSO_CLOCK_SKEW_SECONDS", 60),
        # Cookies: HttpOnly and SameSite always; Secure everywhere but development/test.
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "SESSION_COOKIE_NAME": "portal_session",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "PERMANENT_SESSION_LIFETIME": 12 * 3600,
        "WTF_CSRF_TIME_LIMIT": 3600 * 8,
        "RATELIMIT_STORAGE_URI": redis_url or "memory://",
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_STRATEGY": "moving-window",
        "MAX_CONTENT_LENGTH": 64 * 1024 * 1024,
    }
