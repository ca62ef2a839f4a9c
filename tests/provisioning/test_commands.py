"""``portal provisioning deliver|redeliver|webhook-secret``."""

from __future__ import annotations

import sqlalchemy as sa

from portal.db import db
from portal.provisioning.models import Delivery
from tests.provisioning.test_webhooks import _assign


def test_deliver_sends_what_is_due_and_redeliver_sends_again(app, world, receiver, runner):
    with app.app_context():
        _assign(world, "cli@buyer.example")  # jobs are not run here: pending
    result = runner.invoke(args=["provisioning", "deliver", "--vendor", "hooked"])
    assert result.exit_code == 0, result.output
    assert "2 deliveries tried" in result.output
    assert receiver.types == ["subscription.changed", "seat.assigned"]
    with app.app_context():
        first = db.session.scalar(sa.select(Delivery.id).order_by(Delivery.id))
    again = runner.invoke(args=["provisioning", "redeliver", str(first)])
    assert again.exit_code == 0, again.output
    runner.invoke(args=["provisioning", "deliver"])
    assert receiver.types[-1] == "subscription.changed"
    assert receiver.ids.count(receiver.ids[0]) == 2  # the same webhook-id


def test_bad_input_exits_non_zero_with_a_reason(runner, world):
    assert runner.invoke(args=["provisioning", "deliver", "--vendor", "nope"]).exit_code != 0
    assert runner.invoke(args=["provisioning", "redeliver", "0"]).exit_code != 0
    missing = runner.invoke(args=["provisioning", "redeliver", "999999"])
    assert missing.exit_code != 0 and "No such delivery" in missing.output


def test_webhook_secret_prints_the_secret_last(runner, world):
    result = runner.invoke(args=["provisioning", "webhook-secret", "--vendor", "hooked"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("whsec_") and "previous secret signs" in lines[0]
