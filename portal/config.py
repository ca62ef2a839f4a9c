"""Settings from ``PORTAL_*`` environment variables, read when the app is created.

Nothing here runs at import time: :func:`load_config` is called by
:func:`portal.create_app` with the environment of that moment, so tests and
commands can set variables before they build an app.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import os
import secrets
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from limits import parse_many

ENVIRONMENTS = ("development", "production", "test")


class ConfigError(RuntimeError):
    """A required setting is missing or malformed."""


# Secrets in production (issue 11): a key someone typed or copied from an example is
# refused at start, not discovered after it signed a year of sessions.
SECRET_MIN_LENGTH = 32
SECRET_MIN_DISTINCT = 8
SECRET_REPEAT = 8  # a key that repeats a piece this long is a pattern, not random
# Estimated entropy: length × the Shannon entropy of the key's own characters. Random
# keys are far above it (secrets.token_hex(16) ≥ 92 bits, token_urlsafe(32) ≥ 180 bits).
SECRET_MIN_BITS = 80
# Known defaults and placeholders, compared without case; a key that contains a
# placeholder word is refused too.
KNOWN_SECRETS = frozenset(
    {
        "x",
        "secret",
        "changeme",
        "change-me",
        "dev",
        "development",
        "test",
        "password",
        "secret-key",
        "secret_key",
        "secretkey",
        "supersecret",
        "super-secret",
        "default",
    }
)
PLACEHOLDER_WORDS = (
    "changeme",
    "change-me",
    "change_me",
    "replaceme",
    "replace-me",
    "replace_me",
    "secret-key",
    "secret_key",
    "secretkey",
    "example",
    "password",
    "default",
)


def _estimated_bits(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return n * -sum(c / n * math.log2(c / n) for c in counts.values())


def secret_key_problem(value: str) -> str | None:
    """Why ``value`` is too weak to sign production sessions, or None if it will do."""
    lowered = value.strip().lower()
    if lowered in KNOWN_SECRETS or any(word in lowered for word in PLACEHOLDER_WORDS):
        return "is a known default or placeholder"
    if len(value) < SECRET_MIN_LENGTH:
        return f"is shorter than {SECRET_MIN_LENGTH} characters"
    if len(set(value)) < SECRET_MIN_DISTINCT:
        return f"has fewer than {SECRET_MIN_DISTINCT} different characters"
    # Runs: more than three quarters of the steps between neighbours stay or move by one. In
    # a random hex key about one step in six does, so "more than half" refused about 1 in
    # 70,000 keys of `secrets.token_hex(16)`; "more than three quarters", 1 in 3·10¹².
    steps = [ord(b) - ord(a) for a, b in zip(value, value[1:], strict=False)]
    if sum(1 for step in steps if abs(step) <= 1) * 4 > len(steps) * 3:
        return "is mostly runs (aaaa, abcd, 4321)"
    pieces = [value[i : i + SECRET_REPEAT] for i in range(len(value) - SECRET_REPEAT + 1)]
    if len(set(pieces)) < len(pieces):  # random 64 hex digits: about 1 in 2.5 million
        return f"repeats a piece of {SECRET_REPEAT} characters"
    if _estimated_bits(value) < SECRET_MIN_BITS:
        return f"has under {SECRET_MIN_BITS} bits of estimated entropy"
    return None


def encryption_key_problem(value: str, *, secret_key: str) -> str | None:
    """Why ``value`` will not do as the production Fernet key, or None if it will."""
    try:
        Fernet(value.encode())
    except (ValueError, TypeError):
        return (
            "is not a Fernet key (32 url-safe base64-encoded bytes; make one with "
            '`python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"`)'
        )
    if value == secret_key:
        return "is the same as PORTAL_SECRET_KEY"
    raw = base64.urlsafe_b64decode(value.encode())
    if len(set(raw)) < 20:  # 32 random bytes have about 30 different values; < 20: 1 in 10⁸
        return "is not random (too few different bytes)"
    return None


def _refuse_weak_secrets(secret_key: str, encryption_key: str) -> None:
    """Production refuses to start with a weak secret key or encryption key."""
    problem = secret_key_problem(secret_key)
    if problem:
        raise ConfigError(
            f"PORTAL_SECRET_KEY {problem}: production needs a random key of at least "
            f"{SECRET_MIN_LENGTH} characters, e.g. "
            '`python -c "import secrets; print(secrets.token_urlsafe(48))"`'
        )
    problem = encryption_key_problem(encryption_key, secret_key=secret_key)
    if problem:
        raise ConfigError(f"PORTAL_ENCRYPTION_KEY {problem}")


def _instance_secret(instance_path: str, name: str, factory: Callable[[], str]) -> str:
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


def _positive(env: dict[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value <= 0:
        raise ConfigError(f"{name} must be more than 0, not {value}")
    return value


# ---------------------------------------------------------------- rate limits (portal.ratelimit)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The limits and their defaults, each a ``limits`` string ("5 per minute", "100/hour").
DEFAULT_LIMITS = {
    "PORTAL_LOGIN_RATE_LIMIT": "5 per minute",
    "PORTAL_LOGIN_ADDRESS_RATE_LIMIT": "50 per minute",
    "PORTAL_RESET_RATE_LIMIT": "5 per hour",
    "PORTAL_RESET_ADDRESS_RATE_LIMIT": "30 per hour",
    "PORTAL_API_RATE_LIMIT": "6000 per minute",
    "PORTAL_SCIM_RATE_LIMIT": "1200 per minute",
}
_TRUE = ("1", "true", "yes", "on")


def parse_proxies(text: str) -> tuple[Network, ...]:
    """``PORTAL_TRUSTED_PROXIES``: comma-separated addresses or networks (ValueError if not)."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    )


def rate_limit_settings(
    env: dict[str, str], *, production: bool, redis_url: str | None
) -> dict[str, Any]:
    """The rate-limit part of the Flask config: the limits, their storage, the trusted proxies.

    :mod:`portal.ratelimit` applies them.
    """
    single_process = env.get("PORTAL_SINGLE_PROCESS", "").strip().lower() in _TRUE
    if production and not redis_url and not single_process:
        raise ConfigError(
            "PORTAL_REDIS_URL is required in production, so that rate limits hold across "
            "processes and machines; set PORTAL_SINGLE_PROCESS=1 only if exactly one "
            "process serves the portal"
        )
    out: dict[str, Any] = {}
    for name, default in DEFAULT_LIMITS.items():
        value = env.get(name) or default
        try:
            parse_many(value)
        except ValueError as exc:
            raise ConfigError(
                f"{name} must be a rate limit such as {default!r}, not {value!r}"
            ) from exc
        out[name] = value
    raw_proxies = env.get("PORTAL_TRUSTED_PROXIES", "")
    try:
        out["PORTAL_TRUSTED_PROXIES"] = parse_proxies(raw_proxies)
    except ValueError as exc:
        raise ConfigError(
            "PORTAL_TRUSTED_PROXIES must be comma-separated IP addresses or networks "
            f"(e.g. 10.0.0.5,10.1.0.0/16), not {raw_proxies!r}: {exc}"
        ) from exc
    out.update(
        {
            "PORTAL_SINGLE_PROCESS": single_process,
            "RATELIMIT_STORAGE_URI": redis_url or "memory://",
            # A Redis that does not answer must not hold a request up for long.
            "RATELIMIT_STORAGE_OPTIONS": (
                {"socket_connect_timeout": 0.5, "socket_timeout": 0.5} if redis_url else {}
            ),
            "RATELIMIT_KEY_PREFIX": env.get("PORTAL_RATELIMIT_KEY_PREFIX") or "portal",
            "RATELIMIT_STRATEGY": "sliding-window-counter",
            "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
            "RATELIMIT_SWALLOW_ERRORS": True,
            # Sent on 429 answers only (portal.ratelimit's refusal headers).
            "RATELIMIT_HEADERS_ENABLED": False,
        }
    )
    return out


# ---------------------------------------------------------------- jobs (portal.jobs)

#: The development broker: kombu's SQLAlchemy transport on a SQLite file, no server needed.
DEV_BROKER = "sqla+sqlite:///{instance}/jobs.sqlite"
#: kombu transports the portal supports (the ``memory`` one is for tests).
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp", "memory", "sqla+sqlite")


def job_settings(
    env: dict[str, str],
    *,
    instance_path: str,
    portal_env: str,
    redis_url: str | None,
) -> dict[str, Any]:
    """The job queue's settings: its broker, queue name, redelivery timeout and tick.

    The broker is ``PORTAL_JOBS_BROKER_URL`` (``redis://…`` or ``amqp://…``), else
    ``PORTAL_REDIS_URL`` (a portal that has Redis for its rate limits queues its
    jobs there too), else a SQLite file in the instance folder (development, and a
    single-process production). Tests default to the in-process ``memory://``
    transport (whatever ``PORTAL_REDIS_URL`` says): nothing runs a job unless the
    test asks (the ``jobs_inline`` fixture, or a real worker in ``tests/jobs``).
    """
    single_process = env.get("PORTAL_SINGLE_PROCESS", "").strip().lower() in _TRUE
    broker = env.get("PORTAL_JOBS_BROKER_URL") or (redis_url if portal_env != "test" else None)
    if not broker:
        if portal_env == "test":
            broker = "memory://"
        elif portal_env == "production" and not single_process:
            raise ConfigError(
                "PORTAL_JOBS_BROKER_URL (redis://… or amqp://…) or PORTAL_REDIS_URL is "
                "required in production, so that workers on any machine share the queue"
            )
        else:
            broker = DEV_BROKER.format(instance=str(Path(instance_path).resolve()))
    if broker.split("://", 1)[0] not in BROKER_SCHEMES:
        raise ConfigError(
            "PORTAL_JOBS_BROKER_URL must be a redis://, amqp:// or sqla+sqlite:/// URL, "
            f"not {broker.split('://', 1)[0]!r}"
        )
    queue = env.get("PORTAL_JOBS_QUEUE") or "portal"
    if not queue.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(queue) > 100:
        raise ConfigError(
            f"PORTAL_JOBS_QUEUE must be letters, digits, '-', '_' or '.', not {queue!r}"
        )
    return {
        "PORTAL_JOBS_BROKER_URL": broker,
        "PORTAL_JOBS_QUEUE": queue,
        "PORTAL_JOBS_VISIBILITY_TIMEOUT": _int(env, "PORTAL_JOBS_VISIBILITY_TIMEOUT", 3600),
        "PORTAL_JOBS_TICK_SECONDS": _int(env, "PORTAL_JOBS_TICK_SECONDS", 30),
        "PORTAL_JOBS_LOST_AFTER_SECONDS": _positive(env, "PORTAL_JOBS_LOST_AFTER_SECONDS", 7200),
        # Jobs run inline, in the process that enqueues them: only tests ask for it.
        "PORTAL_JOBS_EAGER": False,
        # Tests only: an invoice run's job drafts one organisation at a time and pauses this
        # many seconds after each, so a test can kill its worker mid-run.
        "PORTAL_TEST_INVOICE_RUN_PAUSE": (
            float(env.get("PORTAL_TEST_INVOICE_RUN_PAUSE") or 0) if portal_env == "test" else 0.0
        ),
    }


# ---------------------------------------------------------------- logs and metrics (observability)

#: Addresses that may read ``/metrics`` without a token unless PORTAL_METRICS_ALLOW says otherwise.
DEFAULT_METRICS_ALLOW = "127.0.0.1/32,::1/128"
#: A metrics token shorter than this is refused (it is a password for a scraper).
METRICS_TOKEN_MIN_LENGTH = 16
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def observability_settings(env: dict[str, str], *, portal_env: str) -> dict[str, Any]:
    """Log format and level, and who may read ``/metrics`` (token, addresses)."""
    default_format = {"production": "json", "development": "text"}.get(portal_env)
    log_format = (env.get("PORTAL_LOG_FORMAT") or "").strip().lower() or default_format
    if log_format not in (None, "json", "text"):
        raise ConfigError(f"PORTAL_LOG_FORMAT must be json or text, not {log_format!r}")
    level = (env.get("PORTAL_LOG_LEVEL") or "INFO").strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"PORTAL_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    token = env.get("PORTAL_METRICS_TOKEN") or None
    if token is not None and len(token) < METRICS_TOKEN_MIN_LENGTH:
        raise ConfigError(
            f"PORTAL_METRICS_TOKEN must be at least {METRICS_TOKEN_MIN_LENGTH} characters, e.g. "
            '`python -c "import secrets; print(secrets.token_urlsafe(32))"`'
        )
    raw_allow = env.get("PORTAL_METRICS_ALLOW", DEFAULT_METRICS_ALLOW)
    try:
        allow = parse_proxies(raw_allow)
    except ValueError as exc:
        raise ConfigError(
            "PORTAL_METRICS_ALLOW must be comma-separated IP addresses or networks "
            f"(e.g. 127.0.0.1/32,10.0.0.0/8; empty: none), not {raw_allow!r}: {exc}"
        ) from exc
    return {
        "PORTAL_LOG_FORMAT": log_format,
        "PORTAL_LOG_LEVEL": level,
        "PORTAL_METRICS_TOKEN": token,
        "PORTAL_METRICS_ALLOW": allow,
    }


# ---------------------------------------------------------------- the whole config


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
    if production:
        _refuse_weak_secrets(secret_key or "", encryption_key or "")  # both given (above)
    if not secret_key:
        secret_key = _instance_secret(instance_path, "secret_key", lambda: secrets.token_hex(32))
    if not encryption_key:
        encryption_key = _instance_secret(
            instance_path, "encryption_key", lambda: Fernet.generate_key().decode()
        )

    database_url = env.get("PORTAL_DATABASE_URL") or (
        "sqlite:///" + str(Path(instance_path) / "portal.sqlite3")
    )
    if database_url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; accept the bare scheme people paste.
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]

    # The owner of the tables, for `portal db upgrade` only (PostgreSQL: the application's own
    # role may not create tables and is held by row-level security). Unset: the same URL.
    migration_url = env.get("PORTAL_MIGRATION_DATABASE_URL") or None
    if migration_url and migration_url.startswith("postgresql://"):
        migration_url = "postgresql+psycopg://" + migration_url[len("postgresql://") :]

    redis_url = env.get("PORTAL_REDIS_URL") or None

    return {
        "PORTAL_ENV": portal_env,
        "SECRET_KEY": secret_key,
        "PORTAL_ENCRYPTION_KEY": encryption_key,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "PORTAL_MIGRATION_DATABASE_URI": migration_url,
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
        # Seconds to wait for the SMTP server before the try is recorded failed (and retried).
        "PORTAL_SMTP_TIMEOUT": _int(env, "PORTAL_SMTP_TIMEOUT", 10),
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
        "MAX_CONTENT_LENGTH": 64 * 1024 * 1024,
        # Rate limits, their storage and the trusted proxies (portal.ratelimit).
        **rate_limit_settings(env, production=production, redis_url=redis_url),
        # Log format and level, who may read /metrics (portal.observability, portal.health).
        **observability_settings(env, portal_env=portal_env),
        # The job queue (portal.jobs).
        **job_settings(
            env, instance_path=instance_path, portal_env=portal_env, redis_url=redis_url
        ),
    }
