"""Production refuses weak secrets: short, low in entropy, known defaults, not a Fernet key."""

from __future__ import annotations

import base64
import secrets

import pytest
from cryptography.fernet import Fernet

from portal.config import ConfigError, load_config

GOOD_SECRET = "q8Vw2Zr5-Lk0pXn7Tb4Ye1Hc6Gd9Jf3Ms_A"  # 36 characters, 36 different


def _production(tmp_path, **values: str) -> dict:
    env = {
        "PORTAL_ENV": "production",
        "PORTAL_SECRET_KEY": secrets.token_urlsafe(48),
        "PORTAL_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "PORTAL_SINGLE_PROCESS": "1",  # no Redis needed for these checks
    }
    env.update(values)
    return load_config(str(tmp_path), env)


def test_random_keys_are_accepted(tmp_path):
    for make in (
        lambda: secrets.token_hex(16),
        lambda: secrets.token_hex(32),
        lambda: secrets.token_urlsafe(32),
        lambda: secrets.token_urlsafe(48),
    ):
        for _ in range(200):
            key = make()
            config = _production(tmp_path, PORTAL_SECRET_KEY=key)
            assert config["SECRET_KEY"] == key
    assert _production(tmp_path, PORTAL_SECRET_KEY=GOOD_SECRET)["SECRET_KEY"] == GOOD_SECRET
    # A token_hex(16) that the rule "more than half of the steps are runs" refused: 16 of its
    # 31 steps stay or move by one (about 1 in 70,000 of such keys).
    lucky = "00007ddc56d444334fe4cd06dba76bac"
    assert _production(tmp_path, PORTAL_SECRET_KEY=lucky)["SECRET_KEY"] == lucky


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("x", "known default"),
        ("secret", "known default"),
        ("changeme", "known default"),
        ("dev", "known default"),
        ("CHANGEME", "known default"),
        ("please-changeme-9711eaaa8f62ba0d3d7aed5326e5781a", "known default"),
        ("my-secret-key-for-the-portal-in-production", "known default"),
        ("Tr0ub4dor&3-Tr0ub4dor", "shorter than 32"),
        ("QEIh_398aHMeYLc5MB29wQ", "shorter than 32"),  # a token_urlsafe(16)
        ("x" * 40, "fewer than 8 different"),
        ("abababababababababababababababab", "fewer than 8 different"),
        ("0123456789abcdef0123456789abcdef", "mostly runs"),
        ("Kq7!Kq7!Kq7!Kq7!Kq7!Kq7!Kq7!Kq7!Kq7!Kq7!", "fewer than 8 different"),
        ("abcdefghijklmnopqrstuvwxyz0123456789", "mostly runs"),
        ("aaaabbbbccccddddeeeeffffgggghhhhiiii", "mostly runs"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabcdefgh", "mostly runs"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa7Qz!2bM#", "mostly runs"),
        ("a1a2a3a4a5a6a7a8a9a1a2a3a4a5a6a7a8a9a1a2a3a4", "repeats a piece of 8"),
        ("q1q1q1q1q1q1q1q1q2q3q4q5q6q7q1q1q1q1", "repeats a piece of 8"),
        ("q1w2e3r4t5y6u7i8o9p0q1w2e3r4Xz", "shorter than 32"),
        ("qA5zzqzqE3zzzqqqzqqzz1zzqqzqzqzq7zqqzzqz", "under 80 bits"),
    ],
)
def test_production_refuses_a_weak_secret_key(tmp_path, key, reason):
    with pytest.raises(ConfigError, match=f"PORTAL_SECRET_KEY .*{reason}") as refused:
        _production(tmp_path, PORTAL_SECRET_KEY=key)
    if len(key) >= 8:
        assert key not in str(refused.value)  # the message never repeats the secret


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("y" * 44, "not a Fernet key"),
        ("not-a-key", "not a Fernet key"),
        ("B9NSs1F60NJx9XOLaAOsTlDY-j1iHyL8s6FBizY9roo", "not a Fernet key"),  # 43 characters
        (base64.urlsafe_b64encode(b"\0" * 32).decode(), "not random"),
        (base64.urlsafe_b64encode(b"0123456789abcdef" * 2).decode(), "not random"),
    ],
)
def test_production_refuses_a_weak_encryption_key(tmp_path, key, reason):
    with pytest.raises(ConfigError, match=f"PORTAL_ENCRYPTION_KEY .*{reason}"):
        _production(tmp_path, PORTAL_ENCRYPTION_KEY=key)


def test_the_encryption_key_may_not_be_the_secret_key(tmp_path):
    key = Fernet.generate_key().decode()
    with pytest.raises(ConfigError, match="PORTAL_ENCRYPTION_KEY is the same as"):
        _production(tmp_path, PORTAL_SECRET_KEY=key, PORTAL_ENCRYPTION_KEY=key)


def test_development_and_tests_keep_their_generated_keys(tmp_path):
    """Outside production nothing is refused: weak keys there protect nothing real."""
    for environment in ("development", "test"):
        config = load_config(str(tmp_path), {"PORTAL_ENV": environment, "PORTAL_SECRET_KEY": "x"})
        assert config["SECRET_KEY"] == "x"
        Fernet(config["PORTAL_ENCRYPTION_KEY"].encode())  # generated, valid


def test_the_app_refuses_to_start_in_production_with_a_weak_key(monkeypatch, tmp_path):
    from portal import create_app

    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("PORTAL_SECRET_KEY", "x")
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("PORTAL_SINGLE_PROCESS", "1")
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="PORTAL_SECRET_KEY is a known default"):
        create_app()
