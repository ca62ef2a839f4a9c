"""``portal provisioning deliver|redeliver|webhook-secret``: deliveries and the signing secret
by hand (issue 17), beside ``reconcile`` (:mod:`portal.provisioning.cli`).

* ``deliver [--vendor SLUG]``: send the deliveries due now, in order, as the workers do
  every minute (no worker needed); prints how many were tried and how they stand;
* ``redeliver ID``: send a delivered or failed delivery again (same ``webhook-id``);
* ``webhook-secret --vendor SLUG``: make a new signing secret (the previous one signs for
  24 hours more); the secret alone is the last line of output (shown once).
"""

from __future__ import annotations

import secrets

import click
from flask.cli import with_appcontext

from portal.catalogue.selectors import vendor_by_slug
from portal.db import db_session
from portal.kernel.actor import Actor
from portal.kernel.errors import DomainError
from portal.provisioning import delivery, selectors, services
from portal.provisioning.cli import provisioning


def _fail(error: DomainError) -> click.ClickException:
    return click.ClickException(str(error.detail))


@click.command("deliver")
@click.option("--vendor", "slug", help="Only this vendor (its slug); default: every vendor.")
@with_appcontext
def provisioning_deliver(slug: str | None) -> None:
    """Send the deliveries due now (in order, with retries as the workers do)."""
    session = db_session()
    try:
        vendor_id = vendor_by_slug(session, slug).id if slug else None
    except DomainError as error:
        raise _fail(error) from None
    tried, more = delivery.deliver_due(
        session, lease=f"cli-{secrets.token_hex(6)}", vendor_id=vendor_id
    )
    session.commit()
    click.echo(f"{tried} deliveries tried" + ("; more are due: run again" if more else "."))


@click.command("redeliver")
@click.argument("delivery_id", type=click.IntRange(min=1, max=2**63 - 1))
@with_appcontext
def provisioning_redeliver(delivery_id: int) -> None:
    """Send delivery DELIVERY_ID again (it goes out with the next deliveries due)."""
    session = db_session()
    actor = Actor.system("cli: provisioning redeliver")
    try:
        row = selectors.delivery_for(session, actor=actor, delivery_id=delivery_id)
        services.redeliver(session, actor=actor, delivery=row)
    except DomainError as error:
        session.rollback()
        raise _fail(error) from None
    session.commit()
    click.echo(f"Delivery {delivery_id} ({row.event}, {row.message_id}) is pending again.")


@click.command("webhook-secret")
@click.option("--vendor", "slug", required=True, help="The vendor (its slug).")
@with_appcontext
def provisioning_webhook_secret(slug: str) -> None:
    """Make a new webhook signing secret; printed once, as the last line."""
    session = db_session()
    actor = Actor.system("cli: provisioning webhook-secret")
    try:
        vendor = vendor_by_slug(session, slug)
        row, secret = services.webhook_secret_rotate(session, actor=actor, vendor=vendor)
    except DomainError as error:
        session.rollback()
        raise _fail(error) from None
    session.commit()
    if row.previous_secret_until is not None:
        until = f"{row.previous_secret_until:%Y-%m-%d %H:%M}"
        click.echo(f"The previous secret signs as well until {until} UTC.")
    click.echo(secret)


for _command in (provisioning_deliver, provisioning_redeliver, provisioning_webhook_secret):
    provisioning.add_command(_command)
