"""The job queue's settings (PORTAL_JOBS_*)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from portal.config import ConfigError, job_settings, load_config
from portal.jobs.queue import celery_config

PRODUCTION = {
    "PORTAL_ENV": "production",
    "PORTAL_SECRET_KEY": "Zq3-vT9wLk2pX7mR4nB8cY1dF6gH0jS5aE_uI2oP9lK",
    "PORTAL_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    "PORTAL_REDIS_URL": "redis://cache:6379/0",
}


def _config(tmp_path, **env: str):
    return load_config(str(tmp_path), env)


def test_development_queues_in_a_sqlite_file_with_no_server(tmp_path):
    config = _config(tmp_path, PORTAL_ENV="development")
    assert config["PORTAL_JOBS_BROKER_URL"] == f"sqla+sqlite:///{tmp_path.resolve()}/jobs.sqlite"
    assert (config["PORTAL_JOBS_QUEUE"], config["PORTAL_JOBS_EAGER"]) == ("portal", False)
    celery = celery_config(config)
    assert celery["broker_transport_options"] == {
        "execution_options": {"portal_foreign_engine": True}
    }
    assert celery["task_acks_late"] and celery["task_reject_on_worker_lost"]
    assert celery["worker_prefetch_multiplier"] == 1 and not celery["task_always_eager"]


def test_a_portal_with_redis_queues_there_unless_told_otherwise(tmp_path):
    config = _config(tmp_path, **PRODUCTION)
    assert config["PORTAL_JOBS_BROKER_URL"] == "redis://cache:6379/0"
    assert celery_config(config)["broker_transport_options"] == {
        "visibility_timeout": 3600,
        # a live worker looks for a dead worker's messages every 10 s (tests/test_several_servers)
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
    }
    rabbit = _config(
        tmp_path,
        **PRODUCTION,
        PORTAL_JOBS_BROKER_URL="amqp://portal:pw@mq:5672/portal",
        PORTAL_JOBS_QUEUE="council-a.jobs",
        PORTAL_JOBS_VISIBILITY_TIMEOUT="7200",
    )
    assert rabbit["PORTAL_JOBS_BROKER_URL"] == "amqp://portal:pw@mq:5672/portal"
    celery = celery_config(rabbit)
    assert celery["broker_transport_options"] == {}  # RabbitMQ redelivers on a lost connection
    assert celery["task_default_queue"] == "council-a.jobs"


def test_production_needs_a_shared_broker(tmp_path):
    env = {k: v for k, v in PRODUCTION.items() if k != "PORTAL_REDIS_URL"}
    with pytest.raises(ConfigError, match="PORTAL_JOBS_BROKER_URL"):
        job_settings(env, instance_path=str(tmp_path), portal_env="production", redis_url=None)
    single = _config(tmp_path, **env, PORTAL_SINGLE_PROCESS="1")
    assert single["PORTAL_JOBS_BROKER_URL"].startswith("sqla+sqlite:///")
    queued = _config(
        tmp_path, **env, PORTAL_JOBS_BROKER_URL="amqp://mq//", PORTAL_SINGLE_PROCESS="1"
    )
    assert queued["PORTAL_JOBS_BROKER_URL"] == "amqp://mq//"


def test_tests_queue_in_memory_whatever_redis_says(tmp_path):
    config = _config(tmp_path, PORTAL_ENV="test", PORTAL_REDIS_URL="redis://127.0.0.1:6379/0")
    assert config["PORTAL_JOBS_BROKER_URL"] == "memory://"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORTAL_JOBS_BROKER_URL", "kafka://k:9092", "redis://, amqp://"),
        ("PORTAL_JOBS_QUEUE", "a queue", "PORTAL_JOBS_QUEUE"),
        ("PORTAL_JOBS_VISIBILITY_TIMEOUT", "an hour", "whole number"),
        ("PORTAL_JOBS_TICK_SECONDS", "often", "whole number"),
    ],
)
def test_bad_job_settings_are_refused_at_start(tmp_path, name, value, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, PORTAL_ENV="development", **{name: value})


def test_the_test_pause_exists_only_in_tests(tmp_path):
    assert (
        _config(tmp_path, PORTAL_ENV="test", PORTAL_TEST_INVOICE_RUN_PAUSE="1.5")[
            "PORTAL_TEST_INVOICE_RUN_PAUSE"
        ]
        == 1.5
    )
    development = _config(tmp_path, PORTAL_ENV="development", PORTAL_TEST_INVOICE_RUN_PAUSE="9")
    assert development["PORTAL_TEST_INVOICE_RUN_PAUSE"] == 0.0
