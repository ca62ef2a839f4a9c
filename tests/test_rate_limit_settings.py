"""Rate-limit settings: production needs shared storage, proxies and limits are checked."""

from __future__ import annotations

import ipaddress
import secrets

import pytest
from cryptography.fernet import Fernet

from portal.config import ConfigError, load_config


def _production(tmp_path, **extra: str) -> dict:
    env = {
        "PORTAL_ENV": "production",
        "PORTAL_SECRET_KEY": secrets.token_urlsafe(48),
        "PORTAL_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        **extra,
    }
    return load_config(str(tmp_path), env)


def test_production_refuses_to_start_without_shared_storage(tmp_path):
    with pytest.raises(ConfigError, match="PORTAL_REDIS_URL is required in production"):
        _production(tmp_path)
    with pytest.raises(ConfigError, match="PORTAL_REDIS_URL"):
        _production(tmp_path, PORTAL_SINGLE_PROCESS="0")


def test_production_with_redis_counts_there_and_falls_back_in_process(tmp_path):
    config = _production(tmp_path, PORTAL_REDIS_URL="redis://127.0.0.1:6379/3")
    assert config["RATELIMIT_STORAGE_URI"] == "redis://127.0.0.1:6379/3"
    assert config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] is True
    assert config["RATELIMIT_SWALLOW_ERRORS"] is True
    assert config["RATELIMIT_STORAGE_OPTIONS"]["socket_connect_timeout"] <= 1
    assert config["PORTAL_SINGLE_PROCESS"] is False


def test_production_told_it_is_one_process_may_count_in_memory(tmp_path):
    config = _production(tmp_path, PORTAL_SINGLE_PROCESS="1")
    assert config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert config["PORTAL_SINGLE_PROCESS"] is True


def test_development_counts_in_memory_without_redis(tmp_path):
    config = load_config(str(tmp_path), {"PORTAL_ENV": "development"})
    assert config["RATELIMIT_STORAGE_URI"] == "memory://"


def test_defaults(tmp_path):
    config = load_config(str(tmp_path), {"PORTAL_ENV": "test"})
    assert config["PORTAL_TRUSTED_PROXIES"] == ()  # never assumed
    assert config["PORTAL_LOGIN_RATE_LIMIT"] == "5 per minute"
    assert config["PORTAL_LOGIN_ADDRESS_RATE_LIMIT"] == "50 per minute"
    assert config["PORTAL_API_RATE_LIMIT"] == "6000 per minute"


def test_trusted_proxies_are_addresses_or_networks(tmp_path):
    config = load_config(
        str(tmp_path),
        {"PORTAL_ENV": "test", "PORTAL_TRUSTED_PROXIES": " 10.0.0.5, 172.16.0.0/12 ,::1"},
    )
    assert config["PORTAL_TRUSTED_PROXIES"] == (
        ipaddress.ip_network("10.0.0.5/32"),
        ipaddress.ip_network("172.16.0.0/12"),
        ipaddress.ip_network("::1/128"),
    )
    for bad in ("*", "10.0.0.0/33", "proxy.internal", "10.0.0.1 10.0.0.2"):
        with pytest.raises(ConfigError, match="PORTAL_TRUSTED_PROXIES"):
            load_config(str(tmp_path), {"PORTAL_ENV": "test", "PORTAL_TRUSTED_PROXIES": bad})


@pytest.mark.parametrize(
    "name",
    [
        "PORTAL_LOGIN_RATE_LIMIT",
        "PORTAL_LOGIN_ADDRESS_RATE_LIMIT",
        "PORTAL_RESET_RATE_LIMIT",
        "PORTAL_RESET_ADDRESS_RATE_LIMIT",
        "PORTAL_API_RATE_LIMIT",
        "PORTAL_SCIM_RATE_LIMIT",
    ],
)
def test_limits_must_parse(tmp_path, name):
    config = load_config(str(tmp_path), {"PORTAL_ENV": "test", name: "7/second;100 per hour"})
    assert config[name] == "7/second;100 per hour"
    with pytest.raises(ConfigError, match=name):
        load_config(str(tmp_path), {"PORTAL_ENV": "test", name: "lots"})
